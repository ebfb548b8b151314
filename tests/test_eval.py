"""Sim-to-MuJoCo evaluation of an exported T1 policy: CLI outputs, schedules, metrics and joint-name checks."""

import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest
import yaml

from agile_jax.evaluation import commands, metrics
from agile_jax.evaluation.run import EvalConfig, evaluate
from agile_jax.export import export_policy
from agile_jax.networks.actor_critic import ActorCritic

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCHEDULE = [{"time": 0.0, "commands": {"lin_vel_x": 0.0, "lin_vel_y": 0.0, "ang_vel_z": 0.0}},
            {"time": 0.3, "commands": {"lin_vel_x": 0.3}},
            {"time": 0.6, "commands": {"ang_vel_z": -0.4, "lin_vel_y": 0.1}}]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A freshly initialised small T1 policy exported (ONNX + policy.yaml) with the velocity env's description."""
    from envs.tasks.velocity import T1VelocityConfig, VelocityEnv

    env = VelocityEnv(T1VelocityConfig())
    net = ActorCritic(dict(env.observation_shapes), {"actor": ["policy"], "critic": ["critic"]}, env.action_size,
                      (32, 32), (32,), "elu")
    out = str(tmp_path_factory.mktemp("t1") / "exported")
    export_policy(net, net.init(jax.random.key(0)), {}, out, env=env, formats=("onnx",))
    return out


