"""Shared test set-up: the persistent XLA cache (MJX programs compile slowly on CPU) and the default suite's time
budget (see ``tests/README.md``): a test not marked ``slow`` that takes longer than ``AGILE_JAX_TEST_BUDGET_S``
seconds (default 45) in its set-up or call is named at the end of the run, to be made smaller or marked ``slow``."""

import os

from agile_jax.runtime import platform

platform.enable_compilation_cache(os.environ.get("AGILE_JAX_TEST_CACHE_DIR"))

BUDGET_S = float(os.environ.get("AGILE_JAX_TEST_BUDGET_S", "45"))
_OVER_BUDGET: list[tuple[str, str, float]] = []


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
