"""Reward terms of the velocity tasks (Isaac Lab / AGILE definitions), as functions of :class:`Signals`.

Each term returns an unweighted scalar; the task multiplies it by its weight and by the control ``dt``
(Isaac Lab's ``RewardManager``) and replaces NaN/inf by 0.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from agile_jax.types import Array
from envs.mdp import gait
from envs.mdp import math as mmath


class Signals(NamedTuple):
    """Per-env quantities after a control step, shared by rewards and terminations.

    Attributes:
        command: velocity command ``[3]``.
        lin_vel_b / ang_vel_b / gravity_b: root velocities and gravity in the root frame ``[3]``; the linear
            velocity is the root's centre-of-mass velocity (Isaac Lab's ``root_lin_vel_b``).
        root_pos / root_quat: root position ``[3]`` and orientation ``[4]``.
        root_acc: root 6-D acceleration (world centre-of-mass linear, world angular) by finite difference of the
            velocities one control step apart ``[6]``.
        joint_pos / joint_vel: ``[J]``; default_pos ``[J]``.
        soft_lower / soft_upper: soft position limits ``[J]``; velocity_limit ``[J]``.
        computed_torque / applied_torque: PD torque before / after the motor clip (last physics step) ``[J]``.
        action / prev_action / prev_action_rate: ``[A]``.
        feet_pos / feet_vel: world position of the feet frames and linear velocity of the feet centres of mass
            (Isaac Lab's ``body_pos_w`` / ``body_lin_vel_w``) ``[2, 3]``; feet_quat ``[2, 4]``.
        feet_contact: ``[2]`` bool.
        yaw_body_quat: orientation of the body the feet yaw is measured against ``[4]``.
        orientation_quats: bodies whose tilt the exp orientation term rewards ``[K, 4]``.
        undesired_contact: ``[P]`` bool.
        terminated: the step ended in a (non-timeout) termination, bool.
        terrain_height: ground height under the root (0 on flat ground).
        feet_air_time / feet_contact_time: time (s) since each foot left / touched the ground ``[2]``, counted
            after this step's contacts (Isaac Lab's ``ContactSensor.current_air_time`` / ``current_contact_time``);
            zero where the task keeps no gait timers.
        feet_height: height of each foot's sole (its lowest floor sphere) above the ground ``[2]``.
        gait_phase: the gait clock's left-foot phase (:mod:`envs.mdp.gait`; 0 without a clock).
    """

    command: Array
    lin_vel_b: Array
    ang_vel_b: Array
    gravity_b: Array
    root_pos: Array
    root_quat: Array
    root_acc: Array
    joint_pos: Array
    joint_vel: Array
    default_pos: Array
    soft_lower: Array
    soft_upper: Array
    velocity_limit: Array
    computed_torque: Array
    applied_torque: Array
    action: Array
    prev_action: Array
    prev_action_rate: Array
    feet_pos: Array
    feet_vel: Array
    feet_quat: Array
    feet_contact: Array
    yaw_body_quat: Array
    orientation_quats: Array
    undesired_contact: Array
    terminated: Array
    terrain_height: Array | float = 0.0
    feet_air_time: Array | float = 0.0
    feet_contact_time: Array | float = 0.0
    feet_height: Array | float = 0.0
    gait_phase: Array | float = 0.0


def is_terminated(s: Signals) -> Array:
    return s.terminated.astype(jnp.float32)


def track_lin_vel_xy_exp(s: Signals, std: float) -> Array:
    """``exp(-|cmd_xy - v_xy|^2 / std^2)`` with the root-frame velocity."""
    return jnp.exp(-jnp.sum(jnp.square(s.command[:2] - s.lin_vel_b[:2])) / std**2)


def track_ang_vel_z_exp(s: Signals, std: float) -> Array:
    """``exp(-(cmd_wz - w_z)^2 / std^2)`` with the root-frame yaw rate."""
    return jnp.exp(-jnp.square(s.command[2] - s.ang_vel_b[2]) / std**2)


def base_height_exp(s: Signals, target_height: float, std: float) -> Array:
    """``exp(-(z_root - terrain - target)^2 / std^2)`` with the root height above the ground under it."""
    return jnp.exp(-jnp.square(s.root_pos[2] - s.terrain_height - target_height) / std**2)


def flat_orientation_l2(s: Signals) -> Array:
    return jnp.sum(jnp.square(s.gravity_b[:2]))


def flat_body_orientation_exp(s: Signals, std: float) -> Array:
    """``exp(-sum_k |g_xy,k|^2 / std^2)`` over the orientation bodies."""
    g = mmath.projected_gravity(s.orientation_quats)
    return jnp.exp(-jnp.sum(jnp.square(g[:, :2])) / std**2)


def joint_torques_l2(s: Signals, joints: np.ndarray) -> Array:
    return jnp.sum(jnp.square(s.applied_torque[joints]))


def lin_vel_z_l2(s: Signals) -> Array:
    return jnp.square(s.lin_vel_b[2])


def ang_vel_xy_l2(s: Signals) -> Array:
    return jnp.sum(jnp.square(s.ang_vel_b[:2]))


def joint_vel_l2(s: Signals, joints: np.ndarray) -> Array:
    return jnp.sum(jnp.square(s.joint_vel[joints]))


def action_rate_l2(s: Signals) -> Array:
    return jnp.sum(jnp.square(s.action - s.prev_action))


def action_rate_rate_l2(s: Signals) -> Array:
    """``|(a_t - a_{t-1}) - (a_{t-1} - a_{t-2})|^2`` (the previous rate is zero after a reset)."""
    return jnp.sum(jnp.square((s.action - s.prev_action) - s.prev_action_rate))


def joint_pos_limits(s: Signals, joints: np.ndarray) -> Array:
    """Sum of violations of the soft position limits."""
    q = s.joint_pos[joints]
    below = -jnp.minimum(q - s.soft_lower[joints], 0.0)
    above = jnp.maximum(q - s.soft_upper[joints], 0.0)
    return jnp.sum(below + above)


def joint_vel_limits(s: Signals, joints: np.ndarray, soft_ratio: float) -> Array:
    """Sum over joints of ``clip(|qd| - soft_ratio * v_limit, 0, 1)``."""
    excess = jnp.abs(s.joint_vel[joints]) - soft_ratio * s.velocity_limit[joints]
    return jnp.sum(jnp.clip(excess, 0.0, 1.0))


def applied_torque_limits(s: Signals, joints: np.ndarray) -> Array:
    """Sum of ``|applied - computed|``: how much the motor model clipped the PD torque."""
    return jnp.sum(jnp.abs(s.applied_torque[joints] - s.computed_torque[joints]))


def undesired_contacts(s: Signals) -> Array:
    """Number of trunk probes touching the floor."""
    return jnp.sum(s.undesired_contact.astype(jnp.float32))


def feet_slip(s: Signals) -> Array:
    """Sum over feet in contact of the horizontal foot speed."""
    speed = jnp.linalg.norm(s.feet_vel[:, :2], axis=-1)
    return jnp.sum(speed * s.feet_contact)


def feet_roll_l2(s: Signals) -> Array:
    roll, _, _ = mmath.euler_xyz_from_quat(s.feet_quat)
    return jnp.sum(jnp.square(roll))


def feet_yaw_diff_l2(s: Signals) -> Array:
    """Squared wrapped yaw difference right minus left."""
    _, _, yaw = mmath.euler_xyz_from_quat(s.feet_quat)
    return jnp.square(mmath.wrap_to_pi(yaw[1] - yaw[0]))


def feet_yaw_mean_vs_base(s: Signals) -> Array:
    """Sum over feet of the squared yaw of the foot relative to the yaw body."""
    rel = mmath.quat_mul(mmath.quat_conj(s.yaw_body_quat)[None], s.feet_quat)
    _, _, yaw = mmath.euler_xyz_from_quat(rel)
    return jnp.sum(jnp.square(yaw))


def body_acc_l2(s: Signals) -> Array:
    """Squared root 6-D acceleration, clipped at 1e6."""
    return jnp.minimum(jnp.sum(jnp.square(s.root_acc)), 1.0e6)


def feet_distance_from_ref(s: Signals, ref_distance: float) -> Array:
    """``(|y_L - y_R| - ref)^2`` with the feet expressed in the root frame (AGILE squares the deviation)."""
    rel = mmath.quat_rotate_inverse(s.root_quat[None], s.feet_pos - s.root_pos[None])
    return jnp.square(jnp.abs(rel[0, 1] - rel[1, 1]) - ref_distance)


def jumping(s: Signals) -> Array:
    """1 when no foot touches the floor."""
    return jnp.all(~s.feet_contact).astype(jnp.float32)


def feet_air_time_positive_biped(s: Signals, threshold: float, min_command: float) -> Array:
    """Isaac Lab's ``feet_air_time_positive_biped``: in single stance, the shorter of the stance foot's contact
    time and the swing foot's air time, capped at ``threshold`` (s); 0 in double stance or flight, and 0 while
    the commanded velocity ``|(vx, vy, wz)|`` is at most ``min_command`` (so standing still is not asked to step;
    Isaac Lab gates on the planar speed only, which would leave turning in place without a stepping reward)."""
    in_contact = jnp.asarray(s.feet_contact)
    in_mode_time = jnp.where(in_contact, s.feet_contact_time, s.feet_air_time)
    single_stance = jnp.sum(in_contact.astype(jnp.int32)) == 1
    reward = jnp.minimum(jnp.where(single_stance, jnp.min(in_mode_time), 0.0), threshold)
    return reward * gait.commanded_to_move(s.command, min_command)[0]


def feet_phase(s: Signals, swing_height: float, min_command: float) -> Array:
    """MuJoCo Playground's ``feet_phase``: ``exp(-|h_feet - h_target(phase)|^2 / 0.01)`` with the gait clock's
    swing-height targets (:func:`envs.mdp.gait.swing_targets`), 0 while ``|(vx, vy, wz)|`` is at most
    ``min_command`` (standing is not asked to step)."""
    err = jnp.sum(jnp.square(s.feet_height - gait.swing_targets(s.gait_phase, swing_height)))
    return jnp.exp(-err / 0.01) * gait.commanded_to_move(s.command, min_command)[0]


def feet_swing(s: Signals, swing_period: float, min_command: float) -> Array:
    """Booster Gym's ``feet_swing``: per foot, 1 while the gait clock puts it in its swing window (the middle
    ``swing_period`` of its cycle, :func:`envs.mdp.gait.cycle_fractions`) and it is off the ground; summed over
    the feet, 0 while ``|(vx, vy, wz)|`` is at most ``min_command`` (Booster Gym stops the clock there)."""
    in_window = jnp.abs(gait.cycle_fractions(s.gait_phase) - 0.5) < 0.5 * swing_period
    lifted = in_window & ~jnp.asarray(s.feet_contact)
    return jnp.sum(lifted.astype(jnp.float32)) * gait.commanded_to_move(s.command, min_command)[0]


def stand_still(s: Signals, joints: np.ndarray, min_command: float) -> Array:
    """MuJoCo Playground's ``stand_still``: ``sum_j |q_j - q_default,j|`` over ``joints`` while the command
    ``|(vx, vy, wz)|`` is at most ``min_command``, 0 otherwise (a cost: give it a negative weight): at a standing
    command the legs are asked back to their default pose instead of stepping in place."""
    deviation = jnp.sum(jnp.abs(s.joint_pos[joints] - s.default_pos[joints]))
    return deviation * (1.0 - gait.commanded_to_move(s.command, min_command)[0].astype(jnp.float32))


def update_gait_timers(air_time: Array, contact_time: Array, contact: Array, dt: float) -> tuple[Array, Array]:
    """Advances the per-foot air / contact timers by one control step ``dt`` given this step's contacts ``[F]``:
    a foot in contact has its contact time grown and its air time zeroed, and the other way round."""
    return jnp.where(contact, 0.0, air_time + dt), jnp.where(contact, contact_time + dt, 0.0)


def linear_ramp(step: Array, start: float, num_steps: float, initial: float, final: float) -> Array:
    """Isaac Lab's ``update_reward_weight_step`` (linear): ``initial`` until ``start``, then linearly to ``final``."""
    frac = jnp.clip((step - start) / num_steps, 0.0, 1.0)
    return initial + frac * (final - initial)
