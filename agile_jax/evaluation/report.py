"""Evaluation outputs: per-episode ``episode_XXX.npz``, ``metrics.json`` and a standalone ``report.html``.

The HTML embeds matplotlib PNGs (base64), so it opens anywhere without the output directory.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Mapping, Sequence

import numpy as np

from agile_jax.evaluation.metrics import joint_acc, tilt


def save_episode(path: str, traj: Mapping[str, np.ndarray], joint_names: Sequence[str]) -> str:
    """Writes one trajectory (layout of :mod:`.metrics`, plus ``joint_acc`` and ``joint_names``) as npz."""
    extra = {"joint_acc": joint_acc(traj["joint_vel"], float(traj["dt"])), "joint_names": np.asarray(joint_names)}
    np.savez_compressed(path, **dict(traj), **extra)
    return path


def save_metrics(path: str, metrics: Mapping) -> str:
    """Writes ``metrics`` as indented JSON."""
    with open(path, "w") as f:
        json.dump(metrics, f, indent=2)
    return path


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def tracking_figure(traj: Mapping[str, np.ndarray]) -> str:
    """Commanded vs measured vx, vy, wz and the root height / tilt over time, as a base64 PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = traj["time"]
    measured = [traj["root_lin_vel_b"][:, 0], traj["root_lin_vel_b"][:, 1], traj["root_ang_vel_b"][:, 2]]
    fig, axes = plt.subplots(4, 1, figsize=(8, 8), sharex=True)
    for i, (ax, label) in enumerate(zip(axes, ("vx (m/s)", "vy (m/s)", "wz (rad/s)"))):
        ax.plot(t, traj["command"][:, i], "k--", label="command")
        ax.plot(t, measured[i], label="measured")
        ax.set_ylabel(label)
    axes[0].legend(loc="upper right")
    axes[3].plot(t, traj["root_pos"][:, 2], label="root height (m)")
    axes[3].plot(t, tilt(traj["root_quat"]), label="tilt (rad)")
    axes[3].legend(loc="upper right")
    axes[3].set_xlabel("time (s)")
    return _png(fig)


def joints_figure(traj: Mapping[str, np.ndarray], joint_names: Sequence[str], idx: Sequence[int],
                  limits: np.ndarray) -> str:
    """Positions of the joints ``idx`` with their limits, as a base64 PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = 4
    rows = int(np.ceil(len(idx) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(12, 2.2 * rows), sharex=True, squeeze=False)
    for ax, j in zip(axes.flat, idx):
        ax.plot(traj["time"], traj["joint_pos"][:, j])
        ax.axhline(limits[j, 0], color="r", lw=0.5)
        ax.axhline(limits[j, 1], color="r", lw=0.5)
        ax.set_title(joint_names[j], fontsize=8)
    for ax in list(axes.flat)[len(idx):]:
        ax.axis("off")
    return _png(fig)


def _fmt(x) -> str:
    if x is None:
        return "-"
    if isinstance(x, (list, tuple)):
        return "[" + ", ".join(_fmt(v) for v in x) + "]"
    return f"{x:.3f}" if isinstance(x, float) else html.escape(str(x))


def _episode_html(i: int, ep: Mapping, images: Sequence[str]) -> str:
    rows = "".join(f"<tr><td>{s['start_s']:.2f}-{s['end_s']:.2f}</td><td>{_fmt(s['command'])}</td>"
                   f"<td>{_fmt(s['mean_velocity'])}</td><td>{_fmt(s['mean_abs_error'])}</td></tr>"
                   for s in ep["segments"])
    sm = ep["smoothness"]
    imgs = "".join(f'<img src="data:image/png;base64,{b}"/>' for b in images)
    if "mjx" in ep:
        gap, mjx = ep["sim2sim_gap"], ep["mjx"]
        imgs = (f"<p>MJX: {'success' if mjx['success'] else 'failure'}, steps {mjx['steps']}, tracking mean |error| "
                f"{_fmt(mjx['tracking_mean_abs_error'])}; MuJoCo - MJX: steps {gap['steps']}, tracking "
                f"{_fmt(gap['tracking_mean_abs_error'])}</p>") + imgs
    return (f"<h2>Episode {i}: {html.escape(str(ep.get('scenario', '')))} — "
            f"{'success' if ep['success'] else 'failure'}</h2>"
            f"<p>steps {ep['steps']}, fall at {_fmt(ep['fall_time_s'])} s, min root height "
            f"{ep['min_root_height']:.3f} m, max tilt {ep['max_tilt_rad']:.3f} rad; |joint acc| mean/max "
            f"{sm['joint_acc']['mean']:.1f}/{sm['joint_acc']['max']:.1f}, |jerk| mean "
            f"{sm['joint_jerk']['mean']:.1f}; joint-limit violations (hard/soft) "
            f"{ep['joint_limits']['hard_fraction']:.4f}/{ep['joint_limits']['soft_fraction']:.4f}</p>"
            "<table><tr><th>segment (s)</th><th>command</th><th>measured mean</th><th>mean |error|</th></tr>"
            f"{rows}</table>{imgs}")


def write_html(path: str, metrics: Mapping, episode_images: Sequence[Sequence[str]]) -> str:
    """The standalone report: run settings, summary and, per episode, tracking table and plots."""
    summary, settings = metrics["summary"], metrics.get("settings", {})
    head = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{_fmt(v)}</td></tr>" for k, v in settings.items())
    summ = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{_fmt(v)}</td></tr>" for k, v in summary.items())
    body = "".join(_episode_html(i, ep, imgs) for i, (ep, imgs) in enumerate(zip(metrics["episodes"],
                                                                                 episode_images)))
    style = "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;" \
            "padding:2px 6px;font-size:13px}img{max-width:100%;display:block}"
    doc = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Policy evaluation</title><style>{style}"
           f"</style></head><body><h1>Policy evaluation</h1><table>{head}</table><h2>Summary</h2><table>{summ}"
           f"</table>{body}</body></html>")
    with open(path, "w") as f:
        f.write(doc)
    return path
