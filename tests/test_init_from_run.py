"""``runner.init_from=<agile_jax run>``: a fine-tuning stage starts from another run's networks and normalisers
(other env settings allowed, fresh optimiser and iteration), optionally with its actor std capped."""

from __future__ import annotations

import os

import jax
import numpy as np
import pytest

from agile_jax.config import ConfigError
from agile_jax.training.runner import OnPolicyRunner
from agile_jax.validation import check_ranges
from tests.helpers import leaves_equal, point_mass_config, point_mass_env


@pytest.fixture(scope="module")
def source_run(tmp_path_factory):
    """A 4-iteration point-mass run with its actor std trained away from the initial 1.0."""
    log_dir = str(tmp_path_factory.mktemp("source"))
    cfg = point_mass_config(num_envs=8, steps=8)
    runner = OnPolicyRunner(point_mass_env(cfg), cfg, log_dir=log_dir)
    runner.learn(4)
    return log_dir, jax.device_get(runner.state.params), jax.device_get(runner.state.normalizers)


def _start(path: str, max_std: float = 0.0, **env) -> OnPolicyRunner:
    cfg = point_mass_config(num_envs=4, steps=8)
    for key, value in env.items():
        setattr(cfg.env, key, value)
    cfg.runner.init_from, cfg.runner.init_from_max_std = path, max_std
    check_ranges(cfg)
    return OnPolicyRunner(point_mass_env(cfg), cfg)


def test_a_run_with_other_env_settings_starts_from_the_saved_networks(source_run):
    log_dir, params, normalizers = source_run
    # Another env count and episode length: the env state differs, the networks do not.
    ours = _start(log_dir, episode_length=60)
    assert leaves_equal(ours.state.params, params)
    assert leaves_equal(ours.state.normalizers, normalizers) and float(normalizers["actor"].count) > 0
    assert int(ours.state.iteration) == 0
    # A named checkpoint directory gives that iteration's networks (iteration 2 of 4).
    first = _start(os.path.join(log_dir, "checkpoints", "2"))
    assert not np.array_equal(np.asarray(first.state.params.actor["std"]), np.asarray(params.actor["std"]))


def test_the_std_cap_lowers_only_the_stds_above_it(source_run):
    log_dir, params, _ = source_run
    std = np.asarray(params.actor["std"])
    cap = float(np.median(std))
    capped = np.asarray(_start(log_dir, max_std=cap).state.params.actor["std"])
    np.testing.assert_array_equal(capped, np.minimum(std, cap))
    assert np.any(std > cap) and np.any(capped == std)


def test_bad_init_from_settings_are_refused_in_one_line(source_run, tmp_path):
    log_dir, _, _ = source_run
    with pytest.raises(ConfigError, match="no checkpoint directory"):
        _start(str(tmp_path))
    cfg = point_mass_config()
    cfg.runner.init_from_max_std = 0.3
    with pytest.raises(ConfigError, match="runner.init_from=<run dir>"):
        check_ranges(cfg)
    cfg.runner.init_from, cfg.runner.init_from_max_std = log_dir, -1.0
    with pytest.raises(ConfigError, match="init_from_max_std=-1.0 is out of range"):
        check_ranges(cfg)
    wider = point_mass_config(num_envs=4, steps=8)
    wider.policy.actor_hidden_dims = [16, 16]
    wider.runner.init_from = log_dir
    with pytest.raises(ConfigError, match="runner.init_from"):
        OnPolicyRunner(point_mass_env(wider), wider)
