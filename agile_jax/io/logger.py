"""Training logs under RSL-RL 5.x tag names: TensorBoard, and optionally Weights & Biases or Neptune.

``runner.logger`` picks the writer as RSL-RL's ``logger`` option does: ``tensorboard`` (default), ``wandb`` or
``neptune`` (each also writes the TensorBoard files, like RSL-RL's ``WandbLogWriter`` / ``NeptuneLogWriter``),
or ``none``. W&B and Neptune are the optional extras ``agile_jax[wandb]`` / ``agile_jax[neptune]``; see
:mod:`agile_jax.io.remote_loggers` for their modes and credentials. On several hosts only process 0 logs (the
runner creates no logger elsewhere).
"""

from __future__ import annotations

import importlib
import math
import queue
import threading
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import yaml

from agile_jax.config_base import ConfigError

LOGGERS = ("tensorboard", "wandb", "neptune", "none")
# Logger -> (module it needs, pyproject extra that installs it).
PACKAGES = {"wandb": ("wandb", "wandb"), "neptune": ("neptune", "neptune")}
# Series that RSL-RL also writes against elapsed seconds, as "<tag>/time".
WALL_TIME_TAGS = ("Train/mean_reward", "Train/mean_episode_length")


def check_logger(kind: str, need_package: bool = True) -> None:
    """Refuses an unknown ``runner.logger`` and, when ``need_package``, a logger whose extra is not installed.

    Raises:
        ConfigError: one line naming the valid loggers or the ``pip install`` that fixes it.
    """
    if kind not in LOGGERS:
        raise ConfigError(f"unknown runner.logger '{kind}'; use one of {', '.join(LOGGERS)}")
    if need_package and kind in PACKAGES:
        module, extra = PACKAGES[kind]
        try:
            importlib.import_module(module)
        except ImportError:
            raise ConfigError(f"runner.logger={kind} needs the '{module}' package: pip install 'agile_jax[{extra}]' "
                              f"(in a source checkout: pip install -e '.[{extra}]')") from None


# OSErrors (a full disk) that ended a TensorBoard writer thread, raised again by the next Logger call.
_WRITER_THREAD_ERRORS: list[OSError] = []


def _hold_writer_thread_errors() -> None:
    """Routes an OSError that ends a tensorboardX writer thread to :data:`_WRITER_THREAD_ERRORS` instead of a
    traceback on the console (installed once, other threads' errors are passed on)."""
    previous = threading.excepthook
    if getattr(previous, "holds_writer_errors", False):
        return

    def hook(args):
        if isinstance(args.exc_value, OSError) and type(args.thread).__module__.startswith("tensorboardX"):
            _WRITER_THREAD_ERRORS.append(args.exc_value)
        else:
            previous(args)

    hook.holds_writer_errors = True
    threading.excepthook = hook


def _raise_writer_thread_error() -> None:
    if _WRITER_THREAD_ERRORS:
        raise _WRITER_THREAD_ERRORS.pop()


def _abandon(writer) -> None:
    """Stops a tensorboardX ``SummaryWriter`` whose files cannot be written (a full disk) without writing again:
    its writer threads end, its files close and its exit handler has nothing left to do."""
    for file_writer in list((writer.all_writers or {}).values()):
        events = file_writer.event_writer
        if events._closed:  # tensorboardX has no public way to drop unwritten events
            continue
        worker = events._worker
        if worker is not None and worker.is_alive():
            try:
                events._event_queue.put(worker._shutdown_signal, timeout=1.0)
            except queue.Full:
                pass
            worker.join(timeout=5.0)
        try:
            events._ev_writer._py_recordio_writer.close()  # closes the file even when its last flush fails
        except OSError:
            pass
        events._event_queue.close()
        events._closed = True
    writer.file_writer = writer.all_writers = None


def run_config(cfg: Any) -> dict:
    """A run's configuration as plain data in RSL-RL's layout: ``train_cfg`` (runner fields, ``policy``,
    ``algorithm``) and ``env_cfg``."""
    if cfg is None:
        return {}
    from agile_jax import config as config_lib

    plain = yaml.safe_load(config_lib.to_yaml(cfg)) or {}
    train_cfg = {**plain.get("runner", {}), "policy": plain.get("policy"), "algorithm": plain.get("algorithm")}
    return {"train_cfg": train_cfg, "env_cfg": plain.get("env")}


