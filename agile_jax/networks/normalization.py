"""Empirical observation normalisation as pure state (RSL-RL's ``EmpiricalNormalization``).

``normalize(x) = (x - mean) / (std + eps)`` with ``eps`` added to the *std*. The update merges batch
moments (population variance, ddof=0) with a count-weighted rule; with ``until`` set, updates stop
once ``count >= until`` (checked before adding the batch). Under ``shard_map`` pass ``axis_name`` so
the batch moments are combined over devices, as RSL-RL does over ranks.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from agile_jax.types import Array


@struct.dataclass
class NormalizerState:
    """Running statistics of one observation vector.

    Attributes:
        mean: running mean ``[D]``.
        var: running population variance ``[D]``.
        count: number of samples merged so far (float32 scalar, exact up to 2**24 per update).
    """

    mean: Array
    var: Array
    count: Array

    @property
    def std(self) -> Array:
        return jnp.sqrt(self.var)


def init(dim: int) -> NormalizerState:
    """Fresh statistics: mean 0, variance 1, count 0."""
    return NormalizerState(mean=jnp.zeros((dim,), jnp.float32), var=jnp.ones((dim,), jnp.float32),
                           count=jnp.zeros((), jnp.float32))


def normalize(state: NormalizerState, x: Array, eps: float = 1e-2) -> Array:
    """Normalises ``x`` ``[..., D]`` with the running statistics."""
    return (x - state.mean) / (state.std + eps)


def update(state: NormalizerState, x: Array, until: float | None = None,
           axis_name: str | None = None) -> NormalizerState:
    """Merges the samples ``x`` ``[..., D]`` (all leading axes are samples) into ``state``.

    Args:
        state: current statistics.
        x: new samples.
        until: stop updating once ``count >= until`` (``None``: never stop).
        axis_name: mapped axis to combine the batch moments over (data-parallel training).
    """
    x = x.reshape(-1, x.shape[-1]).astype(jnp.float32)
    n = jnp.asarray(x.shape[0], jnp.float32)
    total, sq_total = jnp.sum(x, axis=0), None
    if axis_name is not None:
        n = jax.lax.psum(n, axis_name)
        total = jax.lax.psum(total, axis_name)
    batch_mean = total / n
    sq_total = jnp.sum(jnp.square(x - batch_mean), axis=0)
    if axis_name is not None:
        sq_total = jax.lax.psum(sq_total, axis_name)
    batch_var = sq_total / n
    # Count-weighted merge of the batch moments into the running moments.
    count = state.count + n
    rate = n / count
    delta = batch_mean - state.mean
    mean = state.mean + rate * delta
    var = state.var + rate * (batch_var - state.var + delta * (batch_mean - mean))
    new = NormalizerState(mean=mean, var=var, count=count)
    if until is None:
        return new
    frozen = state.count >= until
    return jax.tree.map(lambda old, upd: jnp.where(frozen, old, upd), state, new)
