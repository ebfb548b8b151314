"""``experiments/baseline.py``: the untrained-policy reference line of a learning curve."""

import pytest

from experiments import baseline


def test_zero_actions_on_point_mass_only_time_out(tmp_path):
    out = tmp_path / "baseline.json"
    (zero,) = baseline.main(["config=point_mass", "num_envs=8", "--steps", "250", "--std", "0", "--out", str(out)])
    # 250 steps with a 100-step time limit: every env times out twice and never fails.
    assert zero["episodes_ended"] == 16 and zero["episodes_failed"] == 0
    assert zero["mean_length_of_ended"] == 100.0
    # episodes starting at steps 0 and 100 are seen whole; the third (from step 200) would end after the window
    assert zero["whole_episodes"] == 16 and zero["mean_episode_length"] == 100.0 and zero["time_limit"] == 100
    assert set(zero["reward_terms_per_step"]) and out.exists()
    assert zero["reward_per_step"] == pytest.approx(sum(zero["reward_terms_per_step"].values()), rel=1e-5)


def test_a_preset_is_required():
    with pytest.raises(SystemExit):
        baseline.main(["--steps", "5"])


def test_a_config_typo_exits_with_code_2_and_a_suggestion(capsys):
    with pytest.raises(SystemExit) as exit_info:
        baseline.main(["config=point_mass", "algorithm.learning_rat=1e-3"])
    assert exit_info.value.code == 2
    assert "did you mean 'algorithm.learning_rate'" in capsys.readouterr().err


def test_audit_regime_masks_by_hand():
    import numpy as np

    from experiments.baseline import steps_before_failure, steps_in_episode

    done = np.array([[0, 0], [1, 0], [0, 0], [0, 1]], bool)  # [T=4, N=2]
    np.testing.assert_array_equal(steps_in_episode(done), [[0, 0], [1, 1], [0, 2], [1, 3]])
    terminated = np.array([[0, 0], [1, 0], [0, 0], [0, 0]], bool)  # env 1's end at t=3 was a time-out
    np.testing.assert_array_equal(steps_before_failure(terminated, 2), [[1, 0], [1, 0], [0, 0], [0, 0]])


def test_whole_episodes_by_hand():
    import numpy as np

    from experiments.baseline import complete_episode_lengths

    # T=6, limit 3. Env 0: ends at t=0 (length 1), t=3 (3), t=5 (2). Env 1: times out at t=2 and t=5.
    done = np.array([[1, 0], [0, 0], [0, 1], [1, 0], [0, 0], [1, 1]], bool)
    length = np.array([[1, 1], [1, 2], [2, 3], [3, 1], [1, 2], [2, 3]])
    # starts allowed up to 6 - 3 = 3: env 0's episodes from 0, 1 and 4 -> the first two (the one from 4 is left
    # out although it ended: counting it would favour short episodes); env 1's from 0 and 3 -> both.
    np.testing.assert_array_equal(complete_episode_lengths(done, length, 3), [1, 3, 3, 3])
    assert complete_episode_lengths(done, length, 7).size == 0  # the window is shorter than the time limit


@pytest.mark.slow  # default-suite time (tests/README.md); CI's slow step runs it
def test_a_trained_policy_acts_in_the_rollout(tmp_path, capsys):
    """``--policy <run>`` drives the env with the run's deterministic actions: the reward per step equals a
    step-by-step rollout of ``runner.get_inference_policy()`` on the same env and reset keys."""
    import jax
    import numpy as np

    from agile_jax.training.runner import OnPolicyRunner
    from experiments.configs import make_env
    from experiments.train import build_config
    from tests.helpers import point_mass_config, point_mass_env

    cfg = point_mass_config(num_envs=8)
    runner = OnPolicyRunner(point_mass_env(cfg), cfg, log_dir=str(tmp_path / "run"))
    runner.learn(2)
    runner.close()
    steps, settings = 60, ["config=point_mass", "num_envs=8"]
    (policy,) = baseline.main([*settings, "--steps", str(steps), "--std", "0", "--policy", str(tmp_path / "run")])
    (zero,) = baseline.main([*settings, "--steps", str(steps), "--std", "0"])

    env_cfg = build_config(settings)
    env_cfg.runner.init_at_random_ep_len = False
    env, act = make_env(env_cfg), jax.jit(runner.get_inference_policy())
    state, rewards = env.reset(jax.random.split(jax.random.PRNGKey(0), 8)), []
    for _ in range(steps):
        state, info = env.step(state, act(state.obs))
        rewards.append(np.asarray(info.reward))
    assert policy["reward_per_step"] == pytest.approx(float(np.mean(rewards)), rel=1e-5, abs=1e-7)
    assert abs(policy["reward_per_step"] - zero["reward_per_step"]) > 1e-3  # the actions do reach the env

    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        baseline.main([*settings, "--policy", str(tmp_path / "missing")])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and err[-1].startswith("error: --policy") and "not found" in err[-1]
    with pytest.raises(SystemExit) as exit_info:  # the point mass's policy on the cartpole's observations
        baseline.main(["config=cartpole_balance", "num_envs=4", "--steps", "5", "--policy", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1 and "reads 4 observations" in err[0] and "give 5" in err[0]
