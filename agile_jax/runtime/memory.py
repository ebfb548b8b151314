"""A run's memory need, estimated before anything is allocated, against what the device has free.

The estimate is built from shapes alone (``jax.eval_shape``): the batched env state (held about three times
during an iteration: current, next and the fresh states of auto-reset), the rollout buffer of
``num_steps_per_env`` transitions (observations, actions, log-probabilities, values, rewards, flags; held about
three times: the buffer, its shuffled minibatches and, with symmetry, their mirrored copies) and the network
parameters with their Adam moments. It errs on the generous side; XLA's own peak can be lower.
"""

from __future__ import annotations

import os

import jax
import numpy as np

from agile_jax.config_base import ConfigError

STATE_COPIES, BUFFER_COPIES = 3, 3
PER_STEP_SCALARS = 8  # log-prob, value, reward, done, time-out, terminated, return, advantage


def _itemsize(dtype) -> int:
    return 8 if jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key) else np.dtype(dtype).itemsize  # threefry: 2 x u32


def _tree_bytes(tree) -> int:
    return int(sum(np.prod(x.shape) * _itemsize(x.dtype) for x in jax.tree.leaves(tree)))


def estimate_bytes(env, num_steps: int, num_params: int) -> int:
    """Bytes one iteration of ``env`` (batched) needs, from shapes only."""
    keys = jax.ShapeDtypeStruct((env.num_envs, 2), np.uint32)
    state = jax.eval_shape(lambda k: env.reset(jax.vmap(jax.random.wrap_key_data)(k)), keys)
    obs_per_env = _tree_bytes(state.obs) // env.num_envs
    per_step = obs_per_env + 4 * (3 * env.action_size + PER_STEP_SCALARS)  # actions, means, stds
    buffer = num_steps * env.num_envs * per_step
    return STATE_COPIES * _tree_bytes(state) + BUFFER_COPIES * buffer + 4 * 4 * num_params


def available_bytes() -> int | None:
    """Free memory of the default device: the accelerator's limit, or the host's available RAM on a CPU."""
    device = jax.local_devices()[0]
    if device.platform != "cpu":
        stats = device.memory_stats() or {}
        limit = stats.get("bytes_limit")
        return int(limit - stats.get("bytes_in_use", 0)) if limit else None
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        return int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES") if hasattr(os, "sysconf") else None


def check_fits(env, num_steps: int, num_params: int, num_devices: int = 1) -> int:
    """Refuses a run whose estimate exceeds free memory, naming the estimate and the largest ``num_envs`` that fits.

    Returns:
        The estimate in bytes (per device).
    """
    need = estimate_bytes(env, num_steps, num_params) // max(num_devices, 1)
    free = available_bytes()
    if free is not None and need > free:
        fits = int(env.num_envs * free / need) // max(num_devices, 1) * max(num_devices, 1)
        raise ConfigError(f"env.num_envs={env.num_envs} needs about {need / 2**30:.1f} GiB per device but only "
                          f"{free / 2**30:.1f} GiB are free; use env.num_envs={max(fits, 0)} or fewer")
    return need