class Logger:
    """Writes an iteration's scalars to TensorBoard (tensorboardX) and, for ``wandb`` / ``neptune``, to that service.

    Args:
        log_dir: run directory; ``None`` writes nothing.
        kind: ``runner.logger``.
        cfg: the run's config (a ``TrainConfig`` / ``DistillationConfig``): project names and the config uploaded
            to W&B / Neptune.
    """

    def __init__(self, log_dir: str | None, kind: str = "tensorboard", cfg: Any = None):
        check_logger(kind, need_package=bool(log_dir))
        self.writer = None
        self.remote = None
        self.start_time = time.time()
        if not log_dir or kind == "none":
            return
        from tensorboardX import SummaryWriter

        _hold_writer_thread_errors()
        self.writer = SummaryWriter(log_dir=log_dir, flush_secs=10)
        if kind in PACKAGES:
            from agile_jax.io.remote_loggers import BACKENDS

            runner_cfg = getattr(cfg, "runner", None)
            project = getattr(runner_cfg, f"{kind}_project", "agile_jax")
            try:
                self.remote = BACKENDS[kind](log_dir, project, run_config(cfg))
            except BaseException:
                self.writer.close()
                raise

    def scalars(self, values: Mapping[str, float | None], step: int) -> None:
        """Logs the finite values of ``values`` at ``step`` (``None`` / NaN: nothing written), plus RSL-RL's
        wall-time series of the mean reward and episode length.

        Raises:
            OSError: the TensorBoard files could not be written (e.g. a full disk).
        """
        _raise_writer_thread_error()
        finite = {tag: float(v) for tag, v in values.items() if v is not None and np.isfinite(v)}
        elapsed = time.time() - self.start_time
        timed = {f"{tag}/time": finite[tag] for tag in WALL_TIME_TAGS if tag in finite}
        if self.writer is not None:
            for tag, value in finite.items():
                self.writer.add_scalar(tag, value, step)
            # Wall-time series as RSL-RL writes them (whole seconds as the step).
            for tag, value in timed.items():
                self.writer.add_scalar(tag, value, int(elapsed))
        if self.remote is not None:
            self.remote.scalars(finite, step)
            self.remote.wall_time_scalars(timed, elapsed)

    def text(self, tag: str, text: str) -> None:
        if self.writer is not None:
            self.writer.add_text(tag, text)
        if self.remote is not None:
            self.remote.text(tag, text)

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        """Flushes and closes every writer (safe to call twice). On a write error the TensorBoard writer is
        abandoned quietly and the error raised once."""
        if self.writer is not None:
            writer, self.writer = self.writer, None
            try:
                _raise_writer_thread_error()
                writer.flush()
                writer.close()
            except OSError:
                _abandon(writer)
                self.close()
                raise
        if self.remote is not None:
            remote, self.remote = self.remote, None
            remote.close()


def iteration_scalars(metrics: dict, episode_extras: dict, episode_stats: dict[str, float], timing: dict[str, float],
                      samples: int) -> dict[str, float]:
    """Maps one iteration's outputs to RSL-RL 5.x tags.

    ``episode_stats`` holds ``Train/mean_reward`` and ``Train/mean_episode_length`` over the last 100 finished
    episodes, NaN (logged as ``None``: nothing written) before the first episode ends.
    """
    out: dict[str, float] = {}
    for key, value in metrics.items():
        if key == "mean_std":
            out["Policy/mean_std"] = value
        elif key == "mean_step_reward":
            out["Train/mean_step_reward"] = value
        elif "/" in key:  # already a tag (Train/..., Loss/..., Rnd/...)
            out[key] = value
        else:
            out[f"Loss/{key}"] = value
    if episode_extras.get("episode_count", 0) > 0:
        out.update({k: v for k, v in episode_extras.items() if k != "episode_count"})
    for tag, value in episode_stats.items():
        out[tag] = None if math.isnan(value) else value
    out["Perf/total_fps"] = samples / max(timing["iteration"], 1e-9)
    out["Perf/iteration_time"] = timing["iteration"]
    for name in ("collection", "learning"):
        if name in timing:
            out[f"Perf/{name}_time"] = timing[name]
    return out
