"""Weights & Biases and Neptune runs behind :class:`agile_jax.io.logger.Logger` (RSL-RL's ``WandbLogWriter`` /
``NeptuneLogWriter``).

Each backend receives the scalars of an iteration under the same RSL-RL tags the TensorBoard files get, at the
same step (the learning iteration), and the run's configuration once at the start. The wall-time series
(``Train/mean_reward/time``, ``Train/mean_episode_length/time``) follow RSL-RL: W&B gets none (its steps must
increase, and every W&B series can be plotted against wall time), Neptune gets them as
``Train/mean_reward_time`` / ``Train/mean_episode_length_time`` (a Neptune series cannot also be a namespace).

Modes are the services' own: ``WANDB_MODE=offline`` writes ``<log_dir>/wandb/offline-run-*`` (``wandb sync`` it
later), ``NEPTUNE_MODE=offline`` writes ``<log_dir>/.neptune/offline/*`` (``neptune sync --path <log_dir>``);
``NEPTUNE_MODE=debug`` / ``WANDB_MODE=disabled`` log nothing. Credentials come from the usual environment
variables (``WANDB_API_KEY`` or ``wandb login``; ``NEPTUNE_API_TOKEN``), the W&B entity from ``WANDB_USERNAME``
and the Neptune workspace from ``NEPTUNE_USERNAME``, as in RSL-RL.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import Any

from agile_jax.config_base import ConfigError

# Neptune names of the wall-time series (RSL-RL's ``NeptuneLogWriter.name_map``).
NEPTUNE_NAMES = {"Train/mean_reward/time": "Train/mean_reward_time",
                 "Train/mean_episode_length/time": "Train/mean_episode_length_time"}
OFFLINE_NEPTUNE_MODES = ("offline", "debug")


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:200]


class WandbRun:
    """One W&B run: scalars at the iteration step, the config once, text notices in the run summary.

    Args:
        log_dir: the run directory (W&B's files go to ``<log_dir>/wandb``; its name is the W&B run name).
        project: ``runner.wandb_project``.
        config: the run's configuration as plain data (stored as the W&B run config).
    """

    def __init__(self, log_dir: str, project: str, config: Mapping[str, Any]):
        import wandb

        self.notices: dict[str, list[str]] = {}
        try:
            self.run = wandb.init(project=project, entity=os.environ.get("WANDB_USERNAME"),
                                  name=os.path.basename(os.path.normpath(log_dir)), dir=log_dir,
                                  config={"log_dir": log_dir, **config}, reinit="create_new")
        except wandb.errors.Error as err:
            raise ConfigError(f"runner.logger=wandb: W&B could not start a run ({_first_line(err)}); run "
                              "`wandb login` (or set WANDB_API_KEY), or log to disk with WANDB_MODE=offline") from None

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        """All of an iteration's scalars as one W&B history row at ``step``."""
        if values:
            self.run.log(dict(values), step=step)

    def wall_time_scalars(self, values: Mapping[str, float], seconds: float) -> None:
        """Not logged (W&B's steps must increase; any W&B series can be shown against wall time)."""

    def text(self, tag: str, text: str) -> None:
        """Notices of one tag, joined by newlines, in the run summary."""
        self.notices.setdefault(tag, []).append(text)
        self.run.summary[tag] = "\n".join(self.notices[tag])

    def close(self) -> None:
        self.run.finish()


@contextlib.contextmanager
def _neptune_data_directory(log_dir: str) -> Iterator[None]:
    """Neptune's offline and queue files under ``<log_dir>/.neptune`` unless NEPTUNE_DATA_DIRECTORY says otherwise."""
    if "NEPTUNE_DATA_DIRECTORY" in os.environ:
        yield
        return
    os.environ["NEPTUNE_DATA_DIRECTORY"] = os.path.join(log_dir, ".neptune")
    try:
        yield
    finally:
        os.environ.pop("NEPTUNE_DATA_DIRECTORY", None)


def neptune_project(project: str) -> str | None:
    """``workspace/project`` for ``runner.neptune_project`` (RSL-RL: ``$NEPTUNE_USERNAME/<project>``)."""
    if "/" in project:
        return project
    user = os.environ.get("NEPTUNE_USERNAME")
    return f"{user}/{project}" if user else None


class NeptuneRun:
    """One Neptune run: float series at the iteration step, the config as fields, text notices as string series.

    Args:
        log_dir: the run directory (its name is logged under ``log_dir``, as RSL-RL does).
        project: ``runner.neptune_project``.
        config: the run's configuration as plain data (stored under its top-level keys).
    """

    def __init__(self, log_dir: str, project: str, config: Mapping[str, Any]):
        import neptune
        from neptune.utils import stringify_unsupported

        mode = os.environ.get("NEPTUNE_MODE", "async")
        full_project, token = neptune_project(project), os.environ.get("NEPTUNE_API_TOKEN")
        # Online modes need a token and a workspace; offline and debug runs need neither.
        if mode not in OFFLINE_NEPTUNE_MODES and (not token or not full_project):
            raise ConfigError("runner.logger=neptune needs NEPTUNE_API_TOKEN and NEPTUNE_USERNAME (or "
                              "runner.neptune_project=<workspace>/<project>); export them, or log to disk with "
                              "NEPTUNE_MODE=offline")
        try:
            with _neptune_data_directory(log_dir):
                self.run = neptune.init_run(project=full_project, api_token=token)
        except neptune.exceptions.NeptuneException as err:
            raise ConfigError(f"runner.logger=neptune: Neptune could not start a run ({_first_line(err)}); check "
                              "NEPTUNE_API_TOKEN and the project, or log to disk with NEPTUNE_MODE=offline") from None
        self.run["log_dir"].log(os.path.basename(os.path.normpath(log_dir)))
        for key, value in config.items():
            self.run[key] = stringify_unsupported(value)

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        """Each scalar appended to its float series at ``step``."""
        for tag, value in values.items():
            self.run[tag].log(value, step=step)

    def wall_time_scalars(self, values: Mapping[str, float], seconds: float) -> None:
        """The wall-time series under Neptune's names; ``seconds`` (a float) keeps Neptune's steps increasing."""
        for tag, value in values.items():
            self.run[NEPTUNE_NAMES.get(tag, tag)].log(value, step=seconds)

    def text(self, tag: str, text: str) -> None:
        self.run[tag].log(text)

    def close(self) -> None:
        self.run.stop()


BACKENDS = {"wandb": WandbRun, "neptune": NeptuneRun}
