"""Diagonal Gaussians as RSL-RL 5.5's ``GaussianDistribution`` and ``HeteroscedasticGaussianDistribution``.

``GaussianDistribution``: the std is state-independent; its parameter lives in the actor params under
``"std"``. ``HeteroscedasticGaussianDistribution``: the std is state-dependent; the actor MLP outputs ``2A``
values, the mean first and the std parameter second (RSL-RL's ``[..., 2, A]`` after ``Unflatten``). Either
way ``std_type="scalar"`` means the parameter is the std itself (clamped, not softplus-ed) and
``std_type="log"`` its log (clamped in log space). Log-prob and entropy are summed over the action axis; the
KL is ``KL(old || new)`` summed over the action axis, exactly as ``torch.distributions.kl_divergence``
computes it (no epsilon).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import jax
import jax.numpy as jnp

from agile_jax.types import Array, PRNGKey

STD_RANGE = (1e-6, 1e6)
_LOG_2PI = math.log(2.0 * math.pi)
GAUSSIAN = "GaussianDistribution"
HETEROSCEDASTIC = "HeteroscedasticGaussianDistribution"
DISTRIBUTIONS = (GAUSSIAN, HETEROSCEDASTIC)


def resolve_distribution_cfg(distribution_cfg: Mapping | None, init_noise_std: float = 1.0,
                             noise_std_type: str = "scalar") -> dict:
    """Network fields from an RSL-RL 5.x ``distribution_cfg`` (``None``: a Gaussian with the older
    ``init_noise_std`` / ``noise_std_type`` names).

    Returns:
        ``{"distribution_class", "init_noise_std", "noise_std_type", "std_range"}`` for the actor-critic.

    Raises:
        ValueError: an unknown class or key, or a value out of range (the message names the fix).
    """
    cfg = dict(distribution_cfg or {})
    name = str(cfg.pop("class_name", GAUSSIAN)).replace(":", ".").split(".")[-1]  # dotted names as RSL-RL's
    if name not in DISTRIBUTIONS:
        raise ValueError(f"distribution_cfg.class_name '{name}' is not supported; use one of {list(DISTRIBUTIONS)}")
    allowed = {"init_std", "std_type", "std_range"} | ({"learn_std"} if name == GAUSSIAN else set())
    unknown = sorted(set(cfg) - allowed)
    if unknown:
        raise ValueError(f"distribution_cfg keys {unknown} are not options of {name}; valid: {sorted(allowed)}")
    if not cfg.pop("learn_std", True):
        raise ValueError("distribution_cfg.learn_std=false (a fixed std) is not supported; remove it")
    out = {"distribution_class": name, "init_noise_std": float(cfg.get("init_std", init_noise_std)),
           "noise_std_type": str(cfg.get("std_type", noise_std_type)),
           "std_range": tuple(float(x) for x in cfg.get("std_range", STD_RANGE))}
    if out["noise_std_type"] not in ("scalar", "log"):
        raise ValueError(f"distribution_cfg.std_type '{out['noise_std_type']}' is unknown; use 'scalar' or 'log'")
    if out["init_noise_std"] <= 0 or len(out["std_range"]) != 2 or not out["std_range"][0] < out["std_range"][1]:
        raise ValueError(f"distribution_cfg needs init_std > 0 and std_range=[min, max] with min < max, got "
                         f"{out['init_noise_std']} and {list(out['std_range'])}")
    return out


def init_std_param(action_size: int, init_std: float, std_type: str) -> Array:
    """The learnable std parameter ``[A]`` for ``std_type`` in {"scalar", "log"}."""
    if std_type == "scalar":
        return jnp.full((action_size,), init_std, jnp.float32)
    if std_type == "log":
        return jnp.full((action_size,), math.log(init_std), jnp.float32)
    raise ValueError(f"unknown noise_std_type '{std_type}', expected 'scalar' or 'log'")


def init_std_bias(init_std: float, std_type: str) -> float:
    """Initial bias of the std half of a heteroscedastic actor's last layer (its weights start at zero).

    RSL-RL's ``init_mlp_weights``: ``init_std`` for ``"scalar"``, ``log(init_std + 1e-7)`` for ``"log"``.
    """
    if std_type == "scalar":
        return float(init_std)
    if std_type == "log":
        return float(math.log(init_std + 1e-7))
    raise ValueError(f"unknown noise_std_type '{std_type}', expected 'scalar' or 'log'")


def split_output(output: Array, action_size: int, std_type: str,
                 std_range: tuple[float, float] = STD_RANGE) -> tuple[Array, Array]:
    """``(mean [..., A], std [..., A])`` of a heteroscedastic actor's output ``[..., 2A]`` (mean first)."""
    mean, param = output[..., :action_size], output[..., action_size:]
    return mean, std_from_param(param, std_type, std_range)


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
