"""Domain randomisation and event terms as pure functions.

Per-env physics parameters live in :class:`DomainParams`, a small pytree carried in the env state
(``info["domain"]``). ``apply_domain`` swaps them into the shared ``mjx.Model``; under ``jax.vmap`` over env
states this is exactly a per-env batched model (``in_axes=0`` on the randomised fields, ``None`` elsewhere),
as MuJoCo Playground builds it, without ever mutating the env object.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from mujoco import mjx

from agile_jax.types import Array, PRNGKey
from envs.mdp import math as mmath
from envs.robots.robot import Robot

Range = tuple[float, float]


@dataclasses.dataclass(frozen=True)
class DomainConfig:
    """AGILE's ``LocomotionEventCfg`` ranges (startup terms, intervals in s, reset ranges)."""

    randomize: bool = True
    foot_friction: Range = (0.2, 1.0)
    kp_scale: Range = (0.9, 1.1)
    kd_scale: Range = (0.8, 2.0)
    joint_friction: Range = (0.0, 0.005)
    armature_scale: Range = (0.0, 2.0)
    mass_scale: Range = (0.95, 1.05)
    root_mass_add: Range = (-1.0, 3.0)
    com_offset: float = 0.01
    root_com: tuple[Range, Range, Range] = ((-0.15, 0.15), (-0.05, 0.05), (-0.15, 0.15))
    push: bool = True
    push_interval: Range = (2.0, 5.0)
    push_lin_vel: float = 0.5
    push_ang_vel: float = 0.25
    wrench: bool = True
    wrench_interval: Range = (0.0, 10.0)
    root_force: float = 10.0
    root_torque: float = 5.0
    extremity_force: float = 5.0
    extremity_torque: float = 0.5
    reset_xy: float = 2.5
    reset_yaw: float = 3.14
    reset_roll_pitch: float = float(np.radians(10.0))
    reset_lin_vel: float = 0.25
    reset_ang_vel: float = 0.5
    reset_joint_scale: Range = (0.8, 1.2)


@struct.dataclass
class DomainParams:
    """Per-env model fields (MuJoCo names) and PD gain scales ``[J]``.

    ``body_invweight0`` / ``dof_invweight0`` (constraint softness scales MuJoCo derives from the masses at
    compile time) are carried unchanged by the randomisation, as in MuJoCo Playground; they are here so that a
    caller can supply a self-consistent variant of the model (e.g. an exactly mirror-symmetric one).
    """

    geom_friction: Array
    body_mass: Array
    body_inertia: Array
    body_ipos: Array
    body_iquat: Array
    dof_armature: Array
    dof_frictionloss: Array
    body_invweight0: Array
    dof_invweight0: Array
    kp_scale: Array
    kd_scale: Array


def nominal_domain(robot: Robot) -> DomainParams:
    """The un-randomised parameters of ``robot.model``."""
    m = robot.model
    ones = jnp.ones(robot.num_joints, jnp.float32)
    return DomainParams(
        geom_friction=jnp.asarray(m.geom_friction, jnp.float32),
        body_mass=jnp.asarray(m.body_mass, jnp.float32),
        body_inertia=jnp.asarray(m.body_inertia, jnp.float32),
        body_ipos=jnp.asarray(m.body_ipos, jnp.float32),
        body_iquat=jnp.asarray(m.body_iquat, jnp.float32),
        dof_armature=jnp.asarray(m.dof_armature, jnp.float32),
        dof_frictionloss=jnp.asarray(m.dof_frictionloss, jnp.float32),
        body_invweight0=jnp.asarray(m.body_invweight0, jnp.float32),
        dof_invweight0=jnp.asarray(m.dof_invweight0, jnp.float32),
        kp_scale=ones,
        kd_scale=ones,
    )


def _uniform(key: PRNGKey, shape: tuple[int, ...], rng: Range) -> Array:
    return jax.random.uniform(key, shape, jnp.float32, rng[0], rng[1])


def sample_domain(key: PRNGKey, robot: Robot, cfg: DomainConfig) -> DomainParams:
    """AGILE's startup randomisation of one env (friction, gains, joint friction, armature, masses, CoMs)."""
    p = nominal_domain(robot)
    ks = jax.random.split(key, 9)
    nb, nj = robot.model.nbody, robot.num_joints
    # Foot friction: one sliding coefficient per foot, shared by that foot's spheres.
    mu = _uniform(ks[0], (2,), cfg.foot_friction)
    friction = p.geom_friction.at[robot.foot_geoms, 0].set(jnp.broadcast_to(mu[:, None], robot.foot_geoms.shape))
    # Masses: every robot body scaled, the root shifted; inertia follows the mass ratio.
    scale = jnp.ones(nb).at[1:].set(_uniform(ks[1], (nb - 1,), cfg.mass_scale))
    mass = p.body_mass * scale
    mass = mass.at[robot.root_body].add(_uniform(ks[2], (), cfg.root_mass_add))
    inertia = p.body_inertia * (mass / jnp.maximum(p.body_mass, 1e-9))[:, None]
    # Centres of mass: every body jittered, the root by its own wider range.
    ipos = p.body_ipos.at[1:].add(_uniform(ks[3], (nb - 1, 3), (-cfg.com_offset, cfg.com_offset)))
    lo, hi = np.asarray(cfg.root_com, np.float32).T
    ipos = ipos.at[robot.root_body].add(jax.random.uniform(ks[4], (3,), jnp.float32, lo, hi))
    # Joint armature (scaled) and friction (absolute), per joint.
    armature = p.dof_armature.at[robot.dof_adr].multiply(_uniform(ks[5], (nj,), cfg.armature_scale))
    frictionloss = p.dof_frictionloss.at[robot.dof_adr].set(_uniform(ks[6], (nj,), cfg.joint_friction))
    return p.replace(
        geom_friction=friction, body_mass=mass, body_inertia=inertia, body_ipos=ipos, dof_armature=armature,
        dof_frictionloss=frictionloss, kp_scale=_uniform(ks[7], (nj,), cfg.kp_scale),
        kd_scale=_uniform(ks[8], (nj,), cfg.kd_scale),
    )


