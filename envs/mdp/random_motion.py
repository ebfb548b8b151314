"""Random-target joint motion (AGILE's ``RandomPositionAction`` with a synchronised trapezoidal profile).

The arms and head of the velocity tasks are not policy-controlled: every ``U(sample_range)`` seconds they get
a new target drawn uniformly inside the joint limits and move there along a trapezoidal velocity profile
(acceleration ``U(acceleration_range)``, cruise speed ``U(max_velocity_range)``). Joints are synchronised: all
of them follow the normalised profile of the joint with the longest way to go, so they arrive together.
A new target starts from the current position at rest.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from agile_jax.types import Array, PRNGKey


@dataclasses.dataclass(frozen=True)
class RandomMotionConfig:
    """Timing (s) and profile ranges (rad/s^2, rad/s) of the random joint motion."""

    sample_range: tuple[float, float] = (0.1, 2.5)
    acceleration_range: tuple[float, float] = (1.0, 20.0)
    max_velocity_range: tuple[float, float] = (10.0, 20.0)


class RandomMotionState(NamedTuple):
    """Per-env profile state; joint arrays are ``[R]``, the rest scalars."""

    position: Array
    start: Array
    goal: Array
    elapsed: Array
    accel: Array
    vmax: Array
    time_since: Array
    time_to_resample: Array


def init_motion(key: PRNGKey, default: Array, cfg: RandomMotionConfig) -> RandomMotionState:
    """At rest on the default pose, with a random time to the first new target."""
    t = jax.random.uniform(key, (), jnp.float32, *cfg.sample_range)
    one = jnp.ones((), jnp.float32)
    zero = jnp.zeros((), jnp.float32)
    return RandomMotionState(default, default, default, zero, one, one, zero, t)


def trapezoid_fraction(t: Array, distance: Array, accel: Array, vmax: Array) -> Array:
    """Fraction of ``distance`` covered at time ``t`` by a rest-to-rest trapezoidal profile (scalar)."""
    t_acc = jnp.minimum(vmax / accel, jnp.sqrt(jnp.maximum(distance, 1e-9) / accel))
    v_peak = accel * t_acc
    total = 2.0 * t_acc + jnp.maximum(distance - accel * t_acc**2, 0.0) / jnp.maximum(v_peak, 1e-9)
    rising = 0.5 * accel * t**2
    cruise = 0.5 * accel * t_acc**2 + v_peak * (t - t_acc)
    falling = distance - 0.5 * accel * jnp.maximum(total - t, 0.0) ** 2
    s = jnp.where(t < t_acc, rising, jnp.where(t < total - t_acc, cruise, falling))
    return jnp.clip(s / jnp.maximum(distance, 1e-9), 0.0, 1.0)


def step_motion(
    key: PRNGKey, state: RandomMotionState, lower: Array, upper: Array, dt: float, cfg: RandomMotionConfig
) -> RandomMotionState:
    """Advances the motion by one control step ``dt``, drawing a new target when the timer expires."""
    k_goal, k_time, k_acc, k_vel = jax.random.split(key, 4)
    time_since = state.time_since + dt
    resample = time_since > state.time_to_resample
    new_goal = jax.random.uniform(k_goal, lower.shape, jnp.float32, lower, upper)
    new_time = jax.random.uniform(k_time, (), jnp.float32, *cfg.sample_range)
    state = RandomMotionState(
        position=state.position,
        start=jnp.where(resample, state.position, state.start),
        goal=jnp.where(resample, new_goal, state.goal),
        elapsed=jnp.where(resample, 0.0, state.elapsed),
        accel=jnp.where(resample, jax.random.uniform(k_acc, (), jnp.float32, *cfg.acceleration_range), state.accel),
        vmax=jnp.where(resample, jax.random.uniform(k_vel, (), jnp.float32, *cfg.max_velocity_range), state.vmax),
        time_since=jnp.where(resample, 0.0, time_since),
        time_to_resample=jnp.where(resample, new_time, state.time_to_resample),
    )
    elapsed = state.elapsed + dt
    delta = state.goal - state.start
    frac = trapezoid_fraction(elapsed, jnp.max(jnp.abs(delta)), state.accel, state.vmax)
    return state._replace(position=state.start + frac * delta, elapsed=elapsed)
