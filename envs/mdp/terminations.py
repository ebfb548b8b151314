"""Termination terms of the velocity tasks (AGILE / Isaac Lab definitions); heights are above the ground."""

from __future__ import annotations

import jax.numpy as jnp

from agile_jax.types import Array
from envs.mdp import math as mmath


def bad_orientation(body_quat: Array, limit_angle: float) -> Array:
    """The body's tilt (angle between its z axis and the world z axis) exceeds ``limit_angle`` (rad)."""
    g = mmath.projected_gravity(body_quat)
    return jnp.arccos(jnp.clip(-g[2], -1.0, 1.0)) > limit_angle


def illegal_base_height(root_z: Array, height_threshold: float) -> Array:
    """The root is lower than ``height_threshold`` above the terrain (``root_z``: height above the ground)."""
    return root_z < height_threshold


def illegal_ground_contact(probe_contact: Array, body_heights: Array, min_height: float) -> Array:
    """A trunk probe touches the floor while the lowest trunk body is below ``min_height``.

    Args:
        probe_contact: ``[P]`` floor-contact flags of the trunk probes (stand-in for force > threshold).
        body_heights: ``[B]`` heights of the gating bodies' origins above the ground.
        min_height: height gate (m).
    """
    return jnp.any(probe_contact) & (jnp.min(body_heights) < min_height)
