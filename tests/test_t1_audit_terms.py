"""Hand-derived values of the velocity-task terms checked against AGILE / Isaac Lab (see docs/t1_audit.md)."""

from __future__ import annotations

import jax.numpy as jnp
import mujoco
import numpy as np
import pytest

from envs.mdp import actuators, contacts, rewards
from envs.mdp import locomotion as loco
from envs.mdp import math as mmath
from envs.mdp.observations import base_lin_vel

YAW_90 = np.asarray([np.cos(np.pi / 4), 0.0, 0.0, np.sin(np.pi / 4)], np.float32)  # +90 deg about z


def signals(**overrides) -> rewards.Signals:
    """Signals of a two-joint toy robot at rest (only the fields a test overrides matter)."""
    z3, q0 = jnp.zeros(3), jnp.asarray([1.0, 0.0, 0.0, 0.0])
    base = dict(
        command=z3, lin_vel_b=z3, ang_vel_b=z3, gravity_b=jnp.asarray([0.0, 0.0, -1.0]), root_pos=z3, root_quat=q0,
        root_acc=jnp.zeros(6), joint_pos=jnp.zeros(2), joint_vel=jnp.zeros(2), default_pos=jnp.zeros(2),
        soft_lower=-jnp.ones(2), soft_upper=jnp.ones(2), velocity_limit=jnp.full(2, 10.0),
        computed_torque=jnp.zeros(2), applied_torque=jnp.zeros(2), action=jnp.zeros(2), prev_action=jnp.zeros(2),
        prev_action_rate=jnp.zeros(2), feet_pos=jnp.zeros((2, 3)), feet_vel=jnp.zeros((2, 3)),
        feet_quat=jnp.asarray([[1.0, 0, 0, 0]] * 2), feet_contact=jnp.asarray([True, True]), yaw_body_quat=q0,
        orientation_quats=q0[None], undesired_contact=jnp.asarray([False]), terminated=jnp.asarray(False),
    )
    base.update(overrides)
    return rewards.Signals(**base)


def test_feet_distance_is_squared_deviation():
    # Feet 0.3 m apart laterally in the root frame, reference 0.2 m: AGILE returns (0.3 - 0.2)^2 = 0.01.
    feet = jnp.asarray([[0.0, 0.15, 0.0], [0.05, -0.15, 0.0]])
    assert float(rewards.feet_distance_from_ref(signals(feet_pos=feet), 0.2)) == pytest.approx(0.01, rel=1e-5)
    # Rotating the whole robot (root and feet) by 90 deg of yaw leaves the root-frame distance unchanged.
    feet_w = mmath.quat_rotate(jnp.asarray(YAW_90)[None], feet)
    s = signals(feet_pos=feet_w, root_quat=jnp.asarray(YAW_90))
    assert float(rewards.feet_distance_from_ref(s, 0.2)) == pytest.approx(0.01, rel=1e-5)


