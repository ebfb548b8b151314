"""Overlay the learning curves of several runs: mean episode length and policy std per iteration.

``python experiments/plot_curves.py out.png label=<run dir | scalars.csv> [label=...] [--baseline 34.5]
[--title T]``

Each source is a run directory or a CSV of ``scalars_to_csv.py``. The top panel is
``Train/mean_episode_length`` (log scale) with the zero-action baseline; the bottom panel is
``Policy/mean_std`` where the source has it.
"""

from __future__ import annotations

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from experiments.learning_curve import LENGTH, read_scalars  # noqa: E402

STD = "Policy/mean_std"


def parse_source(text: str) -> tuple[str, str]:
    """``label=path`` -> ``(label, path)``; the error names the expected form."""
    label, sep, path = text.partition("=")
    if not sep or not label or not path:
        raise ValueError(f"'{text}' is not label=<run dir or CSV>")
    if not os.path.exists(path):
        raise ValueError(f"'{path}' is neither a run directory nor a CSV file")
    return label, path


def plot(curves: dict[str, dict], baseline: float | None, path: str, title: str):
    """Two panels, one line per run; ``curves`` maps a label to its scalars (``read_scalars``).

    Writes ``path`` and returns the matplotlib figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    for label, scalars in curves.items():
        steps, _, values = zip(*scalars[LENGTH])
        line, = top.plot(steps, values, label=label, linewidth=1)
        if scalars.get(STD):
            steps, _, values = zip(*scalars[STD])
            bottom.plot(steps, values, color=line.get_color(), linewidth=1)
    if baseline is not None:
        top.axhline(baseline, color="red", linestyle="--", label=f"zero-action baseline ({baseline:g})")
    top.set_yscale("log")
    top.set_ylabel("mean episode length")
    top.set_title(title)
    top.legend(fontsize=8)
    bottom.set_ylabel("policy std")
    bottom.set_xlabel("iteration")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return fig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="PNG to write")
    parser.add_argument("sources", nargs="+", help="label=<run dir or scalars CSV>")
    parser.add_argument("--baseline", type=float, default=None, help="zero-action mean episode length")
    parser.add_argument("--title", default="")
    args = parser.parse_args(argv)
    try:
        sources = [parse_source(text) for text in args.sources]
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    curves = {label: read_scalars(path) for label, path in sources}
    missing = [label for label, scalars in curves.items() if not scalars.get(LENGTH)]
    if missing:
        print(f"error: no {LENGTH} scalar in {missing}", file=sys.stderr)
        return 2
    plot(curves, args.baseline, args.out, args.title)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
