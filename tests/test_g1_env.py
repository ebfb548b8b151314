"""Unitree G1 velocity task: AGILE's tables and mirror rule, and a short randomised rollout."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from envs.core import VecEnv
from envs.robots import assets, g1
from envs.tasks.velocity import G1VelocityConfig, VelocityEnv

NUM_ENVS = 4


@functools.lru_cache(maxsize=1)
def g1_env() -> VelocityEnv:
    return VelocityEnv(G1VelocityConfig())


def test_g1_tables_follow_agile():
    env = g1_env()
    r = env.robot
    assert env.action_size == 14 and env.cfg.action_scale == 0.5
    assert env.observation_shapes == {"policy": (5, 3 * 3 + 3 * 14), "critic": (3 * 4 + 2 * 29 + 14,)}
    assert assets.bfs_joint_order(r.model) == g1.JOINT_ORDER == r.joint_names
    # Controlled joints in Isaac Lab order: legs with waist roll/pitch interleaved.
    assert r.action_names[:5] == ("left_hip_pitch_joint", "right_hip_pitch_joint", "left_hip_roll_joint",
                                  "right_hip_roll_joint", "waist_roll_joint")
    assert "waist_yaw_joint" not in r.action_names and len(r.random_idx) == 14  # arms move randomly
    kp = dict(zip(r.joint_names, r.kp))
    assert (kp["left_knee_joint"], kp["left_ankle_pitch_joint"], kp["waist_roll_joint"]) == (200.0, 20.0, 300.0)
    assert dict(zip(r.joint_names, r.delay_group))["left_elbow_joint"] == 3 and r.group_max_delay == (4, 4, 4, 0)
    assert "jumping" in env.reward_names and env.cfg.rewards["orientation"].func == "flat_body_orientation_exp"


def test_g1_mirror_rule():
    r = g1_env().robot
    names = r.joint_names
    negated = {names[i] for i in np.flatnonzero(r.mirror_all.sign < 0)}
    assert negated == {n for n in names if "roll" in n or "yaw" in n}
    for i, n in enumerate(names):
        assert names[r.mirror_all.perm[i]] == n.replace("left", "#").replace("right", "left").replace("#", "right")
    a = jax.random.normal(jax.random.PRNGKey(0), (3, 14))
    np.testing.assert_array_equal(r.mirror_action(r.mirror_action(a)), a)
    np.testing.assert_array_equal(np.flatnonzero(r.mirror_action.sign < 0), [2, 3, 4, 5, 6, 12, 13])


@pytest.mark.slow
def test_g1_random_rollout_is_finite_and_terms_have_their_sign():
    env = g1_env()
    venv = VecEnv(env, NUM_ENVS)
    weights = {k: v.weight for k, v in env.cfg.rewards.items()}
    state = jax.jit(venv.reset)(jax.random.split(jax.random.PRNGKey(0), NUM_ENVS))
    step = jax.jit(venv.step)
    for t in range(60):
        a = jax.random.normal(jax.random.PRNGKey(t), (NUM_ENVS, env.action_size))
        state, info = step(state, a)
        assert np.all(np.isfinite(state.data.qpos))
        for name, v in state.reward_terms.items():
            assert np.all(np.isfinite(v)), name
            assert np.all(np.asarray(v) * np.sign(weights[name]) >= -1e-7), name  # every raw term has its sign
        np.testing.assert_allclose(state.reward, sum(state.reward_terms.values()), rtol=1e-5, atol=1e-6)
    assert state.obs["policy"].shape == (NUM_ENVS, 5, 51)
    mirrored = env.mirror_obs(env.mirror_obs(state.obs))
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y), mirrored, state.obs)
    assert jnp.all(state.info["common_step"] == 60)  # the global step counter survives resets (AGILE's curricula)
