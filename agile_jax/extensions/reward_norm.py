"""AGILE's ``ReturnVarianceNormalization`` as an extension (``shape`` the rewards, ``update`` the correction).

State (scalars over all envs): EMA ``mean`` (init 0), ``var`` (init 1) of the raw rewards and the
return-scale ``correction`` (init 1). Per env step, in order:

1. clip the raw rewards to ``mean +- thr (std + eps)`` (outliers) and fold their batch mean / biased
   variance into the EMAs (``decay``);
2. ``scale = std * 1/sqrt(1 - gamma^2) * correction + eps``; ``r_hat = r / scale``, clipped to
   ``mean / scale +- thr`` (the mean is not subtracted).

Once per rollout, after GAE: ``correction <- d_r correction + (1 - d_r) std(returns) correction``. For
stationary rewards ``std(returns) * correction`` is invariant, so the correction converges without
oscillating and the normalised returns approach unit variance. ``outlier_threshold=None`` disables
clipping and ``return_scale_decay=None`` disables the correction, as in AGILE.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import jax
import jax.numpy as jnp
from flax import struct

from agile_jax.extensions.base import Extension, Rollout
from agile_jax.extensions.method import BuildContext, Method
from agile_jax.types import Array


@dataclass
class RewardNormalizationConfig:
    """AGILE ``reward_normalization_cfg`` (``None`` disables a sub-feature)."""

    enabled: bool = False
    decay: float = 0.999
    epsilon: float = 1e-2
    return_scale_decay: Optional[float] = 0.999  # noqa: UP045 (OmegaConf needs Optional)
    outlier_threshold: Optional[float] = 10.0  # noqa: UP045


@struct.dataclass
class RewardNormState:
    mean: Array
    var: Array
    correction: Array

    @property
    def std(self) -> Array:
        return jnp.sqrt(self.var)


def init(key=None, spec=None) -> RewardNormState:
    """Mean 0, variance 1, correction 1 (``key`` and ``spec`` are unused)."""
    return RewardNormState(mean=jnp.zeros((), jnp.float32), var=jnp.ones((), jnp.float32),
                           correction=jnp.ones((), jnp.float32))


def _global_mean(x: Array, axis_name: str | None) -> Array:
    m = jnp.mean(x)
    return jax.lax.pmean(m, axis_name) if axis_name else m


def step(state: RewardNormState, rewards: Array, gamma: float, decay: float, epsilon: float,
         outlier_threshold: float | None, axis_name: str | None = None) -> tuple[RewardNormState, Array]:
    """Updates the statistics with one env step's rewards ``[N]`` and returns them normalised."""
    clipped = rewards
    if outlier_threshold is not None:
        half = outlier_threshold * (state.std + epsilon)
        clipped = jnp.clip(rewards, state.mean - half, state.mean + half)
    # Batch moments over every env (all devices), then the EMA update, before normalising.
    m = _global_mean(clipped, axis_name)
    v = _global_mean(jnp.square(clipped - m), axis_name)
    mean = decay * state.mean + (1.0 - decay) * m
    var = decay * state.var + (1.0 - decay) * v
    new = state.replace(mean=mean, var=var)
    scale = new.std * (1.0 / math.sqrt(1.0 - gamma**2)) * new.correction + epsilon
    out = rewards / scale
    if outlier_threshold is not None:
        out = jnp.clip(out, mean / scale - outlier_threshold, mean / scale + outlier_threshold)
    return new, out


def update_correction(state: RewardNormState, returns: Array, return_scale_decay: float | None,
                      axis_name: str | None = None) -> RewardNormState:
    """Return-scale correction from the (unbiased) std of all GAE returns of the rollout."""
    if return_scale_decay is None:
        return state
    n = jnp.asarray(returns.size, jnp.float32)
    total = jnp.sum(returns)
    if axis_name:
        n, total = jax.lax.psum(n, axis_name), jax.lax.psum(total, axis_name)
    sq = jnp.sum(jnp.square(returns - total / n))
    if axis_name:
        sq = jax.lax.psum(sq, axis_name)
    std = jnp.maximum(jnp.sqrt(sq / (n - 1.0)), 1e-6)
    ideal = std * state.correction
    return state.replace(correction=return_scale_decay * state.correction + (1.0 - return_scale_decay) * ideal)


def extension(gamma: float, decay: float = 0.999, epsilon: float = 1e-2, return_scale_decay: float | None = 0.999,
              outlier_threshold: float | None = 10.0, axis_name: str | None = None) -> Extension:
    """The reward normaliser; logs ``Train/reward_scale``, ``Train/reward_std``, ``Train/return_correction``.

    ``shape`` normalises the ``[T, N]`` rollout rewards step by step (advancing the statistics exactly as
    inside the env loop, since they never influence the actions); ``update`` applies the return-scale
    correction from the GAE returns. ``axis_name`` combines the moments over data-parallel devices.
    """

    def shape(state: RewardNormState, rollout: Rollout):
        def body(s, r):
            return step(s, r, gamma, decay, epsilon, outlier_threshold, axis_name)

        state, normalised = jax.lax.scan(body, state, rollout.rewards)
        scale = state.std * (1.0 / math.sqrt(1.0 - gamma**2)) * state.correction + epsilon
        return state, rollout._replace(rewards=normalised), {
            "Train/reward_scale": scale, "Train/reward_std": state.std, "Train/return_correction": state.correction}

    def update(state: RewardNormState, rollout: Rollout, returns: Array, key):
        return update_correction(state, returns, return_scale_decay, axis_name), {}

    return Extension("reward_normalization", init=init, shape=shape, update=update)


def build(cfg, ctx: BuildContext, networks) -> list[Extension]:
    """AGILE's reward normalisation from ``algorithm.reward_normalization_cfg``."""
    alg, rn = cfg.algorithm, cfg.algorithm.reward_normalization_cfg
    return [extension(alg.gamma, rn.decay, rn.epsilon, rn.return_scale_decay, rn.outlier_threshold, ctx.axis)]


METHOD = Method("reward_norm", "algorithm.reward_normalization_cfg",
                enabled=lambda cfg: cfg.algorithm.reward_normalization_cfg.enabled, build=build, stage="first",
                fixed_on_resume=("algorithm.reward_normalization_cfg.enabled",),
                config=RewardNormalizationConfig)
