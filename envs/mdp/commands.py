"""AGILE's ``UniformNullVelocityCommand`` as pure functions over ``(command, is_standing, time_left)``.

A resample draws ``(vx, vy, wz)`` uniformly, marks the env "standing" with probability ``rel_standing_envs``
(standing envs get a zero command), zeroes commands whose norm is below ``min_vel_norm`` and draws the time
to the next resample uniformly. There is no heading control.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from agile_jax.types import Array, PRNGKey


@dataclasses.dataclass(frozen=True)
class CommandConfig:
    """Velocity command ranges (m/s, rad/s) and resampling (s)."""

    lin_vel_x: tuple[float, float] = (-0.5, 0.5)
    lin_vel_y: tuple[float, float] = (-0.5, 0.5)
    ang_vel_z: tuple[float, float] = (-1.0, 1.0)
    rel_standing_envs: float = 0.25
    min_vel_norm: float = 0.1
    resampling_time_range: tuple[float, float] = (8.0, 12.0)


class CommandState(NamedTuple):
    """Command of one env: ``command`` ``[3]`` (vx, vy, wz in the base frame) and seconds to the next resample."""

    command: Array
    time_left: Array


def sample_command(key: PRNGKey, cfg: CommandConfig) -> CommandState:
    """Draws a fresh command and resampling time."""
    k_vel, k_stand, k_time = jax.random.split(key, 3)
    lo = jnp.asarray([cfg.lin_vel_x[0], cfg.lin_vel_y[0], cfg.ang_vel_z[0]], jnp.float32)
    hi = jnp.asarray([cfg.lin_vel_x[1], cfg.lin_vel_y[1], cfg.ang_vel_z[1]], jnp.float32)
    cmd = jax.random.uniform(k_vel, (3,), jnp.float32, lo, hi)
    standing = jax.random.uniform(k_stand) <= cfg.rel_standing_envs
    too_small = jnp.linalg.norm(cmd) < cfg.min_vel_norm
    cmd = jnp.where(standing | too_small, 0.0, cmd)
    time_left = jax.random.uniform(k_time, (), jnp.float32, *cfg.resampling_time_range)
    return CommandState(cmd, time_left)


def expires(time_left: Array, dt: float) -> Array:
    """Whether a command with ``time_left`` seconds is resampled by the next :func:`update_command` of ``dt``."""
    return time_left - dt <= 0.0


def update_command(key: PRNGKey, state: CommandState, dt: float, cfg: CommandConfig) -> CommandState:
    """Advances the resampling timer by ``dt`` and resamples when it runs out (Isaac Lab ``CommandManager``)."""
    time_left = state.time_left - dt
    fresh = sample_command(key, cfg)
    expired = expires(state.time_left, dt)
    return CommandState(
        jnp.where(expired, fresh.command, state.command), jnp.where(expired, fresh.time_left, time_left)
    )
