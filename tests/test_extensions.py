"""AGILE's PPO enhancements: hand-derived values, properties, and learning with all of them on."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agile_jax.config import RunnerConfig
from agile_jax.extensions import entropy, l2c2, reward_norm, symmetry, termination
from agile_jax.extensions.base import Batch, Forward, Minibatch, Rollout
from agile_jax.networks.actor_critic import ActorCritic
from agile_jax.training.runner import OnPolicyRunner
from agile_jax.types import Transition
from envs.tasks.point_mass import PointMass
from tests.helpers import leaves_equal, point_mass_config, point_mass_env, straight_and_resumed

MIRROR_OBS, MIRROR_ACT = PointMass.mirror_obs, PointMass.mirror_actions


def _batch(B=4, seed=0):
    rng = np.random.default_rng(seed)
    f = lambda *s: jnp.asarray(rng.normal(size=s), jnp.float32)  # noqa: E731
    return Batch(obs={"policy": f(B, 4), "critic": f(B, 5)}, actions=f(B, 2), old_log_probs=f(B), old_values=f(B),
                 advantages=f(B), returns=f(B), old_mean=f(B, 2), old_std=jnp.ones((B, 2)), dones=jnp.zeros(B))


# -- symmetry -----------------------------------------------------------------------------------------


def test_augmentation_appends_mirrored_copies_and_repeats_targets():
    b = _batch()
    aug = symmetry.make_augment(MIRROR_OBS, MIRROR_ACT)(b)
    assert aug.actions.shape == (8, 2) and aug.obs["critic"].shape == (8, 5)
    np.testing.assert_array_equal(aug.actions[:4], b.actions)
    np.testing.assert_array_equal(aug.actions[4:, 0], -b.actions[:, 0])
    np.testing.assert_array_equal(aug.obs["policy"][4:, 2], -b.obs["policy"][:, 2])
    for name in ("old_log_probs", "old_values", "advantages", "returns"):
        np.testing.assert_array_equal(getattr(aug, name)[4:], getattr(b, name))


def _minibatch(batch, forward=None, extras=None) -> Minibatch:
    return Minibatch(data=batch, forward=forward, normalizers={}, extras=extras, num_updates=jnp.int32(0))


def _net():
    return ActorCritic({"policy": (4,), "critic": (5,)}, {"actor": ["policy"], "critic": ["critic"]}, 2, (16,), (16,))


def test_mirror_loss_zero_for_equivariant_policy_positive_otherwise():
    net = _net()
    params = net.init(jax.random.key(0))
    b = _batch()
    loss_fn = symmetry.make_mirror_loss(net, MIRROR_OBS, MIRROR_ACT, coeff=2.0, use_mirror_loss=True,
                                        augmented=False)
    term = lambda p, batch, fwd, ctx, key: loss_fn((), p, _minibatch(batch, fwd), key)  # noqa: E731
    fwd = Forward(mean=net.actor_mean(params, {}, b.obs), std=None, log_prob=None, value=None, entropy=None)
    ctx = None
    loss, m = term(params, b, fwd, ctx, None)
    assert float(m["mirror"]) > 1e-4 and float(loss) == pytest.approx(2.0 * float(m["mirror"]))
    # Make the actor exactly equivariant: zero every weight from x-odd inputs to the y output and vice versa ->
    # simplest exact case: a policy whose mean is mirror-equivariant by construction (all-zero output layer).
    zero = jax.tree.map(jnp.zeros_like, params)
    loss0, m0 = term(zero, b, Forward(mean=net.actor_mean(zero, {}, b.obs), std=None, log_prob=None, value=None,
                                      entropy=None), ctx, None)
    assert float(m0["mirror"]) == 0.0
    # logged but not added when use_mirror_loss is off
    off = symmetry.make_mirror_loss(net, MIRROR_OBS, MIRROR_ACT, 2.0, use_mirror_loss=False, augmented=False)
    loss_off, m_off = off((), params, _minibatch(b, fwd), None)
    assert float(loss_off) == 0.0 and float(m_off["mirror"]) == pytest.approx(float(m["mirror"]))


def test_mirror_loss_hand_value():
    # mean on original [1, 2] -> mirrored target [-1, 2]; mean on mirrored [0, 2] -> MSE = (1^2 + 0)/2 = 0.5
    out = symmetry.mirror_loss(jnp.array([[0.0, 2.0]]), jnp.array([[1.0, 2.0]]), MIRROR_ACT)
    assert float(out) == pytest.approx(0.5)


# -- L2C2 ---------------------------------------------------------------------------------------------


def test_l2c2_pairs_exclude_resets_and_last_step():
    T, N = 3, 2
    obs = {"policy": jnp.arange(T * N * 1, dtype=jnp.float32).reshape(T, N, 1)}
    dones = jnp.array([[0, 1], [0, 0], [0, 0]], jnp.float32)
    tr = Transition(obs=obs, actions=None, rewards=None, dones=dones, time_outs=None, values=None, log_probs=None,
                    action_mean=None, action_std=None, hidden=(), extras={})
    ex = l2c2.pair_extras(tr)
    np.testing.assert_array_equal(ex.valid, [[True, False], [True, True], [False, False]])
    np.testing.assert_array_equal(ex.next_obs["policy"][0, :, 0], [2.0, 3.0])


def test_l2c2_interpolation_and_masked_mse():
    mixed = l2c2.interpolate({"p": jnp.array([[0.0, 0.0], [1.0, 1.0]])}, {"p": jnp.array([[2.0, 4.0], [1.0, 3.0]])},
                             jnp.array([0.5, 0.25]))
    np.testing.assert_allclose(mixed["p"], [[1.0, 2.0], [1.0, 1.5]])
    mse = l2c2.masked_mse(jnp.array([[1.0, 1.0], [5.0, 5.0]]), jnp.zeros((2, 2)), jnp.array([1.0, 0.0]))
    assert float(mse) == 1.0  # the masked row (25) is ignored


def test_l2c2_zero_for_constant_policy_positive_otherwise():
    net = _net()
    params = net.init(jax.random.key(1))
    b = _batch()
    nxt = jax.tree.map(lambda x: x + 1.0, b.obs)
    pairs = l2c2.Pairs(next_obs=nxt, valid=jnp.ones(4, bool))
    loss_fn = l2c2.make_l2c2_loss(net, 1.0, 0.1)
    term = lambda p, batch, fwd, ctx, key: loss_fn((), p, _minibatch(batch, fwd, pairs), key)  # noqa: E731
    loss, m = term(params, b, None, None, jax.random.key(0))
    assert float(m["l2c2_actor"]) > 0 and float(loss) == pytest.approx(float(m["l2c2_actor"]) + 0.1 * float(
        m["l2c2_critic"]), rel=1e-6)
    const = jax.tree.map(lambda x: x, params)
    for net_name in ("actor", "critic"):
        mlp = const.by_network()[net_name]["mlp"]["params"]
        const.by_network()[net_name]["mlp"]["params"] = {k: {"kernel": jnp.zeros_like(v["kernel"]), "bias": v["bias"]}
                                            for k, v in mlp.items()}
    loss0, _ = term(const, b, None, None, jax.random.key(0))
    assert float(loss0) == 0.0


# -- reward normalisation -----------------------------------------------------------------------------


def test_reward_norm_step_hand_values():
    s = reward_norm.init()
    r = jnp.array([1.0, 3.0])  # batch mean 2, biased var 1
    s2, out = reward_norm.step(s, r, gamma=0.6, decay=0.5, epsilon=0.0, outlier_threshold=None)
    assert float(s2.mean) == pytest.approx(1.0) and float(s2.var) == pytest.approx(1.0)
    scale = 1.0 * (1.0 / math.sqrt(1 - 0.36)) * 1.0  # = 1.25
    np.testing.assert_allclose(out, np.array([1.0, 3.0]) / scale, rtol=1e-6)
    # outliers are clipped before the statistics see them: mean 0, std 1, thr 2 -> [-2, 2]
    s3, out3 = reward_norm.step(s, jnp.array([100.0, 0.0]), gamma=0.6, decay=0.5, epsilon=0.0, outlier_threshold=2.0)
    assert float(s3.mean) == pytest.approx(0.5 * 1.0)  # batch mean of [2, 0] is 1
    assert float(out3[0]) == pytest.approx(float(s3.mean) / (float(s3.std) * 1.25) + 2.0, rel=1e-6)


def test_return_correction_product_invariance():
    s = reward_norm.init().replace(correction=jnp.float32(2.0))
    returns = jnp.array([0.0, 2.0, 4.0])  # unbiased std 2 -> ideal = 4
    s2 = reward_norm.update_correction(s, returns, return_scale_decay=0.9)
    assert float(s2.correction) == pytest.approx(0.9 * 2.0 + 0.1 * 4.0)
    assert reward_norm.update_correction(s, returns, None) is s


def test_reward_norm_drives_return_std_towards_one():
    """Correlated rewards (AR(1)); the normalised discounted-return std approaches 1 over iterations."""
    gamma, T, N = 0.99, 64, 64
    ext = reward_norm.extension(gamma, decay=0.99, return_scale_decay=0.9)
    state = ext.init(None, None)
    key, stds = jax.random.key(0), []
    x = jnp.zeros(N)
    for _ in range(80):
        key, sub = jax.random.split(key)
        noise = jax.random.normal(sub, (T, N))

        def ar(c, e):
            c = 0.95 * c + e
            return c, 3.0 + 5.0 * c

        x, rewards = jax.lax.scan(ar, x, noise)
        tr = Transition(obs=None, actions=None, rewards=rewards, dones=None, time_outs=None, values=None,
                        log_probs=None, action_mean=None, action_std=None, hidden=(), extras={})
        state, shaped, _ = ext.shape(state, Rollout(tr, rewards, None))
        norm = shaped.rewards
        _, returns = jax.lax.scan(lambda g, r: (r + gamma * g, r + gamma * g), jnp.zeros(N), norm, reverse=True)
        # centred returns of the first half (enough lookahead) as the GAE return proxy
        ret = returns[: T // 2]
        state, _ = ext.update(state, None, ret - jnp.mean(ret, axis=1, keepdims=True), None)
        stds.append(float(jnp.std(ret - jnp.mean(ret, axis=1, keepdims=True), ddof=1)))
    assert float(state.correction) > 1.5  # i.i.d. formula underestimates correlated returns
    assert abs(np.mean(stds[-10:]) - 1.0) < 0.25, stds[-10:]
    assert abs(stds[0] - 1.0) > abs(np.mean(stds[-10:]) - 1.0)


# -- termination bootstrap ----------------------------------------------------------------------------


def test_termination_bootstrap_hand_values():
    r = jnp.array([[1.0, 1.0, 1.0, 1.0]])
    v = jnp.array([[10.0, 10.0, 10.0, 10.0]])
    to = jnp.array([[False, False, True, False]])
    bad = jnp.array([[2.0, 0.0, 2.0, 0.0]])
    good = jnp.array([[0.0, 3.0, 0.0, 0.0]])
    out = termination.termination_bootstrap(r, v, to, bad, good, gamma=0.5)
    # bad: 1 + 5 - 2 ; good: 1 + 5 + 3 ; timed out: excluded ; plain: unchanged
    np.testing.assert_allclose(out, [[4.0, 9.0, 1.0, 1.0]])


# -- entropy annealing --------------------------------------------------------------------------------


def test_entropy_annealing_gates_and_decays():
    run = RunnerConfig(enable_entropy_coef_annealing=True, entropy_coef_annealing_start_progress=0.3,
                       enable_entropy_coef_annealing_success_rate=0.8, entropy_annealing_decay_rate=0.5,
                       min_entropy_coef=0.001)
    anneal = lambda *args: float(entropy.anneal_entropy_coef(*args))
    f32 = lambda x: float(np.float32(x))
    assert anneal(0.01, 0.01, 20, 100, 1000.0, 1000, run) == f32(0.01)  # progress 0.2: too early
    assert anneal(0.01, 0.01, 40, 100, 700.0, 1000, run) == f32(0.01)  # episodes too short (< 800)
    assert anneal(0.01, 0.01, 40, 100, float("nan"), 1000, run) == f32(0.01)  # no episode finished yet
    assert anneal(0.01, 0.01, 40, 100, 900.0, 1000, run) == f32(0.005)  # exponential
    assert anneal(0.0015, 0.01, 40, 100, 900.0, 1000, run) == f32(0.001)  # clamped at min
    run.entropy_annealing_decay_rate = None
    assert anneal(0.01, 0.01, 40, 100, 900.0, 1000, run) == pytest.approx(0.006)  # linear: init * (1 - 0.4)
    run.enable_entropy_coef_annealing = False
    assert anneal(0.01, 0.01, 40, 100, 900.0, 1000, run) == f32(0.01)


def test_entropy_annealing_progress_is_measured_against_the_end_of_the_learn_call(tmp_path):
    """RSL-RL's ``tot_iter = start_iter + num_learning_iterations``: a run resumed at iteration 2 that learns
    ``max_iterations = 3`` more anneals towards iteration 5 (linear: progress 4/5 at its last schedule), as an
    uninterrupted 5-iteration run would, not towards ``max_iterations`` (progress 4/3)."""
    cfg = point_mass_config()
    cfg.env.episode_length = 8  # an episode ends in every iteration: the length gate is open from the second on
    cfg.runner.enable_entropy_coef_annealing = True
    cfg.runner.entropy_coef_annealing_start_progress = 0.0
    cfg.runner.enable_entropy_coef_annealing_success_rate = 0.0
    cfg.runner.max_iterations = 3  # what train.py passes to learn() after --resume
    cfg.algorithm.entropy_coef = 0.01
    first = OnPolicyRunner(point_mass_env(cfg), cfg, log_dir=str(tmp_path / "run1"))
    first.learn(2)
    first.close()
    assert int(first.state.target_iteration) == 2
    assert float(first.state.extensions["entropy"].coef) == pytest.approx(0.01 * (1 - 1 / 2), rel=1e-5)
    second = OnPolicyRunner(point_mass_env(cfg), cfg, log_dir=str(tmp_path / "run2"))
    second.load(str(tmp_path / "run1"))
    second.learn(3)
    second.close()
    assert int(second.state.target_iteration) == 5
    assert float(second.state.extensions["entropy"].coef) == pytest.approx(0.01 * (1 - 4 / 5), rel=1e-5)


# -- integration ----------------------------------------------------------------------------------------


def _all_on_config():
    cfg = point_mass_config(num_envs=64, steps=16)
    cfg.env.episode_length = 100
    alg = cfg.algorithm
    alg.symmetry_cfg.enabled, alg.symmetry_cfg.use_mirror_loss, alg.symmetry_cfg.mirror_loss_coeff = True, True, 0.1
    alg.l2c2_cfg.enabled = True
    alg.reward_normalization_cfg.enabled = True
    cfg.runner.enable_entropy_coef_annealing = True
    cfg.runner.entropy_coef_annealing_start_progress = 0.0
    cfg.runner.enable_entropy_coef_annealing_success_rate = 0.5
    cfg.runner.entropy_annealing_decay_rate = 0.9
    cfg.runner.max_iterations = 40
    return cfg


def test_all_extensions_on_still_learns_and_logs():
    cfg = _all_on_config()
    runner = OnPolicyRunner(point_mass_env(cfg), cfg)
    runner.learn(40)
    assert runner.episodes.mean_return > 60.0  # random ~15-25, see test_training
    out = jax.device_get(runner.trainer.iteration(runner.state)[1])
    assert {"mirror", "l2c2_actor", "l2c2_critic", "Train/reward_scale"} <= set(out.metrics)
    assert float(runner.state.extensions["entropy"].coef) < cfg.algorithm.entropy_coef  # annealed


def test_extension_state_resumes_exactly(tmp_path):
    straight, second = straight_and_resumed(_all_on_config(), tmp_path)
    assert leaves_equal(straight.state.params, second.state.params)
    assert leaves_equal(straight.state.extensions, second.state.extensions)
    assert float(straight.state.extensions["entropy"].coef) == float(second.state.extensions["entropy"].coef)


# -- critic warm-up -------------------------------------------------------------------------------------


def test_critic_warmup_scale_and_learning_rate():
    from agile_jax.extensions import critic_warmup

    scale = [float(critic_warmup.policy_scale(jnp.int32(k), 4)) for k in (0, 3, 4, 5, 6, 8, 20)]
    assert scale == [0.0, 0.0, 0.0, 0.25, 0.5, 1.0, 1.0]
    rule = critic_warmup.extension(4).learning_rate
    lrs = [float(rule((), jnp.float32(3e-3), jnp.int32(k))) for k in (3, 4, 7, 8)]
    assert lrs == [np.float32(3e-3), np.float32(1e-5), np.float32(1e-5), np.float32(3e-3)]


@pytest.mark.parametrize("mirror_loss", [False, True])
def test_critic_warmup_freezes_the_actor_during_the_value_phase(mirror_loss):
    cfg = point_mass_config()
    cfg.algorithm.critic_warmup_steps = 8  # 2 epochs x 2 minibatches = 4 steps per iteration
    # A method's loss is off in the value phase too (AGILE: loss = value_loss); else Adam moves the actor on it.
    cfg.algorithm.symmetry_cfg.enabled = cfg.algorithm.symmetry_cfg.use_mirror_loss = mirror_loss
    cfg.algorithm.symmetry_cfg.mirror_loss_coeff = 1.0
    runner = OnPolicyRunner(point_mass_env(cfg), cfg)
    actor0 = jax.tree.map(np.asarray, runner.state.params.actor)
    critic0 = jax.tree.map(np.asarray, runner.state.params.critic)
    runner.learn(2)  # 8 value-only steps
    assert int(runner.state.num_updates) == 8
    for a, b in zip(jax.tree.leaves(actor0), jax.tree.leaves(runner.state.params.actor)):
        np.testing.assert_array_equal(a, np.asarray(b))
    assert any(not np.array_equal(a, np.asarray(b)) for a, b in zip(jax.tree.leaves(critic0),
                                                                     jax.tree.leaves(runner.state.params.critic)))
    runner.learn(1)  # ramp phase: the actor starts moving
    assert any(not np.array_equal(a, np.asarray(b)) for a, b in zip(jax.tree.leaves(actor0),
                                                                     jax.tree.leaves(runner.state.params.actor)))
