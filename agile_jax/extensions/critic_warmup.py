"""AGILE's critic warm-up: train the value function alone first, then fade the policy terms in.

With ``W = critic_warmup_steps`` gradient steps and ``k`` the step counter (``num_updates`` of the train
state): for ``k < W`` only the value term acts (AGILE's ``loss = value_loss``); for ``W <= k < 2W`` the
surrogate and entropy terms, and every method's loss (a mirror loss, L2C2, RND's predictor, ...), are scaled
by ``(k - W) / W`` and the learning rate is reset to ``1e-5`` before the adaptive rule each step (AGILE
writes it through the adaptive branch, so with ``schedule="fixed"`` the rate is left alone); from ``2W`` on,
PPO runs unchanged. The counter lives in the train state, so a resumed run continues the ramp exactly.

:func:`value_only` wraps every loss but the value term's; :func:`extension` is the learning-rate rule.

Every loss, not only PPO's own: a method's loss left on during the value phase is the only gradient the actor
sees there, and Adam turns even a tiny one into full-size steps (a mirror loss of 1e-4 moved a walking T1 policy
started from its export far enough in 50 iterations that its training-env episodes fell from 52 % to 14 % of
the time limit).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp

from agile_jax.extensions.base import Extension, Minibatch
from agile_jax.extensions.method import BuildContext, Method
from agile_jax.types import Array

WARMUP_LEARNING_RATE = 1e-5


def policy_scale(num_updates: Array, warmup_steps: int) -> Array:
    """``clip((k - W) / W, 0, 1)``: 0 during the value-only phase, a linear ramp, then 1."""
    return jnp.clip((num_updates.astype(jnp.float32) - warmup_steps) / warmup_steps, 0.0, 1.0)


def scale_loss(ext: Extension, warmup_steps: int) -> Extension:
    """``ext`` with its loss scaled by :func:`policy_scale` of the gradient-step counter."""

    def scaled(state, params, mb: Minibatch, key):
        loss, metrics = ext.loss(state, params, mb, key)
        return policy_scale(mb.num_updates, warmup_steps) * loss, metrics

    return ext._replace(loss=scaled)


def value_only(extensions: Sequence[Extension], warmup_steps: int, value: Extension) -> list[Extension]:
    """``extensions`` with every loss but ``value``'s scaled by :func:`policy_scale` (see the module docstring)."""
    return [e if e is value or e.loss is None else scale_loss(e, warmup_steps) for e in extensions]


def warmup_learning_rate(lr: Array, num_updates: Array, warmup_steps: int) -> Array:
    """The learning rate is reset to 1e-5 during the ramp phase ``W <= k < 2W``."""
    ramp = jnp.logical_and(num_updates >= warmup_steps, num_updates < 2 * warmup_steps)
    return jnp.where(ramp, jnp.float32(WARMUP_LEARNING_RATE), lr)


def extension(warmup_steps: int) -> Extension:
    """The warm-up's learning-rate rule (use it with ``schedule="adaptive"``, as AGILE does)."""
    return Extension("critic_warmup",
                     learning_rate=lambda state, lr, num_updates: warmup_learning_rate(lr, num_updates, warmup_steps))


def enabled(cfg) -> bool:
    """The learning-rate rule runs with ``critic_warmup_steps > 0`` under the adaptive schedule (as in AGILE).

    The scaling of the other losses (:func:`value_only`) needs only ``critic_warmup_steps > 0``; it is applied
    where the chain is built.
    """
    return cfg.algorithm.critic_warmup_steps > 0 and cfg.algorithm.schedule == "adaptive"


def build(cfg, ctx: BuildContext, networks) -> list[Extension]:
    """The warm-up's learning-rate rule for ``algorithm.critic_warmup_steps``."""
    return [extension(cfg.algorithm.critic_warmup_steps)]


# AGILE: value-only gradient steps before the policy terms fade in (0: none).
METHOD = Method("critic_warmup", "algorithm.critic_warmup_steps", enabled=enabled, build=build, config=int, default=0)
