"""Faults a user meets from the command line: one line, the right exit code, and earlier runs left intact."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import pytest

from experiments import cli, distill, train
from experiments import eval as eval_cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

BASE = ["config=point_mass", "num_envs=16", "max_iterations=2", "save_interval=1", "progress_bar=false"]


def _digest(root) -> dict[str, str]:
    """sha256 of every file below ``root`` (to prove a failure touched nothing)."""
    out = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
    return out


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    assert cli.run(train.main, [*BASE, f"log_root={root}"]) == 0
    return root


def _one_error_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert "Traceback" not in err[0]
    return err[0]


def test_incompatible_resume_is_one_line_and_leaves_no_folder(logs, capsys):
    before = _digest(logs)
    code = cli.run(train.main, [*BASE, f"log_root={logs}", "--resume", "policy.actor_hidden_dims=[8,8]"])
    line = _one_error_line(capsys)
    assert code == 2 and "does not fit the current configuration" in line and "params" in line
    assert _digest(logs) == before  # the earlier run untouched, and no new empty run folder


def test_resume_without_an_earlier_run_and_unknown_load_run(tmp_path, capsys):
    assert cli.run(train.main, [*BASE, f"log_root={tmp_path}", "--resume"]) == 2
    assert "no earlier run with an intact checkpoint" in _one_error_line(capsys)
    assert cli.run(train.main, [*BASE, f"log_root={tmp_path}", "load_run=nope"]) == 2
    assert "load_run='nope' not found" in _one_error_line(capsys)
    assert not os.path.exists(tmp_path / "point_mass") or not os.listdir(tmp_path / "point_mass")


def test_simultaneous_starts_get_their_own_folders(tmp_path):
    first = train.claim_run_dir(str(tmp_path / "exp" / "2026-01-01_00-00-00"))
    second = train.claim_run_dir(str(tmp_path / "exp" / "2026-01-01_00-00-00"))
    assert first != second and second.endswith("_2") and os.path.isdir(first) and os.path.isdir(second)


def test_a_teacher_that_is_not_a_policy(tmp_path, capsys):
    bad = tmp_path / "README.onnx"
    bad.write_text("not a model")
    code = cli.run(distill.main, ["config=point_mass", f"teacher={bad}", "max_iterations=1", f"log_root={tmp_path}"])
    assert code == 2
    _one_error_line(capsys)


def test_eval_bad_value_and_missing_export(tmp_path, capsys):
    assert cli.run(lambda a: eval_cli.main(a) and 0, [str(tmp_path), "episodes=abc"]) == 2
    assert "invalid literal" in _one_error_line(capsys)


def test_export_parity_failure_after_training_keeps_the_checkpoints(tmp_path, capsys, monkeypatch):
    from agile_jax.export import exporter

    def refuse(*args, **kwargs):
        raise exporter.ExportParityError("refusing to export: differs by 1 > tol=1e-05", {})

    monkeypatch.setattr(train, "export_final_policy", lambda runner: refuse())
    assert cli.run(train.main, [*BASE, f"log_root={tmp_path}"]) == 2
    assert "refusing to export" in _one_error_line(capsys)
    (run_dir,) = (tmp_path / "point_mass").iterdir()
    assert sorted(os.listdir(run_dir / "checkpoints")) == ["1", "2"]


def test_unexpected_errors_are_one_line_and_debug_shows_the_traceback(tmp_path, capsys, monkeypatch):
    def crash(cfg, *args):  # train(cfg, student)
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(train, "train", crash)
    assert cli.run(train.main, [*BASE, f"log_root={tmp_path}"]) == 1
    assert _one_error_line(capsys) == "error: RuntimeError: boom (run again with --debug for the traceback)"
    with pytest.raises(RuntimeError, match="boom"):
        cli.run(train.main, [*BASE, f"log_root={tmp_path}", "--debug"])


def test_a_closed_pipe_ends_the_command_quietly():
    """``<command> | head -1``: the reader closes stdout early; the command stops with the shell's code for a
    closed pipe (141), and no error line claims a full disk."""
    script = ("import sys; from experiments import cli\n"
              "def main(argv):\n"
              "    for i in range(1_000_000):\n"
              "        print(f'line {i}')\n"
              "sys.exit(cli.run(main, []))\n")
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline() == b"line 0\n"
    proc.stdout.close()
    assert proc.wait(timeout=60) == 141
    assert proc.stderr.read() == b""


def test_a_broken_pipe_that_is_not_stdout_is_still_an_error(capsys):
    def main(argv):
        raise BrokenPipeError(32, "Broken pipe")  # e.g. a logger's service process died

    assert cli.run(main, []) == 1
    assert capsys.readouterr().err.startswith("error: ")
