"""A run that cannot fit is refused before allocation, with the estimate and the largest num_envs that fits."""

from __future__ import annotations

import pytest

from agile_jax.config import ConfigError
from agile_jax.runtime import memory
from experiments import cli, train
from tests.helpers import point_mass_config, point_mass_env


def test_estimate_scales_with_envs_and_steps():
    small = memory.estimate_bytes(point_mass_env(point_mass_config(num_envs=16)), 8, 1000)
    large = memory.estimate_bytes(point_mass_env(point_mass_config(num_envs=1600)), 8, 1000)
    longer = memory.estimate_bytes(point_mass_env(point_mass_config(num_envs=16)), 80, 1000)
    assert 90 < (large - 16000) / (small - 16000) < 110  # linear in num_envs (params excluded)
    assert longer > 5 * small


def test_refused_with_the_largest_num_envs_that_fits(monkeypatch):
    monkeypatch.setattr(memory, "available_bytes", lambda: 10 * 2**20)  # 10 MiB free
    env = point_mass_env(point_mass_config(num_envs=100_000))
    with pytest.raises(ConfigError, match=r"env.num_envs=100000 needs about .* GiB per device but only 0.0 GiB are "
                                          r"free; use env.num_envs=\d+ or fewer"):
        memory.check_fits(env, 16, 10_000)


def test_cli_refuses_a_huge_run_in_one_line(tmp_path, capsys):
    code = cli.run(train.main, ["config=point_mass", "num_envs=100000000", f"log_root={tmp_path}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "needs about" in err[0] and "use env.num_envs=" in err[0]
    assert not (tmp_path / "point_mass").exists() or not list((tmp_path / "point_mass").iterdir())
