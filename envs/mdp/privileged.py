"""Privileged critic observations: what the randomisation and the disturbances drew for this env.

An asymmetric actor-critic (legged_gym's ``privileged_obs``): the critic, never deployed, also reads the per-env
model parameters that :func:`envs.mdp.events.sample_domain` drew and the external wrench on the root, so its
value estimate need not guess them from the state history. The policy's observations are unchanged, so the
exported policy reads what AGILE's does.

The term ``privileged [14]``, each entry zero at the nominal model and without a wrench:

* foot friction, left and right (the sliding coefficient drawn per foot) minus 1;
* the root's added mass (kg);
* the root's centre-of-mass offset from the nominal one (m, root frame, 3);
* the mean PD gain scales minus 1 (kp, kd);
* the wrench on the root in the root frame: force / ``root_force``, torque / ``root_torque`` (3 + 3).
"""

from __future__ import annotations

import jax.numpy as jnp

from agile_jax.types import Array
from envs.mdp import events
from envs.robots.robot import Robot

SIZE = 14
# Last-axis sign flips of the left-right mirror (x-z plane): the feet swap (below), masses and gain scales stay,
# the CoM's y flips, a force's y flips, a torque's x and z flip (an axial vector).
_SIGNS = jnp.asarray([1.0, 1.0, 1.0, 1.0, -1.0, 1.0, 1.0, 1.0, 1.0, -1.0, 1.0, -1.0, 1.0, -1.0], jnp.float32)


def values(robot: Robot, domain: events.DomainParams, root_wrench: Array, cfg: events.DomainConfig) -> Array:
    """The ``privileged [14]`` term of one env (see the module docstring); ``root_wrench``: body-frame ``[6]``."""
    model = robot.model
    friction = domain.geom_friction[robot.foot_geoms[:, 0], 0] - 1.0
    root = robot.root_body
    mass = domain.body_mass[root] - jnp.float32(model.body_mass[root])
    com = domain.body_ipos[root] - jnp.asarray(model.body_ipos[root], jnp.float32)
    gains = jnp.stack([jnp.mean(domain.kp_scale), jnp.mean(domain.kd_scale)]) - 1.0
    force = root_wrench[:3] / max(cfg.root_force, 1e-6)
    torque = root_wrench[3:] / max(cfg.root_torque, 1e-6)
    return jnp.concatenate([friction, mass[None], com, gains, force, torque]).astype(jnp.float32)


def mirror(x: Array) -> Array:
    """Left-right mirror of ``privileged [..., 14]``: the feet's frictions swap, the signs of :data:`_SIGNS`."""
    swapped = jnp.concatenate([x[..., 1:2], x[..., 0:1], x[..., 2:]], axis=-1)
    return swapped * _SIGNS
