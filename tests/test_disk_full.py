"""A full disk during training, on a real 600 KB tmpfs: one error line, exit code 1, the last checkpoint intact."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from agile_jax.io import checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def small_disk(tmp_path):
    """A 600 KB tmpfs (room for one point-mass checkpoint, not two); skipped where mounting is refused."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(mount_point)],
                             capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    yield mount_point
    subprocess.run(["umount", str(mount_point)], check=True)


def _train(log_root) -> subprocess.CompletedProcess:
    command = [sys.executable, "experiments/train.py", "config=point_mass", f"log_root={log_root}",
               "save_interval=5", "max_iterations=30", "progress_bar=false"]
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # as a user's shell has it
    env["PYTHONFAULTHANDLER"] = "1"  # a run that hangs is stopped with SIGABRT: every thread's stack is printed
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = process.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGABRT)
        stdout, stderr = process.communicate()
        pytest.fail(f"the run hung for 300 s; its threads:\n{stderr[-6000:]}")
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def test_full_disk_is_one_line_and_keeps_the_last_checkpoint(small_disk):
    result = _train(small_disk)
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1, result.stderr[-3000:]
    assert len(errors) == 1, result.stderr[-3000:]  # no Orbax, TensorBoard or multiprocessing tracebacks
    assert errors[0].startswith("error: cannot write") and "No space left on device" in errors[0]
    assert "Traceback" not in result.stdout and "ERROR" not in result.stdout
    (run,) = os.listdir(small_disk / "point_mass")
    directory = str(small_disk / "point_mass" / run / "checkpoints")
    names = os.listdir(directory)
    assert not [n for n in names if "orbax-checkpoint-tmp" in n], names  # the unfinished save is gone
    intact = checkpoint.intact_steps(directory, [int(n) for n in names if n.isdigit()])
    assert intact and sorted(int(n) for n in names) == intact  # every checkpoint left is intact
    assert f"the newest intact checkpoint is {os.path.join(directory, str(intact[-1]))}" in errors[0]


def test_closed_loop_tracebacks_are_dropped_and_others_kept():
    """Interleaved tracebacks of two threads ending in 'Event loop is closed' vanish; any other one is kept."""
    import io

    out = io.StringIO()
    stream = checkpoint._DropClosedLoopTracebacks(out)
    closed = ["Traceback (most recent call last):", '  File "base_events.py", line 806, in call_soon_threadsafe',
              "RuntimeError: Event loop is closed"]
    stream.write(closed[0] + "\n" + closed[0] + "\n" + closed[1] + "\n" + closed[1] + "\n")
    stream.write(closed[2] + "\n" + closed[2] + "\nerror: cannot write\n")
    assert out.getvalue() == "error: cannot write\n"
    stream.write("Traceback (most recent call last):\n  File 'x.py'\nValueError: kept\n")
    stream.flush()
    assert out.getvalue().endswith("Traceback (most recent call last):\n  File 'x.py'\nValueError: kept\n")


@pytest.mark.parametrize("after_failure", [False, True])
def test_abandoned_writes_of_a_failed_save_print_nothing_at_exit(after_failure):
    """A failed save's abandoned writes are collected at exit: Python warns 'coroutine ... was never awaited'
    and asyncio logs 'Future exception was never retrieved' unless the failure silenced both (the full-disk
    run's one line would otherwise grow to three or fourteen)."""
    silence = "checkpoint._silence_abandoned_writes()" if after_failure else "pass"
    script = ("import asyncio, errno, logging\n"
              "from agile_jax.io import checkpoint\n"
              "logging.basicConfig()\n"
              "async def write_fragment(): pass\n"
              "pending = [write_fragment()]\n"
              "async def fail():\n"
              "    future = asyncio.get_running_loop().create_future()\n"
              "    future.set_exception(OSError(errno.ENOSPC, 'No space left on device'))\n"
              "    tensorstore = asyncio.get_running_loop().create_future()\n"
              "    tensorstore.set_exception(ValueError(\"RESOURCE_EXHAUSTED: [os_error_code='28']\"))\n"
              f"{silence}\n"
              "asyncio.run(fail())\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    reports = ["coroutine 'write_fragment' was never awaited", "Future exception was never retrieved"]
    assert [r in result.stderr for r in reports] == [not after_failure] * 2, result.stderr
