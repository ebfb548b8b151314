"""L2C2: smoothness between consecutive observations (AGILE's ``l2c2_cfg``; arXiv 2202.07152).

For stored pairs ``(x_t, x_{t+1})`` of the same episode, draw ``u ~ U(0, 1)`` per pair, interpolate
``x_u = x_t + u (x_{t+1} - x_t)`` (every observation group with the same ``u``) and penalise
``lambda_actor * MSE(mean(x_u), mean(x_t)) + lambda_critic * MSE(V(x_u), V(x_t))`` with gradients
through both sides. Pairs that cross a reset (``done_t``) and the last step of the rollout are excluded.

Pairs are drawn with the PPO minibatch itself (each sample paired with its successor, carried as this
extension's own batch extras), rather than through a second permutation as AGILE does; every valid pair is
still used once per epoch. The un-augmented rows are used when symmetry augmentation is on. Recurrent
policies are refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp

from agile_jax.extensions.base import Extension, Minibatch
from agile_jax.extensions.method import BuildContext, Method
from agile_jax.types import Array, Observation, Transition


@dataclass
class L2C2Config:
    """AGILE ``l2c2_cfg``."""

    enabled: bool = False
    lambda_actor: float = 1.0
    lambda_critic: float = 0.1


class Pairs(NamedTuple):
    """Each stored step's successor, ``[T, N, ...]`` (sampled with the minibatch like the batch itself).

    Attributes:
        next_obs: observation groups of step ``t + 1``.
        valid: the pair is usable (same episode, not the rollout's last step) ``[T, N]``.
    """

    next_obs: Observation
    valid: Array


def pair_extras(transitions: Transition) -> Pairs:
    """Successor observations and the valid-pair mask of a rollout (the post-rollout obs has no partner)."""
    next_obs = jax.tree.map(lambda x: jnp.concatenate([x[1:], x[-1:]], axis=0), transitions.obs)
    num_steps = transitions.dones.shape[0]
    not_last = jnp.arange(num_steps)[:, None] < num_steps - 1
    valid = jnp.logical_and(not_last, jnp.logical_not(transitions.dones.astype(bool)))
    return Pairs(next_obs=next_obs, valid=valid)


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


def make_l2c2_loss(networks, lambda_actor: float, lambda_critic: float):
    """``(state, params, minibatch, key) -> (loss, metrics)`` logged as ``l2c2_actor``, ``l2c2_critic`` (unweighted).

    ``minibatch.extras`` is this extension's :class:`Pairs` for the minibatch's original rows.
    """

    def loss(state, params, mb: Minibatch, key):
        pairs: Pairs = mb.extras
        mask = pairs.valid.astype(jnp.float32)
        rows = mask.shape[0]
        obs = jax.tree.map(lambda x: x[:rows], mb.data.obs)  # original rows (augmentation appends mirrors)
        mixed = interpolate(obs, pairs.next_obs, jax.random.uniform(key, (rows,)))
        norms = mb.normalizers
        actor = masked_mse(networks.actor_mean(params, norms, mixed), networks.actor_mean(params, norms, obs), mask)
        critic = masked_mse(networks.value(params, norms, mixed), networks.value(params, norms, obs), mask)
        return lambda_actor * actor + lambda_critic * critic, {"l2c2_actor": actor, "l2c2_critic": critic}

    return loss


def extension(networks, lambda_actor: float = 1.0, lambda_critic: float = 0.1) -> Extension:
    """L2C2 as an extension: the successor pairs as batch extras and the smoothness loss."""
    if getattr(networks, "is_recurrent", False):
        raise ValueError("l2c2_cfg is not available for recurrent policies; set algorithm.l2c2_cfg.enabled=false")
    return Extension("l2c2", loss=make_l2c2_loss(networks, lambda_actor, lambda_critic),
                     batch_extras=lambda state, rollout: pair_extras(rollout.transitions))


def build(cfg, ctx: BuildContext, networks) -> list[Extension]:
    """AGILE's L2C2 from ``algorithm.l2c2_cfg``."""
    lc = cfg.algorithm.l2c2_cfg
    return [extension(networks, lc.lambda_actor, lc.lambda_critic)]


METHOD = Method("l2c2", "algorithm.l2c2_cfg", enabled=lambda cfg: cfg.algorithm.l2c2_cfg.enabled, build=build,
                fixed_on_resume=("algorithm.l2c2_cfg.enabled",), config=L2C2Config)
