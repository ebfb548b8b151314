"""Process-level JAX settings shared by the command-line tools, tests and benchmarks."""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import threading

DEFAULT_CACHE_DIR = os.path.join(os.path.expanduser("~"), ".cache", "agile_jax", "xla")
# What XLA prints on every load of a cached program without cause: the SIGILL warning for a "missing" feature that
# is an LLVM tuning flag (prefer-no-gather, prefer-no-scatter, fast-...; no CPU lists those, so programs compiled on
# this very CPU get it), and PjRt's note that it does not track executable versions.
TUNING_FLAG_WARNING = re.compile(r"cpu_aot_loader\.cc.*Target machine feature \+(prefer|fast)-"
                                 r"|pjrt_executable\.cc.*Assume version compatibility")
_STDERR_LOCK = threading.Lock()


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
    _quiet_tuning_flag_warnings()
    return path


@contextlib.contextmanager
def stderr_without(pattern: re.Pattern):
    """Holds back what is written to file descriptor 2 (C++ logs included) while inside, then writes it out
    without the lines matching ``pattern``. One at a time: nested redirections of fd 2 would lose it."""
    with _STDERR_LOCK, tempfile.TemporaryFile() as held:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            lines = held.read().decode(errors="replace").splitlines(keepends=True)
            sys.stderr.write("".join(line for line in lines if not pattern.search(line)))
            sys.stderr.flush()


def _quiet_tuning_flag_warnings() -> None:
    """Loads JAX's cached programs without :data:`TUNING_FLAG_WARNING` (JAX's loader is wrapped once; a JAX
    without it is left alone). XLA's other feature warnings, which do mean another CPU, still show."""
    from jax._src import compilation_cache

    load = getattr(compilation_cache, "get_executable_and_time", None)
    if load is None or getattr(load, "drops_tuning_flag_warnings", False):
        return

    def quiet_load(*args, **kwargs):
        with stderr_without(TUNING_FLAG_WARNING):
            return load(*args, **kwargs)

    quiet_load.drops_tuning_flag_warnings = True
    compilation_cache.get_executable_and_time = quiet_load


def accelerator_notice() -> str | None:
    """A one-line notice when JAX has no accelerator, else ``None``."""
    import jax

    if jax.default_backend() != "cpu":
        return None
    return (f"No GPU/TPU found: JAX runs on {os.cpu_count()} CPU cores. Training works but is slow; "
            "scale it down with e.g. num_envs=64 (install the 'cuda' extra on a GPU machine).")
