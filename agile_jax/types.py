"""Shared type aliases, per-step records and protocols.

This module is the only part of ``agile_jax`` that environments may import; it carries no
behaviour, just the vocabulary both sides speak.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, Protocol

import jax

PRNGKey = jax.Array
Array = jax.Array
Params = Any  # nested dict of arrays (one network), or a record of them per network (agile_jax.networks.records)
Metrics = dict[str, Array]
Observation = dict[str, Array]  # group name -> [..., *group_shape]


class Transition(NamedTuple):
    """One control step of a rollout, stored time-major as ``[T, N, ...]``.

    Attributes:
        obs: observation groups seen *before* the step (what the policy acted on).
        actions: sampled actions ``[T, N, A]``.
        rewards: raw environment rewards ``[T, N]`` (shaping is applied after the rollout).
        dones: episode ended at this step (terminated or timed out) ``[T, N]``.
        time_outs: episode was truncated by the time limit ``[T, N]`` (subset of ``dones``).
        values: critic value of ``obs`` ``[T, N]``.
        log_probs: log-probability of ``actions`` under the acting policy ``[T, N]``.
        action_mean: mean of the acting Gaussian ``[T, N, A]``.
        action_std: std of the acting Gaussian ``[T, N, A]``.
        hidden: recurrent state *before* acting (empty tuple for feed-forward policies).
        extras: env step extras the update may need (``bad_termination_sigma`` ...), ``[T, N]`` each.
    """

    obs: Observation
    actions: Array
    rewards: Array
    dones: Array
    time_outs: Array
    values: Array
    log_probs: Array
    action_mean: Array
    action_std: Array
    hidden: Any
    extras: dict[str, Array]


class ObsSpec(NamedTuple):
    """Shapes of the observation groups of one environment (no batch axis)."""

    shapes: Mapping[str, tuple[int, ...]]


class Env(Protocol):
    """A single, pure environment. Batch it with ``jax.vmap`` (see ``envs.core.VecEnv``).

    ``reset(key)`` and ``step(state, action)`` return an ``envs.core.EnvState``.
    """

    observation_shapes: Mapping[str, tuple[int, ...]]
    action_size: int
    max_episode_length: int
    reward_names: tuple[str, ...]
    termination_names: tuple[str, ...]

    def reset(self, key: PRNGKey) -> Any: ...

    def step(self, state: Any, action: Array) -> Any: ...


LossTerm = Callable[..., tuple[Array, Metrics]]
"""``(params, minibatch, forward, key) -> (loss, metrics)``; summed with its coefficient."""
