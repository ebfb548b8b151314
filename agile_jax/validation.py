"""Range checks of a merged config, before anything is built: one line per problem, naming the valid range.

:func:`check_ranges` raises :class:`agile_jax.config.ConfigError` (the command-line tools exit with code 2) for
sizes and counts that would otherwise end in a ``ZeroDivisionError`` deep in the trainer, or in a run that
silently trains nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agile_jax.config_base import ConfigError
from agile_jax.extensions import METHODS

# key -> (test, valid range in words); keys missing from a config (other algorithms) are skipped. A method's own
# settings are ranged in its record (``Method.ranges``).
RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "env.num_envs": (lambda v: v >= 1, "an integer >= 1"),
    "runner.num_steps_per_env": (lambda v: v >= 1, "an integer >= 1"),
    "runner.max_iterations": (lambda v: v >= 0, "an integer >= 0"),
    "runner.save_interval": (lambda v: v >= 1, "an integer >= 1"),
    "runner.keep_checkpoints": (lambda v: v >= 1, "an integer >= 1"),
    "runner.num_devices": (lambda v: v >= 0, "an integer >= 0 (0: all devices)"),
    "runner.init_from_max_std": (lambda v: v >= 0, "a number >= 0 (0: the loaded std)"),
    "algorithm.num_learning_epochs": (lambda v: v >= 1, "an integer >= 1"),
    "algorithm.num_mini_batches": (lambda v: v >= 1, "an integer >= 1"),
    "algorithm.learning_rate": (lambda v: v > 0, "a number > 0"),
    "algorithm.gamma": (lambda v: 0 < v <= 1, "a number in (0, 1]"),
    "algorithm.lam": (lambda v: 0 <= v <= 1, "a number in [0, 1]"),
    "algorithm.clip_param": (lambda v: v > 0, "a number > 0"),
    "algorithm.desired_kl": (lambda v: v is None or v > 0, "a number > 0"),
    "algorithm.max_grad_norm": (lambda v: v is None or v > 0, "a number > 0"),
    "algorithm.grad_clip_mode": (lambda v: v in ("per_network", "joint"), "'per_network' or 'joint'"),
    "algorithm.optimizer": (lambda v: v in ("adam", "adamw", "sgd", "rmsprop"), "adam, adamw, sgd or rmsprop"),
    "algorithm.entropy_coef": (lambda v: v >= 0, "a number >= 0"),
    "algorithm.value_loss_coef": (lambda v: v >= 0, "a number >= 0"),
    "policy.init_noise_std": (lambda v: v > 0, "a number > 0"),
}


def all_rules() -> dict[str, tuple[Callable[[Any], bool], str]]:
    """:data:`RULES` and the ranges each method's record declares for its own block."""
    return {**RULES, **{key: rule for method in METHODS for key, rule in method.ranges.items()}}


def _get(cfg: Any, key: str) -> tuple[bool, Any]:
    obj = cfg
    for part in key.split("."):
        if not hasattr(obj, part):
            return False, None
        obj = getattr(obj, part)
    return True, obj


def check_ranges(cfg: Any) -> None:
    """Refuses the first out-of-range setting of ``cfg``, and a minibatch split that leaves minibatches empty."""
    for key, (valid, words) in all_rules().items():
        present, value = _get(cfg, key)
        if present and not valid(value):
            raise ConfigError(f"{key}={value!r} is out of range: use {words}")
    present, cap = _get(cfg, "runner.init_from_max_std")
    if present and cap > 0 and not cfg.runner.init_from:
        raise ConfigError(f"runner.init_from_max_std={cap} caps the std of a policy loaded by runner.init_from; "
                          "name the run to start from with runner.init_from=<run dir>")
    present, minibatches = _get(cfg, "algorithm.num_mini_batches")
    if present:
        samples = cfg.env.num_envs * cfg.runner.num_steps_per_env
        if minibatches > samples:
            raise ConfigError(f"algorithm.num_mini_batches={minibatches} exceeds the {samples} samples of an "
                              "iteration (num_envs x num_steps_per_env): use at most that many")
