"""Metrics of one evaluation episode, for sim-to-MuJoCo and MJX trajectories alike.

Trajectory layout (a dict of NumPy arrays, one row per policy step ``T``; row ``k`` is the state *after*
step ``k``, produced under ``command[k]`` and ``action[k]``)::

    time            [T]      seconds at the end of the step ((k + 1) * dt)
    command         [T, 3]   vx, vy (m/s), wz (rad/s) in the base frame
    action          [T, A]   raw policy output
    joint_pos       [T, J]   joint positions (rad)
    joint_vel       [T, J]   joint velocities (rad/s)
    root_pos        [T, 3]   world position of the root (m)
    root_quat       [T, 4]   root orientation (w, x, y, z)
    root_lin_vel_b  [T, 3]   root linear velocity in the root frame
    root_ang_vel_b  [T, 3]   root angular velocity in the root frame
    dt              []       policy period (s)
    target_steps    []       planned episode length in steps
    fell            []       optional: the simulator stopped on a fall

Joint accelerations and jerks are finite differences of ``joint_vel`` over ``dt`` (a row ``[T - 1]`` /
``[T - 2]``); ``joint_acc`` ``[T, J]`` in saved files uses a zero first row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def tilt(root_quat: np.ndarray) -> np.ndarray:
    """Angle (rad) between the root z axis and the world vertical ``[T]`` from quaternions ``[T, 4]``."""
    x, y = root_quat[:, 1], root_quat[:, 2]
    return np.arccos(np.clip(1.0 - 2.0 * (x ** 2 + y ** 2), -1.0, 1.0))


def fall_step(traj: Mapping[str, np.ndarray], min_height: float, max_tilt: float) -> int | None:
    """First step whose root is below ``min_height`` (m) or tilted beyond ``max_tilt`` (rad); ``None`` if none."""
    bad = (traj["root_pos"][:, 2] < min_height) | (tilt(traj["root_quat"]) > max_tilt)
    return int(np.argmax(bad)) if bad.any() else None


def joint_acc(joint_vel: np.ndarray, dt: float) -> np.ndarray:
    """Joint accelerations ``[T, J]`` by backward differences (first row 0)."""
    return np.concatenate([np.zeros_like(joint_vel[:1]), np.diff(joint_vel, axis=0) / dt], axis=0)


def segments(command: np.ndarray) -> list[tuple[int, int]]:
    """``[start, end)`` step ranges over which ``command`` ``[T, 3]`` is constant."""
    change = np.flatnonzero(np.any(np.diff(command, axis=0) != 0, axis=1)) + 1
    bounds = [0, *change.tolist(), len(command)]
    return [(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def tracking(traj: Mapping[str, np.ndarray], settle_s: float = 0.5) -> list[dict]:
    """Velocity tracking per constant-command segment, skipping its first ``settle_s`` seconds.

    Returns:
        Per segment: ``start_s``, ``end_s``, ``command`` [3], ``mean_velocity`` [3] (vx, vy, wz measured),
        ``rmse`` [3] and ``mean_abs_error`` [3] (``None`` entries when the segment is shorter than ``settle_s``).
    """
    dt, out = float(traj["dt"]), []
    measured = np.concatenate([traj["root_lin_vel_b"][:, :2], traj["root_ang_vel_b"][:, 2:3]], axis=1)
    for a, b in segments(traj["command"]):
        skip = a + int(round(settle_s / dt))
        err = measured[skip:b] - traj["command"][skip:b]
        seg = {"start_s": a * dt, "end_s": b * dt, "command": traj["command"][a].tolist(), "steps": b - a}
        if len(err):
            seg.update(mean_velocity=measured[skip:b].mean(0).tolist(), rmse=np.sqrt((err ** 2).mean(0)).tolist(),
                       mean_abs_error=np.abs(err).mean(0).tolist())
        else:
            seg.update(mean_velocity=None, rmse=None, mean_abs_error=None)
        out.append(seg)
    return out


def _stats(x: np.ndarray) -> dict:
    ax = np.abs(x)
    return {"mean": float(ax.mean()) if ax.size else 0.0, "max": float(ax.max()) if ax.size else 0.0,
            "max_per_joint": ax.max(0).tolist() if ax.size else []}


def smoothness(traj: Mapping[str, np.ndarray]) -> dict:
    """Mean / max |joint velocity|, |acceleration| and |jerk| (finite differences), overall and per joint."""
    dt, vel = float(traj["dt"]), traj["joint_vel"].astype(np.float64)
    acc = np.diff(vel, axis=0) / dt
    jerk = np.diff(acc, axis=0) / dt
    return {"joint_vel": _stats(vel), "joint_acc": _stats(acc), "joint_jerk": _stats(jerk),
            "action_rate": _stats(np.diff(traj["action"], axis=0))}


def limit_violations(joint_pos: np.ndarray, limits: np.ndarray, soft_factor: float = 0.9) -> dict:
    """Joint-limit violations of ``joint_pos`` ``[T, J]`` against ``limits`` ``[J, 2]``.

    Returns:
        ``hard_fraction`` / ``soft_fraction``: share of (step, joint) samples outside the hard / soft limits
        (soft: the range shrunk to ``soft_factor`` around its middle); ``hard_per_joint``: count per joint.
    """
    lo, hi = limits[:, 0], limits[:, 1]
    mid, half = (lo + hi) / 2, (hi - lo) / 2
    hard = (joint_pos < lo - 1e-6) | (joint_pos > hi + 1e-6)
    soft = (joint_pos < mid - soft_factor * half) | (joint_pos > mid + soft_factor * half)
    return {"hard_fraction": float(hard.mean()), "soft_fraction": float(soft.mean()),
            "hard_per_joint": hard.sum(0).astype(int).tolist()}


def episode_metrics(traj: Mapping[str, np.ndarray], limits: np.ndarray, min_height: float, max_tilt: float,
                    settle_s: float = 0.5) -> dict:
    """All metrics of one episode (success = planned length reached without a fall)."""
    fall = fall_step(traj, min_height, max_tilt)
    steps = len(traj["time"])
    fell = fall is not None or bool(traj.get("fell", False))
    success = not fell and steps >= int(traj.get("target_steps", steps))
    seg = tracking(traj, settle_s)
    maes = np.asarray([s["mean_abs_error"] for s in seg if s["mean_abs_error"] is not None]).reshape(-1, 3)
    return {"success": success, "fell": fell, "fall_time_s": None if fall is None else float(traj["time"][fall]),
            "steps": steps, "duration_s": float(steps * float(traj["dt"])),
            "tracking_mean_abs_error": maes.mean(0).tolist() if len(maes) else None,
            "segments": seg, "smoothness": smoothness(traj),
            "joint_limits": limit_violations(traj["joint_pos"], limits),
            "min_root_height": float(traj["root_pos"][:, 2].min()),
            "max_tilt_rad": float(tilt(traj["root_quat"]).max())}


def summarize(episodes: Sequence[Mapping]) -> dict:
    """Success rate and mean tracking error over episodes (all and successful-only)."""
    def mean_err(eps):
        errs = [e["tracking_mean_abs_error"] for e in eps if e["tracking_mean_abs_error"] is not None]
        return np.mean(errs, axis=0).tolist() if errs else None

    ok = [e for e in episodes if e["success"]]
    return {"num_episodes": len(episodes), "success_rate": len(ok) / max(len(episodes), 1),
            "tracking_mean_abs_error": mean_err(episodes), "tracking_mean_abs_error_successful": mean_err(ok),
            "max_joint_acc": max(e["smoothness"]["joint_acc"]["max"] for e in episodes),
            "mean_joint_jerk": float(np.mean([e["smoothness"]["joint_jerk"]["mean"] for e in episodes]))}
