"""Presets and ``key=value`` overrides: merging, shortcuts and clear refusals."""

import subprocess
import sys

import pytest

from agile_jax.config import ConfigError, apply_overrides, from_yaml, to_yaml
from experiments.configs import get_preset
from experiments.train import ROOT, build_config


def test_overrides_merge_with_types():
    cfg = build_config(["config=point_mass", "algorithm.learning_rate=3e-4", "num_envs=8",
                        "policy.actor_hidden_dims=[16,16]", "max_iterations=7", "--resume"])
    assert cfg.algorithm.learning_rate == 3e-4 and isinstance(cfg.algorithm.learning_rate, float)
    assert cfg.env.num_envs == 8 and cfg.runner.max_iterations == 7 and cfg.runner.resume
    assert cfg.policy.actor_hidden_dims == [16, 16]


@pytest.mark.parametrize(
    "override,message",
    [
        ("algorithm.learning_rat=1",
         "unknown config key 'algorithm.learning_rat'; did you mean 'algorithm.learning_rate'"),
        ("num_mini_batch=2", "did you mean 'algorithm.num_mini_batches'"),
        ("algorithm.num_mini_batches=two", "bad value for config key 'algorithm.num_mini_batches'.*expected int"),
        ("gamma", "not of the form key=value"),
    ],
)
def test_bad_overrides_are_refused_with_a_suggestion(override, message):
    with pytest.raises(ConfigError, match=message):
        build_config(["config=point_mass", override])


def test_unknown_preset_suggests_closest():
    with pytest.raises(ConfigError, match="unknown preset config='point_mas'. Did you mean 'point_mass'"):
        get_preset("point_mas")


def test_yaml_round_trip():
    cfg = apply_overrides(get_preset("point_mass"), ["algorithm.gamma=0.95"])
    back = from_yaml(to_yaml(cfg), get_preset("point_mass"))
    assert back == cfg


def test_cli_exits_2_with_message():
    proc = subprocess.run([sys.executable, "experiments/train.py", "config=point_mass", "algorithm.clip_parm=0.1"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "did you mean 'algorithm.clip_param'" in proc.stderr
