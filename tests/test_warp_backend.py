"""MuJoCo Warp (``impl="warp"``) against MJX-JAX on the T1 task, through ``VecEnv`` with auto-reset.

Both engines start from the same reset (same keys), get the same actions and run until every env times out and
auto-resets. The solver is run to convergence here (100 iterations; the task's cap is 10): cut short, each engine stops
early at a different point (their line searches differ) and at touchdown joint velocities then differ by up to 12
rad/s, so only converged solves can be compared. Converged, the remaining difference is float32 rounding in
different operation orders, amplified by the stiff foot contacts; the tolerances are 10x the largest differences
measured over these 9 steps (qpos 3.0e-5, qvel 1.8e-3, observations 1.8e-4, reward 4.8e-5)."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

from agile_jax.config import ConfigError, apply_overrides
from envs import mjx_impl
from envs.core import VecEnv
from envs.robots import assets
from envs.tasks import velocity
from experiments.configs import get_preset

WARP_REASON = mjx_impl.warp_unavailable()
needs_warp = pytest.mark.skipif(WARP_REASON is not None, reason=f"MuJoCo Warp unavailable: {WARP_REASON}")

NUM_ENVS = 4
EPISODE_STEPS = 10  # 0.2 s at 50 Hz: every env times out on step 10 and auto-resets
NUM_STEPS = EPISODE_STEPS + 3
TOL = {"qpos": 3e-4, "qvel": 2e-2, "obs": 2e-3, "reward": 5e-4}


def _task(impl: str) -> velocity.T1VelocityConfig:
    converged = assets.SolverOptions(iterations=100, ls_iterations=50)
    cfg = dataclasses.replace(velocity.T1VelocityConfig(), impl=impl, solver=converged,
                              episode_length_s=EPISODE_STEPS * 0.02)
    return velocity.sized_for_batch(cfg, NUM_ENVS)


def _run(impl: str) -> tuple[list, list]:
    """Reset, then ``NUM_STEPS`` steps of fixed random actions; returns the states (reset first) and infos."""
    venv = VecEnv(velocity.VelocityEnv(_task(impl)), NUM_ENVS)
    state = jax.jit(venv.reset)(jax.random.split(jax.random.PRNGKey(0), NUM_ENVS))
    step = jax.jit(venv.step)
    states, infos = [state], []
    for t in range(NUM_STEPS):
        action = 0.5 * jax.random.normal(jax.random.PRNGKey(100 + t), (NUM_ENVS, venv.action_size))
        state, info = step(state, action)
        states.append(state)
        infos.append(info)
    return states, infos


@pytest.fixture(scope="module")
def runs():
    """``{"jax": (states, infos), "warp": (states, infos)}`` from the same keys and actions."""
    return {impl: _run(impl) for impl in ("jax", "warp")}


def _diffs(a, b) -> dict[str, float]:
    """Largest absolute differences between two batched states."""
    return {"qpos": float(np.max(np.abs(a.data.qpos - b.data.qpos))),
            "qvel": float(np.max(np.abs(a.data.qvel - b.data.qvel))),
            "obs": max(float(np.max(np.abs(a.obs[g] - b.obs[g]))) for g in a.obs),
            "reward": float(np.max(np.abs(a.reward - b.reward)))}


@needs_warp
def test_warp_reset_equals_jax_reset(runs):
    jx, wp = runs["jax"][0][0], runs["warp"][0][0]
    assert _diffs(jx, wp) == {"qpos": 0.0, "qvel": 0.0, "obs": 0.0, "reward": 0.0}
    # The contact buffer is shared by the batch: vmapped reset must leave it unbatched.
    assert wp.data._impl.contact__pos.shape == (NUM_ENVS * 8, 3)
    assert wp.data.qpos.shape == (NUM_ENVS, 30)


@needs_warp
def test_warp_trajectory_matches_jax_within_tolerance(runs):
    (js, ji), (ws, wi) = runs["jax"], runs["warp"]
    worst = {k: 0.0 for k in TOL}
    for t in range(1, NUM_STEPS + 1):
        worst = {k: max(v, _diffs(js[t], ws[t])[k]) for k, v in worst.items()}
        np.testing.assert_array_equal(np.asarray(ji[t - 1].done), np.asarray(wi[t - 1].done))
    assert all(worst[k] <= TOL[k] for k in TOL), worst
    # The comparison is not vacuous: the robots fall onto their feet and move.
    assert float(np.max(np.abs(np.stack([s.data.qvel for s in js[1:EPISODE_STEPS]])))) > 1.0
    assert all(np.isfinite(np.asarray(s.data.qvel)).all() for s in ws)


@needs_warp
def test_warp_auto_reset_starts_the_same_fresh_episode(runs):
    (js, ji), (ws, wi) = runs["jax"], runs["warp"]
    reset_step = EPISODE_STEPS  # states[t] is after step t; step 10 times out
    assert np.asarray(wi[reset_step - 1].time_out).all() and np.asarray(wi[reset_step - 1].done).all()
    np.testing.assert_array_equal(np.asarray(wi[reset_step - 1].episode_length), EPISODE_STEPS)
    np.testing.assert_array_equal(np.asarray(ws[reset_step].step_count), 0)
    # The fresh episode comes from the env's own rng, not from physics: identical under both engines.
    assert _diffs(js[reset_step], ws[reset_step])["qpos"] == 0.0
    assert _diffs(js[reset_step], ws[reset_step])["qvel"] == 0.0
    np.testing.assert_allclose(np.asarray(wi[reset_step - 1].episode_return),
                               np.asarray(ji[reset_step - 1].episode_return), atol=EPISODE_STEPS * TOL["reward"])
    assert ws[-1].data._impl.contact__pos.shape == (NUM_ENVS * 8, 3)
    np.testing.assert_array_equal(np.asarray(ws[-1].step_count), NUM_STEPS - EPISODE_STEPS)


def test_sized_for_batch_counts_foot_contacts():
    cfg = velocity.sized_for_batch(dataclasses.replace(velocity.T1VelocityConfig(), impl="warp"), 16)
    # 8 foot spheres on the plane; rows: 4 per pyramidal contact + 23 limited joints + 29 dofs.
    assert (cfg.naconmax, cfg.njmax) == (16 * 8, 8 * 4 + 23 + 29)
    assert velocity.sized_for_batch(velocity.T1VelocityConfig(), 16) == velocity.T1VelocityConfig()


def test_unknown_impl_is_refused_in_one_line():
    with pytest.raises(ConfigError, match=r"^env\.impl='cuda', expected one of \('jax', 'warp', 'c', 'auto'\)$"):
        apply_overrides(get_preset("t1_velocity"), ["env.impl=cuda"])


def test_missing_warp_is_refused_with_the_fix(monkeypatch):
    monkeypatch.setattr(mjx_impl, "warp_unavailable", lambda: "NVIDIA Warp is not installed (no module named "
                        "'warp'); install it with: pip install -e '.[warp]'")
    with pytest.raises(ConfigError) as err:
        apply_overrides(get_preset("t1_velocity"), ["env.impl=warp"])
    assert "\n" not in str(err.value) and "pip install -e '.[warp]'" in str(err.value)
