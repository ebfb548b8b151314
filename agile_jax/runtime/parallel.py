"""Device mesh and sharding helpers for data-parallel training.

Environments are split over the ``"data"`` axis of a 1-D mesh; parameters, optimiser state and
statistics are replicated. Inside the jitted iteration, ``shard_map`` runs the per-device program and
gradients / KL / statistics are averaged with collectives over ``AXIS``. On several hosts, call
``jax.distributed.initialize()`` first; ``jax.devices()`` then lists every host's devices and the same
code runs unchanged.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

AXIS = "data"


def make_mesh(num_devices: int = 0) -> Mesh:
    """A 1-D mesh over the first ``num_devices`` devices (0: all of them)."""
    devices = jax.devices()
    if num_devices:
        if num_devices > len(devices):
            raise ValueError(f"runner.num_devices={num_devices} but only {len(devices)} devices are visible")
        devices = devices[:num_devices]
    return Mesh(np.array(devices), (AXIS,))


def check_divisible(num_envs: int, mesh: Mesh) -> int:
    """Envs per device; refuses a batch that does not split evenly."""
    n = mesh.devices.size
    if num_envs % n:
        raise ValueError(f"num_envs={num_envs} does not split over {n} devices; use a multiple of {n}")
    return num_envs // n


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def env_sharded(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(AXIS))


def is_main_process() -> bool:
    """Process 0 of a multi-host run (or the only process): the one that writes logs and exports."""
    return jax.process_index() == 0


def to_host(tree):
    """NumPy copy of a pytree of replicated (or local) arrays, on every process of a multi-host run.

    ``jax.device_get`` refuses arrays that span other processes' devices; a replicated array has a full
    copy on this process's devices, which is read instead.
    """

    def fetch(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            if not x.is_fully_replicated:
                raise ValueError(f"array of shape {x.shape} is split over hosts; gather it before reading it")
            return np.asarray(x.addressable_data(0))
        return np.asarray(jax.device_get(x))

    return jax.tree.map(fetch, tree)


def local_rows(x) -> np.ndarray:
    """This process's rows of an env-sharded array (all rows on a single host), in global order."""
    if not isinstance(x, jax.Array) or x.is_fully_addressable:
        return np.asarray(jax.device_get(x))
    shards = sorted(x.addressable_shards, key=lambda s: s.index[0].start or 0)
    return np.concatenate([np.asarray(s.data) for s in shards])


def put(tree, sharding: NamedSharding):
    """Places a pytree with ``sharding``, also across hosts (every process passes the same host values).

    ``jax.device_put`` accepts only this process's devices; on several hosts each process builds its own
    shards of the global array from its (identical) host copy instead. Arrays already placed are kept.
    """

    def put_leaf(x):
        if isinstance(x, jax.Array) and x.sharding == sharding:
            return x  # an equivalent single-device sharding is not kept: jit would see another input type
        if jax.process_count() == 1 or (isinstance(x, jax.Array) and not x.is_fully_addressable):
            return jax.device_put(x, sharding)
        if jax.dtypes.issubdtype(getattr(x, "dtype", None), jax.dtypes.prng_key):
            return jax.random.wrap_key_data(put_leaf(jax.random.key_data(x)), impl=jax.random.key_impl(x))
        host = np.asarray(x)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    return jax.tree.map(put_leaf, tree)
