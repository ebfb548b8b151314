"""The real trainer learns the MJX cartpole: a return no random policy reaches."""

import jax
import numpy as np
import pytest

from agile_jax.training.runner import OnPolicyRunner
from experiments.configs import get_preset, make_env

THRESHOLD = 300.0  # per 500-step episode; max 500


def _random_policy_return(env, steps: int = 500) -> float:
    """Mean return of finished episodes under uniform random actions."""
    step = jax.jit(env.step)
    state = jax.jit(env.reset)(jax.random.split(jax.random.key(5), env.num_envs))
    returns = []
    for t in range(steps):
        actions = jax.random.uniform(jax.random.key(t), (env.num_envs, env.action_size), minval=-1, maxval=1)
        state, info = step(state, actions)
        done = np.asarray(info.done)
        returns.extend(np.asarray(info.episode_return)[done].tolist())
    return float(np.mean(returns))


@pytest.mark.slow  # default-suite time (tests/README.md); CI's slow step runs it
def test_cartpole_balance_learns_with_the_real_trainer(tmp_path):
    cfg = get_preset("cartpole_balance")
    cfg.env.num_envs = 128
    cfg.runner.progress_bar = False
    env = make_env(cfg)
    random_return = _random_policy_return(env)
    runner = OnPolicyRunner(env, cfg, log_dir=str(tmp_path))
    runner.learn(cfg.runner.max_iterations)
    runner.close()
    assert random_return < 100.0, random_return
    assert runner.episodes.mean_return > THRESHOLD, (runner.episodes.mean_return, random_return)
    # the run left TensorBoard scalars under RSL-RL tag names and checkpoints behind
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: PLC0415

    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"Loss/value", "Loss/surrogate", "Loss/entropy", "Loss/learning_rate", "Policy/mean_std",
            "Perf/total_fps", "Train/mean_reward", "Train/mean_episode_length",
            "Episode_Reward/upright", "Episode_Termination/pole_fell"} <= tags
    assert (tmp_path / "checkpoints").is_dir()
