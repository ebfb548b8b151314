"""Settings changed on resume: applied when safe, refused by name when they cannot apply.

A checkpoint stores the config it was trained with. A resumed run is built from the *new* config, so most
changed settings (clip, epochs, minibatches, schedule, max iterations, save interval ...) apply by
construction; two live in the restored train state and are written into it here: the learning rate (in the
optimiser state, where the adaptive schedule keeps it) and the entropy coefficient (the entropy term's
state). Settings that shape the restored arrays (env, network and extension layout) cannot change; the
reward's weights, ramps and parameters can (a weight to or from zero adds or drops a term: its per-term sums in
the env state start at zero or go, :mod:`agile_jax.training.term_dicts`), and so can the fall's tilt threshold.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp
from omegaconf import OmegaConf

from agile_jax import config as config_lib
from agile_jax.algorithms import optim
from agile_jax.extensions import METHODS
from agile_jax.training.iteration import place_state

# Changing these would change the shapes or meaning of restored arrays (env state, networks, extension states):
# the run's own, then each method's (its record's ``fixed_on_resume``).
FIXED = ("env.", "policy.", "algorithm.class_name", "algorithm.optimizer", "runner.obs_groups",
         *(key for method in METHODS for key in method.fixed_on_resume))
# Reward weights, ramps, parameters and parameter steps scale or shape the reward only: no restored array depends
# on them, so they may change (legged_gym's and Isaac Lab's habit of resuming with a retuned reward). A weight to or
# from zero adds or drops a term, and with it the term's bookkeeping in the env state, which the restore re-keys.
REWARD_SETTINGS = ("env.reward_weights.", "env.reward_ramps.", "env.reward_params.", "env.reward_param_steps.")
# A termination threshold decides when an episode ends, and no restored array depends on it.
THRESHOLD_SETTINGS = ("env.tilt_limit_deg",)
# Settings a restored state overrides: the PRNG key of the next iteration is part of the checkpoint, so a resumed
# run continues its own random stream whatever seed the new config names (a resume equals an uninterrupted run).
NOT_APPLIED = ("runner.seed",)
# Bookkeeping that differs on every resume by design.
IGNORED = ("runner.resume", "runner.load_run", "runner.load_checkpoint", "runner.run_name",
           "runner.init_from", "runner.init_from_max_std")  # a restored state replaces what init_from loaded


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(_flat(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: tree}


def _settings(obj: Any, prefix: str = "") -> dict[str, Any]:
    """``path -> value`` of every config field whose value is not itself a config section (a dict stays whole)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            out.update(_settings(value, f"{prefix}{f.name}."))
        else:
            out[prefix + f.name] = value
    return out


def _defaults_of_unnamed(cfg: Any, saved: dict[str, Any]) -> dict[str, Any]:
    """The class defaults (flattened) of the fields ``saved`` does not name at all: settings added since it ran."""
    sections = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    defaults = {name: _settings(type(section)()) for name, section in sections.items()
                if dataclasses.is_dataclass(section)}
    out: dict[str, Any] = {}
    for name, fields in defaults.items():
        for path, value in fields.items():
            key = f"{name}.{path}"
            if not any(k == key or k.startswith(key + ".") for k in saved):
                out.update(_flat(value, key + "."))  # a dict flattens to its entries, a value to ``key``
    return out


def changed_settings(saved_yaml: str, cfg: Any) -> dict[str, tuple[Any, Any]]:
    """``key -> (checkpoint's value, new value)`` for every setting that differs (bookkeeping keys left out).

    A setting the checkpoint's config does not name was added to the config after that run started; the run
    trained with what the setting's default (its config class's, not a preset's) does, so that is its old value.
    """
    saved = _flat(OmegaConf.to_container(OmegaConf.create(saved_yaml)))
    saved = {**_defaults_of_unnamed(cfg, saved), **saved}
    current = _flat(OmegaConf.to_container(OmegaConf.structured(cfg)))
    return {k: (saved.get(k), current.get(k)) for k in sorted(set(saved) | set(current))
            if saved.get(k) != current.get(k) and not k.startswith(IGNORED)}


def described_changes(changes: dict[str, tuple[Any, Any]], cfg: Any) -> dict[str, str]:
    """``key -> "old -> new"`` for a report. The leaves of an entry added to or removed from a dict-valued setting
    (a reward ramp, a parameter step) read as one: ``env.reward_ramps.base_height (added: {...})``."""
    current = _settings(cfg)
    out: dict[str, str] = {}
    for key, (old, new) in changes.items():
        field = next((f for f, v in current.items() if isinstance(v, dict) and key.startswith(f + ".")), None)
        if field is None:
            out[key] = f"{old!r} -> {new!r}"
            continue
        name = key[len(field) + 1:].split(".")[0]
        entry = f"{field}.{name}"
        members = [changes[k] for k in changes if k == entry or k.startswith(entry + ".")]
        if name not in current[field] and all(n is None for _, n in members):
            out.setdefault(entry, "(removed)")
        elif name in current[field] and all(o is None for o, _ in members):
            out.setdefault(entry, f"(added: {current[field][name]!r})")
        else:
            out[key] = f"{old!r} -> {new!r}"
    return out


def _is_fixed(key: str) -> bool:
    """Whether changing ``key`` would change the layout of the restored state."""
    return key.startswith(FIXED) and not key.startswith(REWARD_SETTINGS + THRESHOLD_SETTINGS)


def refused_changes(changes: dict[str, tuple[Any, Any]]) -> dict[str, tuple[Any, Any]]:
    """The changed settings a restored state cannot take (they shape its arrays)."""
    return {k: v for k, v in changes.items() if _is_fixed(k)}


def apply_overrides(runner: Any, saved_yaml: str) -> dict[str, tuple[Any, Any]]:
    """Writes the changed learning rate / entropy coefficient into the restored state; returns every change.

    Raises:
        ConfigError: a changed setting that cannot apply to the restored state (named, with both values).
    """
    changes = changed_settings(saved_yaml, runner.cfg)
    fixed = refused_changes(changes)
    if fixed:
        listed = ", ".join(f"{k} ({old!r} -> {new!r})" for k, (old, new) in fixed.items())
        raise config_lib.ConfigError(f"cannot resume with changed {listed}: the checkpoint's state was built with "
                                     "the old values; start a new run (or use init from a checkpoint) instead")
    state = runner.state
    if "algorithm.learning_rate" in changes:
        lr = jnp.float32(changes["algorithm.learning_rate"][1])
        state = state.replace(opt_state=optim.set_learning_rate(state.opt_state, lr))
    if "algorithm.entropy_coef" in changes and "entropy" in state.extensions:
        coef = jnp.float32(changes["algorithm.entropy_coef"][1])
        entropy = state.extensions["entropy"].replace(coef=coef)
        state = state.replace(extensions={**state.extensions, "entropy": entropy})
    runner.state = place_state(state, runner.trainer.mesh)
    return changes
