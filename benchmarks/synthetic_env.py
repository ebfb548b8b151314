"""Zero-cost synthetic task for benchmarking the PPO iteration (the JAX side of ``rslrl_bench``).

It mirrors ``shared/tools/rslrl_bench/synthetic_env.py``: observation groups ``policy`` (96) and
``critic`` (120), 23 actions, observations/rewards/dones read from a pre-generated pool, 0.5 % of the
steps end an episode and 40 % of those ends are timeouts. Actions are ignored.

Each env reads pool row ``(offset + step_count) % pool_size``, where ``offset`` is drawn at reset, so
the per-step cost is a row gather. It is a single-environment task following ``envs/core.py``'s
contract; batch it with :class:`envs.core.VecEnv` (which adds auto-reset and episode statistics).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from envs.core import EnvState, TerminationSpec


@dataclass
class SyntheticConfig:
    """Synthetic task settings (defaults: the reference benchmark's)."""

    obs_dims: dict[str, int] = field(default_factory=lambda: {"policy": 96, "critic": 120})
    num_actions: int = 23
    pool_size: int = 2048
    done_prob: float = 0.005
    timeout_prob: float = 0.002  # subset of done_prob: 40 % of the episode ends are timeouts
    # Episodes end only through the pool's dones (the reference env never enforces its time limit either).
    max_episode_length: int = 1_000_000_000
    seed: int = 0


class SyntheticTask:
    """Single-env task that replays a fixed pool of observations, rewards and dones."""

    reward_names = ("synthetic",)
    termination_names = ("terminated", "time_out")
    termination_specs = {"terminated": TerminationSpec("neutral"), "time_out": TerminationSpec("time_out")}

    def __init__(self, cfg: SyntheticConfig | None = None):
        self.cfg = cfg or SyntheticConfig()
        c = self.cfg
        self.action_size = c.num_actions
        self.max_episode_length = c.max_episode_length
        self.observation_shapes = {k: (d,) for k, d in c.obs_dims.items()}
        rng = np.random.default_rng(c.seed)
        self._obs = {k: jnp.asarray(rng.standard_normal((c.pool_size, d), np.float32)) for k, d in c.obs_dims.items()}
        self._reward = jnp.asarray(rng.standard_normal(c.pool_size, np.float32))
        done = rng.random(c.pool_size) < c.done_prob
        self._done = jnp.asarray(done)
        self._time_out = jnp.asarray(done & (rng.random(c.pool_size) < c.timeout_prob / c.done_prob))

    def _state(self, row: jax.Array, offset: jax.Array, rng: jax.Array, done: jax.Array,
               time_out: jax.Array, reward: jax.Array) -> EnvState:
        terminated = jnp.logical_and(done, jnp.logical_not(time_out))
        return EnvState(
            data={"offset": offset}, obs={k: v[row] for k, v in self._obs.items()}, reward=reward,
            terminated=terminated, time_out=time_out, reward_terms={"synthetic": reward},
            termination_terms={"terminated": terminated, "time_out": time_out}, info={"rng": rng},
        )

    def reset(self, key: jax.Array) -> EnvState:
        """Starts at a random pool row."""
        key, sub = jax.random.split(key)
        offset = jax.random.randint(sub, (), 0, self.cfg.pool_size)
        false = jnp.zeros((), bool)
        return self._state(offset, offset, key, false, false, jnp.zeros((), jnp.float32))

    def step(self, state: EnvState, action: jax.Array) -> EnvState:
        """Reads the next pool row; ``action`` is ignored."""
        del action
        offset = state.data["offset"]
        row = (offset + state.step_count + 1) % self.cfg.pool_size
        nxt = self._state(row, offset, jax.random.fold_in(state.info["rng"], 0), self._done[row],
                          self._time_out[row], self._reward[row])
        return nxt.replace(step_count=state.step_count, episode_return=state.episode_return,
                           episode_sums=state.episode_sums)
