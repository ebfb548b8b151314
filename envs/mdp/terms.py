"""Name -> term tables: reward terms with weights and curricula, resolved against a robot's joint names."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np

from agile_jax.types import Array
from envs.mdp import rewards
from envs.robots.robot import select_joints


@dataclasses.dataclass(frozen=True)
class RewardTerm:
    """One reward term: a function of :mod:`envs.mdp.rewards`, its weight and keyword parameters.

    A ``joints`` parameter holds joint-name regexes; it is resolved to indices into the robot's joint order.
    """

    func: str
    weight: float
    params: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class WeightRamp:
    """Isaac Lab's ``update_reward_weight_step``: weight ramps linearly to ``terminal_weight`` (control steps)."""

    start_step: int
    num_steps: int
    terminal_weight: float


@dataclasses.dataclass(frozen=True)
class ParamStep:
    """Isaac Lab's ``modify_term_cfg`` curriculum: from the global control step ``start_step`` on, a reward term is
    computed with ``params`` merged over its own (e.g. a narrower tracking width)."""

    start_step: int
    params: Mapping[str, Any]


def is_live(name: str, term: RewardTerm, ramps: Mapping[str, WeightRamp]) -> bool:
    """Whether a term is computed: a non-zero weight, or a ramp that takes its zero weight to a non-zero one (a
    term switched on late in a run)."""
    ramp = ramps.get(name)
    return term.weight != 0.0 or (ramp is not None and ramp.terminal_weight != 0.0)


def resolve_rewards(
    table: Mapping[str, RewardTerm], joint_names: tuple[str, ...], ramps: Mapping[str, WeightRamp] | None = None
) -> dict[str, Callable[[rewards.Signals], Array]]:
    """Binds each term's parameters; terms that are not :func:`is_live` under ``ramps`` are dropped.

    Raises:
        ValueError: unknown reward function or a ``joints`` pattern that matches nothing.
    """
    out = {}
    for name, term in table.items():
        if not is_live(name, term, ramps or {}):
            continue
        fn = getattr(rewards, term.func, None)
        if fn is None:
            raise ValueError(f"reward '{name}': unknown function '{term.func}'")
        params = dict(term.params)
        if "joints" in params:
            picked = select_joints(joint_names, params["joints"])
            if not picked:
                raise ValueError(f"reward '{name}': joints {params['joints']} match nothing")
            params["joints"] = np.asarray([joint_names.index(j) for j in picked], np.int32)
        out[name] = functools.partial(fn, **params)
    return out


def resolve_param_steps(
    table: Mapping[str, RewardTerm], steps: Mapping[str, ParamStep], joint_names: tuple[str, ...],
    ramps: Mapping[str, WeightRamp] | None = None,
) -> dict[str, tuple[int, Callable[[rewards.Signals], Array]]]:
    """``name -> (start_step, the term bound to its stepped parameters)`` for the live terms of ``steps``."""
    stepped = {name: dataclasses.replace(table[name], params={**table[name].params, **step.params})
               for name, step in steps.items()}
    return {name: (steps[name].start_step, fn) for name, fn in resolve_rewards(stepped, joint_names, ramps).items()}


def stepped_rewards(
    fns: Mapping[str, Callable[[rewards.Signals], Array]],
    steps: Mapping[str, tuple[int, Callable[[rewards.Signals], Array]]], common_step: Array,
) -> dict[str, Callable[[rewards.Signals], Array]]:
    """The reward functions at the global control step ``common_step``: each stepped term switches to its stepped
    parameters once ``common_step >= start_step``."""
    out = dict(fns)
    for name, (start_step, after) in steps.items():
        out[name] = functools.partial(_switch, fns[name], after, common_step >= start_step)
    return out


def _switch(before: Callable, after: Callable, stepped: Array, sig: rewards.Signals) -> Array:
    return jnp.where(stepped, after(sig), before(sig))


def reward_weights(
    table: Mapping[str, RewardTerm], ramps: Mapping[str, WeightRamp], common_step: Array
) -> dict[str, Array]:
    """Weight of every live term (:func:`is_live`) at the global control step ``common_step`` (curricula applied)."""
    out = {}
    for name, term in table.items():
        if not is_live(name, term, ramps):
            continue
        ramp = ramps.get(name)
        if ramp is None:
            out[name] = jnp.asarray(term.weight, jnp.float32)
        else:
            out[name] = rewards.linear_ramp(
                common_step.astype(jnp.float32), ramp.start_step, ramp.num_steps, term.weight, ramp.terminal_weight
            )
    return out


def weighted_rewards(
    fns: Mapping[str, Callable[[rewards.Signals], Array]], weights: Mapping[str, Array], sig: rewards.Signals,
    dt: float,
) -> dict[str, Array]:
    """``weight * term * dt`` per term, NaN/inf replaced by 0 (Isaac Lab's ``RewardManager``)."""
    out = {}
    for name, fn in fns.items():
        value = jnp.nan_to_num(fn(sig).astype(jnp.float32), nan=0.0, posinf=0.0, neginf=0.0)
        out[name] = weights[name] * value * dt
    return out
