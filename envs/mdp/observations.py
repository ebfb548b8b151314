"""Observation terms of the velocity tasks, their layout tables and the policy history buffer.

Terms read only ``qpos``/``qvel`` (no kinematics pass needed). Isaac Lab's post-processing order is kept:
term -> additive uniform noise -> scale. The policy history is ``[H, D]`` oldest -> newest; after a reset every
frame holds the first observation (Isaac Lab's ``CircularBuffer`` back-fill).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from agile_jax.types import Array, PRNGKey
from envs.mdp import math as mmath


class ObsTerm(NamedTuple):
    """Layout entry of one observation term: name, size, scale and uniform noise half-width (0 = none)."""

    name: str
    size: int
    scale: float = 1.0
    noise: float = 0.0


def root_quat(qpos: Array) -> Array:
    """Free-joint orientation ``[4]``."""
    return qpos[3:7]


def base_lin_vel(qpos: Array, qvel: Array, com_offset: Array | None = None) -> Array:
    """Root linear velocity in the root frame ``[3]`` (MuJoCo's free-joint velocity is in the world frame).

    With ``com_offset`` (the root body's centre of mass in its own frame, MuJoCo ``body_ipos``) it is the
    velocity of that centre of mass, as Isaac Lab's ``root_lin_vel_b`` (``root_com_lin_vel_b``); without it, the
    velocity of the root frame origin.
    """
    v = mmath.quat_rotate_inverse(root_quat(qpos), qvel[0:3])
    return v if com_offset is None else v + jnp.cross(qvel[3:6], com_offset)


def base_ang_vel(qvel: Array) -> Array:
    """Root angular velocity in the root frame ``[3]`` (MuJoCo's free-joint angular velocity is local)."""
    return qvel[3:6]


def projected_gravity(qpos: Array) -> Array:
    """Gravity direction in the root frame ``[3]``."""
    return mmath.projected_gravity(root_quat(qpos))


def noisy(key: PRNGKey, x: Array, noise: float) -> Array:
    """Adds uniform noise in ``[-noise, noise]`` (identity when ``noise == 0``)."""
    if noise == 0.0:
        return x
    return x + jax.random.uniform(key, x.shape, x.dtype, -noise, noise)


def assemble(values: Mapping[str, Array], layout: Sequence[ObsTerm], key: PRNGKey | None) -> Array:
    """Concatenates terms in layout order, applying noise (when ``key`` is given) then scale -> ``[D]``."""
    keys = jax.random.split(key, len(layout)) if key is not None else [None] * len(layout)
    parts = []
    for k, term in zip(keys, layout):
        x = values[term.name]
        if k is not None:
            x = noisy(k, x, term.noise)
        parts.append(x * term.scale)
    return jnp.concatenate(parts, axis=-1)


def layout_size(layout: Sequence[ObsTerm]) -> int:
    """Total size of a layout."""
    return int(sum(t.size for t in layout))


def fill_history(frame: Array, length: int) -> Array:
    """History ``[H, D]`` with every frame equal to ``frame`` (post-reset back-fill)."""
    return jnp.broadcast_to(frame, (length,) + frame.shape)


def push_history(history: Array, frame: Array) -> Array:
    """Drops the oldest frame of ``[H, D]`` and appends ``frame`` as the newest (last) one."""
    return jnp.concatenate([history[1:], frame[None]], axis=0)


def term_major(history: Array, layout: Sequence[ObsTerm]) -> Array:
    """AGILE's export layout of a history ``[..., H, D]``: each term's H frames (oldest -> newest) in turn.

    Returns:
        ``[..., H * D]``.
    """
    bounds = np.cumsum([0] + [t.size for t in layout])
    parts = [history[..., bounds[i]:bounds[i + 1]] for i in range(len(layout))]
    return jnp.concatenate([p.reshape(p.shape[:-2] + (-1,)) for p in parts], axis=-1)
