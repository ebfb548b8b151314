"""AGILE's good/bad termination bootstrap as a shaping extension.

After the timeout bootstrap, for envs that ended by a ``bad`` (``good``) termination and did not time out:
``r += gamma * V(s_t) - sigma_bad`` (``+ sigma_good``). The per-env sigmas (max over the fired terms of
each type) come from the env step (``envs.core.StepInfo``) and are stored in the rollout extras; ``dones``
stay set, so GAE still cuts the trace. With a reward normaliser before it, sigma is in normalised units.
"""

from __future__ import annotations

import jax.numpy as jnp

from agile_jax.extensions.base import Extension, Rollout
from agile_jax.types import Array


def termination_bootstrap(rewards: Array, values: Array, time_outs: Array, bad_sigma: Array, good_sigma: Array,
                          gamma: float) -> Array:
    """Adds ``gamma V(s_t) -/+ sigma`` where a bad/good termination fired without a timeout, all ``[T, N]``."""
    not_timed_out = jnp.logical_not(time_outs.astype(bool))
    bad = jnp.logical_and(bad_sigma > 0, not_timed_out)
    good = jnp.logical_and(good_sigma > 0, not_timed_out)
    rewards = rewards + jnp.where(bad, gamma * values - bad_sigma, 0.0)
    return rewards + jnp.where(good, gamma * values + good_sigma, 0.0)


def extension(gamma: float) -> Extension:
    """The good/bad termination bootstrap (a no-op when the env declares no good/bad terms)."""

    def shape(state, rollout: Rollout):
        tr = rollout.transitions
        shaped = termination_bootstrap(rollout.rewards, tr.values, tr.time_outs, tr.extras["bad_termination_sigma"],
                                       tr.extras["good_termination_sigma"], gamma)
        return state, rollout._replace(rewards=shaped), {}

    return Extension("termination_bootstrap", shape=shape)
