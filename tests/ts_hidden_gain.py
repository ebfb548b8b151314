"""A point mass whose actuation sign is hidden and drawn per episode: the small task of the teacher-student tests.

The force is ``gain * clip(action) * action_scale`` with ``gain`` drawn from {-1, +1} at every reset. The policy
observes the last three frames of (position, velocity, last applied action); the critic (privileged) group holds
position, velocity, distance and the gain itself. Acting well needs the gain: a teacher reads it from the
privileged latent, a student must recover it from the history (``v_t - 0.95 v_{t-1} = dt gain a_{t-1} scale``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from envs.core import EnvState
from envs.tasks.point_mass import PointMass, PointMassConfig

FRAMES = 3


class HiddenGainPointMass(PointMass):
    """:class:`PointMass` with a per-episode actuation sign that only the critic group shows."""

    def __init__(self, cfg: PointMassConfig | None = None):
        super().__init__(cfg)
        self.observation_shapes = {"policy": (FRAMES, 6), "critic": (6,)}

    @staticmethod
    def _gain_obs(history, pos, vel, gain):
        critic = jnp.concatenate([pos, vel, jnp.linalg.norm(pos, keepdims=True), gain[None]])
        return {"policy": history, "critic": critic}

    def reset(self, key) -> EnvState:
        """A point-mass reset with a fresh gain; the history repeats the first frame."""
        state = super().reset(key)
        gain = jnp.where(jax.random.bernoulli(jax.random.fold_in(key, 1)), 1.0, -1.0)
        pos, vel = state.data["pos"], state.data["vel"]
        history = jnp.tile(jnp.concatenate([pos, vel, jnp.zeros(2)])[None], (FRAMES, 1))
        return state.replace(data={"pos": pos, "vel": vel, "gain": gain, "history": history},
                             obs=self._gain_obs(history, pos, vel, gain))

    def step(self, state: EnvState, action) -> EnvState:
        """The point mass's semi-implicit Euler step with the hidden gain on the clipped force."""
        data, applied = state.data, jnp.clip(action, -1.0, 1.0)
        vel = 0.95 * data["vel"] + self.cfg.dt * data["gain"] * applied * self.cfg.action_scale
        pos = data["pos"] + self.cfg.dt * vel
        frame = jnp.concatenate([pos, vel, applied])
        history = jnp.concatenate([data["history"][1:], frame[None]], axis=0)
        terms = {"distance": jnp.exp(-jnp.sum(pos**2)), "effort": -0.01 * jnp.sum(applied**2)}
        out = jnp.any(jnp.abs(pos) > self.cfg.bound)
        return state.replace(
            data={**data, "pos": pos, "vel": vel, "history": history},
            obs=self._gain_obs(history, pos, vel, data["gain"]), reward=sum(terms.values()), terminated=out,
            time_out=jnp.zeros((), bool), reward_terms=terms,
            termination_terms={"out_of_bounds": out, "time_out": jnp.zeros((), bool)},
            info={"rng": jax.random.fold_in(state.info["rng"], 0)},
        )
