"""Entropy-coefficient annealing (AGILE's runner fields): the ``schedule`` of PPO's entropy term.

Annealing runs when it is enabled, ``progress > entropy_coef_annealing_start_progress`` and the mean
length of the last 100 finished episodes exceeds ``enable_entropy_coef_annealing_success_rate *
max_episode_length``: exponential (``coef * entropy_annealing_decay_rate`` per iteration) when a decay rate
is set, otherwise linear (``init_coef * (1 - progress)``); clamped at ``min_entropy_coef``. Progress is
``iteration / target_iteration``, the iteration the current ``learn`` call stops at (start iteration +
``runner.max_iterations``: RSL-RL's ``tot_iter``, since a resumed run trains ``max_iterations`` *more*). A run
resumed at iteration ``s`` with ``max_iterations = T - s`` therefore anneals exactly as an uninterrupted run of
``T`` (the coefficient and the episode window are both in the train state). AGILE's runner divides by
``num_learning_iterations`` alone, which is the same for a fresh run but exceeds 1 on a resumed one (a negative
linear coefficient); the total keeps progress in [0, 1].
"""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp

from agile_jax.extensions.base import Stats
from agile_jax.types import Array


def anneal_entropy_coef(coef, init_coef: float, iteration, target_iteration, mean_episode_length,
                        max_episode_length: int, runner_cfg) -> Array:
    """The entropy coefficient for the next iteration (float32; traceable).

    Args:
        coef: the current coefficient.
        init_coef: the configured ``algorithm.entropy_coef``.
        iteration: iterations done so far.
        target_iteration: the iteration the current ``learn`` call ends at (start + ``runner.max_iterations``).
        mean_episode_length: mean length of the last 100 finished episodes; NaN while there are none.
        max_episode_length: the env's episode length in steps.
        runner_cfg: the ``RunnerConfig`` with AGILE's annealing fields.
    """
    coef = jnp.asarray(coef, jnp.float32)
    if not runner_cfg.enable_entropy_coef_annealing:
        return coef
    progress = jnp.asarray(iteration, jnp.float32) / jnp.maximum(jnp.asarray(target_iteration, jnp.float32), 1.0)
    threshold = runner_cfg.enable_entropy_coef_annealing_success_rate * max_episode_length
    # NaN compares false: no finished episodes yet means no annealing.
    active = (progress > runner_cfg.entropy_coef_annealing_start_progress) & (mean_episode_length > threshold)
    if runner_cfg.entropy_annealing_decay_rate is not None:
        new = coef * runner_cfg.entropy_annealing_decay_rate
    else:
        new = init_coef * (1.0 - progress)
    return jnp.where(active, jnp.maximum(new, runner_cfg.min_entropy_coef), coef).astype(jnp.float32)


def make_schedule(init_coef: float, max_iterations: int, max_episode_length: int,
                  runner_cfg) -> Callable[[Array, Stats], Array] | None:
    """``schedule(coef, stats) -> coef`` for the entropy term, or ``None`` when annealing is off.

    Progress is measured against ``stats.target_iteration`` (``max_iterations`` when the stats carry none).
    """
    if not runner_cfg.enable_entropy_coef_annealing:
        return None

    def schedule(coef, stats: Stats) -> Array:
        target = max_iterations if stats.target_iteration is None else stats.target_iteration
        return anneal_entropy_coef(coef, init_coef, stats.iteration, target, stats.mean_episode_length,
                                   max_episode_length, runner_cfg)

    return schedule
