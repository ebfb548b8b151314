"""AGILE's critic warm-up: train the value function alone first, then fade the policy terms in.

With ``W = critic_warmup_steps`` gradient steps and ``k`` the step counter (``num_updates`` in the train
state): for ``k < W`` only the value term acts; for ``W <= k < 2W`` the surrogate and entropy terms are scaled
by ``(k - W) / W`` and the learning rate is reset to ``1e-5`` before the adaptive rule each step (AGILE
writes it through the adaptive branch, so with ``schedule="fixed"`` the rate is left alone); from ``2W`` on,
PPO runs unchanged. The counter lives in the train state, so a resumed run continues the ramp exactly.
"""

from __future__ import annotations

import jax.numpy as jnp

from agile_jax.types import Array, LossTerm

WARMUP_LEARNING_RATE = 1e-5


def policy_scale(num_updates: Array, warmup_steps: int) -> Array:
    """``clip((k - W) / W, 0, 1)``: 0 during the value-only phase, a linear ramp, then 1."""
    return jnp.clip((num_updates.astype(jnp.float32) - warmup_steps) / warmup_steps, 0.0, 1.0)


def scale_policy_term(term: LossTerm, warmup_steps: int) -> LossTerm:
    """Wraps a policy loss term (surrogate, entropy) so its contribution follows :func:`policy_scale`."""

    def scaled(params, batch, forward, ctx, key):
        loss, metrics = term(params, batch, forward, ctx, key)
        return policy_scale(ctx["num_updates"], warmup_steps) * loss, metrics

    return scaled


def make_lr_hook(warmup_steps: int):
    """``(lr, hyper) -> lr``: the learning rate is reset to 1e-5 during the ramp phase."""

    def hook(lr: Array, hyper: dict) -> Array:
        k = hyper["num_updates"]
        ramp = jnp.logical_and(k >= warmup_steps, k < 2 * warmup_steps)
        return jnp.where(ramp, jnp.float32(WARMUP_LEARNING_RATE), lr)

    return hook
