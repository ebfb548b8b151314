"""A gait clock: the phase of a periodic stepping pattern, its observation and the swing height it asks for.

The left foot's phase is ``phi = wrap(2 pi f t)`` (``t``: time since the episode started), the right foot's
``phi + pi``. The policy observes ``(sin phi, cos phi)``; a left-right mirror shifts the phase by ``pi``, i.e.
negates both. Each foot's target height above the ground follows MuJoCo Playground's swing profile: a cubic
Bezier rise from 0 to ``swing_height`` over the first half of its cycle and back to 0 over the second, with the
two feet half a cycle apart (``x = (phi + pi) / 2 pi`` in ``[0, 1)``).
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

from agile_jax.types import Array


class GaitClockConfig(NamedTuple):
    """Stepping frequency (Hz), the swing height (m) the phase reward asks of each foot's sole, and
    ``stand_below``: the clock observation is zero while the command's norm ``|(vx, vy, wz)|`` is at most this
    (Booster Gym stops its clock at a zero command, so the policy can tell "stand" from "step"); 0: never."""

    frequency: float = 1.5
    swing_height: float = 0.08
    stand_below: float = 0.0


def phase(time: Array, frequency: float) -> Array:
    """Left-foot phase in ``[-pi, pi)`` at ``time`` (s)."""
    return jnp.mod(2.0 * jnp.pi * frequency * time + jnp.pi, 2.0 * jnp.pi) - jnp.pi


def clock_observation(time: Array, frequency: float) -> Array:
    """``[sin phi, cos phi]`` of the left-foot phase."""
    phi = phase(time, frequency)
    return jnp.stack([jnp.sin(phi), jnp.cos(phi)], axis=-1)


def commanded_to_move(command: Array, threshold: float) -> Array:
    """Whether ``|(vx, vy, wz)| > threshold``, per command ``[..., 3] -> [..., 1]`` (the stepping terms' gate)."""
    return jnp.linalg.norm(command, axis=-1, keepdims=True) > threshold


def gated_clock_observation(time: Array, command: Array, clock: GaitClockConfig) -> Array:
    """:func:`clock_observation`, zero while ``|command| <= clock.stand_below`` (when ``stand_below > 0``)."""
    obs = clock_observation(time, clock.frequency)
    if clock.stand_below <= 0.0:
        return obs
    return obs * commanded_to_move(command, clock.stand_below)


def mirror_clock(x: Array) -> Array:
    """Left-right mirror of a clock observation ``[..., 2]``: the other foot's phase, ``phi + pi``."""
    return -x


def _bezier(start: Array, end: Array, x: Array) -> Array:
    return start + (end - start) * (x**3 + 3.0 * x**2 * (1.0 - x))


def cycle_fractions(left_phase: Array) -> Array:
    """Where each foot (left, right) is in its own cycle, ``x`` in ``[0, 1)`` ``[2]``: 0 and 1 at touchdown, 0.5
    at the top of the swing profile; the right foot is half a cycle after the left."""
    phases = jnp.stack([left_phase, left_phase + jnp.pi])
    return jnp.mod(phases + jnp.pi, 2.0 * jnp.pi) / (2.0 * jnp.pi)


def swing_targets(left_phase: Array, swing_height: float) -> Array:
    """Target sole heights ``[2]`` (left, right) for the left-foot phase ``left_phase``."""
    x = cycle_fractions(left_phase)
    rise = _bezier(0.0, swing_height, 2.0 * x)
    fall = _bezier(swing_height, 0.0, 2.0 * x - 1.0)
    return jnp.where(x <= 0.5, rise, fall)

