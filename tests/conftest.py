"""Shared test set-up: the persistent XLA cache (MJX programs compile slowly on CPU) and the default suite's time
budget (see ``tests/README.md``): a test not marked ``slow`` that takes longer than ``AGILE_JAX_TEST_BUDGET_S``
seconds (default 45) in its set-up or call is named at the end of the run, to be made smaller or marked ``slow``.
The suite runs in parallel workers (pytest-xdist, ``-n auto`` in ``pyproject.toml``), sized here."""

import os

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Several workers share one accelerator: none may take most of its memory up front.
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

from agile_jax.runtime import platform  # noqa: E402

platform.enable_compilation_cache(os.environ.get("AGILE_JAX_TEST_CACHE_DIR"))

BUDGET_S = float(os.environ.get("AGILE_JAX_TEST_BUDGET_S", "45"))
_OVER_BUDGET: list[tuple[str, str, float]] = []
MAX_WORKERS = int(os.environ.get("AGILE_JAX_TEST_WORKERS", "4"))


def pytest_xdist_auto_num_workers(config):
    """``-n auto``: one worker per core, at most :data:`MAX_WORKERS` (each holds its own compiled programs)."""
    return max(1, min(os.cpu_count() or 1, MAX_WORKERS))


def pytest_runtest_logreport(report):
    """Notes a default-suite test phase that ran longer than :data:`BUDGET_S`."""
    if report.when in ("setup", "call") and report.duration > BUDGET_S and "slow" not in report.keywords:
        _OVER_BUDGET.append((report.nodeid, report.when, report.duration))


def pytest_terminal_summary(terminalreporter):
    """Lists the tests over budget (a warm compilation cache is assumed: a cold one compiles everything)."""
    if not _OVER_BUDGET:
        return
    terminalreporter.write_sep("-", f"over the default suite's {BUDGET_S:.0f} s budget per test (mark slow or shrink)")
    for nodeid, when, seconds in sorted(_OVER_BUDGET, key=lambda item: -item[2]):
        terminalreporter.write_line(f"{seconds:7.1f} s  {when:5s}  {nodeid}")
