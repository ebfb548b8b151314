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


def policy_return(runner, seed: int = 7) -> float:
    """Mean return of the first episode of the runner's envs under the runner's deterministic policy (the same
    resets every call; recurrent policies carry their state and reset it at episode ends)."""
    import jax.numpy as jnp

    from agile_jax.networks.recurrent import reset_state

    env, net = runner.env, runner.networks
    num_envs = env.num_envs

    @jax.jit
    def run(params, normalizers, keys):
        def body(carry, _):
            state, hidden, total, alive = carry
            actions, hidden = net.actor_step(params, normalizers, state.obs, hidden)
            nxt, info = env.step(state, actions)
            return (nxt, reset_state(hidden, info.done), total + alive * info.reward, alive * (1.0 - info.done)), None

        init = (env.reset(keys), net.init_hidden(num_envs).actor, jnp.zeros(num_envs), jnp.ones(num_envs))
        return jnp.mean(jax.lax.scan(body, init, None, length=env.max_episode_length)[0][2])

    keys = jax.random.split(jax.random.key(seed), num_envs)
    return float(run(runner.state.params, runner.state.normalizers, keys))
