"""``experiments/ship_policy.py``: the env steps and wall time of a chain of runs, and a refused shipment."""

from __future__ import annotations

import os

import pytest

from agile_jax.training.runner import OnPolicyRunner
from experiments import ship_policy
from experiments.learning_curve import read_scalars
from tests.helpers import point_mass_config, point_mass_env


def _train(log_dir: str, iterations: int, init_from: str = "") -> str:
    cfg = point_mass_config(num_envs=8, steps=8)
    cfg.runner.init_from = init_from
    OnPolicyRunner(point_mass_env(cfg), cfg, log_dir=log_dir).learn(iterations)
    return log_dir


def test_a_chain_of_runs_counts_every_stage(tmp_path):
    first = _train(str(tmp_path / "first"), 4)
    second = _train(str(tmp_path / "second"), 2, init_from=first)  # a stage: its iterations count from 0 again
    totals = ship_policy.training_totals([second, first])
    assert totals["env_steps"] == (4 + 2) * 8 * 8
    walls = [sum(v for _, _, v in read_scalars(run)["Perf/iteration_time"]) for run in (first, second)]
    assert totals["train_wall_time_s"] == pytest.approx(sum(walls), abs=0.1) and all(w > 0 for w in walls)
    assert ship_policy.training_totals([first]) == {"env_steps": 4 * 8 * 8, "train_wall_time_s": round(walls[0], 1)}
    # A checkpoint before the shipped run's last: its later iterations do not count, the earlier runs' all do.
    through = ship_policy.training_totals([second, first], through=1)
    second_first = sum(v for it, _, v in read_scalars(second)["Perf/iteration_time"] if it <= 1)
    assert through["env_steps"] == (4 + 1) * 8 * 8
    assert through["train_wall_time_s"] == pytest.approx(walls[0] + second_first, abs=0.1)
    # A stage started from an earlier run's checkpoint 2: that run counts its iterations up to 2 only.
    first_two = sum(v for it, _, v in read_scalars(first)["Perf/iteration_time"] if it <= 2)
    stage = ship_policy.training_totals([second, first + "@2"])
    assert stage["env_steps"] == (2 + 2) * 8 * 8
    assert stage["train_wall_time_s"] == pytest.approx(walls[1] + first_two, abs=0.1) and first_two < walls[0]


def test_a_stage_started_from_a_shipped_policy_adds_its_provenance(tmp_path):
    shipped = tmp_path / "policies" / "walker"
    os.makedirs(shipped)
    (shipped / "provenance.json").write_text('{"env_steps": 1000, "train_wall_time_s": 60.5, "runs": ["a", "b@7"]}')
    stage = _train(str(tmp_path / "stage"), 2, init_from="")
    wall = sum(v for _, _, v in read_scalars(stage)["Perf/iteration_time"])
    totals = ship_policy.training_totals([stage, str(shipped)])
    assert totals["env_steps"] == 1000 + 2 * 8 * 8
    assert totals["train_wall_time_s"] == pytest.approx(60.5 + wall, abs=0.1)
    assert ship_policy._run_name(str(shipped)).endswith("walker (a, b@7)")


def test_a_run_without_an_export_is_refused(tmp_path, capsys):
    run = tmp_path / "run"
    os.makedirs(run / "exported")
    assert ship_policy.main([str(run), "--out", str(tmp_path / "out"), "--command", "train"]) == 2
    assert "export the run first" in capsys.readouterr().err and not os.path.exists(tmp_path / "out")
