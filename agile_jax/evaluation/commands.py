"""Velocity-command sources of an evaluation, all compiled to a piecewise-constant :class:`CommandSchedule`.

Scenario YAML (AGILE-style; one entry of ``environments`` per episode, cycled)::

    evaluation: {name: forward_turn, episode_length_s: 6.0}
    environments:
    - name: forward_then_turn
      schedule:                      # timed: each entry holds until the next one
      - {time: 0.0, commands: {lin_vel_x: 0.0, lin_vel_y: 0.0, ang_vel_z: 0.0}}
      - {time: 1.0, commands: {lin_vel_x: 0.3}}          # omitted fields keep their previous value
    - name: vx_sweep
      sweep:                         # every ``interval`` s the next value of each list (lists cycle)
        interval: 2.0
        lin_vel_x: [0.0, 0.2, 0.4, -0.3]
        lin_vel_y: [0.0]
        ang_vel_z: [0.0]

Commands are clamped to the task ranges from ``policy.yaml`` when they are given.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np
import yaml

FIELDS = ("lin_vel_x", "lin_vel_y", "ang_vel_z")


@dataclasses.dataclass(frozen=True)
class CommandSchedule:
    """Piecewise-constant commands.

    Attributes:
        name: scenario entry name.
        times: segment start times ``[K]`` (s), increasing, ``times[0] == 0``.
        values: command of each segment ``[K, 3]`` (vx, vy, wz).
        duration: episode length (s), or ``None`` to let the caller decide.
    """

    name: str
    times: np.ndarray
    values: np.ndarray
    duration: float | None = None

    def at(self, t: float) -> np.ndarray:
        """The command ``[3]`` active at time ``t`` (s)."""
        k = int(np.searchsorted(self.times, t + 1e-9, side="right")) - 1
        return self.values[max(k, 0)].copy()

    def clamped(self, ranges: Mapping[str, Sequence[float]] | None) -> CommandSchedule:
        """The schedule with every field clipped to ``ranges[field] = (lo, hi)`` (unchanged without ranges)."""
        if not ranges:
            return self
        lo = np.asarray([ranges.get(f, (-np.inf, np.inf))[0] for f in FIELDS])
        hi = np.asarray([ranges.get(f, (-np.inf, np.inf))[1] for f in FIELDS])
        return dataclasses.replace(self, values=np.clip(self.values, lo, hi))


def from_schedule(name: str, entries: Sequence[Mapping], duration: float | None) -> CommandSchedule:
    """A schedule from ``[{time, commands: {field: value}}]``; omitted fields keep their previous value (0 first)."""
    entries = sorted(entries, key=lambda e: float(e["time"]))
    if not entries or float(entries[0]["time"]) > 0.0:
        entries = [{"time": 0.0, "commands": {}}] + list(entries)
    current, times, values = dict.fromkeys(FIELDS, 0.0), [], []
    for e in entries:
        unknown = set(e.get("commands", {})) - set(FIELDS) - {"base_height"}
        if unknown:
            raise ValueError(f"scenario '{name}': unknown command fields {sorted(unknown)}; expected {FIELDS}")
        current.update({k: float(v) for k, v in e.get("commands", {}).items() if k in FIELDS})
        times.append(float(e["time"]))
        values.append([current[f] for f in FIELDS])
    return CommandSchedule(name, np.asarray(times), np.asarray(values, np.float32), duration)


def from_sweep(name: str, sweep: Mapping, duration: float | None) -> CommandSchedule:
    """A schedule stepping every ``sweep['interval']`` s through the value lists of each field (lists cycle).

    Without ``duration`` the sweep runs ``interval * longest list`` seconds.
    """
    interval = float(sweep["interval"])
    lists = {f: [float(v) for v in np.atleast_1d(sweep.get(f, [0.0]))] for f in FIELDS}
    steps = max(len(v) for v in lists.values())
    duration = duration if duration is not None else interval * steps
    count = max(int(np.ceil(duration / interval - 1e-9)), 1)
    values = [[lists[f][i % len(lists[f])] for f in FIELDS] for i in range(count)]
    return CommandSchedule(name, interval * np.arange(count), np.asarray(values, np.float32), duration)


def random_schedule(seed: int, duration: float, ranges: Mapping[str, Sequence[float]], resample_s: float = 4.0,
                    min_norm: float = 0.1) -> CommandSchedule:
    """Uniform random commands in ``ranges`` resampled every ``resample_s`` s (norm below ``min_norm`` -> 0)."""
    rng = np.random.default_rng(seed)
    count = max(int(np.ceil(duration / resample_s)), 1)
    lo = np.asarray([ranges[f][0] for f in FIELDS], np.float32)
    hi = np.asarray([ranges[f][1] for f in FIELDS], np.float32)
    values = rng.uniform(lo, hi, (count, 3)).astype(np.float32)
    values[np.linalg.norm(values, axis=-1) < min_norm] = 0.0
    return CommandSchedule(f"random_seed{seed}", resample_s * np.arange(count), values, duration)


def load_scenario(path: str) -> tuple[dict, list[CommandSchedule]]:
    """Reads a scenario YAML; returns its ``evaluation`` block and one schedule per ``environments`` entry."""
    with open(path) as f:
        doc = yaml.safe_load(f) or {}
    ev = dict(doc.get("evaluation") or {})
    duration = ev.get("episode_length_s")
    schedules = []
    for i, env in enumerate(doc.get("environments") or []):
        name = env.get("name", f"env{i}")
        if "schedule" in env:
            schedules.append(from_schedule(name, env["schedule"], duration))
        elif "sweep" in env:
            schedules.append(from_sweep(name, env["sweep"], duration))
        else:
            raise ValueError(f"scenario {path}: environment '{name}' needs a 'schedule' or a 'sweep'")
    if not schedules:
        raise ValueError(f"scenario {path}: no 'environments' entries")
    return ev, schedules
