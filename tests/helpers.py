"""Small builders shared by the trainer tests."""

from __future__ import annotations

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
