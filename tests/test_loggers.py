"""runner.logger=wandb|neptune: offline runs read back and compared with the TensorBoard files of the same run.

W&B's offline run file (``run-<id>.wandb``) is a LevelDB-style log of protobuf records; it is read here with
W&B's own ``Record`` message. Neptune's offline run is a queue of JSON operations (``data-*.log``). Every
scalar TensorBoard holds must be in the service's copy at the same step with the same value (TensorBoard
stores float32), apart from RSL-RL's wall-time series (W&B: none; Neptune: renamed, stepped in float seconds).
"""

from __future__ import annotations

import glob
import json
import os
import struct
import sys
import time
import zlib

import numpy as np
import pytest

from agile_jax.config import ConfigError
from agile_jax.runtime import parallel
from agile_jax.training.runner import OnPolicyRunner
from tests.helpers import point_mass_config, point_mass_env

ITERATIONS = 3
WALL_TIME = {"Train/mean_reward/time": "Train/mean_reward_time",
             "Train/mean_episode_length/time": "Train/mean_episode_length_time"}


def _config(logger: str):
    cfg = point_mass_config(num_envs=8, steps=8)
    cfg.env.episode_length = 12  # episodes end from the second iteration on: Train/mean_reward gets logged
    cfg.runner.logger = logger
    return cfg


def _train(tmp_path, logger: str, text: str | None = None) -> str:
    """A short point-mass run logged with ``logger``; returns its run directory."""
    log_dir = str(tmp_path / "2026-01-01_00-00-00_run")
    cfg = _config(logger)
    runner = OnPolicyRunner(point_mass_env(cfg), cfg, log_dir=log_dir)
    runner.learn(ITERATIONS)
    if text:
        runner.logger.text("Notes/test", text)
    runner.close()
    return log_dir


