"""Geometric contact and body-velocity signals (impl-agnostic: reads only ``mjx.Data`` fields).

MJX exposes no per-body contact force the way Isaac Lab's ``ContactSensor`` does, and keeping trunk or limb
colliders would add constraint rows to every physics step. The velocity tasks therefore use geometric proxies:
a foot is in contact when one of its floor spheres is within ``margin`` of the ground; a trunk body touches
the ground when the lowest point of its probe geom is within ``margin`` of it. The ground is the flat floor
``z = 0`` unless the caller passes the terrain height under each sphere / probe centre (``ground``).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np

from agile_jax.types import Array
from envs.robots.robot import ContactProbe


def foot_contact(geom_xpos: Array, foot_geoms: np.ndarray, radius: float, margin: float,
                 ground: Array | None = None) -> Array:
    """Per-foot contact flags ``[F]`` from the heights of its floor spheres ``foot_geoms`` ``[F, K]``.

    ``ground``: terrain height under each sphere centre ``[F, K]`` (``None``: the floor ``z = 0``).
    """
    bottom = geom_xpos[foot_geoms, 2] - radius
    if ground is not None:
        bottom = bottom - ground
    return jnp.any(bottom <= margin, axis=-1)


def sole_height(geom_xpos: Array, foot_geoms: np.ndarray, radius: float, ground: Array | None = None) -> Array:
    """Per-foot height of the lowest floor sphere's bottom above the ground ``[F]`` (0 when standing on it)."""
    bottom = geom_xpos[foot_geoms, 2] - radius
    if ground is not None:
        bottom = bottom - ground
    return jnp.min(bottom, axis=-1)


def probe_lowest_z(geom_xpos: Array, geom_xmat: Array, p: ContactProbe) -> Array:
    """Height of the lowest point of a box or sphere probe geom (scalar)."""
    center_z = geom_xpos[p.geom_id, 2]
    if p.kind == "sphere":
        return center_z - p.size[0]
    rot_z = geom_xmat[p.geom_id].reshape(3, 3)[2]
    return center_z - jnp.sum(jnp.abs(rot_z) * jnp.asarray(p.size))


def probes_touching(geom_xpos: Array, geom_xmat: Array, probes: Sequence[ContactProbe], margin: float,
                    ground: Array | None = None) -> Array:
    """Per-probe ground-contact flags ``[P]`` (``[0]`` without probes).

    ``ground``: terrain height under each probe centre ``[P]`` (``None``: the floor ``z = 0``).
    """
    if not probes:
        return jnp.zeros((0,), bool)
    lowest = jnp.stack([probe_lowest_z(geom_xpos, geom_xmat, p) for p in probes])
    if ground is not None:
        lowest = lowest - ground
    return lowest <= margin


def body_lin_vel_w(xpos: Array, subtree_com: Array, cvel: Array, bodies: np.ndarray, root_ids: np.ndarray) -> Array:
    """World linear velocity of body origins ``[B, 3]`` from MuJoCo's com-based ``cvel`` ``[nbody, 6]``.

    ``cvel`` is ``(angular, linear)`` at the subtree com of each body's tree root.
    """
    ang, lin = cvel[bodies, :3], cvel[bodies, 3:]
    offset = xpos[bodies] - subtree_com[root_ids]
    return lin + jnp.cross(ang, offset)
