"""Out-of-range sizes and counts are refused when the config is built: exit code 2 and one line."""

from __future__ import annotations

import pytest

from agile_jax.config import ConfigError
from experiments import train


@pytest.mark.parametrize("override, message", [
    ("num_envs=0", "env.num_envs=0 is out of range: use an integer >= 1"),
    ("num_envs=-4", "env.num_envs=-4 is out of range"),
    ("save_interval=0", "runner.save_interval=0 is out of range"),
    ("runner.num_steps_per_env=0", "runner.num_steps_per_env=0 is out of range"),
    ("algorithm.num_mini_batches=0", "algorithm.num_mini_batches=0 is out of range"),
    ("max_iterations=-5", "runner.max_iterations=-5 is out of range: use an integer >= 0"),
    ("algorithm.gamma=1.5", "algorithm.gamma=1.5 is out of range: use a number in (0, 1]"),
    ("algorithm.num_mini_batches=100000", "exceeds the 1024 samples of an iteration"),
])
def test_out_of_range_settings_are_refused(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        train.build_config(["config=point_mass", "num_envs=64", override] if "num_envs" not in override
                           else ["config=point_mass", override])


def test_the_cli_exits_2_with_one_line(capsys):
    assert train.main(["config=point_mass", "num_envs=0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: env.num_envs=0 is out of range: use an integer >= 1"]
