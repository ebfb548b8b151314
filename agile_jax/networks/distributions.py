"""Diagonal Gaussian with a state-independent std, as RSL-RL's ``GaussianDistribution``.

The std parameter lives in the actor params under ``"std"``; ``std_type="scalar"`` stores the std
itself (clamped, not softplus-ed), ``std_type="log"`` stores its log (clamped in log space). Log-prob
and entropy are summed over the action axis; the KL is ``KL(old || new)`` summed over the action axis,
exactly as ``torch.distributions.kl_divergence`` computes it (no epsilon).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from agile_jax.types import Array, PRNGKey

STD_RANGE = (1e-6, 1e6)
_LOG_2PI = math.log(2.0 * math.pi)


def init_std_param(action_size: int, init_std: float, std_type: str) -> Array:
    """The learnable std parameter ``[A]`` for ``std_type`` in {"scalar", "log"}."""
    if std_type == "scalar":
        return jnp.full((action_size,), init_std, jnp.float32)
    if std_type == "log":
        return jnp.full((action_size,), math.log(init_std), jnp.float32)
    raise ValueError(f"unknown noise_std_type '{std_type}', expected 'scalar' or 'log'")


def std_from_param(param: Array, std_type: str, std_range: tuple[float, float] = STD_RANGE) -> Array:
    """Maps the std parameter to the std, clamped to ``std_range`` (lower bound at least 1e-6)."""
    lo, hi = max(std_range[0], 1e-6), std_range[1]
    if std_type == "scalar":
        return jnp.clip(param, lo, hi)
    return jnp.exp(jnp.clip(param, math.log(lo), math.log(hi)))


def log_prob(mean: Array, std: Array, x: Array) -> Array:
    """Log-density of ``x`` ``[..., A]`` summed over the action axis -> ``[...]``."""
    z = (x - mean) / std
    return jnp.sum(-0.5 * jnp.square(z) - jnp.log(std) - 0.5 * _LOG_2PI, axis=-1)


def entropy(std: Array) -> Array:
    """Entropy ``[...]`` of a diagonal Gaussian with std ``[..., A]``."""
    return jnp.sum(0.5 + 0.5 * _LOG_2PI + jnp.log(std), axis=-1)


def kl(mean_old: Array, std_old: Array, mean_new: Array, std_new: Array) -> Array:
    """``KL(N(mean_old, std_old) || N(mean_new, std_new))`` summed over the action axis -> ``[...]``."""
    return jnp.sum(
        jnp.log(std_new / std_old)
        + (jnp.square(std_old) + jnp.square(mean_old - mean_new)) / (2.0 * jnp.square(std_new))
        - 0.5,
        axis=-1,
    )


def sample(key: PRNGKey, mean: Array, std: Array) -> Array:
    """A reparameterised sample ``mean + std * eps``."""
    return mean + std * jax.random.normal(key, mean.shape, mean.dtype)
