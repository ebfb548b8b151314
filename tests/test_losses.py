"""PPO loss terms and the adaptive-KL learning-rate rule against hand-derived values."""

import math

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from agile_jax.algorithms import losses, optim
from agile_jax.extensions.base import Batch, Forward, Minibatch


def test_surrogate_clips_both_sides():
    # ratios e^0.5=1.6487 (A>0, clipped to 1.2) and e^-0.5=0.6065 (A<0, clipped to 0.8).
    logp, old = jnp.array([0.5, -0.5]), jnp.zeros(2)
    adv = jnp.array([1.0, -2.0])
    # sample 0: max(-1.6487, -1.2) = -1.2 ; sample 1: max(2*0.6065, 2*0.8) = 1.6
    assert float(losses.surrogate_loss(logp, old, adv, 0.2)) == pytest.approx((-1.2 + 1.6) / 2, rel=1e-6)
    # inside the clip range the loss is -A*ratio
    assert float(losses.surrogate_loss(jnp.array([0.1]), jnp.zeros(1), jnp.array([2.0]), 0.2)) == pytest.approx(
        -2.0 * math.exp(0.1), rel=1e-6)


def test_value_loss_clipped_takes_max_of_errors():
    v, v_old, ret = jnp.array([1.0, 0.0]), jnp.array([0.0, 0.0]), jnp.array([1.0, 1.0])
    # sample 0: (1-1)^2=0 vs (0+0.2-1)^2=0.64 -> 0.64 ; sample 1: 1 vs (0-1)^2=1 -> 1
    assert float(losses.value_loss(v, v_old, ret, 0.2, True)) == pytest.approx((0.64 + 1.0) / 2, rel=1e-6)
    assert float(losses.value_loss(v, v_old, ret, 0.2, False)) == pytest.approx(0.5, rel=1e-6)


def test_loss_terms_apply_their_coefficients():
    fwd = Forward(mean=jnp.zeros((2, 1)), std=jnp.ones(1), log_prob=jnp.zeros(2), value=jnp.array([1.0, 0.0]),
                  entropy=jnp.array([1.0, 3.0]))
    batch = Batch(obs={}, actions=jnp.zeros((2, 1)), old_log_probs=jnp.zeros(2), old_values=jnp.zeros(2),
                  advantages=jnp.array([1.0, -1.0]), returns=jnp.array([1.0, 1.0]), old_mean=jnp.zeros((2, 1)),
                  old_std=jnp.ones((2, 1)), dones=jnp.zeros(2))
    mb = Minibatch(data=batch, forward=fwd, normalizers={}, extras=None, num_updates=jnp.int32(0))
    loss, m = losses.value(0.2, 0.5, True).loss((), None, mb, None)
    assert float(m["value"]) == pytest.approx(0.82, rel=1e-6) and float(loss) == pytest.approx(0.41, rel=1e-6)
    loss, m = losses.entropy(0.01).loss(losses.EntropyState(coef=jnp.float32(0.01)), None, mb, None)
    assert float(m["entropy"]) == 2.0 and float(loss) == pytest.approx(-0.02)
    loss, m = losses.surrogate(0.2).loss((), None, mb, None)
    assert float(loss) == 0.0  # ratio 1, advantages cancel


@pytest.mark.parametrize(
    "lr,kl,expected",
    [
        (1e-3, 0.0, 1e-3),  # kl == 0: no increase (strict 0 < kl)
        (1e-3, 1e-9, 1.5e-3),  # any tiny positive kl increases
        (1e-3, 0.005, 1e-3),  # exactly desired/2: unchanged (strict)
        (1e-3, 0.0049, 1.5e-3),
        (1e-3, 0.02, 1e-3),  # exactly 2*desired: unchanged (strict)
        (1e-3, 0.0201, 1e-3 / 1.5),
        (1e-3, 0.01, 1e-3),  # in the band
        (1.2e-5, 1.0, 1e-5),  # lower bound
        (9e-3, 1e-4, 1e-2),  # upper bound
    ],
)
def test_adaptive_learning_rate_rule(lr, kl, expected):
    out = float(optim.adaptive_learning_rate(jnp.float32(lr), jnp.float32(kl), desired_kl=0.01))
    assert out == pytest.approx(expected, rel=1e-6)


def test_learning_rate_lives_in_optimizer_state():
    tx = optim.make_optimizer(1e-3, 1.0)
    params = {"actor": {"w": jnp.ones(2)}, "critic": {"w": jnp.ones(2)}}
    state = optim.set_learning_rate(tx.init(params), 0.5)
    assert float(optim.get_learning_rate(state)) == 0.5
    # the optimiser uses it: Adam's first step moves each weight by lr (sign of the gradient)
    upd, _ = tx.update({"actor": {"w": jnp.array([0.1, -0.1])}, "critic": {"w": jnp.zeros(2)}}, state, params)
    np.testing.assert_allclose(upd["actor"]["w"], [-0.5, 0.5], rtol=1e-4)


def test_gradient_clipping_per_network_vs_joint():
    grads = {"actor": {"w": jnp.array([3.0, 4.0])}, "critic": {"w": jnp.array([0.0, 0.5])}}  # norms 5 and 0.5
    per = optim.clip_by_global_norm_per_group(1.0).update(grads, optax.EmptyState())[0]
    np.testing.assert_allclose(per["actor"]["w"], [0.6, 0.8], rtol=1e-6)
    np.testing.assert_allclose(per["critic"]["w"], [0.0, 0.5], rtol=1e-6)  # under the limit: untouched
    joint = optax.clip_by_global_norm(1.0).update(grads, optax.EmptyState())[0]
    total = math.sqrt(25.25)
    np.testing.assert_allclose(joint["critic"]["w"], [0.0, 0.5 / total], rtol=1e-6)
    with pytest.raises(ValueError, match="grad_clip_mode"):
        optim.make_optimizer(1e-3, 1.0, "both")
