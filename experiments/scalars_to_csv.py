"""Dump a run's TensorBoard scalars to CSV: ``python experiments/scalars_to_csv.py <run dir> <out.csv> [tag ...]``.

Without tags every scalar is written. Rows are ``tag,step,wall_time,value``.
"""

from __future__ import annotations

import csv
import sys


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir, out, tags = argv[0], argv[1], argv[2:]
    acc = EventAccumulator(run_dir, size_guidance={"scalars": 0})
    acc.Reload()
    available = acc.Tags()["scalars"]
    missing = [t for t in tags if t not in available]
    if missing:
        print(f"error: no scalar {missing} in {run_dir}; available: {sorted(available)}", file=sys.stderr)
        return 2
    with open(out, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["tag", "step", "wall_time", "value"])
        for tag in tags or sorted(available):
            for event in acc.Scalars(tag):
                writer.writerow([tag, event.step, f"{event.wall_time:.1f}", f"{event.value:.6g}"])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
