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
