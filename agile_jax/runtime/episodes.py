"""The last 100 finished episodes, kept on the device (RSL-RL's ``rewbuffer`` / ``lenbuffer``).

The window lives in the train state, so ``Train/mean_reward``, ``Train/mean_episode_length`` and the
episode-length gate of entropy annealing are computed inside the jitted iteration: the host receives two
scalars instead of the ``[T, N]`` per-step outcomes, and a resumed run continues with the same window.
Episodes enter in the order RSL-RL's runner sees them: step by step, and within a step by global env id.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from agile_jax.types import Array

WINDOW = 100


@struct.dataclass
class EpisodeWindow:
    """The newest ``size`` finished episodes, oldest first; the last ``count`` entries are valid.

    Attributes:
        returns: undiscounted episode returns ``[size]``.
        lengths: episode lengths in steps ``[size]``.
        count: number of valid entries (``<= size``).
    """

    returns: Array
    lengths: Array
    count: Array


def init_window(size: int = WINDOW) -> EpisodeWindow:
    """An empty window of ``size`` episodes."""
    return EpisodeWindow(returns=jnp.zeros(size, jnp.float32), lengths=jnp.zeros(size, jnp.float32),
                         count=jnp.zeros((), jnp.int32))


def push(window: EpisodeWindow, done: Array, episode_return: Array, episode_length: Array) -> EpisodeWindow:
    """Appends the episodes that ended in a ``[T, N]`` rollout (all envs of the run), in time order.

    Args:
        window: the current window.
        done: ``[T, N]`` episode ended at this step.
        episode_return, episode_length: ``[T, N]`` return and length of the episode that ended there.
    """
    size = window.returns.shape[0]
    flat_done = done.reshape(-1)
    rank = jnp.cumsum(flat_done.astype(jnp.int32)) - 1  # position among this rollout's finished episodes
    total = jnp.sum(flat_done.astype(jnp.int32))
    slots = jnp.where(flat_done, size + rank, size + flat_done.size)  # unfinished rows fall off the end

    def append(old: Array, new: Array) -> Array:
        combined = jnp.concatenate([old, jnp.zeros(flat_done.size, old.dtype)])
        combined = combined.at[slots].set(new.reshape(-1).astype(old.dtype), mode="drop")
        return jax.lax.dynamic_slice(combined, (total,), (size,))  # the newest `size` entries

    return EpisodeWindow(returns=append(window.returns, episode_return),
                         lengths=append(window.lengths, episode_length),
                         count=jnp.minimum(window.count + total, size))


def means(window: EpisodeWindow) -> tuple[Array, Array]:
    """Mean return and mean length of the window's episodes (NaN while it is empty)."""
    size = window.returns.shape[0]
    valid = jnp.arange(size) >= size - window.count
    count = window.count.astype(jnp.float32)
    mean = lambda x: jnp.where(window.count > 0, jnp.sum(jnp.where(valid, x, 0.0)) / jnp.maximum(count, 1.0),
                               jnp.nan)
    return mean(window.returns), mean(window.lengths)


def record(window: EpisodeWindow, done: Array, episode_return: Array, episode_length: Array,
           axis_name: str) -> EpisodeWindow:
    """:func:`push` of this device's ``[T, N_local]`` outcomes after gathering every device's envs.

    Call inside ``shard_map``; the window comes out identical (replicated) on every device.
    """
    gather = lambda x: jax.lax.all_gather(x, axis_name, axis=1, tiled=True)
    return push(window, gather(done), gather(episode_return), gather(episode_length))
