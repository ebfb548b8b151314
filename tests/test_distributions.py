"""Gaussian log-prob, entropy, KL and std parameterisations against closed forms."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from agile_jax.networks import distributions as D


def test_log_prob_sums_over_actions():
    mean, std, x = jnp.array([0.0, 1.0]), jnp.array([1.0, 2.0]), jnp.array([1.0, 0.0])
    # per dim: -0.5*z^2 - log(s) - 0.5*log(2pi); z = [1, -0.5]
    expected = (-0.5 - 0.5 * math.log(2 * math.pi)) + (-0.125 - math.log(2.0) - 0.5 * math.log(2 * math.pi))
    assert float(D.log_prob(mean, std, x)) == pytest.approx(expected, rel=1e-6)


def test_entropy_closed_form():
    std = jnp.array([1.0, 0.5, 3.0])
    expected = sum(0.5 + 0.5 * math.log(2 * math.pi) + math.log(s) for s in [1.0, 0.5, 3.0])
    assert float(D.entropy(std)) == pytest.approx(expected, rel=1e-6)


def test_kl_closed_form_and_zero_for_identical():
    mo, so, mn, sn = jnp.array([0.0]), jnp.array([1.0]), jnp.array([1.0]), jnp.array([2.0])
    # log(2/1) + (1 + 1)/(2*4) - 0.5 = 0.693147 + 0.25 - 0.5
    assert float(D.kl(mo, so, mn, sn)) == pytest.approx(math.log(2.0) - 0.25, rel=1e-6)
    assert float(D.kl(mn, sn, mn, sn)) == 0.0


def test_kl_is_old_to_new_not_symmetric():
    a = float(D.kl(jnp.array([0.0]), jnp.array([1.0]), jnp.array([0.0]), jnp.array([2.0])))
    b = float(D.kl(jnp.array([0.0]), jnp.array([2.0]), jnp.array([0.0]), jnp.array([1.0])))
    assert a == pytest.approx(math.log(2.0) + 1.0 / 8.0 - 0.5, rel=1e-6)
    assert b == pytest.approx(-math.log(2.0) + 2.0 - 0.5, rel=1e-6)


def test_std_parameterisations_clamp():
    p = D.init_std_param(2, 0.7, "scalar")
    np.testing.assert_allclose(D.std_from_param(p, "scalar"), [0.7, 0.7], rtol=1e-6)
    # scalar std is clamped (not softplus-ed): a negative parameter gives the lower bound
    assert float(D.std_from_param(jnp.array([-1.0]), "scalar")[0]) == pytest.approx(1e-6)
    lp = D.init_std_param(2, 0.7, "log")
    np.testing.assert_allclose(lp, [math.log(0.7)] * 2, rtol=1e-6)
    np.testing.assert_allclose(D.std_from_param(lp, "log"), [0.7, 0.7], rtol=1e-6)
    assert float(D.std_from_param(jnp.array([100.0]), "log")[0]) == pytest.approx(1e6, rel=1e-5)
    with pytest.raises(ValueError, match="noise_std_type"):
        D.init_std_param(2, 1.0, "softplus")
