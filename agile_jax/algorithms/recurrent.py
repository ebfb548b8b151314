"""Trajectory minibatches for recurrent policies (RSL-RL's ``recurrent_mini_batch_generator``).

RSL-RL does not shuffle recurrent minibatches: minibatch ``j`` holds envs ``[j*N/M, (j+1)*N/M)`` over the
whole rollout (``N // M`` envs each; envs past ``M * (N // M)`` are unused), the same split in every
epoch. Their observations are cut at dones into zero-padded trajectories, each started from the stored
state of its first step, and the outputs are unpadded again, so every loss averages the ``T * N / M``
valid samples. Here the minibatch stays time-major ``[T, N/M, ...]`` and the recurrent network restarts
its state from the stored one wherever a trajectory starts (see
:meth:`agile_jax.networks.recurrent.RNN.sequence`), which gives the same outputs without the padding.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from agile_jax.extensions.base import Batch
from agile_jax.types import PRNGKey


def trajectory_minibatches(batch: Batch, key: PRNGKey, num_mini_batches: int) -> Batch:
    """Minibatches ``[M, T, N // M, ...]`` of contiguous env blocks from a time-major batch ``[T, N, ...]``.

    Args:
        batch: rollout batch; every leaf (stored recurrent states and extras included) is ``[T, N, ...]``.
        key: unused (no shuffling), kept for the ``minibatch_fn`` signature of the PPO update.
        num_mini_batches: M.
    """
    del key
    num_envs = batch.dones.shape[1]
    size = num_envs // num_mini_batches
    if size == 0:
        raise ValueError(f"num_mini_batches={num_mini_batches} exceeds the {num_envs} envs of the rollout; "
                         "recurrent minibatches split the envs")

    def split(x):
        x = x[:, : num_mini_batches * size]
        return jnp.moveaxis(x.reshape(x.shape[0], num_mini_batches, size, *x.shape[2:]), 1, 0)

    return jax.tree.map(split, batch)
