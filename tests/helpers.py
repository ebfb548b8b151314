"""Small builders shared by the trainer tests."""

from __future__ import annotations

import jax
import numpy as np

from agile_jax.config import AlgorithmConfig, PolicyConfig, RunnerConfig, TrainConfig
from envs.core import VecEnv
from envs.tasks.point_mass import PointMass, PointMassConfig


def point_mass_config(num_envs: int = 16, steps: int = 8, **alg) -> TrainConfig:
    """A tiny point-mass run (compiles in a few seconds)."""
    return TrainConfig(
        env=PointMassConfig(num_envs=num_envs, episode_length=40),
        policy=PolicyConfig(actor_hidden_dims=[32, 32], critic_hidden_dims=[32, 32], actor_obs_normalization=True,
                            critic_obs_normalization=True),
        algorithm=AlgorithmConfig(num_learning_epochs=2, num_mini_batches=2, **alg),
        runner=RunnerConfig(num_steps_per_env=steps, save_interval=2, progress_bar=False, logger="tensorboard",
                            obs_groups={"actor": ["policy"], "critic": ["critic"]}),
    )


def point_mass_env(cfg: TrainConfig, single=None) -> VecEnv:
    return VecEnv(single or PointMass(cfg.env), cfg.env.num_envs)


def raw(x):
    """Array data of ``x`` (typed PRNG keys as their ``uint32`` words)."""
    return np.asarray(jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x)


def leaves_equal(a, b) -> bool:
    """Two pytrees hold bit-identical leaves."""
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(la) == len(lb) and all(np.array_equal(raw(x), raw(y)) for x, y in zip(la, lb))


def straight_and_resumed(cfg: TrainConfig, tmp_path, n: int = 2):
    """Runners after ``2n`` iterations in one go and after ``n`` + save + restore + ``n``."""
    from agile_jax.training.runner import OnPolicyRunner

    straight = OnPolicyRunner(point_mass_env(cfg), cfg)
    straight.learn(2 * n)
    first = OnPolicyRunner(point_mass_env(cfg), cfg, log_dir=str(tmp_path / "run1"))
    first.learn(n)
    first.close()
    second = OnPolicyRunner(point_mass_env(cfg), cfg, log_dir=str(tmp_path / "run2"))
    meta = second.load(str(tmp_path / "run1"))
    assert meta["iteration"] == n and second.current_learning_iteration == n
    second.learn(n)
    second.close()
    return straight, second
