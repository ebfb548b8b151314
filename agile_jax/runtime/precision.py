"""Numerical precision and determinism: a decision of the run, never of the device.

Training runs its float32 matrix products at ``runner.matmul_precision`` (JAX's names). On recent NVIDIA
GPUs JAX's own default is TF32 (10-bit mantissa inputs), which moves a policy's actions by ~1e-3; on a CPU
every setting computes in full float32. Whatever training used, every check that compares our policy with
another implementation (the export parity gate, the TorchScript import check) recomputes its reference
inside :func:`exact`: full float32 on the CPU, so the verdict does not depend on the training device.

``runner.deterministic`` asks XLA for run-to-run repeatable GPU kernels (scatter-adds and reductions in a
fixed order, no non-deterministic autotuned algorithms); it must be decided before the first computation.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator

import jax
from jax._src import xla_bridge

# JAX's accepted values of ``jax_default_matmul_precision``; "highest" and "float32" are exact float32.
PRECISIONS = ("highest", "float32", "high", "tensorfloat32", "bfloat16_3x", "default", "bfloat16")
EXACT = "highest"
DETERMINISTIC_FLAG = "--xla_gpu_deterministic_ops=true"


class PrecisionError(ValueError):
    """A precision or determinism setting that cannot be honoured."""


def check_precision(name: str) -> str:
    """Returns ``name`` if JAX knows it as a matmul precision, else raises one clear line."""
    if name not in PRECISIONS:
        raise PrecisionError(f"unknown runner.matmul_precision '{name}'; choose one of {list(PRECISIONS)} "
                             "('highest' = full float32, 'default' = TF32 on recent NVIDIA GPUs)")
    return name


def with_precision(fn: Callable, precision: str) -> Callable:
    """``fn`` (typically jitted) traced and run with float32 matmuls at ``precision``.

    jit keys its cache on the precision in effect, so the same function called outside this wrapper is
    compiled separately and does not inherit it.
    """
    check_precision(precision)

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        with jax.default_matmul_precision(precision):
            return fn(*args, **kwargs)

    return wrapped


@contextlib.contextmanager
def exact() -> Iterator[None]:
    """Computes float32-exact references: full-precision matmuls on the CPU device.

    Arrays committed to another device must be fetched first (``jax.device_get``); uncommitted inputs
    (NumPy arrays, Python scalars) follow the default device set here.
    """
    with jax.default_matmul_precision(EXACT), jax.default_device(jax.local_devices(backend="cpu")[0]):
        yield


def configure_determinism(enabled: bool) -> bool:
    """Adds XLA's deterministic-ops flag to ``XLA_FLAGS`` before any backend starts.

    Returns:
        Whether the flag is in effect.

    Raises:
        PrecisionError: determinism was asked for after JAX already started a GPU backend without it.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if not enabled or DETERMINISTIC_FLAG in flags:
        return DETERMINISTIC_FLAG in flags
    if xla_bridge.backends_are_initialized():
        if jax.default_backend() == "cpu":
            return True  # CPU programs are run-to-run repeatable already
        raise PrecisionError("runner.deterministic=true must be decided before JAX starts the GPU; set it on the "
                             f"command line or export XLA_FLAGS='{DETERMINISTIC_FLAG}' before starting Python")
    os.environ["XLA_FLAGS"] = f"{flags} {DETERMINISTIC_FLAG}".strip()
    return True
