"""Rollout-side reward shaping as ``(init, apply, update)`` triples over ``[T, N]`` arrays.

A shaper turns the raw rollout rewards into the rewards GAE sees. Its state lives in the train
state (and so in checkpoints):

* ``init() -> state``
* ``apply(state, rewards, rollout) -> (state, rewards, metrics)``: transforms the ``[T, N]`` rewards of
  one rollout (stateful shapers such as reward normalisation advance their statistics step by step
  in here, exactly as they would inside the env loop, since they never influence the actions);
* ``update(state, returns) -> state``: runs once per rollout after GAE (e.g. return-scale correction).

Shapers are applied in list order; AGILE's order is reward normalisation, timeout bootstrap, then
good/bad termination bootstrap.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from agile_jax.algorithms import gae
from agile_jax.types import Array, Transition


class RewardShaper(NamedTuple):
    """One rollout-side reward transform (see module docstring)."""

    name: str
    init: Callable[[], Any]
    apply: Callable[[Any, Array, Transition], tuple[Any, Array, dict]]
    update: Callable[[Any, Array], Any]


def _stateless_update(state, returns):
    return state


def timeout_bootstrap(gamma: float) -> RewardShaper:
    """``r += gamma * V(s_t) * time_out`` (RSL-RL's ``process_env_step``)."""

    def apply(state, rewards, rollout: Transition):
        return state, gae.bootstrap_timeouts(rewards, rollout.values, rollout.time_outs, gamma), {}

    return RewardShaper("timeout_bootstrap", lambda: (), apply, _stateless_update)


def init_shapers(shapers: Sequence[RewardShaper]) -> tuple:
    """Initial states, one per shaper (a tuple, in list order)."""
    return tuple(s.init() for s in shapers)


def apply_shapers(shapers: Sequence[RewardShaper], states: tuple, rollout: Transition):
    """Applies every shaper in order to ``rollout.rewards``; returns ``(states, rewards, metrics)``."""
    rewards, metrics, new_states = rollout.rewards, {}, []
    for shaper, state in zip(shapers, states):
        state, rewards, m = shaper.apply(state, rewards, rollout)
        new_states.append(state)
        metrics.update(m)
    return tuple(new_states), rewards, metrics


def update_shapers(shapers: Sequence[RewardShaper], states: tuple, returns: Array) -> tuple:
    """Runs each shaper's post-GAE update."""
    return tuple(s.update(state, returns) for s, state in zip(shapers, states))
