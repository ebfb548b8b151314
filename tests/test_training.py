"""Whole-iteration behaviour: learning, determinism, exact resume, NaN guard, checkpoint errors."""

import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agile_jax.io.checkpoint import CheckpointError
from agile_jax.training.runner import OnPolicyRunner, TrainingDivergedError
from envs.tasks.point_mass import PointMass
from tests.helpers import leaves_equal, point_mass_config, point_mass_env, policy_return, straight_and_resumed


@pytest.fixture(scope="module")
def runner_pair():
    """Two runners of the same config (they share compiled code through the persistent cache)."""
    cfg = point_mass_config()
    return cfg, OnPolicyRunner(point_mass_env(cfg), cfg), OnPolicyRunner(point_mass_env(cfg), cfg)


def test_point_mass_learns():
    cfg = point_mass_config(num_envs=64, steps=16)
    cfg.env.episode_length = 100
    runner = OnPolicyRunner(point_mass_env(cfg), cfg)
    before = policy_return(runner)
    runner.learn(42)
    # A random policy scores ~15-25 per 100-step episode here; a policy that parks at the origin ~70+.
    assert before < 40.0 and runner.episodes.mean_return > 60.0 and policy_return(runner) > 60.0, before


def test_same_seed_gives_bit_identical_params(runner_pair):
    _, a, b = runner_pair
    a.learn(3)
    b.learn(3)
    assert leaves_equal(a.state.params, b.state.params)
    assert leaves_equal(a.state.opt_state, b.state.opt_state)
    c = OnPolicyRunner(point_mass_env(a.cfg), a.cfg.__class__(**{**a.cfg.__dict__}))
    c.state = c.trainer.init(jax.random.key(123))
    c.learn(3)
    assert not leaves_equal(a.state.params, c.state.params)


def test_resume_is_bit_exact(tmp_path):
    straight, second = straight_and_resumed(point_mass_config(), tmp_path)
    assert leaves_equal(straight.state.params, second.state.params)
    assert leaves_equal(straight.state.opt_state, second.state.opt_state)
    assert leaves_equal(straight.state.normalizers, second.state.normalizers)
    assert leaves_equal(straight.state.env_state, second.state.env_state)
    # keep-N and the save interval: checkpoints at 2 (interval) and the end of each learn() call
    assert sorted(int(d) for d in os.listdir(tmp_path / "run2" / "checkpoints") if d.isdigit()) == [4]


class ExplodingPointMass(PointMass):
    """Emits a NaN reward from the 20th step of every episode."""

    def step(self, state, action):
        nxt = super().step(state, action)
        return nxt.replace(reward=jnp.where(state.step_count >= 19, jnp.nan, nxt.reward))


def test_nan_stops_training_and_keeps_last_good_checkpoint(tmp_path):
    cfg = point_mass_config(steps=8)
    runner = OnPolicyRunner(point_mass_env(cfg, ExplodingPointMass(cfg.env)), cfg, log_dir=str(tmp_path))
    with pytest.raises(TrainingDivergedError, match=r"non-finite rewards .* at iteration 3.*iteration 2"):
        runner.learn(10)
    assert runner.current_learning_iteration == 2
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(runner.state.params))
    runner.close()
    assert "2" in os.listdir(tmp_path / "checkpoints")


def test_incompatible_and_corrupt_checkpoints_give_clear_errors(tmp_path):
    cfg = point_mass_config()
    runner = OnPolicyRunner(point_mass_env(cfg), cfg, log_dir=str(tmp_path / "run"))
    runner.learn(1)
    runner.close()
    other = point_mass_config()
    other.policy.actor_hidden_dims = [16]
    with pytest.raises(CheckpointError, match=r"does not fit the current configuration(.|\n)*actor"):
        OnPolicyRunner(point_mass_env(other), other).load(str(tmp_path / "run"))
    with pytest.raises(CheckpointError, match="no checkpoint directory"):
        runner.load(str(tmp_path / "nowhere"))
    # damage the array files of the checkpoint
    state_dir = tmp_path / "run" / "checkpoints" / "1" / "state"
    for root, _, files in os.walk(state_dir):
        for name in files:
            if not name.endswith(".json") and "_METADATA" not in name:
                with open(os.path.join(root, name), "wb") as f:
                    f.write(b"garbage")
    fresh = OnPolicyRunner(point_mass_env(cfg), cfg)
    with pytest.raises(CheckpointError, match="damaged .file 'state/.*' changed after the save"):
        fresh.load(str(tmp_path / "run"))
    shutil.rmtree(tmp_path / "run" / "checkpoints" / "1" / "meta")
    with pytest.raises(CheckpointError):
        fresh.load(str(tmp_path / "run"))


def test_inference_policy_is_deterministic_mean(runner_pair):
    _, a, _ = runner_pair
    policy = a.get_inference_policy()
    obs = {"policy": jnp.ones((3, 4)), "critic": jnp.ones((3, 5))}
    expected = a.networks.actor_mean(a.state.params, a.state.normalizers, obs)
    np.testing.assert_array_equal(np.asarray(policy(obs)), np.asarray(expected))


def test_split_iteration_equals_fused_and_times_both_halves(tmp_path):
    cfg = point_mass_config()
    fused = OnPolicyRunner(point_mass_env(cfg), cfg)
    fused.learn(2)
    cfg.runner.fused_iteration = False
    split = OnPolicyRunner(point_mass_env(cfg), cfg, log_dir=str(tmp_path))
    split.learn(2)
    split.close()
    for a, b in zip(jax.tree.leaves(fused.state.params), jax.tree.leaves(split.state.params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
    assert {"Perf/collection_time", "Perf/learning_time"} <= set(acc.Tags()["scalars"])
