"""Process-level JAX settings shared by the command-line tools, tests and benchmarks."""

from __future__ import annotations

import os

DEFAULT_CACHE_DIR = os.path.join(os.path.expanduser("~"), ".cache", "agile_jax", "xla")


def cpu_tag() -> str:
    """``cpu-<hash>`` of this machine's architecture and CPU feature flags (``/proc/cpuinfo``).

    XLA compiles CPU code for the host's instruction set, and JAX's cache key does not include it: a program
    cached on one CPU and loaded on another that lacks one of its features (AVX-512 on a VM that masks it) can
    stop with SIGILL, which XLA announces as ``cpu_aot_loader.cc ... could lead to ... SIGILL``.
    """
    import hashlib
    import platform

    flags = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1] for line in f if line.startswith(("flags", "Features"))), flags)
    except OSError:
        pass
    text = platform.machine() + ":" + " ".join(sorted(flags.split()))
    return "cpu-" + hashlib.sha256(text.encode()).hexdigest()[:12]


def enable_compilation_cache(cache_dir: str | None = None) -> str:
    """Turns on JAX's persistent compilation cache (MJX programs take tens of seconds to compile on CPU).

    The directory comes from ``cache_dir``, else ``$AGILE_JAX_CACHE_DIR``, else ``~/.cache/agile_jax/xla``; the
    programs live in its :func:`cpu_tag` subfolder, so a folder shared by machines with other CPUs never hands
    one of them code it cannot run. Returns that subfolder.
    """
    import jax

    path = os.path.join(cache_dir or os.environ.get("AGILE_JAX_CACHE_DIR") or DEFAULT_CACHE_DIR, cpu_tag())
    os.makedirs(path, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path


def accelerator_notice() -> str | None:
    """A one-line notice when JAX has no accelerator, else ``None``."""
    import jax

    if jax.default_backend() != "cpu":
        return None
    return (f"No GPU/TPU found: JAX runs on {os.cpu_count()} CPU cores. Training works but is slow; "
            "scale it down with e.g. num_envs=64 (install the 'cuda' extra on a GPU machine).")
