"""``OnPolicyRunner``: the only impure loop (logging, checkpoints, progress, NaN guard).

Mirrors RSL-RL's runner API: ``learn(num_learning_iterations)``, ``save(path)``, ``load(path)``,
``get_inference_policy()``. All training math happens inside ``Trainer.iteration``, a pure jitted
function of the :class:`TrainState`; this class only moves that state along, reads metrics once per
iteration, and writes logs and checkpoints.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from agile_jax import config as config_lib
from agile_jax.extensions.base import Chain, Extension
from agile_jax.io import checkpoint as ckpt
from agile_jax.io.logger import Logger, check_logger, iteration_scalars
from agile_jax.networks.actor_critic import make_inference_fn
from agile_jax.networks.from_config import make_networks
from agile_jax.networks.recurrent import StatefulPolicy
from agile_jax.runtime import episodes, memory, parallel, precision, signals
from agile_jax.training import term_dicts
from agile_jax.training.iteration import FINITE_CHECKS, TrainState, place_state
from agile_jax.training.ppo_trainer import build_chain, build_context, build_networks, make_trainer


class TrainingDivergedError(FloatingPointError):
    """A NaN or inf appeared; training stopped without overwriting the last good checkpoint."""


class EpisodeSummary(NamedTuple):
    """Means over the last 100 finished episodes (``None`` before the first one ends)."""

    mean_return: float | None
    mean_length: float | None
    count: int


def check_runner_settings(cfg) -> None:
    """Precision and determinism settings: valid, and determinism decided before the GPU starts."""
    try:
        precision.check_precision(cfg.runner.matmul_precision)
        precision.configure_determinism(cfg.runner.deterministic)
    except precision.PrecisionError as err:
        raise config_lib.ConfigError(str(err)) from None


class OnPolicyRunner:
    """Trains a PPO policy on a batched env.

    Args:
        env: an ``envs.core.VecEnv`` (global batch).
        cfg: a :class:`agile_jax.config.TrainConfig`.
        log_dir: run directory for TensorBoard files, ``config.yaml`` and checkpoints; ``None``: nothing
            is written (as in RSL-RL).
        mirror_obs, mirror_actions: mirror functions for ``symmetry_cfg`` (default: the env's own).
        extensions: a :class:`~agile_jax.extensions.base.Chain` used as is (PPO's own terms included), or a list
            of extra :class:`~agile_jax.extensions.base.Extension` s added to those the config enables.
        mesh: device mesh for data-parallel training (default: ``runner.num_devices`` devices).
    """

    # Non-finite checks of IterationOutput.finite, in the order the first offender is reported.
    finite_checks: tuple[str, ...] = FINITE_CHECKS

    def __init__(self, env, cfg, log_dir: str | None = None, mirror_obs=None, mirror_actions=None,
                 extensions: Chain | Sequence[Extension] = (), mesh=None):
        check_runner_settings(cfg)
        ctx = build_context(env, cfg, mirror_obs, mirror_actions)
        networks = build_networks(cfg, ctx, make_networks(cfg, env))
        if not isinstance(extensions, Chain):
            extensions = build_chain(cfg, ctx, networks, extra=extensions)
        trainer = make_trainer(cfg, env, networks, extensions, mesh=mesh)
        self._setup(env, cfg, log_dir, networks, trainer)

    def _setup(self, env, cfg, log_dir: str | None, networks, trainer) -> None:
        """Initial train state, checkpointer and run directory (shared with subclasses).

        On several hosts every process checkpoints its share of the env state into the same (shared)
        ``log_dir``; only process 0 writes ``config.yaml``, logs and exports.
        """
        self.env, self.cfg, self.log_dir = env, cfg, log_dir
        self.networks, self.trainer = networks, trainer
        # An unknown logger, or one whose extra is missing on the process that logs, is refused before training.
        check_logger(cfg.runner.logger, need_package=bool(log_dir) and parallel.is_main_process())
        num_params = sum(x.size for x in jax.tree.leaves(jax.eval_shape(networks.init, jax.random.key(0))))
        memory.check_fits(env, cfg.runner.num_steps_per_env, num_params, trainer.mesh.devices.size)
        self.state: TrainState = self.trainer.init(jax.random.key(cfg.runner.seed))
        if getattr(cfg.runner, "init_from", ""):  # an RSL-RL checkpoint's networks replace the fresh ones
            from agile_jax.training import init_from

            kind = "distillation" if cfg.algorithm.class_name == "Distillation" else "ppo"
            self.state = init_from.initialize(self.state, networks, cfg.runner.init_from, self.trainer.mesh, kind)
            if getattr(cfg.runner, "init_from_max_std", 0.0) > 0:
                capped = init_from.cap_std(self.state.params, networks, cfg.runner.init_from_max_std)
                self.state = place_state(self.state.replace(params=capped), self.trainer.mesh)
        self.checkpointer = ckpt.Checkpointer(log_dir, cfg.runner.keep_checkpoints) if log_dir else None
        self.logger: Logger | None = None
        self._last_saved: int | None = None
        self._write_error: OSError | None = None  # set when learn() could not write its files
        if log_dir and parallel.is_main_process():
            os.makedirs(log_dir, exist_ok=True)
            with open(os.path.join(log_dir, "config.yaml"), "w") as f:
                f.write(config_lib.to_yaml(cfg))

    def checkpoint_meta(self) -> dict:
        """Extra JSON entries stored with every checkpoint (subclasses add theirs)."""
        return {}

    @property
    def current_learning_iteration(self) -> int:
        return int(parallel.to_host(self.state.iteration))

    @property
    def episodes(self) -> EpisodeSummary:
        """Mean return and length of the last 100 finished episodes (RSL-RL's ``rewbuffer`` / ``lenbuffer``)."""
        window = parallel.to_host(self.state.episodes)
        mean_return, mean_length = (float(x) for x in episodes.means(window))
        count = int(window.count)
        return EpisodeSummary(mean_return if count else None, mean_length if count else None, count)

    # -- training -----------------------------------------------------------------------------------
    def learn(self, num_learning_iterations: int) -> None:
        """Runs ``num_learning_iterations`` iterations, logging and checkpointing along the way."""
        run = self.cfg.runner
        main = parallel.is_main_process()
        if self.log_dir and self.logger is None and main:
            self.logger = Logger(self.log_dir, run.logger, cfg=self.cfg)
        samples = run.num_steps_per_env * self.env.num_envs
        start = self.current_learning_iteration
        # Schedules measure progress against the end of this call (RSL-RL's tot_iter), resumed or not.
        self.state = self.state.replace(target_iteration=parallel.put(
            jnp.asarray(start + num_learning_iterations, jnp.int32), parallel.replicated(self.trainer.mesh)))
        bar = _progress(num_learning_iterations, start, run.progress_bar and self.log_dir is not None and main)
        stop = signals.StopRequests()
        try:
            with stop:
                self._loop(start, num_learning_iterations, samples, bar, stop)
            if self.checkpointer:
                self.save()
        except OSError as err:  # a full disk or an unwritable folder: say where the last good checkpoint is
            self._write_error = err
            if self.checkpointer:
                err.add_note(ckpt.newest_intact(self.checkpointer.directory))
            raise
        finally:
            if bar is not None:
                bar.close()
            if self._write_error is None:
                self._finish_writes()

    def _finish_writes(self) -> None:
        """Waits for the checkpoint being written and flushes the logs."""
        if self.checkpointer:
            self.checkpointer.wait()
        if self.logger:
            self.logger.flush()

    def _loop(self, start: int, count: int, samples: int, bar, stop: signals.StopRequests) -> None:
        """The iterations of :meth:`learn`; a stop request saves and raises :class:`TrainingInterrupted`."""
        run = self.cfg.runner
        for it in range(start + 1, start + count + 1):
            new_state, out, timing = self._run_iteration()
            if run.check_for_nan:
                self._check_finite(out.finite, it)
            self.state = new_state
            scalars = iteration_scalars(_to_float(out.metrics), _to_float(out.episode_extras),
                                        _to_float(out.episode_stats), timing, samples)
            if self.logger:
                self.logger.scalars(scalars, it)
            _update_progress(bar, scalars)
            if self.checkpointer and (it % run.save_interval == 0):
                self.save()
            if stop.signum is not None:
                saved = self.save() if self.checkpointer else None
                raise signals.TrainingInterrupted(stop.signum, it, saved)

    def _run_iteration(self):
        """One iteration, fused or as collect + learn; returns ``(state, host outputs, timing)``.

        The host receives replicated scalars only (metrics, episode statistics, finiteness flags).
        """
        t0 = time.time()
        if self.cfg.runner.fused_iteration:
            new_state, out = self.trainer.iteration(self.state)
            out = parallel.to_host(out)  # the one host sync per iteration
            return new_state, out, {"iteration": time.time() - t0}
        collected = jax.block_until_ready(self.trainer.collect(self.state))
        t1 = time.time()
        new_state, out = self.trainer.learn(self.state, collected)
        out = parallel.to_host(out)
        t2 = time.time()
        return new_state, out, {"iteration": t2 - t0, "collection": t1 - t0, "learning": t2 - t1}

    def _check_finite(self, finite: dict, iteration: int) -> None:
        bad = next((name for name in self.finite_checks if not bool(finite[name])), None)
        if bad is None:
            return
        where = ""
        if self.checkpointer:
            self.save()  # self.state is still the last good state
            where = f"; the last good state (iteration {self.current_learning_iteration}) is saved in " \
                    f"{self.checkpointer.directory}"
        raise TrainingDivergedError(
            f"non-finite {bad} (NaN or inf) at iteration {iteration}{where}. Lower the learning rate, check the "
            "environment's observations/rewards, or enable observation normalisation."
        )

    # -- checkpoints --------------------------------------------------------------------------------
    def save(self, path: str | None = None) -> str:
        """Saves the full train state (to the run's checkpoints, or to the run directory ``path``)."""
        checkpointer = self.checkpointer if path is None else ckpt.Checkpointer(path, self.cfg.runner.keep_checkpoints)
        if checkpointer is None:
            raise ValueError("this runner has no log_dir; pass a path to save()")
        it = self.current_learning_iteration
        if path is None and self._last_saved == it:
            return os.path.join(checkpointer.directory, str(it))
        meta = {"config": config_lib.to_yaml(self.cfg), **self.checkpoint_meta()}
        out = checkpointer.save(it, self.state.replace(target_iteration=None), meta)  # not the run's: the call's
        if path is None:
            self._last_saved = it
        else:
            checkpointer.close()
        return out

    def load(self, path: str, iteration: int | None = None) -> dict:
        """Restores a train state saved by :meth:`save` (run dir or its ``checkpoints`` dir)."""
        if self.checkpointer:
            self.checkpointer.wait()
        # The current state is the template: restored arrays land directly in its (possibly multi-host) shardings.
        template = self.state.replace(target_iteration=None)
        restored, meta = ckpt.restore(path, iteration, template, fit=term_dicts.fit_saved_terms)
        restored = term_dicts.rekey_like(restored, template)  # reward terms added or dropped since the save
        self.state = place_state(restored.replace(target_iteration=self.state.target_iteration), self.trainer.mesh)
        self._last_saved = None
        return meta

    # -- inference ----------------------------------------------------------------------------------
    def get_inference_policy(self, deterministic: bool = True):
        """A jitted ``policy(obs, key=None) -> actions`` with the current params and normalisers.

        For a recurrent policy this is a :class:`~agile_jax.networks.recurrent.StatefulPolicy` that keeps its
        state between calls (``policy.reset(dones)`` clears it), like RSL-RL's.
        """
        if self.networks.is_recurrent:
            return StatefulPolicy(self.networks, self.state.params, self.state.normalizers, deterministic)
        make_policy = make_inference_fn(self.networks)
        return jax.jit(make_policy(self.state.params, self.state.normalizers, deterministic))

    def export(self, out_dir: str | None = None, **kwargs) -> dict:
        """Writes ``policy.onnx``, ``policy.pt`` and ``policy.yaml`` after a parity check (see
        :func:`agile_jax.export.export_runner`); default destination ``<log_dir>/exported``."""
        from agile_jax.export import export_runner

        out_dir = out_dir or (os.path.join(self.log_dir, "exported") if self.log_dir else None)
        if out_dir is None:
            raise ValueError("this runner has no log_dir; pass out_dir to export()")
        return export_runner(self, out_dir, **kwargs)

    def close(self) -> None:
        """Finishes and closes the checkpoints and logs; after a write error in :meth:`learn` (already raised) the
        files that cannot be written are let go quietly."""
        try:
            if self.checkpointer:
                self.checkpointer.close()
        finally:
            if self.logger:
                self._close_logger()

    def _close_logger(self) -> None:
        try:
            self.logger.close()
        except OSError:
            if self._write_error is None:
                raise


def _to_float(tree: dict) -> dict[str, float]:
    return {k: float(v) for k, v in tree.items()}


def _progress(total: int, start: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=f"iter {start}+", unit="it", dynamic_ncols=True)


def _update_progress(bar, scalars: dict) -> None:
    if bar is None:
        return
    reward, length = scalars.get("Train/mean_reward"), scalars.get("Train/mean_episode_length")
    bar.set_postfix(fps=f"{scalars['Perf/total_fps']:.0f}", reward="-" if reward is None else f"{reward:.2f}",
                    ep_len="-" if length is None else f"{length:.0f}", refresh=False)
    bar.update(1)
