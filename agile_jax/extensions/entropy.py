"""Entropy-coefficient annealing (AGILE's runner fields), a pure function applied once per iteration.

Annealing runs when it is enabled, ``progress > entropy_coef_annealing_start_progress`` and the mean
length of the last 100 finished episodes exceeds ``enable_entropy_coef_annealing_success_rate *
max_episode_length``: exponential (``coef * entropy_annealing_decay_rate`` per iteration) when a decay rate
is set, otherwise linear (``init_coef * (1 - progress)``); clamped at ``min_entropy_coef``. Progress is
``iteration / max_iterations`` of the run, so a resumed run anneals exactly as an uninterrupted one (the
coefficient itself is in the train state and the episode buffer in the checkpoint).
"""

from __future__ import annotations


def anneal_entropy_coef(coef: float, init_coef: float, iteration: int, max_iterations: int,
                        mean_episode_length: float | None, max_episode_length: int, runner_cfg) -> float:
    """The entropy coefficient for the next iteration."""
    if not runner_cfg.enable_entropy_coef_annealing or mean_episode_length is None:
        return coef
    progress = iteration / max(max_iterations, 1)
    threshold = runner_cfg.enable_entropy_coef_annealing_success_rate * max_episode_length
    if progress <= runner_cfg.entropy_coef_annealing_start_progress or mean_episode_length <= threshold:
        return coef
    if runner_cfg.entropy_annealing_decay_rate is not None:
        new = coef * runner_cfg.entropy_annealing_decay_rate
    else:
        new = init_coef * (1.0 - progress)
    return max(new, runner_cfg.min_entropy_coef)
