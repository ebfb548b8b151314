"""Returns and advantages: timeout bootstrap, GAE and advantage normalisation.

All arrays are time-major ``[T, N]``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from agile_jax.types import Array


def bootstrap_timeouts(rewards: Array, values: Array, time_outs: Array, gamma: float) -> Array:
    """RSL-RL's timeout bootstrap: ``r + gamma * V(s_t) * time_out``.

    ``values`` is the critic value of the observation the policy acted on at step ``t`` (not of the
    final observation). ``dones`` are left untouched, so GAE still cuts the trace.

    Args:
        rewards: ``[T, N]`` rewards.
        values: ``[T, N]`` values ``V(s_t)``.
        time_outs: ``[T, N]`` truncation flags.
        gamma: discount.
    """
    return rewards + gamma * values * time_outs.astype(rewards.dtype)


def compute_gae(rewards: Array, values: Array, dones: Array, last_values: Array, gamma: float,
                lam: float) -> tuple[Array, Array]:
    """Generalised advantage estimation, RSL-RL's ``compute_returns``.

    ``delta_t = r_t + (1 - d_t) gamma V_{t+1} - V_t``, ``A_t = delta_t + (1 - d_t) gamma lam A_{t+1}``,
    ``returns = A + V``, with ``V_T = last_values``.

    Args:
        rewards: ``[T, N]`` (already bootstrapped/shaped) rewards.
        values: ``[T, N]`` values of the acted-on observations.
        dones: ``[T, N]`` episode ended at step ``t``.
        last_values: ``[N]`` value of the observation after the last step.
        gamma: discount.
        lam: GAE lambda.

    Returns:
        ``(advantages, returns)``, each ``[T, N]`` (advantages not normalised).
    """
    not_done = 1.0 - dones.astype(rewards.dtype)
    next_values = jnp.concatenate([values[1:], last_values[None]], axis=0)
    deltas = rewards + not_done * gamma * next_values - values

    def backward(adv_next, xs):
        delta, nd = xs
        adv = delta + nd * gamma * lam * adv_next
        return adv, adv

    _, advantages = jax.lax.scan(backward, jnp.zeros_like(last_values), (deltas, not_done), reverse=True)
    return advantages, advantages + values


def normalize_advantages(advantages: Array, axis_name: str | None = None, eps: float = 1e-8) -> Array:
    """``(A - mean) / (std + eps)`` over all elements, with the unbiased (ddof=1) std.

    With ``axis_name`` the statistics are taken over the union of every device's samples.
    """
    n = jnp.asarray(advantages.size, jnp.float32)
    total = jnp.sum(advantages)
    if axis_name is not None:
        n, total = jax.lax.psum(n, axis_name), jax.lax.psum(total, axis_name)
    mean = total / n
    sq = jnp.sum(jnp.square(advantages - mean))
    if axis_name is not None:
        sq = jax.lax.psum(sq, axis_name)
    std = jnp.sqrt(sq / (n - 1.0))
    return (advantages - mean) / (std + eps)
