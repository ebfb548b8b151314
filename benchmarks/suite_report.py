"""An incremental JSON report for benchmark suites: guarded, timed phases under one wall-clock budget.

Every phase runs through :meth:`Report.run_phase`: it is skipped when too little time is left, its
exception is recorded instead of propagated, and the JSON file is rewritten after every phase (and
whenever a phase calls :meth:`Phase.save`), so a run that is cut off still leaves what it measured. A
watchdog thread writes the report and ends the process at the hard limit, because a long XLA compile
cannot be interrupted from Python.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import platform
import resource
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

WATCHDOG_EXIT_CODE = 3
PACKAGES = ("jax", "jaxlib", "flax", "optax", "mujoco", "mujoco-mjx", "warp-lang", "orbax-checkpoint", "torch",
            "onnxruntime", "numpy")


def _clean(value: Any) -> Any:
    """``value`` as plain JSON: numpy scalars and arrays to Python, NaN and inf to ``None``."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "tolist"):  # numpy / jax scalars and arrays
        return _clean(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


@dataclass
class Phase:
    """What a phase function gets: its results dict (kept even if it fails) and its deadline.

    Attributes:
        report: the report the phase belongs to.
        deadline: ``time.time()`` after which the phase should stop its loops.
        result: the phase's measurements; fill it as you go and call :meth:`save`.
    """

    report: Report
    deadline: float
    result: dict = field(default_factory=dict)

    def left(self) -> float:
        """Seconds until the phase's deadline or the suite's budget, whichever comes first."""
        return min(self.deadline - time.time(), self.report.left())

    def save(self) -> None:
        """Rewrites the JSON file with the results so far."""
        self.report.write()


class Report:
    """A JSON document of named phases, rewritten atomically after every change.

    Args:
        path: the JSON file.
        budget_s: seconds the suite plans to take, counted from ``start``.
        hard_limit_s: seconds after ``start`` at which the watchdog (see :meth:`start_watchdog`) writes the
            report and ends the process with exit code 3.
        start: ``time.time()`` of the process start (default: now).
    """

    def __init__(self, path: str, budget_s: float, hard_limit_s: float, start: float | None = None):
        self.path, self.budget_s, self.hard_limit_s = path, budget_s, hard_limit_s
        self.start = time.time() if start is None else start
        self.data: dict[str, Any] = {"status": "running", "budget_s": budget_s, "hard_limit_s": hard_limit_s,
                                     "phases": {}}
        self._lock = threading.RLock()
        self._current: str | None = None
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)

    def elapsed(self) -> float:
        return time.time() - self.start

    def left(self) -> float:
        """Seconds left of the planned budget."""
        return self.budget_s - self.elapsed()

    def write(self) -> None:
        """Writes the JSON file (temporary file + rename, so a reader never sees half a file)."""
        with self._lock:
            self.data["elapsed_s"] = round(self.elapsed(), 1)
            tmp = self.path + ".tmp"
            with open(tmp, "w") as f:
                json.dump(_clean(self.data), f, indent=1)
            os.replace(tmp, self.path)

    def set(self, key: str, value: Any) -> None:
        with self._lock:
            self.data[key] = value
            self.write()

    def run_phase(self, name: str, fn: Callable[[Phase], Any], budget_s: float, reserve_s: float = 0.0,
                  min_s: float | None = None) -> bool:
        """Runs ``fn(phase)`` as phase ``name``; returns whether it finished without an exception.

        The phase is skipped when fewer than ``reserve_s + min_s`` seconds (``min_s`` defaults to
        ``budget_s``) are left of the budget: ``reserve_s`` is kept for the phases after it.
        """
        entry: dict[str, Any] = {"budget_s": round(budget_s, 1)}
        with self._lock:
            self.data["phases"][name] = entry
        need = reserve_s + (budget_s if min_s is None else min_s)
        if self.left() < need:
            entry.update(status="skipped", reason=f"{self.left():.0f} s left of the budget, {need:.0f} s needed")
            self.write()
            print(f"[suite] {name}: skipped ({entry['reason']})", flush=True)
            return False
        phase = Phase(self, time.time() + budget_s, entry.setdefault("result", {}))
        entry.update(status="running", started_at_s=round(self.elapsed(), 1))
        self._current = name
        self.write()
        t0 = time.time()
        try:
            fn(phase)
            entry["status"] = "ok"
        except Exception as err:  # noqa: BLE001 - recorded; the next phase runs
            entry.update(status="error", error=f"{type(err).__name__}: {err}"[:2000],
                         traceback=traceback.format_exc().splitlines()[-12:])
            print(f"[suite] {name}: {entry['error'][:300]}", file=sys.stderr, flush=True)
        entry["wall_s"] = round(time.time() - t0, 2)
        self._current = None
        self.write()
        print(f"[suite] {name}: {entry['status']} in {entry['wall_s']:.1f} s {_headline(entry['result'])}",
              flush=True)
        return entry["status"] == "ok"

    def start_watchdog(self) -> None:
        """Starts a daemon thread that, at ``hard_limit_s``, writes the report and exits the process (code 3)."""

        def watch() -> None:
            while self.elapsed() < self.hard_limit_s:
                time.sleep(0.5)
            with self._lock:
                self.data["status"] = f"stopped at the hard limit ({self.hard_limit_s:.0f} s) in phase {self._current}"
                if self._current:
                    self.data["phases"][self._current]["status"] = "cut"
                self.write()
            print(f"[suite] {self.data['status']}", file=sys.stderr, flush=True)
            os._exit(WATCHDOG_EXIT_CODE)

        threading.Thread(target=watch, name="suite-watchdog", daemon=True).start()


def _headline(result: dict) -> str:
    """The scalar results of a phase, for the console."""
    items = [f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in result.items()
             if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return " ".join(items[:8])


def _package_versions() -> dict[str, str | None]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _command(args: list[str], cwd: str | None = None) -> str | None:
    """The stripped stdout of ``args``, or ``None`` when it cannot run."""
    try:
        out = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=20, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def environment(project_root: str) -> dict[str, Any]:
    """The software and hardware the figures were measured on (JAX, devices, XLA flags, packages, GPU)."""
    import jax

    return {
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "backend": jax.default_backend(),
        "devices": [{"id": d.id, "platform": d.platform, "kind": d.device_kind} for d in jax.devices()],
        "process_count": jax.process_count(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "env_vars": {k: v for k, v in os.environ.items()
                     if k.startswith(("XLA_", "JAX_")) or k in ("CUDA_VISIBLE_DEVICES", "TF_CPP_MIN_LOG_LEVEL")},
        "jax_default_matmul_precision": getattr(jax.config, "jax_default_matmul_precision", None),
        "packages": _package_versions(),
        "gpu": _command(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"]),
        "git_commit": _command(["git", "rev-parse", "HEAD"], cwd=project_root),
    }


def memory_record() -> dict[str, Any]:
    """The first local device's allocator statistics (``None`` where the backend has none) and the
    process's peak resident set size."""
    import jax

    stats = jax.local_devices()[0].memory_stats()
    keys = ("peak_bytes_in_use", "bytes_in_use", "bytes_limit", "largest_alloc_size", "num_allocs")
    device = {k: stats[k] for k in keys if k in stats} if stats else None
    return {"device": device, "host_peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
