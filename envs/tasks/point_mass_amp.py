"""The point mass with adversarial-motion-prior observations, and circling reference motions for it.

The task (reward, dynamics, terminations) is :class:`envs.tasks.point_mass.PointMass`'s: reach the origin and
stay there. :class:`PointMassAMP` adds

* ``amp`` ``[H, 4]``: position and velocity of the last ``H`` steps (oldest first; back-filled at a reset), laid
  out as AMP ``joint_pos`` / ``joint_vel`` of two "joints" ``x`` and ``y``;
* ``ref_motion`` ``[H, 4]``: the same frames of a reference circle (radius ``circle_radius``, counter-clockwise at
  ``circle_speed``) started at a random phase each episode, the time-aligned reference frame of st_rl's mimic term.

:func:`circle_clip` writes such circles as a motion file, so the reference motions prefer a style (circling the
origin) that the task reward does not (standing still at the origin).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from envs.core import EnvState
from envs.tasks.point_mass import PointMass, PointMassConfig


@dataclass
class PointMassAMPConfig(PointMassConfig):
    """Point mass settings plus the AMP history length and the reference circle."""

    amp_history_length: int = 2
    circle_radius: float = 1.0
    circle_speed: float = 1.0


def circle_frames(times, radius: float, speed: float, phase=0.0):
    """Positions and velocities ``[..., 4]`` on a counter-clockwise circle at ``times`` (s)."""
    omega = speed / radius
    angle = omega * times + phase
    c, s = jnp.cos(angle), jnp.sin(angle)
    return jnp.stack([radius * c, radius * s, -speed * s, speed * c], axis=-1)


def circle_clip(dt: float = 0.05, radius: float = 1.0, speed: float = 1.0) -> dict[str, np.ndarray]:
    """One period of the reference circle as a looping motion clip (fields of :mod:`agile_jax.motion.loader`)."""
    count = int(round(2.0 * math.pi * radius / speed / dt))
    dt_exact = 2.0 * math.pi * radius / speed / count  # a whole number of frames per period
    frames = np.asarray(circle_frames(np.arange(count) * dt_exact, radius, speed), np.float64)
    return {"dt": np.float64(dt_exact), "joint_names": np.array(["x", "y"]), "joint_pos": frames[:, :2],
            "joint_vel": frames[:, 2:], "loop": np.bool_(True)}


class PointMassAMP(PointMass):
    """:class:`PointMass` with ``amp`` and ``ref_motion`` observation groups (see the module docstring)."""

    amp_layout = (("joint_pos", 2), ("joint_vel", 2))
    amp_joint_names = ("x", "y")

    def __init__(self, cfg: PointMassAMPConfig | None = None):
        super().__init__(cfg or PointMassAMPConfig())
        h = self.cfg.amp_history_length
        self.observation_shapes = {**self.observation_shapes, "amp": (h, 4), "ref_motion": (h, 4)}

    def _reference(self, time, phase):
        c = self.cfg
        return circle_frames(time, c.circle_radius, c.circle_speed, phase)

    def reset(self, key) -> EnvState:
        """The point mass's reset, with both histories back-filled with the first frame."""
        state = super().reset(key)
        phase = jax.random.uniform(jax.random.fold_in(key, 1), (), minval=0.0, maxval=2.0 * math.pi)
        h = self.cfg.amp_history_length
        amp = jnp.broadcast_to(jnp.concatenate([state.data["pos"], state.data["vel"]]), (h, 4))
        ref = jnp.broadcast_to(self._reference(jnp.zeros(()), phase), (h, 4))
        info = {**state.info, "amp": amp, "ref_motion": ref, "phase": phase, "time": jnp.zeros(())}
        return state.replace(obs={**state.obs, "amp": amp, "ref_motion": ref}, info=info)

    def step(self, state: EnvState, action) -> EnvState:
        """The point mass's step; the newest frame of each history is the state after the step."""
        new = super().step(state, action)
        time = state.info["time"] + self.dt
        frame = jnp.concatenate([new.data["pos"], new.data["vel"]])
        amp = jnp.concatenate([state.info["amp"][1:], frame[None]], axis=0)
        ref_frame = self._reference(time, state.info["phase"])
        ref = jnp.concatenate([state.info["ref_motion"][1:], ref_frame[None]], axis=0)
        info = {**new.info, "amp": amp, "ref_motion": ref, "phase": state.info["phase"], "time": time}
        return new.replace(obs={**new.obs, "amp": amp, "ref_motion": ref}, info=info)

    @staticmethod
    def mirror_obs(obs: dict) -> dict:
        """Mirrors every group (``x -> -x``); the AMP frames ``[..., H, 4]`` as the policy's."""
        signs = jnp.array([-1.0, 1.0, -1.0, 1.0])
        mirrored = PointMass.mirror_obs({k: v for k, v in obs.items() if k in ("policy", "critic")})
        return {**mirrored, **{k: v * signs for k, v in obs.items() if k in ("amp", "ref_motion")}}
