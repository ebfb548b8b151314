"""Resuming with a reward term added and another dropped: the checkpoint restores, the kept term's episode sums
come back bit for bit, the new term's start at zero, and training goes on."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agile_jax.io import checkpoint as ckpt
from agile_jax.io.checkpoint import CheckpointError
from agile_jax.training.runner import OnPolicyRunner
from envs.tasks.point_mass import PointMass
from tests.helpers import point_mass_config, point_mass_env


class PointMassWithSpeedCost(PointMass):
    """The point mass with its ``effort`` term dropped and a ``speed`` cost added."""

    reward_names = ("distance", "speed")

    def step(self, state, action):
        out = super().step(state, action)
        terms = {"distance": out.reward_terms["distance"], "speed": -0.1 * jnp.sum(out.data["vel"] ** 2)}
        return out.replace(reward_terms=terms, reward=sum(terms.values()))

    def reset(self, key):
        state = super().reset(key)
        return state.replace(reward_terms={name: jnp.zeros((), jnp.float32) for name in self.reward_names})


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
    cfg = point_mass_config()
    runner = OnPolicyRunner(point_mass_env(cfg), cfg, log_dir=str(tmp_path_factory.mktemp("terms")))
    runner.learn(2)
    runner.save()
    runner.close()
    return cfg, runner.log_dir, jax.device_get(runner.state.env_state)


def test_a_checkpoint_restores_with_a_term_added_and_one_dropped(saved_run):
    cfg, run_dir, saved = saved_run
    assert float(np.abs(saved.episode_sums["effort"]).sum()) > 0  # the dropped term had running sums
    runner = OnPolicyRunner(point_mass_env(cfg, PointMassWithSpeedCost(cfg.env)), cfg)
    runner.load(run_dir)
    env_state = jax.device_get(runner.state.env_state)
    assert sorted(env_state.episode_sums) == sorted(env_state.reward_terms) == ["distance", "speed"]
    np.testing.assert_array_equal(env_state.episode_sums["distance"], saved.episode_sums["distance"])
    np.testing.assert_array_equal(env_state.episode_sums["speed"], np.zeros(cfg.env.num_envs, np.float32))
    np.testing.assert_array_equal(env_state.data["pos"], saved.data["pos"])  # the physics state is the saved one
    assert runner.current_learning_iteration == 2
    runner.learn(1)  # the restored state fits the new env's step
    assert float(np.abs(jax.device_get(runner.state.env_state.episode_sums["speed"])).sum()) > 0


def test_without_the_fit_the_changed_terms_do_not_restore(saved_run):
    cfg, run_dir, _ = saved_run
    runner = OnPolicyRunner(point_mass_env(cfg, PointMassWithSpeedCost(cfg.env)), cfg)
    with pytest.raises(CheckpointError, match=r"episode_sums\.(effort|speed)"):
        ckpt.restore(run_dir, None, runner.state.replace(target_iteration=None))
