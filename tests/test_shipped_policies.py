"""The walking policies shipped in ``policies/`` walk: a few seconds in plain MuJoCo on a forward command.

Each policy runs through the evaluator (``policy.onnx`` + ``policy.yaml``, observations built from the
descriptor, no JAX env) for 5 s at ``vx = 0.4`` m/s after 1 s of standing. Over the last 4 s (the first second
gets it going) the trunk must move forward by at least 70 % of the commanded distance (the walking criterion's
forward ratio) and sideways by little, without a fall. Its ``provenance.json`` names how it was trained.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from agile_jax.evaluation import sim2mujoco  # noqa: E402
from agile_jax.evaluation.commands import CommandSchedule  # noqa: E402
from agile_jax.evaluation.policy_io import find_export, load_io, load_policy  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = ["t1_velocity", "g1_velocity"]
STAND_S, SETTLE_S, WALK_S, SPEED = 1.0, 1.0, 5.0, 0.4


def _forward_episode(name: str) -> dict:
    policy_path, yaml_path = find_export(os.path.join(ROOT, "policies", name), "onnx")
    io = load_io(yaml_path)
    model = sim2mujoco.load_model(io, keep_meshes=False)
    schedule = CommandSchedule("forward", np.array([0.0, STAND_S]), np.array([[0.0, 0.0, 0.0], [SPEED, 0.0, 0.0]]))
    return sim2mujoco.run_episode(load_policy(policy_path), io, model, schedule, STAND_S + WALK_S)


@pytest.mark.parametrize("name", SHIPPED)
def test_the_shipped_policy_walks_forward(name):
    traj = _forward_episode(name)
    assert not bool(traj["fell"])
    start = int(round((STAND_S + SETTLE_S) / float(traj["dt"])))
    moved = traj["root_pos"][-1, :2] - traj["root_pos"][start, :2]
    heading = traj["root_quat"][start]  # (w, x, y, z): the trunk's yaw where the measurement starts
    yaw = np.arctan2(2 * (heading[0] * heading[3] + heading[1] * heading[2]),
                     1 - 2 * (heading[2] ** 2 + heading[3] ** 2))
    forward = moved[0] * np.cos(yaw) + moved[1] * np.sin(yaw)
    sideways = -moved[0] * np.sin(yaw) + moved[1] * np.cos(yaw)
    assert forward >= 0.7 * SPEED * (WALK_S - SETTLE_S), (forward, sideways)
    assert abs(sideways) <= 0.25 * forward, (forward, sideways)


@pytest.mark.parametrize("name", SHIPPED)
def test_the_shipped_policy_says_how_it_was_trained(name):
    folder = os.path.join(ROOT, "policies", name)
    with open(os.path.join(folder, "provenance.json")) as f:
        provenance = json.load(f)
    assert {"command", "commit", "env_steps", "train_wall_time_s", "machine"} <= set(provenance)
    assert provenance["env_steps"] > 0 and provenance["train_wall_time_s"] > 0
    assert all(os.path.isfile(os.path.join(folder, f)) for f in ("policy.onnx", "policy.pt", "policy.yaml"))
    media = [f for f in os.listdir(folder) if f.endswith((".mp4", ".png"))]
    assert media and all(os.path.getsize(os.path.join(folder, f)) < 2 * 1024 * 1024 for f in media)
