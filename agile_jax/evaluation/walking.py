"""The walking verdict of an evaluation: falls, per-segment velocity ratios and standing drift.

A policy walks when, over the episodes of a scenario, at most ``max_falls`` episodes fall, every moving
segment's mean velocity reaches ``forward_ratio`` of a forward command (``lin_vel_x > 0``) and ``other_ratio``
of every other commanded component (sidestep, backward, yaw rate), and every standing segment (zero command)
drifts less than ``max_drift`` m/s. Segment means skip each segment's first ``settle_s`` (see
:func:`agile_jax.evaluation.metrics.tracking`) and are averaged over the episodes that did not fall.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

COMPONENTS = ("lin_vel_x", "lin_vel_y", "ang_vel_z")


@dataclass(frozen=True)
class WalkingCriterion:
    """Thresholds of the walking verdict (the defaults are the project's walking criterion)."""

    forward_ratio: float = 0.7
    other_ratio: float = 0.5
    max_drift: float = 0.1
    max_falls: int = 1
    min_command: float = 0.05


def _segment_table(episodes: Sequence[Mapping]) -> list[tuple[list[float], np.ndarray]]:
    """``(command, mean velocity over the standing episodes)`` per segment, in scenario order."""
    standing = [e for e in episodes if not e["fell"]]
    if not standing:
        return []
    table = []
    for k, seg in enumerate(standing[0]["segments"]):
        means = [e["segments"][k]["mean_velocity"] for e in standing
                 if k < len(e["segments"]) and e["segments"][k]["mean_velocity"] is not None]
        if means:
            table.append((seg["command"], np.mean(np.asarray(means, np.float64), axis=0)))
    return table


def verdict(episodes: Sequence[Mapping], criterion: WalkingCriterion = WalkingCriterion()) -> dict:
    """Checks the walking criterion on :func:`~agile_jax.evaluation.metrics.episode_metrics` results.

    Returns:
        ``walks`` (bool), ``falls``, and per segment: ``command``, ``mean_velocity``, ``checks`` (a list of
        ``{component, ratio or drift, required, ok}``).
    """
    c = criterion
    falls = sum(bool(e["fell"]) for e in episodes)
    rows, ok = [], falls <= c.max_falls and falls < len(episodes)
    for command, mean in _segment_table(episodes):
        checks = []
        moving = [i for i in range(3) if abs(command[i]) >= c.min_command]
        if not moving:
            drift = float(np.linalg.norm(mean[:2]))
            checks.append({"component": "drift", "drift": drift, "required": c.max_drift, "ok": drift < c.max_drift})
        for i in moving:
            required = c.forward_ratio if i == 0 and command[i] > 0 else c.other_ratio
            ratio = float(mean[i] / command[i])
            checks.append({"component": COMPONENTS[i], "ratio": ratio, "required": required, "ok": ratio >= required})
        ok = ok and all(ch["ok"] for ch in checks)
        rows.append({"command": list(command), "mean_velocity": mean.tolist(), "checks": checks})
    return {"walks": bool(ok and rows), "falls": falls, "episodes": len(episodes), "segments": rows}


def describe(result: Mapping) -> str:
    """A few lines: the verdict, then one line per segment with its ratios (or drift)."""
    lines = [f"walking: {'yes' if result['walks'] else 'no'} ({result['falls']} of {result['episodes']} "
             "episodes fell)"]
    for row in result["segments"]:
        cmd = ", ".join(f"{v:+.2f}" for v in row["command"])
        parts = [f"{ch['component']} {ch.get('ratio', ch.get('drift')):.2f} "
                 f"({'>=' if 'ratio' in ch else '<'} {ch['required']:.2f}) {'ok' if ch['ok'] else 'FAIL'}"
                 for ch in row["checks"]]
        lines.append(f"  command ({cmd}): " + "; ".join(parts))
    return "\n".join(lines)
