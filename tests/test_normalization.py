"""Empirical normaliser: count-weighted moments, eps on the std, ``until``."""

import jax.numpy as jnp
import numpy as np
import pytest

from agile_jax.networks import normalization as N


def test_update_matches_population_moments_of_all_data():
    rng = np.random.default_rng(0)
    a, b = rng.normal(1.0, 2.0, (50, 3)), rng.normal(-1.0, 0.5, (30, 3))
    s = N.update(N.update(N.init(3), jnp.asarray(a)), jnp.asarray(b))
    both = np.concatenate([a, b])
    np.testing.assert_allclose(s.mean, both.mean(0), rtol=1e-5)
    np.testing.assert_allclose(s.var, both.var(0), rtol=1e-4)  # ddof = 0
    assert float(s.count) == 80


def test_first_update_replaces_the_prior_exactly():
    # With count 0 the rate is 1: mean/var become the batch moments (prior var 1 is forgotten).
    x = jnp.array([[1.0], [3.0]])
    s = N.update(N.init(1), x)
    assert float(s.mean[0]) == 2.0 and float(s.var[0]) == 1.0 and float(s.std[0]) == 1.0


def test_normalize_adds_eps_to_std():
    s = N.NormalizerState(mean=jnp.array([1.0]), var=jnp.array([4.0]), count=jnp.array(10.0))
    assert float(N.normalize(s, jnp.array([5.0]))[0]) == pytest.approx(4.0 / 2.01, rel=1e-6)


def test_until_stops_updates_checked_before_adding():
    s = N.update(N.init(1), jnp.ones((3, 1)), until=4)  # count 0 < 4: updated -> 3
    s = N.update(s, 5.0 * jnp.ones((3, 1)), until=4)  # 3 < 4: updated -> 6 (may exceed until)
    assert float(s.count) == 6 and float(s.mean[0]) == pytest.approx(3.0)
    frozen = N.update(s, 100.0 * jnp.ones((3, 1)), until=4)  # 6 >= 4: frozen
    assert float(frozen.count) == 6 and float(frozen.mean[0]) == pytest.approx(3.0)
