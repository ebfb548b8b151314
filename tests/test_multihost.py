"""Training across processes with ``jax.distributed`` (CPU, localhost coordinator, Gloo collectives).

Two processes of one CPU device each train the point mass through ``train.py``'s code path; the same run in
one process with two devices is the reference. Same global env count, same mesh size: the parameters must be
bit-identical on both processes and to the single-process run, process 0 alone writes logs and the export,
and the checkpoint written by the two processes restores in one.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from agile_jax.runtime.distributed import cluster_from_environment
from tests.helpers import leaves_equal
from tests.multihost_worker import PARAM_PREFIX

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ITERATIONS = 4


def _argv(log_root: str) -> list[str]:
    return ["config=point_mass", "num_envs=32", "runner.num_steps_per_env=16", "env.episode_length=20",
            f"max_iterations={ITERATIONS}", "save_interval=2", f"log_root={log_root}", "experiment_name=mh",
            "progress_bar=false", "seed=5"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(out_file: str, log_root: str, env_extra: dict) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "XLA_FLAGS"))}
    env.update(env_extra, PYTHONPATH=ROOT)
    return subprocess.Popen([sys.executable, "-m", "tests.multihost_worker", out_file, *_argv(log_root)], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(procs: list[subprocess.Popen]) -> list[str]:
    logs = []
    for proc in procs:
        try:
            logs.append(proc.communicate(timeout=420)[0])
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            raise
    for proc, log in zip(procs, logs):
        assert proc.returncode == 0, log[-3000:]
    return logs


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two-process run and single-process (two-device) reference, started together."""
    tmp = tmp_path_factory.mktemp("multihost")
    port = _free_port()
    multi = [_launch(str(tmp / f"multi_{i}.npz"), str(tmp / "multi_logs"),
                     {"JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}", "JAX_NUM_PROCESSES": "2",
                      "JAX_PROCESS_ID": str(i)}) for i in range(2)]
    single = _launch(str(tmp / "single.npz"), str(tmp / "single_logs"),
                     {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
    logs = _finish([*multi, single])
    load = lambda name: dict(np.load(tmp / name, allow_pickle=False))
    return {"multi": [load(f"multi_{i}.npz") for i in range(2)], "single": load("single.npz"), "logs": logs,
            "tmp": tmp}


def _params(dump: dict) -> dict:
    return {k[len(PARAM_PREFIX):]: v for k, v in dump.items() if k.startswith(PARAM_PREFIX)}


@pytest.mark.slow  # three processes compile and train T1 (about 2 min); CI runs it
def test_two_processes_form_one_mesh_and_train(runs):
    for dump in runs["multi"]:
        assert int(dump["process_count"]) == 2 and int(dump["device_count"]) == 2
        assert int(dump["iteration"]) == ITERATIONS
        assert int(dump["episodes"]) > 0  # the device-side episode window saw episodes of both hosts' envs
    assert str(runs["multi"][0]["log_dir"]) == str(runs["multi"][1]["log_dir"])  # process 0's run name on both


@pytest.mark.slow  # three processes compile and train T1 (about 2 min); CI runs it
def test_parameters_identical_on_both_processes_and_to_one_process(runs):
    first, second = (_params(d) for d in runs["multi"])
    single = _params(runs["single"])
    assert first.keys() == single.keys() and len(first) > 4
    assert leaves_equal(first, second)
    assert leaves_equal(first, single)
    assert int(runs["single"]["process_count"]) == 1 and int(runs["single"]["device_count"]) == 2
    # and they trained: the same run's initial parameters differ from them
    from agile_jax.runtime import parallel
    from agile_jax.training.runner import OnPolicyRunner
    from experiments import train as train_script
    from experiments.configs import make_env

    cfg = train_script.build_config(_argv(str(runs["tmp"] / "initial_logs")))
    cfg.runner.num_devices = 1
    fresh = OnPolicyRunner(make_env(cfg), cfg)
    initial = {jax.tree_util.keystr(p): leaf
               for p, leaf in jax.tree_util.tree_flatten_with_path(parallel.to_host(fresh.state.params))[0]}
    assert initial.keys() == first.keys()
    assert max(float(np.max(np.abs(initial[k] - first[k]))) for k in first) > 1e-3


@pytest.mark.slow  # three processes compile and train T1 (about 2 min); CI runs it
def test_only_process_zero_writes_logs_and_exports(runs):
    experiment = runs["tmp"] / "multi_logs" / "mh"
    (run_dir,) = os.listdir(experiment)  # one run directory, not one per process
    files = sorted(os.listdir(experiment / run_dir))
    assert [f for f in files if f.startswith("events.out.tfevents")] and \
        len([f for f in files if f.startswith("events.out.tfevents")]) == 1
    assert {"config.yaml", "checkpoints", "exported"} <= set(files)
    assert sorted(os.listdir(experiment / run_dir / "checkpoints"), key=int) == ["2", "4"]
    assert "policy.onnx" in os.listdir(experiment / run_dir / "exported")
    assert runs["logs"][1].count("[agile_jax]") == 0 < runs["logs"][0].count("[agile_jax]")


@pytest.mark.slow  # three processes compile and train T1 (about 2 min); CI runs it
def test_checkpoint_of_two_processes_restores_in_one(runs):
    from agile_jax.runtime import parallel
    from agile_jax.training.runner import OnPolicyRunner
    from experiments import train as train_script
    from experiments.configs import make_env

    run_dir = str(runs["multi"][0]["log_dir"])
    cfg = train_script.build_config(_argv(str(runs["tmp"] / "restore_logs")))
    cfg.runner.num_devices = 1
    runner = OnPolicyRunner(make_env(cfg), cfg)
    meta = runner.load(run_dir)
    assert meta["iteration"] == ITERATIONS == runner.current_learning_iteration
    restored = {jax.tree_util.keystr(p): leaf
                for p, leaf in jax.tree_util.tree_flatten_with_path(parallel.to_host(runner.state.params))[0]}
    assert leaves_equal(restored, _params(runs["multi"][0]))
    assert runner.episodes.count == int(runs["multi"][0]["episodes"])
    runner.learn(1)  # and trains on
    assert runner.current_learning_iteration == ITERATIONS + 1


@pytest.mark.slow  # default-suite time (tests/README.md); CI's slow step runs it
def test_torchrun_launches_a_two_process_run(tmp_path):
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    if not os.path.exists(torchrun):
        pytest.skip("torchrun comes with the 'export' extra (torch)")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "XLA_FLAGS"))}
    argv = ["config=point_mass", "num_envs=16", "max_iterations=1", f"log_root={tmp_path}", "progress_bar=false"]
    proc = subprocess.run([torchrun, "--nnodes=1", "--nproc-per-node=2", f"--master-port={_free_port()}", "-m",
                           "tests.multihost_worker", str(tmp_path / "out_{process}.npz"), *argv],
                          cwd=ROOT, env=dict(env, PYTHONPATH=ROOT), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    dumps = [dict(np.load(tmp_path / f"out_{i}.npz")) for i in range(2)]
    assert [int(d["process_count"]) for d in dumps] == [2, 2]
    assert leaves_equal(_params(dumps[0]), _params(dumps[1]))


@pytest.mark.parametrize("environ, expected", [
    ({}, None),
    ({"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234", "JAX_NUM_PROCESSES": "4", "JAX_PROCESS_ID": "3"},
     {"coordinator_address": "10.0.0.1:1234", "num_processes": 4, "process_id": 3}),
    ({"MASTER_ADDR": "node0", "MASTER_PORT": "29500", "WORLD_SIZE": "2", "RANK": "1", "LOCAL_WORLD_SIZE": "1"},
     {"coordinator_address": "node0:29501", "num_processes": 2, "process_id": 1}),
    ({"MASTER_ADDR": "node0", "MASTER_PORT": "6000", "WORLD_SIZE": "8", "RANK": "5", "LOCAL_RANK": "1",
      "LOCAL_WORLD_SIZE": "4"},
     {"coordinator_address": "node0:6001", "num_processes": 8, "process_id": 5, "local_device_ids": [1]}),
    ({"MASTER_ADDR": "node0", "WORLD_SIZE": "1", "RANK": "0"}, None),
    ({"SLURM_JOB_ID": "77", "SLURM_NTASKS": "4"}, {}),
    ({"SLURM_JOB_ID": "77", "SLURM_NTASKS": "1"}, None),
    ({"OMPI_COMM_WORLD_SIZE": "2"}, {}),
])
def test_launcher_variables(environ, expected):
    assert cluster_from_environment(environ) == expected