def test_base_lin_vel_is_root_com_velocity():
    # Root yawed by 90 deg, origin moving at +1 m/s along world y (= +x in the root frame), spinning at 2 rad/s
    # about its z axis, centre of mass 0.1 m ahead of the origin: v_com,b = (1, 0, 0) + (0, 0, 2) x (0.1, 0, 0)
    # = (1, 0.2, 0); in the world frame (-0.2, 1, 0).
    qpos = jnp.concatenate([jnp.zeros(3), jnp.asarray(YAW_90)])
    qvel = jnp.asarray([0.0, 1.0, 0.0, 0.0, 0.0, 2.0])
    com = jnp.asarray([0.1, 0.0, 0.0])
    np.testing.assert_allclose(base_lin_vel(qpos, qvel, com), [1.0, 0.2, 0.0], atol=1e-6)
    np.testing.assert_allclose(base_lin_vel(qpos, qvel), [1.0, 0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(loco.root_vel_w(qpos, qvel, com), [-0.2, 1.0, 0.0, 0.0, 0.0, 2.0], atol=1e-6)


def test_body_velocity_is_taken_at_the_centre_of_mass():
    # A free box whose centre of mass sits 0.1 m along its x axis; origin velocity (1, 0, 0), yaw rate 2 rad/s:
    # the centre of mass moves at (1, 0.2, 0) (Isaac Lab's body_lin_vel_w), the origin at (1, 0, 0).
    xml = """<mujoco><worldbody><body name="b"><freejoint/>
      <geom type="box" size=".1 .1 .1" pos=".1 0 0" mass="1"/></body></worldbody></mujoco>"""
    m = mujoco.MjModel.from_xml_string(xml)
    d = mujoco.MjData(m)
    d.qvel[:] = [1.0, 0.0, 0.0, 0.0, 0.0, 2.0]
    mujoco.mj_forward(m, d)
    bodies, roots = np.asarray([1]), np.asarray([1])
    np.testing.assert_allclose(contacts.body_lin_vel_w(d.xipos, d.subtree_com, d.cvel, bodies, roots)[0],
                               [1.0, 0.2, 0.0], atol=1e-6)
    np.testing.assert_allclose(contacts.body_lin_vel_w(d.xpos, d.subtree_com, d.cvel, bodies, roots)[0],
                               [1.0, 0.0, 0.0], atol=1e-6)


def test_isaac_lab_limit_terms():
    # joint_pos_limits: soft limits +-1; q = (1.3, -1.1) -> 0.3 + 0.1.
    s = signals(joint_pos=jnp.asarray([1.3, -1.1]))
    assert float(rewards.joint_pos_limits(s, np.arange(2))) == pytest.approx(0.4, rel=1e-5)
    # joint_vel_limits: limit 10, ratio 0.9 -> 9 rad/s soft; |qd| = (9.5, 12) -> 0.5 + min(3, 1) = 1.5.
    s = signals(joint_vel=jnp.asarray([9.5, -12.0]))
    assert float(rewards.joint_vel_limits(s, np.arange(2), 0.9)) == pytest.approx(1.5, rel=1e-5)
    # applied_torque_limits: |applied - computed| summed: |30 - 45| + |-15 - (-20)| = 20.
    s = signals(computed_torque=jnp.asarray([45.0, -20.0]), applied_torque=jnp.asarray([30.0, -15.0]))
    assert float(rewards.applied_torque_limits(s, np.arange(2))) == pytest.approx(20.0)


def test_dc_motor_clip_hand_numbers():
    # Saturation 130 Nm, effort limit 45 Nm, velocity limit 32 rad/s. At qd = 20 rad/s the positive bound is
    # 130 * (1 - 20/32) = 48.75 -> capped at 45; at qd = 30 it is 130 * (1 - 30/32) = 8.125; the negative bound
    # 130 * (-1 - 30/32) = -251.9 -> -45.
    p = actuators.MotorParams(*(jnp.asarray([v]) for v in (100.0, 2.5, 45.0, 32.0, 130.0)))
    clip = lambda tau, qd: float(actuators.dc_motor_clip(jnp.asarray([tau]), jnp.asarray([qd]), p)[0])  # noqa: E731
    assert clip(100.0, 20.0) == pytest.approx(45.0)
    assert clip(100.0, 30.0) == pytest.approx(8.125)
    assert clip(-100.0, 30.0) == pytest.approx(-45.0)
    # Beyond the velocity limit the motor cannot push further along the motion (bound 0), only brake.
    assert clip(10.0, 40.0) == pytest.approx(0.0)


def _t1_signals(robot, qvel: np.ndarray, previous_root_vel: np.ndarray):
    """``locomotion.signals`` of the T1 standing at its default pose, yawed by 90 deg, with root velocity ``qvel[:6]``
    after a control step that started at root velocity ``previous_root_vel`` (info's ``root_vel``)."""
    from mujoco import mjx

    m = robot.model
    d = mujoco.MjData(m)
    d.qpos[:] = m.qpos0
    d.qpos[2], d.qpos[3:7] = 0.7, YAW_90
    d.qvel[:6] = qvel
    mujoco.mj_forward(m, d)
    data = mjx.put_data(m, d)
    n = len(robot.action_idx)
    info = {"command": jnp.zeros(3), "root_vel": jnp.asarray(previous_root_vel, jnp.float32),
            "last_action": jnp.zeros(n), "prev_action_rate": jnp.zeros(n)}
    limits = (np.full(n, -1.0, np.float32), np.full(n, 1.0, np.float32))
    return loco.signals(robot, data, info, jnp.zeros(n), (jnp.zeros(n), jnp.zeros(n)), jnp.asarray(False), 0.02,
                        limits, np.asarray([robot.root_body], np.int32), 0.01)


def test_root_acc_is_the_finite_difference_of_two_states_and_its_reward_is_clamped():
    """The env's ``root_acc`` from two T1 states with known root velocities: (COM velocity now - ``root_vel`` of the
    previous step) / 0.02 s, linear part at the root's centre of mass, angular part in the world frame; and
    ``body_acc_l2`` clamped at 1e6 (AGILE's clamp) for a jump the control step cannot produce."""
    from envs.robots.t1 import t1_robot

    robot = t1_robot()
    com = np.asarray(robot.model.body_ipos[robot.root_body], np.float64)
    yaw = lambda v: np.asarray([-v[1], v[0], v[2]])  # noqa: E731  (+90 deg about z)
    # Now: origin at (0.3, -0.1, 0.05) m/s (world), spinning at 0.4 rad/s about the root's z axis (= world z).
    qvel = np.asarray([0.3, -0.1, 0.05, 0.0, 0.0, 0.4])
    before = np.asarray([0.1, 0.0, 0.0, 0.0, 0.0, 0.1])  # the previous step's COM and angular velocity (world)
    s = _t1_signals(robot, qvel, before)
    com_vel = qvel[:3] + yaw(np.cross(qvel[3:6], com))
    expected = (np.concatenate([com_vel, [0.0, 0.0, 0.4]]) - before) / 0.02
    np.testing.assert_allclose(np.asarray(s.root_acc), expected, rtol=1e-4, atol=1e-3)
    assert float(rewards.body_acc_l2(s)) == pytest.approx(float(np.sum(expected**2)), rel=1e-4)
    # A 50 m/s jump in one control step: (2500 m/s^2)^2 = 6.25e6, clamped at 1e6.
    jump = _t1_signals(robot, qvel, before - np.asarray([50.0, 0, 0, 0, 0, 0]))
    assert float(np.sum(np.square(np.asarray(jump.root_acc)))) > 6e6
    assert float(rewards.body_acc_l2(jump)) == pytest.approx(1.0e6)
