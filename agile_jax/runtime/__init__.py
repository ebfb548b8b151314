"""How a process runs, beneath training, evaluation and export.

* :mod:`.parallel`: the device mesh and data-parallel sharding (envs split over the ``"data"`` axis, the rest
  replicated), reading arrays back to the host on every process;
* :mod:`.distributed`: multi-host start-up of ``jax.distributed`` from the variables a launcher sets;
* :mod:`.memory`: a run's memory need, estimated from shapes, checked against what the device has free;
* :mod:`.signals`: SIGINT / SIGTERM as stop requests honoured between iterations;
* :mod:`.episodes`: the device-side window of the last 100 finished episodes;
* :mod:`.platform`: process-level JAX settings of the command-line tools, tests and benchmarks (the compilation
  cache, a quiet start-up, the notice when no accelerator is found);
* :mod:`.precision`: the run's matmul precision and determinism, and the exact float32 of parity checks.
"""
