"""The PPO update: minibatching, permutation reuse, per-minibatch adaptive learning rate."""

import jax
import jax.numpy as jnp
import numpy as np

from agile_jax.algorithms import optim, ppo
from agile_jax.config import AlgorithmConfig
from agile_jax.extensions.base import Batch, chain
from agile_jax.networks.actor_critic import ActorCritic


def _batch(T=4, N=6, obs_dim=3, A=2, seed=0):
    rng = np.random.default_rng(seed)
    f = lambda *s: jnp.asarray(rng.normal(size=s), jnp.float32)  # noqa: E731
    return Batch(obs={"policy": f(T, N, obs_dim)}, actions=f(T, N, A), old_log_probs=f(T, N) - 3.0,
                 old_values=f(T, N), advantages=f(T, N), returns=f(T, N), old_mean=f(T, N, A) * 0.1,
                 old_std=jnp.ones((T, N, A)), dones=jnp.zeros((T, N)))


def test_flat_minibatches_one_permutation_drops_remainder():
    b = _batch(T=5, N=3)  # 15 samples, 4 minibatches of 3, 3 samples unused
    mbs = ppo.flat_minibatches(b, jax.random.key(0), 4)
    assert mbs.actions.shape == (4, 3, 2)
    flat = np.asarray(b.returns).reshape(-1)  # flat index t*N + n
    picked = np.asarray(mbs.returns).reshape(-1)
    idx = [int(np.where(flat == x)[0][0]) for x in picked]
    assert len(set(idx)) == 12  # no repeats
    # the same key gives the same split (reused by every epoch inside one update)
    again = ppo.flat_minibatches(b, jax.random.key(0), 4)
    np.testing.assert_array_equal(np.asarray(again.returns), np.asarray(mbs.returns))
    # rows stay aligned across fields
    np.testing.assert_array_equal(np.asarray(mbs.obs["policy"]).reshape(-1, 3)[0],
                                  np.asarray(b.obs["policy"]).reshape(-1, 3)[idx[0]])


def _setup(**alg):
    cfg = AlgorithmConfig(num_learning_epochs=2, num_mini_batches=2, **alg)
    net = ActorCritic({"policy": (3,)}, {"actor": ["policy"], "critic": ["policy"]}, 2, (8,), (8,))
    params = net.init(jax.random.key(1))
    tx = optim.make_optimizer(cfg.learning_rate, cfg.max_grad_norm)
    return cfg, net, params, tx


def _states(cfg):
    """States of PPO's own extensions (the entropy coefficient)."""
    return chain(ppo.default_extensions(cfg)).init(None, None)


def test_adaptive_lr_is_decided_per_minibatch():
    # Old mean/std equal the current policy's -> the first minibatch has KL exactly 0 ... then grows.
    cfg, net, params, tx = _setup(learning_rate=1e-3, desired_kl=1e-12, entropy_coef=0.0)
    b = _batch()
    mean = net.actor_mean(params, {}, b.obs)
    b = b._replace(old_mean=mean, old_std=jnp.broadcast_to(net.action_std(params), mean.shape))
    update = jax.jit(ppo.make_update_fn(cfg, net, tx))
    carry, metrics = update(ppo.SGDCarry(params, tx.init(params), 0), {}, _states(cfg), b, jax.random.key(2))
    opt_state = carry.opt_state
    assert int(carry.num_updates) == 4
    # 4 minibatch steps: first KL == 0 (no change), then KL > 2*desired three times -> lr / 1.5^3.
    assert float(metrics["learning_rate"]) == np.float32(np.float32(np.float32(np.float32(1e-3) / 1.5) / 1.5) / 1.5)
    assert float(optim.get_learning_rate(opt_state)) == float(metrics["learning_rate"])


def test_fixed_schedule_keeps_learning_rate():
    cfg, net, params, tx = _setup(learning_rate=1e-3, schedule="fixed")
    update = jax.jit(ppo.make_update_fn(cfg, net, tx))
    _, metrics = update(ppo.SGDCarry(params, tx.init(params), 0), {}, _states(cfg), _batch(), jax.random.key(2))
    assert float(metrics["learning_rate"]) == np.float32(1e-3)
    assert set(metrics) >= {"surrogate", "value", "entropy", "kl", "learning_rate"}


def test_update_reduces_value_loss_on_fixed_batch():
    cfg, net, params, tx = _setup(learning_rate=1e-2, schedule="fixed", use_clipped_value_loss=False,
                                  entropy_coef=0.0)
    b = _batch()
    b = b._replace(returns=b.obs["policy"].sum(-1))  # a target the critic can fit
    update = jax.jit(ppo.make_update_fn(cfg, net, tx))
    carry = ppo.SGDCarry(params, tx.init(params), 0)
    first = None
    for i in range(30):
        carry, m = update(carry, {}, _states(cfg), b, jax.random.key(i))
        first = first if first is not None else float(m["value"])
    assert float(m["value"]) < 0.5 * first
