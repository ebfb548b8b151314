"""Ships a trained policy into ``policies/<name>/``: the export, a video and frame strip, and its provenance.

``python experiments/ship_policy.py <run dir> [<earlier run dir> ...] --out policies/t1_velocity
--command "python experiments/train.py config=t1_velocity" [--export <exported dir>] [--through <iteration>]``

The first run directory is the one whose ``exported/`` policy is shipped (or ``--export``); every run directory
given (a resumed run and the runs it continued, or the stages it was started from with ``init_from``) adds its
env steps and training wall time; ``<run dir>@<iteration>`` counts a run only up to that iteration (the checkpoint
a later stage started from); an earlier shipped policy directory (a stage started from its export with
``runner.init_from=policies/<name>``) adds the totals of its ``provenance.json``. ``provenance.json`` records the
command, the commit, the env steps, the training wall time and the machine; ``walk_all.mp4`` and
``walk_all_strip.png`` show one plain-MuJoCo episode of ``experiments/scenarios/walk_all.yaml``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from experiments.learning_curve import read_scalars, samples_per_iteration  # noqa: E402

FILES = ("policy.onnx", "policy.pt", "policy.yaml")
SCENARIO = os.path.join(ROOT, "experiments", "scenarios", "walk_all.yaml")
MAX_VIDEO_BYTES = 2 * 1024 * 1024


def split_run(arg: str) -> tuple[str, int | None]:
    """``<run dir>@<iteration>`` -> ``(run dir, iteration)``: an earlier run that counts only up to the checkpoint
    the next stage started from; a plain run directory counts all of its iterations."""
    run, sep, iteration = arg.rpartition("@")
    if sep and iteration.isdigit():
        return run, int(iteration)
    return arg, None


def training_totals(run_dirs: list[str], through: int | None = None) -> dict:
    """Env steps and training wall time of every run given, summed: each run counts the iterations it ran itself
    (a resumed run logs from the iteration it resumed at, a run started with ``init_from`` from 0). ``through``:
    the shipped (first) run counts its iterations up to that one only (a checkpoint before its last); an earlier
    run given as ``<dir>@<iteration>`` likewise up to its own iteration."""
    wall, steps = 0.0, 0
    for index, arg in enumerate(run_dirs):
        run, last = split_run(arg)
        shipped = shipped_provenance(run)
        if index > 0 and shipped is not None:  # a shipped policy a stage started from: its own lineage's totals
            wall, steps = wall + shipped["train_wall_time_s"], steps + shipped["env_steps"]
            continue
        if index == 0 and through is not None:
            last = through
        times = read_scalars(run).get("Perf/iteration_time", [])
        if last is not None:
            times = [row for row in times if row[0] <= last]
        wall += sum(value for _, _, value in times)
        if times:
            iterations = {it for it, _, _ in times}
            steps += (max(iterations) - min(iterations) + 1) * (samples_per_iteration(run) or 0)
    return {"env_steps": int(steps), "train_wall_time_s": round(wall, 1)}


def shipped_provenance(path: str) -> dict | None:
    """The ``provenance.json`` of a shipped policy directory, ``None`` for a run directory."""
    file = os.path.join(path, "provenance.json")
    if not os.path.isfile(file):
        return None
    with open(file) as f:
        return json.load(f)


def _run_name(arg: str) -> str:
    run, through = split_run(arg)
    shipped = shipped_provenance(run)
    if shipped is not None:
        return f"{os.path.normpath(run)} ({', '.join(shipped.get('runs', []))})"
    name = os.path.basename(os.path.normpath(run))
    return name if through is None else f"{name}@{through}"


def machine() -> str:
    """CPU model, cores, memory and JAX's devices, in one line."""
    cpu = platform.processor() or platform.machine()
    if os.path.isfile("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    import jax

    device = jax.devices()[0].device_kind
    return f"{cpu}, {os.cpu_count()} cores, {memory:.0f} GiB, JAX {jax.default_backend()} ({device})"


def commit() -> str:
    """The checked-out commit (``+dirty`` when tracked files differ from it)."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "diff", "--quiet", "HEAD"], cwd=ROOT).returncode != 0
    return head + ("+dirty" if dirty else "")


def frame_strip(video: str, out_png: str, frames: int = 8) -> None:
    """``frames`` evenly spaced frames of ``video`` side by side."""
    import imageio.v3 as iio
    import numpy as np

    images = iio.imread(video)
    picks = np.linspace(0, len(images) - 1, frames).round().astype(int)
    iio.imwrite(out_png, np.concatenate([images[i] for i in picks], axis=1))


def record_episode(out: str) -> None:
    """One plain-MuJoCo episode of the walking scenario: ``walk_all.mp4`` (if under 2 MB) and its frame strip."""
    from agile_jax.evaluation.run import EvalConfig, evaluate

    with tempfile.TemporaryDirectory() as tmp:
        result = evaluate(EvalConfig(path=out, scenario=SCENARIO, episodes=1, viewer=False, out=tmp))
        video = result["episodes"][0]["video"]
        frame_strip(video, os.path.join(out, "walk_all_strip.png"))
        if os.path.getsize(video) <= MAX_VIDEO_BYTES:
            shutil.copy(video, os.path.join(out, "walk_all.mp4"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="run directories: the shipped one first, then the runs it continued "
                        "(<dir>@<iteration>: counted up to that iteration)")
    parser.add_argument("--out", required=True, help="destination, e.g. policies/t1_velocity")
    parser.add_argument("--command", required=True, help="the training command (recorded)")
    parser.add_argument("--export", help="exported directory to ship (default: <first run>/exported)")
    parser.add_argument("--through", type=int, default=None,
                        help="the first run's iteration that was exported (default: its last); later ones don't count")
    args = parser.parse_args(argv)
    export = args.export or os.path.join(args.runs[0], "exported")
    missing = [f for f in FILES if not os.path.isfile(os.path.join(export, f))]
    if missing:
        print(f"error: {export} lacks {missing}; export the run first (python experiments/export.py <run>)",
              file=sys.stderr)
        return 2
    os.makedirs(args.out, exist_ok=True)
    for f in FILES:
        shutil.copy(os.path.join(export, f), os.path.join(args.out, f))
    provenance = {"command": args.command, "commit": commit(), **training_totals(args.runs, args.through),
                  "machine": machine(), "runs": [_run_name(r) for r in args.runs]}
    if args.through is not None:
        provenance["shipped_iteration"] = args.through
    with open(os.path.join(args.out, "provenance.json"), "w") as f:
        json.dump(provenance, f, indent=2)
    record_episode(args.out)
    print(json.dumps(provenance, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
