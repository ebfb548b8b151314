"""AGILE's ``DelayedDCMotor``: explicit PD with a DC-motor torque-speed clip and a per-env command delay.

Per physics step (Isaac Lab ``DCMotor`` + ``DelayBuffer``):

1. the joint position target enters a delay line; the target used is the one from ``delay`` physics steps ago
   (right after a reset the line is back-filled with the first target);
2. ``tau = kp * (q* - q) + kd * (0 - qd)`` (velocity targets are zero);
3. ``tau`` is clipped to ``[max(-e, s(-1 - qd / v)) .. min(e, s(1 - qd / v))]`` with the 0 bound kept on the
   far side, where ``s`` is the saturation effort, ``e`` the effort limit and ``v`` the velocity limit.

Integration: with ``implicit_damping`` (the task default) the damping part is integrated implicitly for
stability at 5 ms with light links and randomised armature: the joints carry MuJoCo damping ``kd`` (Euler
damping on) and the motor command is ``clip(tau) + kd * qd``, so the net torque is ``clip(tau) - kd * dqd``
with ``dqd`` the velocity change over the physics step, i.e. the clipped PD torque up to that implicit term.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from agile_jax.types import Array, PRNGKey


class MotorParams(NamedTuple):
    """Per-joint motor constants ``[J]`` (``kp``/``kd`` may be domain-randomised per env)."""

    kp: Array
    kd: Array
    effort_limit: Array
    velocity_limit: Array
    saturation: Array


def pd_torque(target: Array, q: Array, qd: Array, kp: Array, kd: Array) -> Array:
    """Explicit PD torque toward ``target`` with zero velocity target, all ``[J]``."""
    return kp * (target - q) - kd * qd


def dc_motor_clip(tau: Array, qd: Array, p: MotorParams) -> Array:
    """Isaac Lab's DC-motor clip of the computed torque ``tau`` ``[J]`` at joint speed ``qd`` ``[J]``."""
    upper = jnp.clip(p.saturation * (1.0 - qd / p.velocity_limit), 0.0, p.effort_limit)
    lower = jnp.clip(p.saturation * (-1.0 - qd / p.velocity_limit), -p.effort_limit, 0.0)
    return jnp.clip(tau, lower, upper)


def fill_delay_line(target: Array, max_delay: int) -> Array:
    """A delay line ``[max_delay + 1, J]`` holding ``target`` in every slot (the post-reset back-fill)."""
    return jnp.broadcast_to(target, (max_delay + 1,) + target.shape)


def push_delay_line(line: Array, target: Array) -> Array:
    """Shifts the delay line ``[D + 1, J]`` by one physics step; slot 0 is the newest target."""
    return jnp.concatenate([target[None], line[:-1]], axis=0)


def delayed_target(line: Array, delay: Array) -> Array:
    """The target each joint sees: ``line[delay[j], j]`` for per-joint delays ``delay`` ``[J]``."""
    return jnp.take_along_axis(line, delay[None, :], axis=0)[0]


def sample_delays(key: PRNGKey, delay_group: np.ndarray, group_max_delay: tuple[int, ...], min_delay: int = 0) -> Array:
    """One delay per actuator group, uniform in ``[min_delay, max_delay]`` physics steps, broadcast to ``[J]``."""
    highs = jnp.asarray(group_max_delay, jnp.int32) + 1
    per_group = jax.random.randint(key, (len(group_max_delay),), min_delay, highs)
    return per_group[jnp.asarray(delay_group)]


def motor_substep(line: Array, target: Array, delay: Array, q: Array, qd: Array, p: MotorParams) -> tuple:
    """One physics step of the delayed DC motor.

    Args:
        line: delay line ``[D + 1, J]`` before this step.
        target: newest position target ``[J]``.
        delay: per-joint delay in physics steps ``[J]``.
        q: joint positions ``[J]``. qd: joint velocities ``[J]``.
        p: motor constants.

    Returns:
        ``(line, computed, applied)``: updated delay line, PD torque before and after the clip ``[J]``.
    """
    line = push_delay_line(line, target)
    computed = pd_torque(delayed_target(line, delay), q, qd, p.kp, p.kd)
    return line, computed, dc_motor_clip(computed, qd, p)
