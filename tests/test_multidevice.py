"""Data-parallel training over two forced host devices matches one device."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = textwrap.dedent(
    """
    import json, jax, numpy as np
    from agile_jax.runtime.parallel import make_mesh
    from agile_jax.training.runner import OnPolicyRunner
    from tests.helpers import point_mass_config, point_mass_env

    assert jax.device_count() == 2, jax.devices()
    results = {}
    for n in (1, 2):
        cfg = point_mass_config(num_envs=16, steps=8)
        cfg.algorithm.num_mini_batches = 1  # minibatch = every device's whole shard: same samples either way
        runner = OnPolicyRunner(point_mass_env(cfg), cfg, mesh=make_mesh(n))
        if n == 2:
            assert len(runner.state.env_state.obs["policy"].sharding.device_set) == 2
        initial = jax.device_get(runner.state.params)
        runner.learn(3)
        results[n] = runner.state
    flat1 = jax.tree.leaves(jax.device_get(results[1].params))
    flat2 = jax.tree.leaves(jax.device_get(results[2].params))
    diff = max(float(np.max(np.abs(a - b))) for a, b in zip(flat1, flat2))
    obs_diff = float(np.max(np.abs(np.asarray(results[1].env_state.obs["policy"])
                                   - np.asarray(results[2].env_state.obs["policy"]))))
    norms = [jax.tree.leaves(jax.device_get(results[n].normalizers)) for n in (1, 2)]
    norm_diff = max(float(np.max(np.abs(a - b))) for a, b in zip(*norms))
    moved = max(float(np.max(np.abs(a - b))) for a, b in zip(flat2, jax.tree.leaves(initial)))
    print(json.dumps({"param_diff": diff, "obs_diff": obs_diff, "norm_diff": norm_diff, "moved": moved}))
    """
)


@pytest.mark.slow  # default-suite time (tests/README.md); CI's slow step runs it
def test_two_devices_match_one_device():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    # Same per-env keys -> same trajectories; gradients averaged over devices -> same update up to rounding.
    assert out["moved"] > 1e-3 and out["param_diff"] < 1e-5, out  # trained, and the same either way
    assert out["obs_diff"] < 1e-4, out
    assert out["norm_diff"] < 1e-4, out


SCRIPT_C = textwrap.dedent(
    """
    import json, jax, numpy as np
    from agile_jax.config import apply_overrides
    from agile_jax.runtime.parallel import make_mesh
    from agile_jax.training.runner import OnPolicyRunner
    from experiments.configs import get_preset, make_env

    assert jax.device_count() == 2, jax.devices()
    results = {}
    for n in (1, 2):
        cfg = apply_overrides(get_preset("t1_velocity"), ["num_envs=8", "env.impl=c", "runner.num_steps_per_env=4",
                                                          "algorithm.num_mini_batches=1", "seed=3"])
        runner = OnPolicyRunner(make_env(cfg), cfg, mesh=make_mesh(n))
        initial = jax.device_get(runner.state.params)
        runner.learn(2)
        results[n] = (runner.state, initial)
    flat = {n: jax.tree.leaves(jax.device_get(results[n][0].params)) for n in (1, 2)}
    diff = max(float(np.max(np.abs(a - b))) for a, b in zip(flat[1], flat[2]))
    qpos = [np.asarray(results[n][0].env_state.data.qpos) for n in (1, 2)]
    moved = max(float(np.max(np.abs(a - b))) for a, b in zip(flat[2], jax.tree.leaves(results[2][1])))
    print(json.dumps({"param_diff": diff, "qpos_diff": float(np.max(np.abs(qpos[0] - qpos[1]))), "moved": moved}))
    """
)


@pytest.mark.slow
def test_mujoco_c_physics_on_two_devices_matches_one_device():
    """``env.impl=c`` inside ``shard_map``: each device's host callbacks step its own shard of envs."""
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", PYTHONPATH=ROOT,
               AGILE_JAX_C_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", SCRIPT_C], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    # MuJoCo C steps in float64 on the host either way: the same trajectories, the same update up to rounding.
    assert out["moved"] > 1e-4 and out["param_diff"] < 1e-4, out
    assert out["qpos_diff"] < 1e-4, out
