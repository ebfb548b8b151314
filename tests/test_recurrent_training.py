"""Recurrent PPO end to end on the point mass: rollout state handling, learning, exact resume, inference.

Every runner here uses the same configuration, so the iteration is compiled once (the others load it from
the persistent compilation cache).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agile_jax.config import ConfigError
from agile_jax.networks.records import ActorCriticHidden
from agile_jax.networks.recurrent import ActorCriticRecurrent, reset_state
from agile_jax.training.rollout import make_stateful_rollout_fn
from agile_jax.training.runner import OnPolicyRunner
from tests.helpers import point_mass_config, point_mass_env, policy_return


def _config(rnn_type: str = "lstm"):
    cfg = point_mass_config(num_envs=64, steps=16)
    cfg.env.episode_length = 100
    cfg.policy.class_name = "ActorCriticRecurrent"
    cfg.policy.rnn_type = rnn_type
    cfg.policy.rnn_hidden_dim = 32
    return cfg


def _leaves_equal(a, b) -> bool:
    def raw(x):
        return np.asarray(jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x)

    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(la) == len(lb) and all(np.array_equal(raw(x), raw(y)) for x, y in zip(la, lb))


def _at(tree, t):
    return jax.tree.map(lambda x: x[t], tree)


@pytest.fixture(scope="module")
def trained():
    """An LSTM actor-critic trained for 41 iterations, with the deterministic return of its untrained policy."""
    cfg = _config()
    runner = OnPolicyRunner(point_mass_env(cfg), cfg)
    before = policy_return(runner)
    runner.learn(41)
    return runner, before


def test_rollout_stores_state_before_acting_and_resets_at_dones():
    cfg = point_mass_config(num_envs=8)
    cfg.env.episode_length = 3
    env = point_mass_env(cfg)
    net = ActorCriticRecurrent({"policy": (4,), "critic": (5,)}, {"actor": ["policy"], "critic": ["critic"]}, 2,
                               (8,), (8,), rnn_type="gru", rnn_hidden_dim=4)
    params = net.init(jax.random.key(0))
    rollout = jax.jit(make_stateful_rollout_fn(env, net, 7))
    start = jax.tree.map(lambda x: x + 0.5, net.init_hidden(8))  # a non-zero carried state
    env_state = env.reset(jax.random.split(jax.random.key(1), 8))
    _, final, tr, _ = rollout(params, {}, env_state, start, jax.random.key(2), jnp.arange(8))
    assert _leaves_equal(jax.tree.map(lambda x: x[0], tr.hidden), start)
    assert bool(tr.dones.any())
    @jax.jit
    def next_state(obs, h, dones):
        _, actor = net.actor_step(params, {}, obs, h.actor)
        _, critic = net.value_step(params, {}, obs, h.critic)
        return reset_state(ActorCriticHidden(actor=actor, critic=critic), dones)

    for t in range(7):
        expected = next_state(_at(tr.obs, t), _at(tr.hidden, t), tr.dones[t])
        after = _at(tr.hidden, t + 1) if t < 6 else final
        for a, b in zip(jax.tree.leaves(after), jax.tree.leaves(expected)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)
        done_rows = np.asarray(tr.dones[t])
        assert all(np.all(np.asarray(a)[done_rows] == 0) for a in jax.tree.leaves(after))


def test_recurrent_ppo_learns_point_mass(trained):
    runner, before = trained
    # A random policy scores ~15-25 per 100-step episode; parking at the origin scores 70+.
    assert before < 40.0 and runner.episodes.mean_return > 60.0 and policy_return(runner) > 60.0, before
    assert any(float(jnp.abs(x).max()) > 0.0 for x in jax.tree.leaves(runner.state.hidden))


def test_stateful_inference_policy_follows_the_actor(trained):
    runner, _ = trained
    policy = runner.get_inference_policy()
    rng = np.random.default_rng(0)
    obs = [{"policy": jnp.asarray(rng.normal(size=(3, 4)), jnp.float32),
            "critic": jnp.asarray(rng.normal(size=(3, 5)), jnp.float32)} for _ in range(4)]
    net, params, norms = runner.networks, runner.state.params, runner.state.normalizers
    hidden = net.init_hidden(3).actor
    for i, o in enumerate(obs):
        if i == 2:  # reset env 1 on both sides
            policy.reset(jnp.array([False, True, False]))
            hidden = reset_state(hidden, jnp.array([False, True, False]))
        expected, hidden = net.actor_step(params, norms, o, hidden)
        np.testing.assert_allclose(np.asarray(policy(o)), np.asarray(expected), atol=1e-6)


def test_resume_is_bit_exact_with_recurrent_state(tmp_path):
    cfg = _config("lstm")
    straight = OnPolicyRunner(point_mass_env(cfg), cfg)
    straight.learn(4)
    first = OnPolicyRunner(point_mass_env(cfg), cfg, log_dir=str(tmp_path / "run1"))
    first.learn(2)
    first.close()
    second = OnPolicyRunner(point_mass_env(cfg), cfg)
    second.load(str(tmp_path / "run1"))
    assert _leaves_equal(second.state.hidden, first.state.hidden)
    second.learn(2)
    for field in ("params", "opt_state", "normalizers", "env_state", "hidden"):
        assert _leaves_equal(getattr(straight.state, field), getattr(second.state, field)), field


def test_recurrent_policies_refuse_symmetry_and_l2c2():
    cfg = _config()
    cfg.algorithm.symmetry_cfg.enabled = True
    with pytest.raises(ConfigError, match="symmetry_cfg is not available for recurrent"):
        OnPolicyRunner(point_mass_env(cfg), cfg)
    cfg = _config()
    cfg.algorithm.l2c2_cfg.enabled = True
    with pytest.raises(ValueError, match="l2c2_cfg is not available for recurrent"):
        OnPolicyRunner(point_mass_env(cfg), cfg)
    cfg = _config("rnn")
    with pytest.raises(ConfigError, match="unknown policy.rnn_type 'rnn'"):
        OnPolicyRunner(point_mass_env(cfg), cfg)