def tensorboard_scalars(log_dir: str) -> dict[str, list[tuple[int, float]]]:
    """``tag -> [(step, value)]`` of the run's TensorBoard events."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(log_dir, size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


# -- W&B ----------------------------------------------------------------------------------------------


def wandb_records(path: str) -> list:
    """The protobuf records of a W&B run file: a 7-byte file header, then 32 KiB blocks of chunks, each with a
    ``<crc32, length, type>`` header (type 1 full, 2 first, 3 middle, 4 last); a block tail shorter than a header
    is padding. A chunk still being written ends the list."""
    from wandb.proto import wandb_internal_pb2

    data = open(path, "rb").read()
    if len(data) < 7:
        return []
    ident, magic, version = struct.unpack("<4sHB", data[:7])
    assert (ident, magic, version) == (b":W&B", 0xBEE1, 0)
    block, pos, pending, records = 32768, 7, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:
            pos += block - pos % block
            continue
        crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0:  # zero padding up to the end of the block
            pos += block - pos % block
            continue
        if pos + 7 + length > len(data):  # still being written
            break
        chunk = data[pos + 7:pos + 7 + length]
        assert zlib.crc32(chunk, zlib.crc32(bytes([kind]))) & 0xFFFFFFFF == crc, "corrupt W&B record"
        pos += 7 + length
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


def wandb_offline_run(log_dir: str) -> tuple[dict[str, list[tuple[int, float]]], dict, str]:
    """``(tag -> [(step, value)], config, run name)`` of the single offline W&B run below ``log_dir``."""
    files = glob.glob(os.path.join(log_dir, "wandb", "offline-run-*", "run-*.wandb"))
    assert len(files) == 1, files
    # W&B's service finishes writing the file shortly after run.finish() returns: wait for its exit record.
    deadline = time.time() + 30
    while not (records := wandb_records(files[0])) or records[-1].WhichOneof("record_type") != "exit":
        assert time.time() < deadline, "the W&B run file never got its exit record"
        time.sleep(0.05)
    scalars: dict[str, list[tuple[int, float]]] = {}
    config, name = {}, ""
    for record in records:
        kind = record.WhichOneof("record_type")
        if kind == "history":
            items = {"/".join(i.nested_key) or i.key: json.loads(i.value_json) for i in record.history.item}
            for tag, value in items.items():
                if not tag.startswith("_"):  # W&B's own _step, _runtime, _timestamp
                    scalars.setdefault(tag, []).append((record.history.step.num, value))
        elif kind == "run":
            name = record.run.display_name
            config.update({i.key: json.loads(i.value_json) for i in record.run.config.update})
    return scalars, config, name


def test_wandb_offline_run_matches_tensorboard(tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="the 'wandb' extra is not installed (pip install -e '.[wandb]')")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    log_dir = _train(tmp_path, "wandb")
    tb = tensorboard_scalars(log_dir)
    wb, config, name = wandb_offline_run(log_dir)
    # The same tags (RSL-RL leaves the wall-time series out of W&B) ...
    assert set(WALL_TIME) <= set(tb) and "Loss/surrogate" in tb and "Train/mean_reward" in tb
    assert set(wb) == set(tb) - set(WALL_TIME)
    # ... with the same values at the same iterations.
    for tag, points in wb.items():
        assert [s for s, _ in points] == [s for s, _ in tb[tag]], tag
        np.testing.assert_allclose([v for _, v in points], [v for _, v in tb[tag]], rtol=1e-6, atol=1e-30,
                                   err_msg=tag)
    assert [s for s, _ in wb["Loss/value"]] == list(range(1, ITERATIONS + 1))
    # The run is named after its folder and carries the config in RSL-RL's layout.
    assert name == os.path.basename(log_dir)
    assert config["train_cfg"]["num_steps_per_env"] == 8
    assert config["train_cfg"]["algorithm"]["num_mini_batches"] == 2
    assert config["env_cfg"]["num_envs"] == 8


# -- Neptune ------------------------------------------------------------------------------------------


def neptune_offline_run(log_dir: str) -> tuple[dict[str, list[tuple[float, object]]], dict]:
    """``(path -> [(step, value)] of logged series, path -> assigned value)`` of the offline Neptune run."""
    runs = glob.glob(os.path.join(log_dir, ".neptune", "offline", "run__*"))
    assert len(runs) == 1, runs
    series: dict[str, list[tuple[float, object]]] = {}
    fields: dict[str, object] = {}
    for path in sorted(glob.glob(os.path.join(runs[0], "data-*.log"))):
        for line in open(path):
            op = json.loads(line)["obj"]
            key = "/".join(op["path"])
            if op["type"] in ("LogFloats", "LogStrings"):
                series.setdefault(key, []).extend((v["step"], v["value"]) for v in op["values"])
            elif op["type"].startswith("Assign"):
                fields[key] = op["value"]
    return series, fields


def test_neptune_offline_run_matches_tensorboard(tmp_path, monkeypatch):
    pytest.importorskip("neptune", reason="the 'neptune' extra is not installed (pip install -e '.[neptune]')")
    monkeypatch.setenv("NEPTUNE_MODE", "offline")
    monkeypatch.delenv("NEPTUNE_DATA_DIRECTORY", raising=False)
    log_dir = _train(tmp_path, "neptune", text="a notice")
    tb = tensorboard_scalars(log_dir)
    series, fields = neptune_offline_run(log_dir)
    # Neptune's own series (hardware and stdout monitoring) aside.
    floats = {k: v for k, v in series.items() if k not in ("log_dir", "Notes/test") and not k.startswith("monitoring/")}
    # Every TensorBoard tag, the wall-time series under Neptune's names (RSL-RL's name map).
    assert set(floats) == {WALL_TIME.get(tag, tag) for tag in tb}
    for tag, points in tb.items():
        mine = floats[WALL_TIME.get(tag, tag)]
        np.testing.assert_allclose([v for _, v in mine], [v for _, v in points], rtol=1e-6, atol=1e-30, err_msg=tag)
        if tag in WALL_TIME:  # float seconds in Neptune (strictly increasing), whole seconds in TensorBoard
            assert [int(s) for s, _ in mine] == [s for s, _ in points] and np.all(np.diff([s for s, _ in mine]) > 0)
        else:
            assert [s for s, _ in mine] == [s for s, _ in points], tag
    assert series["log_dir"] == [(None, os.path.basename(log_dir))]
    assert series["Notes/test"] == [(None, "a notice")]
    assert fields["train_cfg/num_steps_per_env"] == 8 and fields["train_cfg/algorithm/num_mini_batches"] == 2
    assert fields["env_cfg/num_envs"] == 8
    assert "NEPTUNE_DATA_DIRECTORY" not in os.environ  # set only while the run started


def test_neptune_online_without_credentials_is_one_line(tmp_path, monkeypatch):
    pytest.importorskip("neptune", reason="the 'neptune' extra is not installed (pip install -e '.[neptune]')")
    from agile_jax.io.logger import Logger

    for var in ("NEPTUNE_MODE", "NEPTUNE_API_TOKEN", "NEPTUNE_USERNAME"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ConfigError, match="NEPTUNE_API_TOKEN and NEPTUNE_USERNAME.*NEPTUNE_MODE=offline") as err:
        Logger(str(tmp_path), "neptune", cfg=_config("neptune"))
    assert "\n" not in str(err.value)
    assert not glob.glob(str(tmp_path / ".neptune" / "*"))  # nothing queued


# -- configuration faults and multi-host --------------------------------------------------------------


def test_missing_extra_and_unknown_logger_exit_2(tmp_path, monkeypatch, capsys):
    from experiments import cli, train

    base = ["config=point_mass", "num_envs=8", "max_iterations=1", "progress_bar=false", f"log_root={tmp_path}"]
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if the extra were not installed
    assert cli.run(train.main, [*base, "runner.logger=wandb"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert err == ["error: runner.logger=wandb needs the 'wandb' package: pip install 'agile_jax[wandb]' "
                   "(in a source checkout: pip install -e '.[wandb]')"]
    assert cli.run(train.main, [*base, "runner.logger=wandv"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert err == ["error: unknown runner.logger 'wandv'; use one of tensorboard, wandb, neptune, none"]
    run_root = tmp_path / "point_mass"
    assert not run_root.exists() or not os.listdir(run_root)  # the failed starts left no run folders


def test_only_process_zero_logs(tmp_path, monkeypatch):
    """Another host's process needs no extra and writes no TensorBoard, W&B or config file."""
    monkeypatch.setitem(sys.modules, "wandb", None)
    monkeypatch.setattr(parallel, "is_main_process", lambda: False)
    cfg = _config("wandb")
    runner = OnPolicyRunner(point_mass_env(cfg), cfg, log_dir=str(tmp_path / "run"))
    runner.learn(1)
    runner.close()
    assert runner.logger is None and runner.current_learning_iteration == 1
    written = [os.path.relpath(os.path.join(d, f), tmp_path) for d, _, fs in os.walk(tmp_path) for f in fs]
    assert not [f for f in written if "tfevents" in f or "wandb" in f or f.endswith("config.yaml")], written
    # Process 0 of the same run refuses to start without the extra.
    monkeypatch.setattr(parallel, "is_main_process", lambda: True)
    with pytest.raises(ConfigError, match=r"pip install 'agile_jax\[wandb\]'"):
        OnPolicyRunner(point_mass_env(cfg), cfg, log_dir=str(tmp_path / "run0"))
