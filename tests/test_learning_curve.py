"""experiments/learning_curve.py on a hand-made scalar CSV."""

from __future__ import annotations

import json

import pytest

from experiments import learning_curve


def _csv(tmp_path):
    rows = ["tag,step,wall_time,value"]
    lengths = {1: 700.0, 2: 40.0, 21: 30.0, 22: 200.0, 30: 520.0, 31: 600.0}  # 700: random start offsets
    tracking = {21: 0.9, 30: 20.0, 31: 36.0}  # per-episode sums; per step: 0.03, 0.038, 0.06 (max 0.1)
    rows += [f"Train/mean_episode_length,{s},{1000 + 10 * s},{v}" for s, v in lengths.items()]
    rows += [f"Episode_Reward/track_lin_vel_xy_exp,{s},{1000 + 10 * s},{v}" for s, v in tracking.items()]
    path = tmp_path / "run.csv"
    path.write_text("\n".join(rows) + "\n")
    return str(path)


def test_speed_and_collapse_by_hand(tmp_path, capsys):
    assert learning_curve.main([_csv(tmp_path), "--samples-per-iteration", "100", "--baseline", "34.5",
                                "--tracking-window", "1"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["to_mean_episode_length_500"] == {"iteration": 30, "env_steps": 3000, "wall_time_s": 290.0,
                                                    "value": 520.0}
    assert report["to_tracking_0.5"]["iteration"] == 31  # 36 / (600 * 0.1) = 0.6
    assert report["lowest_length_after"] == {"after_iteration": 20, "iteration": 21, "value": 30.0}
    assert report["collapsed_below_baseline"] is True


def test_a_one_iteration_tracking_spike_is_not_a_level(tmp_path, capsys):
    rows = ["tag,step,wall_time,value"]
    ratios = [0.2] * 30 + [0.6] + [0.2] * 30 + [0.55] * 40  # a spike at 31, a level from 62
    for step, ratio in enumerate(ratios, start=1):
        rows += [f"Train/mean_episode_length,{step},{step},100.0",
                 f"Episode_Reward/track_lin_vel_xy_exp,{step},{step},{ratio * 100.0 * 0.1}"]
    path = tmp_path / "spike.csv"
    path.write_text("\n".join(rows) + "\n")
    assert learning_curve.main([str(path), "--tracking-window", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["to_tracking_0.5"]["iteration"] == 31
    assert learning_curve.main([str(path), "--tracking-window", "4"]) == 0
    # The spike averages to (3 x 0.2 + 0.6) / 4 = 0.3; the window ending at 64 gives (0.2 + 3 x 0.55) / 4 = 0.4625,
    # the one ending at 65 gives 0.55.
    reached = json.loads(capsys.readouterr().out)["to_tracking_0.5"]
    assert reached["iteration"] == 65 and abs(reached["value"] - 0.55) < 1e-9


def test_missing_source_is_one_line(tmp_path, capsys):
    assert learning_curve.main([str(tmp_path / "nope.csv")]) == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_a_tracking_window_below_one_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        learning_curve.main([_csv(tmp_path), "--tracking-window", "0"])
    assert exit_info.value.code == 2 and "--tracking-window 0" in capsys.readouterr().err
