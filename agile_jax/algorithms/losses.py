"""PPO loss terms as pure functions, and PPO's own terms as extensions.

PPO's surrogate, value and entropy terms are :class:`~agile_jax.extensions.base.Extension` s like any
other method's: each ``loss(state, params, minibatch, key) -> (loss, metrics)`` returns its contribution
already multiplied by its coefficient, and the objective is their sum (``loss = sum_k coef_k * term_k``).
``minibatch.forward`` holds the network outputs of the (possibly augmented) minibatch, computed once and
shared by every term. The entropy coefficient is the entropy term's own state, so it can anneal.
"""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp
from flax import struct

from agile_jax.extensions.base import Extension, Minibatch, Stats
from agile_jax.types import Array


def surrogate_loss(log_probs: Array, old_log_probs: Array, advantages: Array, clip_param: float) -> Array:
    """Clipped surrogate ``mean(max(-A r, -A clip(r, 1-eps, 1+eps)))`` with ``r = exp(logp - old_logp)``."""
    ratio = jnp.exp(log_probs - old_log_probs)
    unclipped = -advantages * ratio
    clipped = -advantages * jnp.clip(ratio, 1.0 - clip_param, 1.0 + clip_param)
    return jnp.mean(jnp.maximum(unclipped, clipped))


def value_loss(values: Array, old_values: Array, returns: Array, clip_param: float, use_clipped: bool = True) -> Array:
    """Value loss; clipped: ``mean(max((V-R)^2, (V_old + clip(V - V_old, -eps, eps) - R)^2))``."""
    if not use_clipped:
        return jnp.mean(jnp.square(returns - values))
    clipped = old_values + jnp.clip(values - old_values, -clip_param, clip_param)
    return jnp.mean(jnp.maximum(jnp.square(values - returns), jnp.square(clipped - returns)))


class EntropyState(struct.PyTreeNode):
    """State of the entropy term: the (possibly annealed) coefficient, a float32 scalar."""

    coef: Array


def surrogate(clip_param: float) -> Extension:
    """The clipped-surrogate term (coefficient 1), logged as ``surrogate``."""

    def loss(state, params, mb: Minibatch, key):
        out = surrogate_loss(mb.forward.log_prob, mb.data.old_log_probs, mb.data.advantages, clip_param)
        return out, {"surrogate": out}

    return Extension("surrogate", loss=loss)


def value(clip_param: float, value_loss_coef: float, use_clipped_value_loss: bool) -> Extension:
    """The value term ``value_loss_coef * value_loss``, logged (unweighted) as ``value``."""

    def loss(state, params, mb: Minibatch, key):
        out = value_loss(mb.forward.value, mb.data.old_values, mb.data.returns, clip_param, use_clipped_value_loss)
        return value_loss_coef * out, {"value": out}

    return Extension("value", loss=loss)


def entropy(coef: float, schedule: Callable[[Array, Stats], Array] | None = None) -> Extension:
    """The entropy bonus ``-coef * mean(entropy)`` (logged as ``entropy``) with its coefficient as state.

    Args:
        coef: the initial coefficient (``entropy_coef``).
        schedule: ``(coef, stats) -> coef`` applied at the start of each iteration (AGILE's annealing), or
            ``None`` for a constant coefficient. The coefficient is logged as ``Train/entropy_coef``.
    """

    def loss(state: EntropyState, params, mb: Minibatch, key):
        ent = jnp.mean(mb.forward.entropy)
        return -state.coef * ent, {"entropy": ent}

    def report(state: EntropyState, rollout, returns, key):
        return state, {"Train/entropy_coef": state.coef}

    return Extension("entropy", init=lambda key, spec: EntropyState(coef=jnp.asarray(coef, jnp.float32)), loss=loss,
                     schedule=None if schedule is None else lambda s, stats: s.replace(coef=schedule(s.coef, stats)),
                     update=report)
