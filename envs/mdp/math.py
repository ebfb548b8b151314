"""Rotation helpers in MuJoCo's ``(w, x, y, z)`` quaternion convention, matching Isaac Lab's formulas."""

from __future__ import annotations

import jax.numpy as jnp

from agile_jax.types import Array


def quat_mul(a: Array, b: Array) -> Array:
    """Hamilton product ``a * b`` of quaternions ``[..., 4]``."""
    w1, x1, y1, z1 = jnp.moveaxis(a, -1, 0)
    w2, x2, y2, z2 = jnp.moveaxis(b, -1, 0)
    return jnp.stack(
        [
            w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
            w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
            w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
            w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
        ],
        axis=-1,
    )


def quat_conj(q: Array) -> Array:
    """Conjugate (inverse of a unit quaternion) ``[..., 4]``."""
    return q * jnp.asarray([1.0, -1.0, -1.0, -1.0], q.dtype)


def quat_rotate(q: Array, v: Array) -> Array:
    """Rotates vectors ``v`` ``[..., 3]`` by unit quaternions ``q`` ``[..., 4]`` (body -> world)."""
    w, xyz = q[..., :1], q[..., 1:]
    t = 2.0 * jnp.cross(xyz, v)
    return v + w * t + jnp.cross(xyz, t)


def quat_rotate_inverse(q: Array, v: Array) -> Array:
    """Rotates world vectors ``v`` ``[..., 3]`` into the frame of ``q`` ``[..., 4]`` (world -> body)."""
    return quat_rotate(quat_conj(q), v)


def quat_from_euler_xyz(roll: Array, pitch: Array, yaw: Array) -> Array:
    """Quaternion ``[..., 4]`` of extrinsic x-y-z Euler angles (Isaac Lab's ``quat_from_euler_xyz``)."""
    cr, sr = jnp.cos(roll * 0.5), jnp.sin(roll * 0.5)
    cp, sp = jnp.cos(pitch * 0.5), jnp.sin(pitch * 0.5)
    cy, sy = jnp.cos(yaw * 0.5), jnp.sin(yaw * 0.5)
    return jnp.stack(
        [
            cy * cr * cp + sy * sr * sp,
            cy * sr * cp - sy * cr * sp,
            cy * cr * sp + sy * sr * cp,
            sy * cr * cp - cy * sr * sp,
        ],
        axis=-1,
    )


def wrap_to_pi(angle: Array) -> Array:
    """Wraps angles to ``[-pi, pi)``."""
    return (angle + jnp.pi) % (2.0 * jnp.pi) - jnp.pi


def euler_xyz_from_quat(q: Array) -> tuple[Array, Array, Array]:
    """Roll, pitch, yaw ``[...]`` of quaternions ``[..., 4]``, each wrapped to ``[-pi, pi)``."""
    w, x, y, z = jnp.moveaxis(q, -1, 0)
    roll = jnp.arctan2(2.0 * (w * x + y * z), 1.0 - 2.0 * (x * x + y * y))
    pitch = jnp.arcsin(jnp.clip(2.0 * (w * y - z * x), -1.0, 1.0))
    yaw = jnp.arctan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))
    return wrap_to_pi(roll), wrap_to_pi(pitch), wrap_to_pi(yaw)


def projected_gravity(q: Array) -> Array:
    """Unit gravity direction ``[0, 0, -1]`` expressed in the frame of ``q`` ``[..., 4]`` -> ``[..., 3]``."""
    g = jnp.broadcast_to(jnp.asarray([0.0, 0.0, -1.0], q.dtype), q.shape[:-1] + (3,))
    return quat_rotate_inverse(q, g)
