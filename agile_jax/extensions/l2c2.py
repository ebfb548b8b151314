"""L2C2: smoothness between consecutive observations (AGILE's ``l2c2_cfg``; arXiv 2202.07152).

For stored pairs ``(x_t, x_{t+1})`` of the same episode, draw ``u ~ U(0, 1)`` per pair, interpolate
``x_u = x_t + u (x_{t+1} - x_t)`` (every observation group with the same ``u``) and penalise
``lambda_actor * MSE(mean(x_u), mean(x_t)) + lambda_critic * MSE(V(x_u), V(x_t))`` with gradients
through both sides. Pairs that cross a reset (``done_t``) and the last step of the rollout are excluded.

Pairs are drawn with the PPO minibatch itself (each sample paired with its successor), rather than
through a second permutation as AGILE does; every valid pair is still used once per epoch. The
un-augmented rows are used when symmetry augmentation is on. Recurrent policies are refused.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from agile_jax.algorithms.losses import Batch, Forward
from agile_jax.types import Array, Observation, Transition

NEXT_OBS, VALID = "l2c2_next_obs", "l2c2_valid"


def pair_extras(rollout: Transition, last_obs: Observation) -> dict:
    """Successor observations ``[T, N, ...]`` and the valid-pair mask ``[T, N]`` for the batch extras."""
    del last_obs  # the post-rollout observation has no stored partner step
    next_obs = jax.tree.map(lambda x: jnp.concatenate([x[1:], x[-1:]], axis=0), rollout.obs)
    not_last = jnp.arange(rollout.dones.shape[0])[:, None] < rollout.dones.shape[0] - 1
    valid = jnp.logical_and(not_last, jnp.logical_not(rollout.dones.astype(bool)))
    return {NEXT_OBS: next_obs, VALID: valid}


def interpolate(obs: Observation, next_obs: Observation, u: Array) -> Observation:
    """``obs + u (next_obs - obs)`` per group; ``u`` ``[B]`` is broadcast over each group's feature axes."""

    def lerp(x, y):
        return x + u.reshape(u.shape + (1,) * (x.ndim - 1)) * (y - x)

    return jax.tree.map(lerp, obs, next_obs)


def masked_mse(a: Array, b: Array, mask: Array) -> Array:
    """Mean of ``(a - b)^2`` over the rows where ``mask`` ``[B]`` holds and every trailing element."""
    sq = jnp.square(a - b).reshape(a.shape[0], -1)
    count = jnp.maximum(jnp.sum(mask), 1.0) * sq.shape[1]
    return jnp.sum(sq * mask[:, None]) / count


def make_l2c2_term(networks, lambda_actor: float, lambda_critic: float):
    """Loss term logged as ``l2c2_actor`` and ``l2c2_critic`` (unweighted)."""

    def term(params, batch: Batch, forward: Forward, ctx, key):
        mask = batch.extras[VALID].astype(jnp.float32)
        rows = mask.shape[0]
        obs = jax.tree.map(lambda x: x[:rows], batch.obs)  # original rows (augmentation appends mirrors)
        u = jax.random.uniform(key, (rows,))
        mixed = interpolate(obs, batch.extras[NEXT_OBS], u)
        norms = ctx["normalizers"]
        actor = masked_mse(networks.actor_mean(params, norms, mixed), networks.actor_mean(params, norms, obs), mask)
        critic = masked_mse(networks.value(params, norms, mixed), networks.value(params, norms, obs), mask)
        return lambda_actor * actor + lambda_critic * critic, {"l2c2_actor": actor, "l2c2_critic": critic}

    return term
