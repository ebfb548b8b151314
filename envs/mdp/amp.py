"""The AMP observation of the humanoid velocity tasks: one frame of the robot's motion, as reference motions hold it.

Frame layout (``amp_layout``; the component names of :mod:`agile_jax.motion.loader`, so that expert frames read
from a motion file line up with the simulated ones):

* ``joint_pos`` (A): positions of the policy's joints (rad, absolute, in the robot's action order);
* ``joint_vel`` (A): their velocities (rad/s);
* ``base_height`` (1): root height above the ground (the terrain under the root on rough ground);
* ``projected_gravity`` (3): gravity direction in the root frame;
* ``base_lin_vel`` (3) and ``base_ang_vel`` (3): root velocities in the root frame.

No noise and no scaling: the discriminator normalises its inputs itself. The env keeps ``H`` frames ``[H, D]``
(oldest first, back-filled after a reset), so the discriminator sees transitions, not poses.
"""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp

from agile_jax.types import Array
from envs.mdp import symmetry
from envs.mdp.observations import base_ang_vel, base_lin_vel, projected_gravity
from envs.robots.robot import Robot


def amp_layout(num_actions: int) -> tuple[tuple[str, int], ...]:
    """``(component, size)`` entries of one AMP frame."""
    return (("joint_pos", num_actions), ("joint_vel", num_actions), ("base_height", 1), ("projected_gravity", 3),
            ("base_lin_vel", 3), ("base_ang_vel", 3))


def amp_frame(robot: Robot, qpos: Array, qvel: Array, ground_height: Array | float = 0.0) -> Array:
    """One AMP frame ``[2 A + 10]`` of the generalised state (``ground_height``: terrain height under the root)."""
    q, qd = qpos[robot.qpos_adr][robot.action_idx], qvel[robot.dof_adr][robot.action_idx]
    height = jnp.reshape(qpos[2] - ground_height, (1,))
    return jnp.concatenate([q, qd, height, projected_gravity(qpos), base_lin_vel(qpos, qvel), base_ang_vel(qvel)])


def amp_mirror(robot: Robot) -> Callable[[Array], Array]:
    """Left-right mirror of AMP frames ``[..., D]`` (joints by the action mirror, vectors by AGILE's rules)."""
    na = len(robot.action_idx)
    return symmetry.concat_mirror([(na, robot.mirror_action), (na, robot.mirror_action), (1, lambda x: x),
                                   (3, symmetry.PROJECTED_GRAVITY), (3, symmetry.BASE_LIN_VEL),
                                   (3, symmetry.BASE_ANG_VEL)])
