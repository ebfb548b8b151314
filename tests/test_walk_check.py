"""``experiments/walk_check.py``: the walking criterion over several scenarios and stress settings in one command.

The shipped T1 policy walks 0.3 m/s forward (a check it passes); with every action zero (``--zero-actions``, the
default pose held by the PD) the same check fails on its forward segment: the command's exit code and lines must
tell the two apart. The stressed setting passes the criterion's PD and delay knobs to the evaluator; an unknown
scenario fails in one line, exit code 2.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("onnxruntime")

from experiments import walk_check  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
POLICY = os.path.join(ROOT, "policies", "t1_velocity")

SCENARIO = """evaluation:
  name: {name}
  episode_length_s: 5.0
environments:
- name: {name}
  schedule:
  - {{time: 0.0, commands: {{lin_vel_x: 0.0, lin_vel_y: 0.0, ang_vel_z: 0.0}}}}
  - {{time: 1.5, commands: {{lin_vel_x: {speed}}}}}
"""


def _scenario(tmp_path, name: str, speed: float) -> str:
    path = tmp_path / f"{name}.yaml"
    path.write_text(SCENARIO.format(name=name, speed=speed))
    return str(path)


def test_segment_summary_marks_each_miss():
    verdict = {"segments": [
        {"checks": [{"component": "drift", "drift": 0.031, "required": 0.1, "ok": True}]},
        {"checks": [{"component": "lin_vel_x", "ratio": 0.64, "required": 0.7, "ok": False},
                    {"component": "ang_vel_z", "ratio": 0.55, "required": 0.5, "ok": True}]},
    ]}
    assert walk_check.segment_summary(verdict) == "drift 0.03 / x 0.64* yaw 0.55"


def test_walk_check_passes_the_policy_and_fails_the_pose_without_it(tmp_path, capsys):
    slow, out = _scenario(tmp_path, "slow", 0.3), tmp_path / "checks.json"
    proc = subprocess.run([sys.executable, "experiments/walk_check.py", POLICY, "--scenarios", slow,
                           "--stress", "plain", "--episodes", "1", "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    walked = json.loads(out.read_text())["checks"][0]
    assert walked["walks"] and walked["falls"] == 0
    forward = walked["segments"][1]["checks"][0]
    assert forward["component"] == "lin_vel_x" and forward["ratio"] >= 0.7
    assert proc.stdout.strip().splitlines() == [
        f"{slow:<18} plain     walks  0/1 fell  {walk_check.segment_summary(walked)}", "walking check: 1 of 1 pass"]

    assert walk_check.main([POLICY, "--scenarios", slow, "--stress", "plain", "--episodes", "1",
                            "--zero-actions", "--json", str(out)]) == 1
    held = json.loads(out.read_text())["checks"][0]
    assert not held["walks"]
    if not held["falls"]:  # the pose stands: its forward segment is the miss
        assert abs(held["segments"][1]["checks"][0]["ratio"]) < 0.2
    lines = capsys.readouterr().out.strip().splitlines()
    assert "FAILS" in lines[0] and lines[-1] == "walking check: 0 of 1 pass"


def test_the_stressed_check_weakens_the_gains_and_delays_the_actions(monkeypatch):
    seen = []

    def fake_evaluate(cfg):
        seen.append((cfg.pd_scale, cfg.delay, cfg.episodes, cfg.video))
        return {"walking": {"walks": True, "falls": 0, "episodes": cfg.episodes, "segments": []}}

    monkeypatch.setattr("agile_jax.evaluation.run.evaluate", fake_evaluate)
    assert walk_check.main([POLICY, "--scenarios", "walk_all", "--episodes", "3"]) == 0
    assert seen == [(1.0, 0, 3, False), (0.9, 1, 3, False)]


def test_an_unknown_scenario_is_one_line_and_exit_code_2():
    proc = subprocess.run([sys.executable, "experiments/walk_check.py", POLICY, "--scenarios", "moonwalk"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    line = proc.stderr.strip()
    assert "\n" not in line and line.startswith("error: no scenario 'moonwalk'; known: forward_turn, ")
    assert "walk_all" in line and line.endswith("(or pass a YAML path)")
