"""Checkpoints are sealed with checksums: any changed byte refuses the checkpoint, naming the newest intact one."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from agile_jax.io import checkpoint as ckpt
from agile_jax.io.checkpoint import CheckpointError
from agile_jax.training.runner import OnPolicyRunner
from tests.helpers import leaves_equal, point_mass_config, point_mass_env

FLIPS = 200


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A point-mass run with checkpoints 1 and 2, and a second runner to restore into."""
    run_dir = tmp_path_factory.mktemp("integrity") / "run"
    cfg = point_mass_config()
    cfg.runner.save_interval = 1
    runner = OnPolicyRunner(point_mass_env(cfg), cfg, log_dir=str(run_dir))
    runner.learn(2)
    runner.close()
    return run_dir, runner, OnPolicyRunner(point_mass_env(cfg), cfg)


def _files(step_dir) -> list[str]:
    return sorted(os.path.join(root, name) for root, _, names in os.walk(step_dir) for name in names)


def test_fresh_checkpoints_are_sealed_and_intact(run):
    run_dir, _, _ = run
    checkpoints = run_dir / "checkpoints"
    for step in ("1", "2"):
        assert (checkpoints / step / ckpt.CHECKSUMS).exists()
        assert ckpt.damage(str(checkpoints / step)) is None


def test_every_single_byte_flip_is_refused(run):
    run_dir, _, _ = run
    step_dir = run_dir / "checkpoints" / "2"
    files = [f for f in _files(step_dir) if os.path.getsize(f) > 0]
    rng = np.random.default_rng(0)
    refused = 0
    for _ in range(FLIPS):
        path = files[rng.integers(len(files))]
        with open(path, "r+b") as f:
            data = bytearray(f.read())
            offset = int(rng.integers(len(data)))
            original = data[offset]
            data[offset] ^= 1 << int(rng.integers(8))
            f.seek(0)
            f.write(data)
        problem = ckpt.damage(str(step_dir))
        refused += problem is not None
        with open(path, "r+b") as f:  # put the byte back
            f.seek(offset)
            f.write(bytes([original]))
    assert refused == FLIPS
    assert ckpt.damage(str(step_dir)) is None


def test_damaged_newest_names_the_intact_one_and_it_restores(run, tmp_path):
    run_dir, trained, fresh = run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    array_file = max((f for f in _files(copy / "checkpoints" / "2" / "state")), key=os.path.getsize)
    with open(array_file, "r+b") as f:
        f.seek(os.path.getsize(array_file) // 2)
        f.write(b"\x00\x01")
    with pytest.raises(CheckpointError, match=r"checkpoint 2 .* is damaged \(file 'state/.*' changed after the save\)"
                                              r"; the newest intact checkpoint is 1: restore it with "
                                              r"load_checkpoint=1"):
        fresh.load(str(copy))
    meta = fresh.load(str(copy), 1)
    assert meta["iteration"] == 1 and fresh.current_learning_iteration == 1
    fresh.load(str(run_dir))  # the untouched run restores its newest checkpoint exactly
    assert leaves_equal(fresh.state.params, trained.state.params)


def test_added_removed_and_unsealed_files_are_refused(run, tmp_path):
    run_dir, _, _ = run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    step = copy / "checkpoints" / "2"
    (step / "state" / "stray").write_bytes(b"x")
    assert ckpt.damage(str(step)) == "file 'state/stray' was not part of the save"
    os.remove(step / "state" / "stray")
    victim = _files(step / "meta")[0]
    os.remove(victim)
    assert ckpt.damage(str(step)) == f"file '{os.path.relpath(victim, step)}' is missing"
    os.remove(step / ckpt.CHECKSUMS)
    assert "interrupted" in ckpt.damage(str(step))


def test_resume_skips_runs_without_an_intact_checkpoint(run, tmp_path):
    from experiments.train import build_config, find_resume_dir

    run_dir, _, _ = run
    experiment = tmp_path / "point_mass"
    shutil.copytree(run_dir, experiment / "2026-01-01_00-00-00")
    (experiment / "2026-01-02_00-00-00" / "checkpoints").mkdir(parents=True)  # a start that failed early
    damaged = experiment / "2026-01-03_00-00-00"
    shutil.copytree(run_dir, damaged)
    for step in ("1", "2"):
        os.remove(damaged / "checkpoints" / step / ckpt.CHECKSUMS)
    cfg = build_config(["config=point_mass", "--resume"])
    assert find_resume_dir(cfg, str(experiment)).endswith("2026-01-01_00-00-00")
