"""A pure-JAX 2-D point mass that must reach the origin and stay there.

No physics engine, so it compiles in about a second: the trainer's unit tests (determinism, exact
resume, data-parallel parity, NaN detection) use it. Policy observations are position and velocity;
the critic additionally sees the distance to the origin (a privileged group, to exercise
``obs_groups``).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from envs.core import EnvState, TerminationSpec


@dataclass
class PointMassConfig:
    """Point-mass task settings."""

    num_envs: int = 64
    episode_length: int = 100
    dt: float = 0.05
    action_scale: float = 2.0
    bound: float = 4.0  # leaving the box terminates the episode
    reset_range: float = 2.0


class PointMass:
    """Single-env point mass (see module docstring); batch it with ``envs.core.VecEnv``."""

    reward_names = ("distance", "effort")
    termination_names = ("out_of_bounds", "time_out")
    termination_specs = {"out_of_bounds": TerminationSpec("neutral"), "time_out": TerminationSpec("time_out")}
    action_size = 2
    # Named components of each observation group, in order (name, size): what ``target_components`` of a
    # state estimator refer to.
    policy_layout = (("pos", 2), ("vel", 2))
    critic_layout = (("pos", 2), ("vel", 2), ("distance", 1))

    def __init__(self, cfg: PointMassConfig | None = None):
        self.cfg = cfg or PointMassConfig()
        self.max_episode_length = self.cfg.episode_length
        self.observation_shapes = {"policy": (4,), "critic": (5,)}
        self.dt = self.cfg.dt

    def _obs(self, pos, vel):
        policy = jnp.concatenate([pos, vel])
        critic = jnp.concatenate([pos, vel, jnp.linalg.norm(pos, keepdims=True)])
        return {"policy": policy, "critic": critic}

    def reset(self, key) -> EnvState:
        """A random start inside ``reset_range`` with zero velocity."""
        key, sub = jax.random.split(key)
        pos = jax.random.uniform(sub, (2,), minval=-self.cfg.reset_range, maxval=self.cfg.reset_range)
        vel = jnp.zeros(2)
        zero = jnp.zeros((), jnp.float32)
        return EnvState(
            data={"pos": pos, "vel": vel}, obs=self._obs(pos, vel), reward=zero,
            terminated=jnp.zeros((), bool), time_out=jnp.zeros((), bool),
            reward_terms={name: zero for name in self.reward_names},
            termination_terms={"out_of_bounds": jnp.zeros((), bool), "time_out": jnp.zeros((), bool)},
            info={"rng": key},
        )

    # -- left-right symmetry: reflection x -> -x (an exact symmetry of these dynamics) ------------------
    @staticmethod
    def mirror_actions(actions):
        """Mirrors actions ``[..., 2]``: the x force changes sign."""
        return actions * jnp.array([-1.0, 1.0])

    @staticmethod
    def mirror_obs(obs: dict) -> dict:
        """Mirrors every observation group (``policy`` ``[..., 4]``, ``critic`` ``[..., 5]``)."""
        signs = {"policy": jnp.array([-1.0, 1.0, -1.0, 1.0]), "critic": jnp.array([-1.0, 1.0, -1.0, 1.0, 1.0])}
        return {name: x * signs[name] for name, x in obs.items()}

    def step(self, state: EnvState, action) -> EnvState:
        """Semi-implicit Euler with a clipped force; reward favours being close to the origin."""
        force = jnp.clip(action, -1.0, 1.0) * self.cfg.action_scale
        vel = 0.95 * state.data["vel"] + self.cfg.dt * force
        pos = state.data["pos"] + self.cfg.dt * vel
        terms = {
            "distance": jnp.exp(-jnp.sum(pos**2)),
            "effort": -0.01 * jnp.sum(jnp.clip(action, -1.0, 1.0) ** 2),
        }
        out = jnp.any(jnp.abs(pos) > self.cfg.bound)
        return state.replace(
            data={"pos": pos, "vel": vel}, obs=self._obs(pos, vel), reward=sum(terms.values()),
            terminated=out, time_out=jnp.zeros((), bool), reward_terms=terms,
            termination_terms={"out_of_bounds": out, "time_out": jnp.zeros((), bool)},
            info={"rng": jax.random.fold_in(state.info["rng"], 0)},
        )
