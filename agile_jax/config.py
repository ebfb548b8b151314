"""A run's configuration: :class:`TrainConfig` (``env``, ``policy``, ``algorithm``, ``runner``) and
:class:`DistillationConfig`, with RSL-RL's hyperparameter names.

The shared schemas and the ``key=value`` merging live in :mod:`agile_jax.config_base`; each training method's
block lives in its method file and joins :class:`AlgorithmConfig` through its ``Method`` record
(:data:`agile_jax.extensions.METHODS`), so adding a method adds its block here without an edit. Presets are plain
functions returning a ``TrainConfig``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional

from agile_jax.config_base import (
    ConfigError,
    OptimizerSettings,
    PolicyConfig,
    PPOSettings,
    RunnerConfig,
    StudentTeacherConfig,
    apply_overrides,
    from_yaml,
    leaf_keys,
    resolve_key,
    to_yaml,
)
from agile_jax.extensions import METHODS
from agile_jax.extensions.symmetry import SymmetryConfig


def algorithm_config_for(methods) -> type:
    """:class:`PPOSettings` plus one field per method block of ``methods`` (``Method`` records), in their order."""
    blocks = [m for m in methods if m.config is not None]
    cls = dataclasses.make_dataclass("AlgorithmConfig", [m.config_field() for m in blocks], bases=(PPOSettings,))
    cls.__module__ = __name__
    cls.__doc__ = ("PPO's hyperparameters (:class:`agile_jax.config_base.PPOSettings`) and one field per training "
                   f"method's block ({', '.join(m.field_name for m in blocks)}).")
    return cls


# The PPO algorithm section: PPO's settings and the block of every method of the chain.
AlgorithmConfig = algorithm_config_for(METHODS)


@dataclass
class TrainConfig:
    """A whole training run."""

    env: Any = None
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    runner: RunnerConfig = field(default_factory=RunnerConfig)


@dataclass
class DistillationAlgorithmConfig(OptimizerSettings):
    """RSL-RL ``Distillation`` hyperparameters (its optimiser's in :class:`OptimizerSettings`: no clipping unless
    ``max_grad_norm`` is set, then one norm over the student); ``symmetry_cfg`` adds AGILE's mirror loss (MLP
    students)."""

    max_grad_norm: Optional[float] = None  # noqa: UP045
    grad_clip_mode: str = "joint"
    class_name: str = "Distillation"
    num_learning_epochs: int = 1
    gradient_length: int = 15
    loss_type: str = "mse"  # "mse" | "huber"
    symmetry_cfg: SymmetryConfig = field(default_factory=SymmetryConfig)


@dataclass
class DistillationConfig:
    """A whole distillation run (``runner.obs_groups`` uses the ``student`` / ``teacher`` sets)."""

    env: Any = None
    policy: StudentTeacherConfig = field(default_factory=StudentTeacherConfig)
    algorithm: DistillationAlgorithmConfig = field(default_factory=DistillationAlgorithmConfig)
    runner: RunnerConfig = field(default_factory=RunnerConfig)


__all__ = ["AlgorithmConfig", "ConfigError", "DistillationAlgorithmConfig", "DistillationConfig", "OptimizerSettings",
           "PPOSettings", "PolicyConfig", "RunnerConfig", "StudentTeacherConfig", "TrainConfig", "apply_overrides",
           "from_yaml", "leaf_keys", "resolve_key", "to_yaml"]
