"""Recurrent PPO and distillation over two forced host devices match one device."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = textwrap.dedent(
    """
    import json, os, sys, jax, numpy as np
    from agile_jax.runtime import platform
    platform.enable_compilation_cache(os.environ.get("AGILE_JAX_TEST_CACHE_DIR"))
    from agile_jax.config import DistillationAlgorithmConfig, DistillationConfig, RunnerConfig, StudentTeacherConfig
    from agile_jax.training.distill_runner import DistillationRunner
    from agile_jax.runtime.parallel import make_mesh
    from agile_jax.training.runner import OnPolicyRunner
    from tests.helpers import point_mass_config, point_mass_env

    def diff(a, b):
        return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in zip(jax.tree.leaves(a),
                                                                                       jax.tree.leaves(b)))

    teacher_dir, out, states = sys.argv[1], {}, {}
    for n in (1, 2):  # recurrent PPO; one minibatch = every device's whole env block
        cfg = point_mass_config(num_envs=16, steps=8)
        cfg.algorithm.num_mini_batches = 1
        cfg.policy.class_name, cfg.policy.rnn_hidden_dim = "ActorCriticRecurrent", 8
        runner = OnPolicyRunner(point_mass_env(cfg), cfg, mesh=make_mesh(n))
        initial = jax.device_get(runner.state.params)
        runner.learn(3)
        states[n] = jax.device_get(runner.state)
        if n == 1:  # the recurrent policy becomes a recurrent ONNX teacher
            runner.export(teacher_dir, formats=("onnx",))
    out["ppo_params"], out["ppo_hidden"] = diff(states[1].params, states[2].params), diff(states[1].hidden,
                                                                                          states[2].hidden)
    moved = {"ppo": diff(states[2].params, initial)}
    for n in (1, 2):  # distillation of an LSTM student from the recurrent teacher
        cfg = DistillationConfig(
            env=point_mass_config(num_envs=16).env,
            policy=StudentTeacherConfig(class_name="StudentTrainedTeacherRecurrent", student_hidden_dims=[16],
                                        teacher_path=teacher_dir + "/policy.onnx", rnn_hidden_dim=8),
            algorithm=DistillationAlgorithmConfig(num_learning_epochs=2, gradient_length=4),
            runner=RunnerConfig(num_steps_per_env=8, progress_bar=False, obs_groups={"student": ["policy"]}))
        runner = DistillationRunner(point_mass_env(cfg), cfg, mesh=make_mesh(n))
        initial = jax.device_get(runner.state.params)
        runner.learn(3)
        states[n] = jax.device_get(runner.state)
    out["distill_params"], out["distill_hidden"] = diff(states[1].params, states[2].params), diff(states[1].hidden,
                                                                                                  states[2].hidden)
    moved["distill"] = diff(states[2].params, initial)
    print(json.dumps({"diff": out, "moved": moved}))
    """
)


@pytest.mark.slow  # default-suite time (tests/README.md); CI's slow step runs it
def test_two_devices_match_one_device(tmp_path):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "teacher")], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    # Same per-env keys -> same trajectories and states; gradients averaged over devices -> same update, and
    # both runs trained (the parameters moved by far more than they differ).
    assert max(out["diff"].values()) < 1e-5 and min(out["moved"].values()) > 1e-3, out
