"""Environments (pure ``reset`` / ``step`` functions over MJX and plain JAX).

``import mujoco.mjx`` prints ``Failed to import warp: No module named 'warp'`` and the same for ``mujoco_warp``
on stdout when the optional Warp backend is not installed. Every env module is imported through this package,
so it installs an import hook that loads ``mujoco.mjx.warp`` with stdout captured and prints back everything
but those two lines (a Warp that is installed but fails to load is still reported). Nothing is imported
eagerly: tasks that do not use MJX start as fast as before.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import io
import re
import sys

_WARP_PROBE = "mujoco.mjx.warp"
_WARP_ABSENT = re.compile(r"^Failed to import (mujoco_)?warp: No module named 'warp'$")


class _QuietLoader(importlib.abc.Loader):
    """Runs another loader's module code with stdout captured, then prints what is worth seeing."""

    def __init__(self, loader: importlib.abc.Loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        captured = io.StringIO()
        try:
            with contextlib.redirect_stdout(captured):
                self.loader.exec_module(module)
        finally:
            kept = [line for line in captured.getvalue().splitlines() if not _WARP_ABSENT.match(line)]
            if kept:
                print("\n".join(kept))


class _QuietWarpProbe(importlib.abc.MetaPathFinder):
    """Finds ``mujoco.mjx.warp`` as usual and loads it through :class:`_QuietLoader`."""

    def find_spec(self, fullname, path, target=None):
        if fullname != _WARP_PROBE:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


if not any(isinstance(finder, _QuietWarpProbe) for finder in sys.meta_path):
    sys.meta_path.insert(0, _QuietWarpProbe())
