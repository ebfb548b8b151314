"""Multi-host start-up: ``jax.distributed`` from the variables a launcher sets.

One process per host (or per GPU) runs the same command. After :func:`initialize_from_environment`,
``jax.devices()`` lists every process's devices, the trainer's mesh spans them all, each process steps its
own share of the envs, and gradients, KL and statistics are averaged with collectives over the whole mesh.
Recognised launchers, first match wins:

* JAX's variables: ``JAX_COORDINATOR_ADDRESS=host:port``, ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``;
* ``torchrun`` style: ``MASTER_ADDR``, ``MASTER_PORT``, ``WORLD_SIZE``, ``RANK`` (and ``LOCAL_RANK`` /
  ``LOCAL_WORLD_SIZE`` with several processes per host); the JAX coordinator listens on
  ``MASTER_PORT + 1``, leaving ``MASTER_PORT`` to the launcher's own store;
* SLURM (``srun`` with more than one task) and Open MPI (``mpirun -n >1``), detected by JAX itself.

A single process (none of the above) starts nothing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import jax


def cluster_from_environment(environ: Mapping[str, str] = os.environ) -> dict[str, Any] | None:
    """Keyword arguments for ``jax.distributed.initialize``, or ``None`` for a single-process run."""
    count = lambda name: int(environ.get(name, "1") or 1)
    if environ.get("JAX_COORDINATOR_ADDRESS") and count("JAX_NUM_PROCESSES") > 1:
        return {"coordinator_address": environ["JAX_COORDINATOR_ADDRESS"],
                "num_processes": count("JAX_NUM_PROCESSES"), "process_id": int(environ.get("JAX_PROCESS_ID", "0"))}
    if environ.get("MASTER_ADDR") and count("WORLD_SIZE") > 1:
        port = int(environ.get("MASTER_PORT", "29500")) + 1
        spec = {"coordinator_address": f"{environ['MASTER_ADDR']}:{port}", "num_processes": count("WORLD_SIZE"),
                "process_id": int(environ.get("RANK", "0"))}
        if count("LOCAL_WORLD_SIZE") > 1:  # several processes per host: one device each
            spec["local_device_ids"] = [int(environ.get("LOCAL_RANK", "0"))]
        return spec
    if count("SLURM_NTASKS") > 1 and environ.get("SLURM_JOB_ID") or count("OMPI_COMM_WORLD_SIZE") > 1:
        return {}  # JAX's own cluster detection reads the rest
    return None


def initialize_from_environment(environ: Mapping[str, str] = os.environ) -> bool:
    """Starts ``jax.distributed`` when a launcher started several processes; returns whether it did.

    Must run before the first JAX computation. CPU collectives across processes use Gloo.
    """
    spec = cluster_from_environment(environ)
    if spec is None:
        return False
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(**spec)
    return True


def broadcast_text(text: str, max_bytes: int = 1024) -> str:
    """Process 0's ``text`` on every process (e.g. a run directory stamped with process 0's clock)."""
    if jax.process_count() == 1:
        return text
    import numpy as np
    from jax.experimental import multihost_utils

    data = np.zeros(max_bytes, np.uint8)
    raw = text.encode()[:max_bytes]
    data[:len(raw)] = np.frombuffer(raw, np.uint8)
    out = np.asarray(multihost_utils.broadcast_one_to_all(data))
    return bytes(out[out != 0].astype(np.uint8)).decode()
