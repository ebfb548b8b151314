"""TPPO end to end on the MJX cartpole: a student trained with TPPO from a trained, exported teacher balances far
longer than PPO from scratch after the same number of iterations (measured: 500 of 500 steps against 124); the
command line trains from the teacher file."""

from __future__ import annotations

import copy

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agile_jax.training.runner import OnPolicyRunner
from experiments.configs import get_preset, make_env

ITERATIONS = 10  # of the student and of PPO from scratch


def balanced_steps(env, policy, steps: int) -> float:
    """Mean number of steps an env runs before its first termination (at most ``steps``), deterministic policy."""
    step = jax.jit(lambda s: env.step(s, policy(s.obs)))
    state = jax.jit(env.reset)(jax.random.split(jax.random.key(3), env.num_envs))
    alive, survived = jnp.ones(env.num_envs, bool), jnp.zeros(env.num_envs)
    for _ in range(steps):
        state, info = step(state)
        alive = alive & ~info.terminated
        survived = survived + alive
    return float(jnp.mean(survived))


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """The cartpole preset trained with PPO (128 envs, 60 iterations) and exported to policy.onnx."""
    cfg = get_preset("cartpole_balance")
    cfg.env.num_envs, cfg.runner.progress_bar = 128, False
    log_dir = tmp_path_factory.mktemp("cartpole_teacher")
    runner = OnPolicyRunner(make_env(cfg), cfg, log_dir=str(log_dir))
    runner.learn(cfg.runner.max_iterations)
    runner.export(formats=("onnx",))
    runner.close()
    return cfg, str(log_dir / "exported" / "policy.onnx"), runner.get_inference_policy()


@pytest.mark.slow
def test_tppo_student_beats_ppo_from_scratch(teacher):
    cfg, path, teacher_policy = teacher
    horizon = make_env(cfg).max_episode_length
    # Both learn on 4 s episodes started at random lengths, so masks are redrawn (at episode ends) from the start.
    cfg = copy.deepcopy(cfg)
    cfg.env.episode_length_s, cfg.runner.init_at_random_ep_len = 4.0, True
    env = make_env(cfg)
    scratch = OnPolicyRunner(env, cfg)
    scratch.learn(ITERATIONS)
    student_cfg = copy.deepcopy(cfg)
    tc = student_cfg.algorithm.tppo_cfg
    # The teacher hands over linearly: every episode ending after iteration 6 goes to the student (st_rl's "linear").
    tc.teacher_policy, tc.teacher_act_prob, tc.update_times_scale = path, "linear", 6
    student = OnPolicyRunner(env, student_cfg)
    student.learn(ITERATIONS)
    env = make_env(get_preset("cartpole_balance"))  # judged on the preset's 10 s episodes
    results = {name: balanced_steps(env, policy, horizon) for name, policy in (
        ("teacher", teacher_policy), ("tppo", student.get_inference_policy()),
        ("ppo", scratch.get_inference_policy()))}
    print(results)
    assert results["teacher"] > 0.9 * horizon, results
    assert results["tppo"] > 0.8 * results["teacher"], results
    assert results["tppo"] > 2.0 * results["ppo"], results


@pytest.mark.slow
def test_train_command_runs_from_the_exported_teacher(teacher, tmp_path, capsys):
    from experiments import cli, train

    _, path, _ = teacher
    code = cli.run(train.main, ["config=cartpole_balance", f"algorithm.tppo_cfg.teacher_policy={path}",
                                "runner.max_iterations=2", "env.num_envs=64", f"runner.log_root={tmp_path}",
                                "runner.progress_bar=false"])
    out = capsys.readouterr().out
    assert code == 0 and "done: iteration 2" in out, out
    assert len(list(tmp_path.glob("cartpole_balance/*/exported/policy.onnx"))) == 1
    np.testing.assert_array_equal(sorted(p.name for p in tmp_path.glob("cartpole_balance/*/checkpoints/*")),
                                  ["2"])
