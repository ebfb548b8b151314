"""Named training presets: ``python experiments/train.py config=<name>``.

A preset is a function returning a :class:`agile_jax.config.TrainConfig` whose ``env`` field is the
task's own config dataclass; :func:`make_env` builds the batched env from it.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable

from agile_jax.config import ConfigError, TrainConfig
from experiments.configs import presets

PRESETS: dict[str, Callable[[], TrainConfig]] = presets.PRESETS
CPU_DEFAULTS: dict[str, list[str]] = presets.CPU_DEFAULTS


def get_preset(name: str) -> TrainConfig:
    """The preset ``name``; unknown names are refused with the closest valid one."""
    if name not in PRESETS:
        close = difflib.get_close_matches(name, list(PRESETS), n=1, cutoff=0.4)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"unknown preset config='{name}'.{hint} Available: {sorted(PRESETS)}")
    return PRESETS[name]()


def make_env(cfg: TrainConfig):
    """The batched env described by ``cfg.env``."""
    return presets.make_env(cfg)
