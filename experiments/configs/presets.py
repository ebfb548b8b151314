"""The preset table and the env factory behind ``config=<name>``."""

from __future__ import annotations

from agile_jax.config import AlgorithmConfig, ConfigError, PolicyConfig, RunnerConfig, TrainConfig
from envs.core import VecEnv
from envs.tasks.point_mass import PointMass, PointMassConfig


def point_mass() -> TrainConfig:
    """A 2-D point mass (pure JAX, compiles in seconds): smoke tests and tutorials."""
    return TrainConfig(
        env=PointMassConfig(num_envs=64),
        policy=PolicyConfig(actor_hidden_dims=[64, 64], critic_hidden_dims=[64, 64]),
        algorithm=AlgorithmConfig(num_mini_batches=2),
        runner=RunnerConfig(num_steps_per_env=16, max_iterations=100, save_interval=50, experiment_name="point_mass",
                            obs_groups={"actor": ["policy"], "critic": ["critic"]}),
    )


def cartpole_balance() -> TrainConfig:
    """MJX cartpole balance: the small real-physics task that learns in minutes on a CPU."""
    from envs.tasks.cartpole import CartpoleConfig

    return TrainConfig(
        env=CartpoleConfig(),
        policy=PolicyConfig(actor_hidden_dims=[64, 64], critic_hidden_dims=[64, 64], init_noise_std=0.5),
        algorithm=AlgorithmConfig(num_mini_batches=2, entropy_coef=0.0),
        runner=RunnerConfig(num_steps_per_env=32, max_iterations=60, save_interval=20,
                            experiment_name="cartpole_balance"),
    )


PRESETS = {"point_mass": point_mass, "cartpole_balance": cartpole_balance}


def make_env(cfg: TrainConfig) -> VecEnv:
    """Builds the single env of ``cfg.env`` and batches it over ``cfg.env.num_envs``."""
    env_cfg = cfg.env
    name = type(env_cfg).__name__
    if name == "PointMassConfig":
        single = PointMass(env_cfg)
    elif name == "CartpoleConfig":
        from envs.tasks.cartpole import CartpoleBalance

        single = CartpoleBalance(env_cfg)
    else:
        raise ConfigError(f"no environment is registered for env config {name}")
    return VecEnv(single, env_cfg.num_envs, init_at_random_ep_len=cfg.runner.init_at_random_ep_len)
