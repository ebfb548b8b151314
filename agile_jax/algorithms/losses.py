"""PPO loss terms as pure functions, and their ``LossTerm`` wrappers.

A loss term has the signature ``term(params, batch, forward, ctx, key) -> (loss, metrics)`` and
returns its contribution already multiplied by its coefficient; the PPO loss is their sum
(``loss = sum_k coef_k * term_k``). ``forward`` holds the network outputs of the (possibly
augmented) minibatch, computed once and shared by every term; ``ctx`` holds the scheduled coefficients
of the train state (``entropy_coef`` ...) and the observation normalisers (``normalizers``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax.numpy as jnp

from agile_jax.types import Array, Observation


class Batch(NamedTuple):
    """A minibatch of stored samples, each ``[B, ...]``.

    Attributes:
        obs: observation groups the policy acted on.
        actions: sampled actions ``[B, A]``.
        old_log_probs: log-probs under the acting policy ``[B]``.
        old_values: values at acting time ``[B]``.
        advantages: (normalised) advantages ``[B]``.
        returns: value targets ``[B]``.
        old_mean: acting Gaussian mean ``[B, A]``.
        old_std: acting Gaussian std ``[B, A]``.
        dones: episode ended at this step ``[B]``.
        hidden: recurrent state before acting (empty for feed-forward policies).
        extras: samples of other per-step quantities extension terms may use (e.g. next obs).
    """

    obs: Observation
    actions: Array
    old_log_probs: Array
    old_values: Array
    advantages: Array
    returns: Array
    old_mean: Array
    old_std: Array
    dones: Array
    hidden: Any = ()
    extras: Any = ()


class Forward(NamedTuple):
    """Network outputs on a minibatch of ``B_aug`` rows (``B`` original rows first).

    Attributes:
        mean: action mean ``[B_aug, A]``.
        std: action std ``[A]``.
        log_prob: log-prob of the batch actions ``[B_aug]``.
        value: critic value ``[B_aug]``.
        entropy: entropy of the *original* rows ``[B]``.
    """

    mean: Array
    std: Array
    log_prob: Array
    value: Array
    entropy: Array


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


def make_surrogate_term(clip_param: float):
    """The clipped-surrogate term (coefficient 1), logged as ``surrogate``."""

    def term(params, batch: Batch, forward: Forward, hyper, key):
        loss = surrogate_loss(forward.log_prob, batch.old_log_probs, batch.advantages, clip_param)
        return loss, {"surrogate": loss}

    return term


def make_value_term(clip_param: float, value_loss_coef: float, use_clipped_value_loss: bool):
    """The value term ``value_loss_coef * value_loss``, logged (unweighted) as ``value``."""

    def term(params, batch: Batch, forward: Forward, hyper, key):
        loss = value_loss(forward.value, batch.old_values, batch.returns, clip_param, use_clipped_value_loss)
        return value_loss_coef * loss, {"value": loss}

    return term


def entropy_term(params, batch: Batch, forward: Forward, hyper, key):
    """The entropy bonus ``-entropy_coef * mean(entropy)``; the coefficient lives in ``hyper`` so it can anneal."""
    ent = jnp.mean(forward.entropy)
    return -hyper["entropy_coef"] * ent, {"entropy": ent}
