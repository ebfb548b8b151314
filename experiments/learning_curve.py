"""Learning speed and collapse check of a run, from its scalars (``scalars_to_csv.py`` output or the run dir).

``python experiments/learning_curve.py <run dir | scalars.csv> [--samples-per-iteration N] [--baseline 34.5]
[--plot out.png]``

Reports, as JSON: env steps and wall time until ``Train/mean_episode_length`` first reaches ``--length``
(default 500 control steps) and until the lin-vel tracking reward reaches ``--tracking`` (default 0.5) of its
maximum; and the lowest mean episode length after ``--after`` iterations (default 20) against the zero-action
baseline (``experiments/baseline.py``), i.e. whether the run collapsed below it.

Tracking is measured per step: ``Episode_Reward/track_lin_vel_xy_exp`` (the mean per-episode sum over the
episodes that ended in an iteration) divided by ``Train/mean_episode_length`` and by the term's largest
per-step value ``--tracking-max`` (weight 5 x dt 0.02 = 0.1 for AGILE's T1), averaged over the last
``--tracking-window`` iterations (default 20; ``Train/mean_episode_length`` is already a 100-episode mean).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys

LENGTH, TRACKING, REWARD = "Train/mean_episode_length", "Episode_Reward/track_lin_vel_xy_exp", "Train/mean_reward"


def read_scalars(source: str) -> dict[str, list[tuple[int, float, float]]]:
    """``tag -> [(iteration, wall_time, value)]`` from a CSV of ``scalars_to_csv.py`` or a run directory."""
    rows: dict[str, list[tuple[int, float, float]]] = {}
    if os.path.isdir(source):
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        acc = EventAccumulator(source, size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            rows[tag] = [(e.step, e.wall_time, e.value) for e in acc.Scalars(tag)]
        return rows
    with open(source, newline="") as f:
        for row in csv.DictReader(f):
            rows.setdefault(row["tag"], []).append((int(row["step"]), float(row["wall_time"]), float(row["value"])))
    return rows


def samples_per_iteration(source: str) -> int | None:
    """``num_envs * num_steps_per_env`` from the run directory's ``config.yaml`` (``None`` for a CSV)."""
    path = os.path.join(source, "config.yaml")
    if not os.path.isfile(path):
        return None
    import yaml

    with open(path) as f:
        cfg = yaml.safe_load(f)
    return int(cfg["env"]["num_envs"]) * int(cfg["runner"]["num_steps_per_env"])


def first_reaching(series: list[tuple[int, float, float]], threshold: float, start_time: float,
                   samples: int | None) -> dict | None:
    """Iteration, env steps and wall time of the first value ``>= threshold`` (``None`` if never).

    Values before the curve first drops below ``threshold`` are skipped: with ``init_at_random_ep_len`` the
    first episodes end at random offsets, which inflates the early means.
    """
    below = next((i for i, (_, _, value) in enumerate(series) if value < threshold), len(series))
    for step, wall, value in series[below:]:
        if value >= threshold:
            return {"iteration": step, "env_steps": step * samples if samples else None,
                    "wall_time_s": round(wall - start_time, 1), "value": value}
    return None


def tracking_ratio(scalars: dict, tracking_max: float, window: int = 1) -> list[tuple[int, float, float]]:
    """Per-step lin-vel tracking as a fraction of its maximum, per iteration, averaged over the last ``window``
    iterations (fewer at the start): the per-episode sum comes from the few episodes that ended in one
    iteration, so a single iteration can spike far above the run's level."""
    lengths = {step: value for step, _, value in scalars.get(LENGTH, [])}
    ratios = [(step, wall, value / (lengths[step] * tracking_max))
              for step, wall, value in scalars.get(TRACKING, []) if lengths.get(step)]
    return [(step, wall, sum(r for _, _, r in ratios[max(i + 1 - window, 0):i + 1]) / min(i + 1, window))
            for i, (step, wall, _) in enumerate(ratios)]


def summarize(scalars: dict, samples: int | None, args) -> dict:
    """The report of :func:`main` for one run's scalars."""
    lengths = scalars.get(LENGTH, [])
    if not lengths:
        raise ValueError(f"no {LENGTH} scalar in this run")
    start = min(wall for series in scalars.values() for _, wall, _ in series)
    late = [(step, value) for step, _, value in lengths if step > args.after]
    lowest = min(late, key=lambda sv: sv[1]) if late else None
    return {
        "iterations": lengths[-1][0], "env_steps": lengths[-1][0] * samples if samples else None,
        "wall_time_s": round(lengths[-1][1] - start, 1), "final_mean_episode_length": lengths[-1][2],
        f"to_mean_episode_length_{args.length:g}": first_reaching(lengths, args.length, start, samples),
        f"to_tracking_{args.tracking:g}": first_reaching(
            tracking_ratio(scalars, args.tracking_max, args.tracking_window), args.tracking, start, samples),
        "lowest_length_after": {"after_iteration": args.after, "iteration": lowest[0] if lowest else None,
                                "value": lowest[1] if lowest else None},
        "zero_action_baseline": args.baseline,
        "collapsed_below_baseline": bool(lowest and args.baseline is not None and lowest[1] < args.baseline),
    }


def plot(scalars: dict, baseline: float | None, path: str, title: str) -> None:
    """Mean episode length per iteration with the zero-action baseline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps, _, values = zip(*scalars[LENGTH])
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot(steps, values, label="mean episode length (last 100 episodes)")
    if baseline is not None:
        ax.axhline(baseline, color="red", linestyle="--", label=f"zero-action baseline ({baseline:g})")
    ax.set_xlabel("iteration")
    ax.set_ylabel("control steps (20 ms)")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="run directory or scalars CSV")
    parser.add_argument("--samples-per-iteration", type=int, default=None)
    parser.add_argument("--length", type=float, default=500.0)
    parser.add_argument("--tracking", type=float, default=0.5)
    parser.add_argument("--tracking-max", type=float, default=0.1)
    parser.add_argument("--tracking-window", type=int, default=20,
                        help="iterations the tracking ratio is averaged over before it is compared")
    parser.add_argument("--after", type=int, default=20)
    parser.add_argument("--baseline", type=float, default=None, help="zero-action mean episode length")
    parser.add_argument("--plot", default=None, help="write a PNG of the episode-length curve")
    args = parser.parse_args(argv)
    if args.tracking_window < 1:
        parser.error(f"--tracking-window {args.tracking_window}: use a whole number of iterations >= 1")
    if not os.path.exists(args.source):
        print(f"error: '{args.source}' is neither a run directory nor a CSV file", file=sys.stderr)
        return 2
    scalars = read_scalars(args.source)
    try:
        report = summarize(scalars, args.samples_per_iteration or samples_per_iteration(args.source), args)
    except ValueError as err:
        print(f"error: {err} ('{args.source}')", file=sys.stderr)
        return 2
    if args.plot:
        plot(scalars, args.baseline, args.plot, os.path.basename(os.path.normpath(args.source)))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
