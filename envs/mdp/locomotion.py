"""AGILE's locomotion MDP pieces shared by the velocity tasks: observation groups, their mirror maps, and the
reward signals and termination terms read from an ``mjx.Data``.

* policy frame: base_ang_vel x0.2 (noise 0.2), projected_gravity (0.05), velocity_commands, joint_pos_rel of
  the action joints (0.01), joint_vel_rel x0.05 (1.5), last action;
* critic: velocity_commands, base_lin_vel, base_ang_vel, projected_gravity, joint_pos_rel and joint_vel_rel
  x0.1 of all joints, last action (no noise).

Heights (base height, foot and trunk contacts) are measured above the flat floor ``z = 0``, or above a terrain
when a :class:`Ground` of terrain heights is passed (see :func:`ground_heights`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
from mujoco import mjx

from agile_jax.types import Array
from envs import terrain as terrain_lib
from envs.mdp import contacts, symmetry
from envs.mdp import math as mmath
from envs.mdp import terminations as term_fns
from envs.mdp.observations import ObsTerm, base_ang_vel, base_lin_vel, projected_gravity
from envs.mdp.rewards import Signals
from envs.robots.robot import Robot


def policy_layout(num_actions: int) -> tuple[ObsTerm, ...]:
    """Per-frame policy terms (name, size, scale, noise)."""
    return (
        ObsTerm("base_ang_vel", 3, 0.2, 0.2), ObsTerm("projected_gravity", 3, 1.0, 0.05),
        ObsTerm("velocity_commands", 3), ObsTerm("joint_pos", num_actions, 1.0, 0.01),
        ObsTerm("joint_vel", num_actions, 0.05, 1.5), ObsTerm("actions", num_actions),
    )


def critic_layout(num_actions: int, num_joints: int) -> tuple[ObsTerm, ...]:
    """Critic terms (no noise)."""
    return (
        ObsTerm("velocity_commands", 3), ObsTerm("base_lin_vel", 3), ObsTerm("base_ang_vel", 3),
        ObsTerm("projected_gravity", 3), ObsTerm("joint_pos_all", num_joints),
        ObsTerm("joint_vel_all", num_joints, 0.1), ObsTerm("actions", num_actions),
    )


def term_values(robot: Robot, qpos: Array, qvel: Array, command: Array, last_action: Array,
                com_offset: Array | None = None) -> dict[str, Array]:
    """Raw values of every term, from the generalised state alone (no kinematics needed).

    ``com_offset``: the root body's centre of mass in its frame; ``base_lin_vel`` is then the velocity of that
    centre of mass (Isaac Lab's ``root_lin_vel_b``).
    """
    q = qpos[robot.qpos_adr] - jnp.asarray(robot.default_pos)
    qd = qvel[robot.dof_adr]
    return {
        "base_ang_vel": base_ang_vel(qvel), "projected_gravity": projected_gravity(qpos),
        "base_lin_vel": base_lin_vel(qpos, qvel, com_offset), "velocity_commands": command,
        "joint_pos": q[robot.action_idx], "joint_vel": qd[robot.action_idx], "joint_pos_all": q, "joint_vel_all": qd,
        "actions": last_action,
    }


def obs_mirrors(robot: Robot, extra: tuple[tuple[int, Callable[[Array], Array]], ...] = (),
                critic_extra: tuple[tuple[int, Callable[[Array], Array]], ...] = ()
                ) -> dict[str, Callable[[Array], Array]]:
    """Last-axis mirror functions of the ``policy`` frame and the ``critic`` group (AGILE's OBS_TO_MIRROR);
    ``extra``: ``(size, mirror)`` of terms appended to both layouts (e.g. the gait clock); ``critic_extra``: of
    terms appended after them to the critic's alone (the privileged term)."""
    na, nj = len(robot.action_idx), robot.num_joints
    act, full = robot.mirror_action, robot.mirror_all
    policy = symmetry.concat_mirror([
        (3, symmetry.BASE_ANG_VEL), (3, symmetry.PROJECTED_GRAVITY), (3, symmetry.VELOCITY_COMMANDS),
        (na, act), (na, act), (na, act), *extra,
    ])
    critic = symmetry.concat_mirror([
        (3, symmetry.VELOCITY_COMMANDS), (3, symmetry.BASE_LIN_VEL), (3, symmetry.BASE_ANG_VEL),
        (3, symmetry.PROJECTED_GRAVITY), (nj, full), (nj, full), (na, act), *extra, *critic_extra,
    ])
    return {"policy": policy, "critic": critic}


def root_vel_w(qpos: Array, qvel: Array, com_offset: Array | None = None) -> Array:
    """Root 6-D velocity in the world frame ``[6]`` (linear, angular).

    The linear part is the velocity of the root's centre of mass ``com_offset`` (in the root frame) when given
    (Isaac Lab's ``root_lin_vel_w``), else of the root frame origin.
    """
    lin = qvel[0:3]
    if com_offset is not None:
        lin = lin + mmath.quat_rotate(qpos[3:7], jnp.cross(qvel[3:6], com_offset))
    return jnp.concatenate([lin, mmath.quat_rotate(qpos[3:7], qvel[3:6])])


def root_com_offset(robot: Robot, info: dict) -> Array:
    """The root body's centre of mass in its frame ``[3]`` for the env's (possibly randomised) domain."""
    if "domain" in info:
        return info["domain"].body_ipos[robot.root_body]
    return jnp.asarray(robot.model.body_ipos[robot.root_body], jnp.float32)  # a state built without a domain


class Ground(NamedTuple):
    """Terrain heights under the points the MDP measures heights of.

    Attributes:
        base: mean terrain height around the root (AGILE's mean of height-scanner rays), scalar.
        feet: under each foot sphere centre ``[F, K]``.
        illegal_probes / undesired_probes: under each trunk probe centre ``[P]``.
        illegal_bodies: under the origins of the bodies gating the illegal-contact termination ``[B]``.
    """

    base: Array
    feet: Array
    illegal_probes: Array
    undesired_probes: Array
    illegal_bodies: Array


def ground_heights(robot: Robot, data: mjx.Data, terrain: terrain_lib.Terrain, scan: np.ndarray) -> Ground:
    """The :class:`Ground` of a state on ``terrain``; ``scan``: xy offsets ``[K, 2]`` of the base height scan."""
    def under(points: Array) -> Array:
        return terrain_lib.height_at(terrain, points[..., :2])

    def probes(ps) -> Array:
        return under(data.geom_xpos[np.asarray([p.geom_id for p in ps], np.int32)]) if ps else jnp.zeros((0,))

    return Ground(
        base=terrain_lib.mean_height_around(terrain, data.qpos[0:2], scan),
        feet=under(data.geom_xpos[robot.foot_geoms]),
        illegal_probes=probes(robot.illegal_contact_probes),
        undesired_probes=probes(robot.undesired_contact_probes),
        illegal_bodies=under(data.xpos[robot.illegal_contact_bodies]),
    )


def terminations(robot: Robot, data: mjx.Data, limit_angle: float, base_height: float, contact_min_height: float,
                 margin: float, ground: Ground | None = None) -> dict[str, Array]:
    """AGILE's termination terms (``time_out`` is left to the time limit of ``VecEnv``).

    Heights are above ``ground`` (terrain heights), or above the floor ``z = 0`` when it is ``None``.
    """
    g = ground
    touching = contacts.probes_touching(data.geom_xpos, data.geom_xmat, robot.illegal_contact_probes, margin,
                                        None if g is None else g.illegal_probes)
    body_z = data.xpos[robot.illegal_contact_bodies, 2]
    root_z = data.qpos[2]
    if g is not None:
        body_z, root_z = body_z - g.illegal_bodies, root_z - g.base
    return {
        "time_out": jnp.asarray(False),
        "base_orientation": term_fns.bad_orientation(data.qpos[3:7], limit_angle),
        "illegal_contacts": term_fns.illegal_ground_contact(touching, body_z, contact_min_height),
        "illegal_base_height": term_fns.illegal_base_height(root_z, base_height),
    }


def signals(robot: Robot, data: mjx.Data, info: dict, action: Array, torques: tuple[Array, Array],
            terminated: Array, ctrl_dt: float, soft_limits: tuple[np.ndarray, np.ndarray],
            orientation_bodies: np.ndarray, margin: float, ground: Ground | None = None) -> Signals:
    """Reward signals after a control step (``torques``: computed and applied torque of the last physics step).

    Contacts and the base height are measured above ``ground`` (``None``: the floor ``z = 0``).
    """
    qpos, qvel = data.qpos, data.qvel
    g = ground
    root_ids = np.asarray(robot.model.body_rootid[robot.feet_bodies], np.int32)
    com = root_com_offset(robot, info)
    return Signals(
        command=info["command"], lin_vel_b=base_lin_vel(qpos, qvel, com), ang_vel_b=base_ang_vel(qvel),
        gravity_b=projected_gravity(qpos), root_pos=qpos[0:3], root_quat=qpos[3:7],
        root_acc=(root_vel_w(qpos, qvel, com) - info["root_vel"]) / ctrl_dt,
        joint_pos=qpos[robot.qpos_adr], joint_vel=qvel[robot.dof_adr], default_pos=jnp.asarray(robot.default_pos),
        soft_lower=jnp.asarray(soft_limits[0]), soft_upper=jnp.asarray(soft_limits[1]),
        velocity_limit=jnp.asarray(robot.velocity_limit), computed_torque=torques[0], applied_torque=torques[1],
        action=action, prev_action=info["last_action"], prev_action_rate=info["prev_action_rate"],
        feet_pos=data.xpos[robot.feet_bodies],
        feet_vel=contacts.body_lin_vel_w(data.xipos, data.subtree_com, data.cvel, robot.feet_bodies, root_ids),
        feet_quat=data.xquat[robot.feet_bodies],
        feet_contact=contacts.foot_contact(data.geom_xpos, robot.foot_geoms, robot.foot_radius, margin,
                                           None if g is None else g.feet),
        yaw_body_quat=data.xquat[robot.yaw_body], orientation_quats=data.xquat[orientation_bodies],
        undesired_contact=contacts.probes_touching(data.geom_xpos, data.geom_xmat, robot.undesired_contact_probes,
                                                   margin, None if g is None else g.undesired_probes),
        terminated=terminated,
        terrain_height=0.0 if g is None else g.base,
        feet_height=contacts.sole_height(data.geom_xpos, robot.foot_geoms, robot.foot_radius,
                                         None if g is None else g.feet),
    )