@pytest.fixture(scope="module")
def cli_run(exported, tmp_path_factory):
    """``experiments/eval.py`` on a 2 s scenario in a fresh headless process (EGL)."""
    tmp = tmp_path_factory.mktemp("eval")
    scenario = tmp / "short.yaml"
    scenario.write_text(yaml.safe_dump({"evaluation": {"name": "short", "episode_length_s": 2.0},
                                        "environments": [{"name": "steps", "schedule": SCHEDULE}]}))
    out = tmp / "out"
    env = {**os.environ, "MUJOCO_GL": "egl", "PYTHONPATH": ROOT}
    env.pop("DISPLAY", None)
    cmd = [sys.executable, os.path.join(ROOT, "experiments", "eval.py"), exported, f"scenario={scenario}",
           f"out={out}", "video_fps=10", "video_height=120", "video_width=160", "noise_scale=0.0"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_writes_video_npz_metrics_and_report(cli_run):
    import imageio.v3 as iio

    frames = iio.imread(cli_run / "episode_000.mp4", plugin="pyav") if _has_pyav() else None
    assert (cli_run / "episode_000.mp4").stat().st_size > 1000
    if frames is not None:
        assert frames.shape[0] > 0 and frames.shape[-1] == 3
    else:
        reader = __import__("imageio").get_reader(str(cli_run / "episode_000.mp4"))
        assert reader.count_frames() > 0
    m = json.loads((cli_run / "metrics.json").read_text())
    assert {"settings", "summary", "episodes", "files"} <= set(m)
    ep = m["episodes"][0]
    assert {"success", "fell", "segments", "smoothness", "joint_limits", "tracking_mean_abs_error"} <= set(ep)
    assert ep["success"] == (not ep["fell"] and ep["steps"] == 100)
    assert 0.0 <= ep["joint_limits"]["hard_fraction"] <= 1.0 and ep["smoothness"]["joint_acc"]["max"] > 0
    assert [s["command"][0] for s in ep["segments"]][:2] == pytest.approx([0.0, 0.3])
    html = (cli_run / "report.html").read_text()
    assert "data:image/png;base64," in html and "Summary" in html


def _has_pyav() -> bool:
    try:
        import av  # noqa: F401
        return True
    except ImportError:
        return False


def test_npz_commands_follow_the_schedule_exactly(cli_run):
    data = np.load(cli_run / "episode_000.npz")
    t, dt = data["time"], float(data["dt"])
    assert dt == pytest.approx(0.02) and len(t) >= 0.6 / dt  # the random policy stands at least until 0.6 s
    sched = commands.from_schedule("s", SCHEDULE, 2.0)
    expected = np.stack([sched.at(k * dt) for k in range(len(t))])
    np.testing.assert_array_equal(data["command"], expected)
    np.testing.assert_array_equal(data["command"][int(0.3 / dt)], np.float32([0.3, 0.0, 0.0]))
    np.testing.assert_array_equal(data["command"][int(0.6 / dt)], np.float32([0.3, 0.1, -0.4]))
    assert data["joint_pos"].shape == (len(t), 23) and data["action"].shape == (len(t), 12)
    assert data["joint_acc"].shape == data["joint_vel"].shape and data["root_quat"].shape == (len(t), 4)


def test_sweep_cycles_values_every_interval():
    s = commands.from_sweep("x", {"interval": 1.0, "lin_vel_x": [0.1, 0.2, 0.3], "ang_vel_z": [0.0, 1.0]}, 4.0)
    assert s.times.tolist() == [0.0, 1.0, 2.0, 3.0]
    np.testing.assert_allclose(s.values[:, 0], [0.1, 0.2, 0.3, 0.1])
    np.testing.assert_allclose(s.values[:, 2], [0.0, 1.0, 0.0, 1.0])
    assert s.clamped({"ang_vel_z": (-0.5, 0.5)}).values[1, 2] == 0.5
    r = commands.random_schedule(3, 8.0, {f: (-0.5, 0.5) for f in commands.FIELDS}, 4.0)
    np.testing.assert_array_equal(r.values, commands.random_schedule(3, 8.0, {f: (-0.5, 0.5)
                                                                             for f in commands.FIELDS}, 4.0).values)


def test_every_shipped_scenario_loads_and_agiles_sweeps_run_one_pass_inside_the_t1_ranges():
    from envs.tasks.velocity import T1VelocityConfig
    from experiments.walk_check import all_scenarios, scenario_path

    for name in all_scenarios():
        _, schedules = commands.load_scenario(scenario_path(name))
        assert schedules and all(len(s.times) == len(s.values) for s in schedules), name
    ranges = {f: getattr(T1VelocityConfig().commands, f) for f in commands.FIELDS}
    for name, field, values in [
            ("y_velocity_sweep", 1, [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.0, -0.1, -0.2, -0.3, -0.4, -0.5]),
            ("yaw_rate_sweep", 2, [-1.0, -0.8, -0.6, -0.4, -0.2, 0.0, 0.2, 0.4, 0.6, 0.8, 1.0])]:
        ev, (sweep,) = commands.load_scenario(scenario_path(name))
        assert ev["episode_length_s"] == 2.0 * len(values)  # each value once, for 2 s
        assert sweep.times.tolist() == [2.0 * i for i in range(len(values))]
        np.testing.assert_allclose(sweep.values[:, field], values, atol=1e-7)
        assert not np.delete(sweep.values, field, axis=1).any()  # the other fields stay zero
        np.testing.assert_array_equal(sweep.clamped(ranges).values, sweep.values)  # nothing beyond the task's ranges

def test_metrics_on_a_synthetic_trajectory():
    """The metric functions take any trajectory in the documented layout (e.g. an MJX rollout)."""
    t = 100
    cmd = np.zeros((t, 3), np.float32)
    cmd[50:, 0] = 0.5
    vel = np.zeros((t, 3))
    vel[50:, 0] = 0.4
    traj = {"time": 0.02 * np.arange(1, t + 1), "dt": 0.02, "command": cmd, "action": np.zeros((t, 2)),
            "joint_pos": np.zeros((t, 2)), "joint_vel": np.zeros((t, 2)), "root_pos": np.tile([0, 0, 0.7], (t, 1)),
            "root_quat": np.tile([1.0, 0, 0, 0], (t, 1)), "root_lin_vel_b": vel, "root_ang_vel_b": np.zeros((t, 3)),
            "target_steps": t}
    m = metrics.episode_metrics(traj, np.array([[-1.0, 1.0], [-0.01, 0.01]]), 0.35, 0.5)
    assert m["success"] and len(m["segments"]) == 2
    assert m["segments"][1]["mean_abs_error"][0] == pytest.approx(0.1)
    assert m["joint_limits"]["hard_fraction"] == 0.0
    traj["root_pos"][60:, 2] = 0.2
    assert metrics.fall_step(traj, 0.35, 0.5) == 60 and not metrics.episode_metrics(traj, np.ones((2, 2)) * [-1, 1],
                                                                                    0.35, 0.5)["success"]


def test_joint_names_that_do_not_match_the_model_are_refused(exported, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(exported, bad)
    desc = yaml.safe_load((bad / "policy.yaml").read_text())
    names = desc["articulations"]["robot"]["joint_names"]
    names[names.index("Left_Knee_Pitch")] = "left_knee_joint"
    desc["actions"][0]["joint_names"] = [("left_knee_joint" if n == "Left_Knee_Pitch" else n)
                                         for n in desc["actions"][0]["joint_names"]]
    (bad / "policy.yaml").write_text(yaml.safe_dump(desc))
    with pytest.raises(ValueError, match=r"\['left_knee_joint'\] are not in the MuJoCo model"):
        evaluate(EvalConfig(path=str(bad), duration_s=0.1, video=False, viewer=False, out=str(tmp_path / "o")))


def test_descriptor_observation_matches_the_env(exported):
    """The observation rebuilt from policy.yaml alone equals the MJX env's policy observation, term-major."""
    import dataclasses

    from agile_jax.evaluation import policy_io, sim2mujoco
    from envs.mdp.observations import term_major
    from envs.tasks.velocity import T1VelocityConfig, VelocityEnv

    env = VelocityEnv(dataclasses.replace(T1VelocityConfig(), obs_noise=False))
    state = env.reset(jax.random.key(3))
    io = policy_io.load_io(os.path.join(exported, "policy.yaml"))
    joints = sim2mujoco.map_joints(env.robot.model, io.joint_names)
    values = policy_io.term_values(np.asarray(state.data.qpos, np.float64), np.asarray(state.data.qvel, np.float64),
                                   joints.qpos, joints.dof, np.asarray(state.info["command"]), np.zeros(12))
    built = policy_io.ObservationBuilder(io, noise_scale=0.0)(values)
    # policy.yaml describes AGILE's term-major input; the env keeps [H, F] frames.
    expected = np.asarray(term_major(state.obs["policy"], env.policy_layout))
    np.testing.assert_allclose(built, expected, atol=1e-5)


@pytest.mark.slow  # default-suite time (tests/README.md); CI's slow step runs it
def test_mujoco_and_mjx_trajectories_agree(exported, tmp_path):
    """Nominal sim-to-sim: the same exported policy and schedule in CPU MuJoCo and in the MJX env. The MJX reset
    and step of one clean T1 env compile for minutes once; from the compilation cache the test takes about a
    minute on two cores shared with a training job."""
    result = evaluate(EvalConfig(path=exported, duration_s=1.0, noise_scale=0.0, video=False, viewer=False,
                                 compare_mjx=True, out=str(tmp_path)))
    ep = result["episodes"][0]
    a, b = np.load(tmp_path / "episode_000.npz"), np.load(tmp_path / "episode_000_mjx.npz")
    assert ep["steps"] == ep["mjx"]["steps"] and a["time"].shape == b["time"].shape
    assert np.abs(a["root_pos"] - b["root_pos"]).max() < 1e-3
    assert np.abs(a["action"] - b["action"]).max() < 1e-3
    assert np.abs(a["joint_pos"] - b["joint_pos"]).max() < 1e-2


def test_eval_cli_explains_a_missing_policy_and_prints_help(tmp_path):
    script = os.path.join(ROOT, "experiments", "eval.py")
    proc = subprocess.run([sys.executable, script, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert f"no policy.yaml in {tmp_path}" in proc.stderr and "experiments/export.py" in proc.stderr
    proc = subprocess.run([sys.executable, script, "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "Usage::" in proc.stdout


def test_zero_action_baseline_holds_the_default_pose(exported, tmp_path):
    result = evaluate(EvalConfig(path=exported, duration_s=0.2, noise_scale=0.0, video=False, viewer=False,
                                 zero_actions=True, out=str(tmp_path / "zero")))
    traj = np.load(tmp_path / "zero" / "episode_000.npz")
    assert traj["action"].shape[0] == 10 and not traj["action"].any()
    assert not result["episodes"][0]["fell"]
    # Zero actions are PD targets at the default pose: the joints stay near it (the knees sag by 0.12 rad under the
    # robot's weight; a target of 0 instead of the default pose moves them by 0.4) and the trunk stays
    # within 8 cm of its initial height (6 cm lower as the legs take the weight).
    from agile_jax.evaluation import policy_io

    io = policy_io.load_io(os.path.join(exported, "policy.yaml"))
    np.testing.assert_allclose(traj["joint_pos"][-1], io.default_pos, atol=0.15)
    assert abs(float(traj["root_pos"][-1, 2]) - io.init_height) < 0.08, (traj["root_pos"][-1], io.init_height)
