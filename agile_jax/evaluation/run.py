"""One evaluation end to end: exported policy + scenario -> MuJoCo episodes -> npz, metrics.json, report.html, mp4."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable

import numpy as np

from agile_jax.evaluation import commands, metrics, report, sim2mujoco, walking  # sim2mujoco first: sets MUJOCO_GL
from agile_jax.evaluation.policy_io import PolicyIO, find_export, load_io, load_policy


@dataclasses.dataclass
class EvalConfig:
    """Knobs of :func:`evaluate` (the command line of ``experiments/eval.py``).

    Attributes:
        path: run directory (uses its ``exported/``) or exported directory.
        scenario: scenario YAML; without it, random commands.
        seed: random-command and observation-noise seed.
        episodes: number of episodes (default: one per scenario entry, or 1).
        duration_s: episode length (default: the scenario's, else 10 s).
        noise_scale / pd_scale / delay: stress knobs (see :class:`~.sim2mujoco.StressConfig`).
        video: write ``episode_XXX.mp4`` when no display is available.
        viewer: open the passive viewer when ``DISPLAY`` is set.
        format: ``onnx`` or ``torchscript``.
        out: output directory (default ``<export dir>/eval/<scenario name>``).
        video_height / video_width / video_fps: mp4 frame size and rate.
        shadows: render shadows and reflections in the mp4 (slow with software OpenGL).
        resample_s: random commands: seconds between resamples.
        compare_mjx: also run each episode in the MJX training env (:func:`.mjx_rollout.clean_env`) and
            report both metrics and their gap (compiles the env: minutes on a CPU).
        zero_actions: replace the policy's actions by zeros (the zero-action baseline of the scenario).
    """

    path: str = ""
    scenario: str | None = None
    seed: int = 0
    episodes: int | None = None
    duration_s: float | None = None
    noise_scale: float = 1.0
    pd_scale: float = 1.0
    delay: int = 0
    video: bool = True
    viewer: bool = True
    format: str = "onnx"
    out: str | None = None
    video_height: int = 240
    video_width: int = 320
    video_fps: float = 25.0
    shadows: bool = False
    resample_s: float = 4.0
    compare_mjx: bool = False
    zero_actions: bool = False


def _zero_policy(policy: Callable) -> Callable:
    """The baseline of an evaluation: the same IO with every action 0 (the default pose held by the PD)."""
    return lambda obs: np.zeros_like(np.asarray(policy(obs)))


def _schedules(cfg: EvalConfig, io: PolicyIO) -> tuple[str, list[commands.CommandSchedule], float]:
    """Scenario name, one schedule per episode and the episode length."""
    if cfg.scenario:
        ev, entries = commands.load_scenario(cfg.scenario)
        name = ev.get("name") or os.path.splitext(os.path.basename(cfg.scenario))[0]
        count = cfg.episodes or int(ev.get("num_episodes", len(entries)))
        chosen = [entries[i % len(entries)].clamped(io.command_ranges) for i in range(count)]
        duration = cfg.duration_s or chosen[0].duration or 10.0
        return name, chosen, float(duration)
    duration = float(cfg.duration_s or 10.0)
    ranges = io.command_ranges or {f: (-0.5, 0.5) for f in commands.FIELDS}
    chosen = [commands.random_schedule(cfg.seed + i, duration, ranges, cfg.resample_s)
              for i in range(cfg.episodes or 1)]
    return f"random_seed{cfg.seed}", chosen, duration


def _hook(cfg: EvalConfig, model, io: PolicyIO, out: str, episode: int):
    """The per-step callback: passive viewer with a display, else a video recorder (or nothing)."""
    from agile_jax.evaluation import viewer

    if cfg.viewer and os.environ.get("DISPLAY"):
        return viewer.PassiveViewer(model, io.dt)
    if cfg.video:
        every = max(int(round(1.0 / (cfg.video_fps * io.dt))), 1)
        return viewer.VideoRecorder(model, os.path.join(out, f"episode_{episode:03d}.mp4"), 1.0 / (every * io.dt),
                                    every, cfg.video_height, cfg.video_width, cfg.shadows)
    return None


def _mjx_episode(cfg: EvalConfig, io: PolicyIO, policy, schedule, duration: float, limits, out: str, i: int) -> dict:
    """The same episode in the MJX env; its trajectory goes to ``episode_XXX_mjx.npz``."""
    from agile_jax.evaluation import mjx_rollout

    env = mjx_rollout.clean_env(io.robot)
    traj = mjx_rollout.rollout(env, policy, schedule, duration, cfg.seed + i, cfg.delay)
    report.save_episode(os.path.join(out, f"episode_{i:03d}_mjx.npz"), traj, env.robot.joint_names)
    return metrics.episode_metrics(traj, limits, io.base_height, io.limit_angle)


def _gap(mujoco_ep: dict, mjx_ep: dict) -> dict:
    """MuJoCo minus MJX: steps survived and mean tracking errors."""
    a, b = mujoco_ep["tracking_mean_abs_error"], mjx_ep["tracking_mean_abs_error"]
    return {"steps": mujoco_ep["steps"] - mjx_ep["steps"],
            "tracking_mean_abs_error": None if a is None or b is None else [x - y for x, y in zip(a, b)]}


def evaluate(cfg: EvalConfig) -> dict:
    """Runs every episode and writes the outputs into ``cfg.out``; returns the metrics (also ``metrics.json``)."""
    policy_path, yaml_path = find_export(cfg.path, cfg.format)
    io = load_io(yaml_path)
    name, schedules, duration = _schedules(cfg, io)
    name += "_zero_actions" if cfg.zero_actions else ""
    out = cfg.out or os.path.join(os.path.dirname(yaml_path), "eval", name)
    os.makedirs(out, exist_ok=True)
    policy, stress = load_policy(policy_path), sim2mujoco.StressConfig(cfg.noise_scale, cfg.pd_scale, cfg.delay)
    if cfg.zero_actions:
        policy = _zero_policy(policy)
    model = sim2mujoco.load_model(io, keep_meshes=cfg.video or cfg.viewer)
    sim2mujoco.map_joints(model, io.joint_names)  # fails early on a joint-name mismatch
    limits = model.jnt_range[[model.joint(n).id for n in io.joint_names]]
    episodes, images, files = [], [], []
    for i, schedule in enumerate(schedules):
        hook = _hook(cfg, model, io, out, i)
        traj = sim2mujoco.run_episode(policy, io, model, schedule, duration, stress, cfg.seed + i, hook)
        video = hook.close() if hook is not None else None
        ep = metrics.episode_metrics(traj, limits, io.base_height, io.limit_angle)
        sim_s = len(traj["time"]) * io.dt
        ep.update(scenario=schedule.name, video=video, real_time_factor=float(sim_s / traj["wall_time"]),
                  sim_real_time_factor=float(sim_s / traj["sim_wall_time"]))
        if cfg.compare_mjx:
            ep["mjx"] = _mjx_episode(cfg, io, policy, schedule, duration, limits, out, i)
            ep["sim2sim_gap"] = _gap(ep, ep["mjx"])
        files.append(report.save_episode(os.path.join(out, f"episode_{i:03d}.npz"), traj, io.joint_names))
        episodes.append(ep)
        images.append([report.tracking_figure(traj),
                       report.joints_figure(traj, io.joint_names, io.action_idx.tolist(), limits)])
    settings = {**dataclasses.asdict(cfg), "policy": policy_path, "policy_yaml": yaml_path, "scenario_name": name,
                "duration_s": duration, "robot": io.robot, "dt": io.dt, "created": time.strftime("%Y-%m-%d %H:%M:%S")}
    result = {"settings": settings, "summary": metrics.summarize(episodes), "walking": walking.verdict(episodes),
              "episodes": episodes, "files": files}
    report.save_metrics(os.path.join(out, "metrics.json"), result)
    report.write_html(os.path.join(out, "report.html"), result, images)
    result["out"] = out
    return result
