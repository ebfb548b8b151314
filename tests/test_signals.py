"""SIGINT / SIGTERM finish the iteration, save an intact checkpoint, print where, and exit with 130 / 143."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from agile_jax.io import checkpoint as ckpt

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_saves_and_exits(tmp_path, signum, code):
    argv = [sys.executable, "experiments/train.py", "config=point_mass", "num_envs=16", "max_iterations=1000000",
            "save_interval=1000000", f"log_root={tmp_path}", "progress_bar=false"]
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    deadline = time.time() + 240
    experiment = tmp_path / "point_mass"
    # Wait until training runs (TensorBoard has written its event file), then interrupt.
    while time.time() < deadline and not any(experiment.glob("*/events.out.tfevents*")):
        time.sleep(0.5)
    time.sleep(3)
    proc.send_signal(signum)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == code, out[-2000:]
    lines = [line for line in out.splitlines() if "stopped by" in line]
    assert len(lines) == 1 and "continue with --resume" in lines[0] and "Traceback" not in out
    (run_dir,) = experiment.iterdir()
    steps = [int(s) for s in os.listdir(run_dir / "checkpoints") if s.isdigit()]
    assert len(steps) == 1 and f"checkpoint {steps[0]} saved in" in lines[0]
    assert ckpt.damage(str(run_dir / "checkpoints" / str(steps[0]))) is None