def apply_domain(model: mjx.Model, p: DomainParams, dof_damping: Array | None = None) -> mjx.Model:
    """``model`` with the env's randomised fields (and optional per-dof damping ``[nv]``) swapped in."""
    fields = {
        "geom_friction": p.geom_friction, "body_mass": p.body_mass, "body_inertia": p.body_inertia,
        "body_ipos": p.body_ipos, "body_iquat": p.body_iquat, "dof_armature": p.dof_armature,
        "dof_frictionloss": p.dof_frictionloss, "body_invweight0": p.body_invweight0,
        "dof_invweight0": p.dof_invweight0,
    }
    if dof_damping is not None:
        fields["dof_damping"] = dof_damping
    return model.replace(**fields)


def sample_root_state(key: PRNGKey, height: float, cfg: DomainConfig) -> tuple[Array, Array]:
    """Isaac Lab's ``reset_root_state_uniform``: free-joint ``qpos`` ``[7]`` and ``qvel`` ``[6]``."""
    k_xy, k_rpy, k_lin, k_ang = jax.random.split(key, 4)
    xy = _uniform(k_xy, (2,), (-cfg.reset_xy, cfg.reset_xy))
    rp = _uniform(k_rpy, (3,), (-1.0, 1.0)) * jnp.asarray([cfg.reset_roll_pitch, cfg.reset_roll_pitch, cfg.reset_yaw])
    quat = mmath.quat_from_euler_xyz(rp[0], rp[1], rp[2])
    lin_w = jnp.concatenate([_uniform(k_lin, (2,), (-cfg.reset_lin_vel, cfg.reset_lin_vel)), jnp.zeros(1)])
    ang_w = _uniform(k_ang, (3,), (-cfg.reset_ang_vel, cfg.reset_ang_vel))
    qpos = jnp.concatenate([xy, jnp.full((1,), height, jnp.float32), quat])
    qvel = jnp.concatenate([lin_w, mmath.quat_rotate_inverse(quat, ang_w)])
    return qpos, qvel


def sample_joint_pos(key: PRNGKey, default: Array, lower: Array, upper: Array, scale: Range) -> Array:
    """Isaac Lab's ``reset_joints_by_scale``: default pose times ``U(scale)``, clamped to the soft limits ``[J]``.

    Joint velocities are the default ones (zero) times a random scale, i.e. zero.
    """
    q = default * _uniform(key, default.shape, scale)
    return jnp.clip(q, lower, upper)


def push_velocity(key: PRNGKey, qvel: Array, quat: Array, lin: float, ang: float) -> Array:
    """Isaac Lab's ``push_by_setting_velocity``: adds ``U(+-lin)`` to v_xy and ``U(+-ang)`` to the world rates."""
    k_lin, k_ang = jax.random.split(key)
    dv = jnp.concatenate([_uniform(k_lin, (2,), (-lin, lin)), jnp.zeros(1)])
    dw = mmath.quat_rotate_inverse(quat, _uniform(k_ang, (3,), (-ang, ang)))
    return qvel.at[0:3].add(dv).at[3:6].add(dw)


def sample_wrenches(key: PRNGKey, num_extremities: int, cfg: DomainConfig) -> Array:
    """Body-frame wrenches ``[1 + E, 6]`` (force, torque): the root first, then the extremities."""
    limits = [[cfg.root_force] * 3 + [cfg.root_torque] * 3]
    limits += [[cfg.extremity_force] * 3 + [cfg.extremity_torque] * 3] * num_extremities
    limits = jnp.asarray(limits, jnp.float32)
    return jax.random.uniform(key, limits.shape, jnp.float32, -1.0, 1.0) * limits


def wrench_to_xfrc(wrench_b: Array, bodies: np.ndarray, xquat: Array, nbody: int) -> Array:
    """World-frame ``xfrc_applied`` ``[nbody, 6]`` of body-frame wrenches ``[B, 6]`` on ``bodies``."""
    q = xquat[bodies]
    force = mmath.quat_rotate(q, wrench_b[:, :3])
    torque = mmath.quat_rotate(q, wrench_b[:, 3:])
    return jnp.zeros((nbody, 6), jnp.float32).at[bodies].set(jnp.concatenate([force, torque], axis=-1))


def interval_timer(key: PRNGKey, time_left: Array, dt: float, interval: Range) -> tuple[Array, Array]:
    """Advances an interval-event timer; returns ``(fire, new_time_left)``."""
    time_left = time_left - dt
    fire = time_left <= 0.0
    return fire, jnp.where(fire, _uniform(key, (), interval), time_left)
