"""GAE, timeout bootstrap and advantage normalisation against hand-derived numbers."""

import jax.numpy as jnp
import numpy as np
import pytest

from agile_jax.algorithms import gae


def test_gae_single_env_no_dones_matches_hand_computation():
    # T=3, rewards [1, 2, 3], values [0.5, 1.0, 1.5], last value 2.0, gamma 0.9, lam 0.8.
    r = jnp.array([[1.0], [2.0], [3.0]])
    v = jnp.array([[0.5], [1.0], [1.5]])
    d = jnp.zeros((3, 1))
    adv, ret = gae.compute_gae(r, v, d, jnp.array([2.0]), gamma=0.9, lam=0.8)
    # deltas: 1 + .9*1 - .5 = 1.4 ; 2 + .9*1.5 - 1 = 2.35 ; 3 + .9*2 - 1.5 = 3.3
    a2 = 3.3
    a1 = 2.35 + 0.72 * a2  # 4.726
    a0 = 1.4 + 0.72 * a1  # 4.80272
    np.testing.assert_allclose(adv[:, 0], [a0, a1, a2], rtol=1e-6)
    np.testing.assert_allclose(ret[:, 0], [a0 + 0.5, a1 + 1.0, a2 + 1.5], rtol=1e-6)


def test_gae_done_cuts_the_trace_and_last_value():
    # Env 0 ends at t=1; env 1 never ends. gamma 1, lam 1 makes the sums easy to read.
    r = jnp.array([[1.0, 1.0], [1.0, 1.0], [1.0, 1.0]])
    v = jnp.zeros((3, 2))
    d = jnp.array([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0]])
    adv, _ = gae.compute_gae(r, v, d, jnp.array([10.0, 10.0]), gamma=1.0, lam=1.0)
    # env 0: t=2 -> 1 + 10 = 11; t=1 is terminal -> 1; t=0 -> 1 + 1 = 2.
    np.testing.assert_allclose(adv[:, 0], [2.0, 1.0, 11.0])
    # env 1: 13, 12, 11.
    np.testing.assert_allclose(adv[:, 1], [13.0, 12.0, 11.0])


def test_timeout_bootstrap_uses_value_of_current_step():
    r = jnp.array([[1.0, 2.0], [3.0, 4.0]])
    v = jnp.array([[10.0, 20.0], [30.0, 40.0]])
    to = jnp.array([[0, 1], [1, 0]], bool)
    out = gae.bootstrap_timeouts(r, v, to, gamma=0.5)
    np.testing.assert_allclose(out, [[1.0, 2.0 + 0.5 * 20.0], [3.0 + 0.5 * 30.0, 4.0]])


def test_gae_with_timeout_matches_hand_values():
    # One env, T=2, timeout at t=0: reward bootstrapped with V(s_0), trace cut at t=0.
    r = jnp.array([[1.0], [1.0]])
    v = jnp.array([[2.0], [3.0]])
    to = jnp.array([[True], [False]])
    d = to.astype(jnp.float32)
    rb = gae.bootstrap_timeouts(r, v, to, gamma=0.9)  # [1 + 1.8, 1]
    adv, ret = gae.compute_gae(rb, v, d, jnp.array([4.0]), gamma=0.9, lam=0.95)
    # t=1: 1 + .9*4 - 3 = 1.6 ; t=0 (done): 2.8 - 2 = 0.8
    np.testing.assert_allclose(adv[:, 0], [0.8, 1.6], rtol=1e-6)
    np.testing.assert_allclose(ret[:, 0], [2.8, 4.6], rtol=1e-6)


def test_advantage_normalisation_uses_unbiased_std():
    a = jnp.array([[1.0, 2.0], [3.0, 4.0]])
    out = gae.normalize_advantages(a)
    std = np.std([1, 2, 3, 4], ddof=1)  # 1.2909944
    np.testing.assert_allclose(out, (np.array([[1, 2], [3, 4]]) - 2.5) / (std + 1e-8), rtol=1e-6)
    assert float(jnp.std(out, ddof=1)) == pytest.approx(1.0, abs=1e-6)
