"""The state estimator (st_rl's EstimatorPPO): losses, the estimate feeding the actor, a short training run on
the point mass (the critic observes the velocity), export parity with the estimator inside, exact resume and
config errors."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agile_jax.config import ConfigError
from agile_jax.extensions import estimator
from agile_jax.extensions.base import Minibatch
from agile_jax.networks.actor_critic import ActorCritic, make_inference_fn
from agile_jax.networks.estimator import EstimatorActorCritic, with_estimator
from agile_jax.networks.from_config import make_networks
from agile_jax.training.ppo_trainer import build_context
from agile_jax.training.runner import OnPolicyRunner
from tests.helpers import leaves_equal, point_mass_config, point_mass_env, straight_and_resumed

ESTIMATE = np.array([[1.0, 2.0], [0.0, 0.0]], np.float32)
TARGET = np.array([[0.0, 0.0], [3.0, 0.5]], np.float32)  # differences [[1, 2], [-3, -0.5]]


def estimator_networks(cfg, env, networks):
    return estimator.METHOD.networks(cfg, build_context(env, cfg), networks)


@pytest.mark.parametrize("name, kwargs, expected", [
    ("mse", {}, (1 + 4 + 9 + 0.25) / 2),  # rows sum to 5 and 9.25
    ("mse_loss", {}, 7.125),  # st_rl's torch name
    ("l1", {}, (3 + 3.5) / 2),
    ("smooth_l1", {"beta": 1.0}, ((0.5 + 1.5) + (2.5 + 0.125)) / 2),  # 0.5 d^2 below beta, |d| - 0.5 above
    ("huber", {"delta": 2.0}, ((0.5 + 2.0) + (4.0 + 0.125)) / 2),  # 0.5 d^2 up to delta, delta (|d| - delta / 2)
])
def test_losses_match_hand_derived_numbers(name, kwargs, expected):
    loss = estimator.estimation_loss(ESTIMATE, TARGET, estimator.make_loss_func(name, kwargs))
    assert float(loss) == pytest.approx(expected, abs=1e-6)


def test_unknown_loss_and_wrong_kwargs_are_refused():
    with pytest.raises(ValueError, match="expected one of"):
        estimator.make_loss_func("cosine")
    with pytest.raises(ValueError, match="do not fit"):
        estimator.make_loss_func("mse", {"beta": 1.0})


def test_component_index_follows_the_layouts():
    shapes = {"policy": (4,), "critic": (5,)}
    layouts = {"policy": (("pos", 2), ("vel", 2)), "critic": (("pos", 2), ("vel", 2), ("distance", 1))}
    assert estimator.component_index(layouts, ["critic"], ["vel"], shapes).tolist() == [2, 3]
    assert estimator.component_index(layouts, ["critic"], ["distance", "vel"], shapes).tolist() == [4, 2, 3]
    # A second group is offset by the width of the first.
    assert estimator.component_index(layouts, ["policy", "critic"], ["distance"], shapes).tolist() == [8]
    with pytest.raises(ValueError, match=r"available: \['distance', 'pos', 'vel'\]"):
        estimator.component_index(layouts, ["critic"], ["speed"], shapes)


def _networks(**policy) -> EstimatorActorCritic:
    base = ActorCritic(obs_shapes={"policy": (4,), "critic": (5,)},
                       obs_groups={"actor": ["policy"], "critic": ["critic"]}, action_size=2,
                       actor_hidden_dims=(8,), critic_hidden_dims=(8,), **policy)
    return with_estimator(base, [], 2, (6,))


def _dense(p, x):
    return x @ p["kernel"] + p["bias"]


def test_the_actor_reads_its_input_followed_by_the_detached_estimate():
    net = _networks()
    params = net.init(jax.random.key(0))
    assert params.actor["mlp"]["params"]["Dense_0"]["kernel"].shape == (4 + 2, 8)
    assert params.estimator["mlp"]["params"]["Dense_0"]["kernel"].shape == (4, 6)
    obs = {"policy": jax.random.normal(jax.random.key(1), (3, 4)), "critic": jnp.zeros((3, 5))}
    e, a = params.estimator["mlp"]["params"], params.actor["mlp"]["params"]
    estimate = _dense(e["Dense_1"], jax.nn.elu(_dense(e["Dense_0"], obs["policy"])))
    mean = _dense(a["Dense_1"], jax.nn.elu(_dense(a["Dense_0"], jnp.concatenate([obs["policy"], estimate], -1))))
    np.testing.assert_allclose(net.estimate(params, {}, obs), estimate, atol=1e-6)
    np.testing.assert_allclose(net.actor_mean(params, {}, obs), mean, atol=1e-6)
    # The policy gradient never reaches the estimator (st_rl detaches the estimate).
    grads = jax.grad(lambda p: jnp.sum(net.actor_mean(p, {}, obs)))(params)
    assert all(float(jnp.max(jnp.abs(g))) == 0.0 for g in jax.tree.leaves(grads.estimator))
    assert float(jnp.max(jnp.abs(grads.actor["mlp"]["params"]["Dense_0"]["kernel"]))) > 0


def test_extension_loss_is_the_coefficient_times_the_estimation_loss():
    net = _networks()
    params = net.init(jax.random.key(0))
    obs = {"policy": jax.random.normal(jax.random.key(1), (5, 4)),
           "critic": jax.random.normal(jax.random.key(2), (5, 5))}
    ext = estimator.extension(net, ["critic"], np.array([2, 3]), estimator.make_loss_func("mse"), loss_coef=0.5)
    data = type("Data", (), {"obs": obs})()
    loss, metrics = ext.loss((), params, Minibatch(data, None, {}, None, jnp.int32(0)), jax.random.key(3))
    expected = np.mean(np.sum((np.asarray(net.estimate(params, {}, obs)) - np.asarray(obs["critic"][:, 2:4])) ** 2, -1))
    assert float(metrics["estimator"]) == pytest.approx(expected, rel=1e-5)
    assert float(loss) == pytest.approx(0.5 * expected, rel=1e-5)


def _estimator_config(symmetry: bool = False, **kw):
    cfg = point_mass_config(num_envs=64, steps=16, **kw)
    cfg.runner.logger = "none"
    ec = cfg.algorithm.estimator_cfg
    ec.enabled, ec.target_components, ec.hidden_dims = True, ["vel"], [32]
    cfg.algorithm.symmetry_cfg.enabled = symmetry
    return cfg


@pytest.fixture(scope="module")
def trained():
    """A point-mass runner with the estimator (velocity from the policy observation) and symmetry, 15 iterations."""
    cfg = _estimator_config(symmetry=True)
    runner = OnPolicyRunner(point_mass_env(cfg), cfg)
    losses = []
    for _ in range(15):
        runner.state, out = runner.trainer.iteration(runner.state)
        losses.append(float(out.metrics["estimator"]))
    return runner, losses


def _rollout_obs(runner, steps: int = 30) -> dict:
    """Observations of a fresh 64-env rollout under the trained deterministic policy ``[steps * 64, ...]``."""
    env, policy = runner.env, runner.get_inference_policy()
    state = env.reset(jax.random.split(jax.random.key(7), env.num_envs))
    step = jax.jit(lambda s: env.step(s, policy(s.obs))[0])
    seen = []
    for _ in range(steps):
        state = step(state)
        seen.append(state.obs)
    return jax.tree.map(lambda *xs: np.concatenate(xs), *seen)


def test_estimator_loss_falls_and_the_estimate_tracks_the_velocity(trained):
    runner, losses = trained
    assert isinstance(runner.networks, EstimatorActorCritic)
    assert losses[-1] < 0.05 * losses[0], losses
    obs = _rollout_obs(runner)
    estimate = np.asarray(runner.networks.estimate(runner.state.params, runner.state.normalizers, obs))
    velocity = obs["critic"][:, 2:4]
    for k in range(2):
        assert np.corrcoef(estimate[:, k], velocity[:, k])[0, 1] > 0.95
    # Trained on mirror-augmented minibatches: on mirrored observations it tracks the mirrored velocity as well.
    mirrored = runner.env.env.mirror_obs(obs)
    est_mirrored = np.asarray(runner.networks.estimate(runner.state.params, runner.state.normalizers, mirrored))
    rmse = np.sqrt(np.mean((estimate - velocity) ** 2))
    rmse_mirrored = np.sqrt(np.mean((est_mirrored - mirrored["critic"][:, 2:4]) ** 2))
    assert rmse < 0.2 * np.std(velocity) and rmse_mirrored < 0.2 * np.std(velocity)


def test_export_runs_estimator_and_actor_with_parity(trained, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("torch")
    from agile_jax.export import export_policy, onnx, torchscript

    runner, _ = trained
    assert "actor" in runner.state.normalizers  # the estimator reads the normalised input
    obs = _rollout_obs(runner, steps=4)
    report = export_policy(runner.networks, runner.state.params, runner.state.normalizers, str(tmp_path),
                           observations={"rollout": obs})
    assert report["passed"], report["max_abs_error"]
    for fmt in ("onnx", "torchscript"):
        assert max(report["max_abs_error"][fmt].values()) < 1e-5, report["max_abs_error"]
    assert report["network"]["estimator"] == {"input_dim": 4, "output_dim": 2, "hidden_dims": [32]}
    config = json.loads((tmp_path / "network_config.json").read_text())
    assert (config["class_name"], config["estimate_size"], config["estimator_groups"]) == (
        "EstimatorActorCritic", 2, ["policy"])
    # The graphs take the policy observation only, and the estimator matters inside them.
    flat = obs["policy"][:64]
    without = runner.state.params.replace(estimator=jax.tree.map(jnp.zeros_like, runner.state.params.estimator))
    blind = np.asarray(make_inference_fn(runner.networks)(without, runner.state.normalizers)(obs)[:64])
    exported = onnx.run_onnx(str(tmp_path / "policy.onnx"), flat)
    assert np.max(np.abs(exported - blind)) > 1e-3
    np.testing.assert_allclose(torchscript.run_torchscript(str(tmp_path / "policy.pt"), flat), exported, atol=1e-5)


def test_export_of_an_estimator_on_some_raw_groups(tmp_path):
    """No normaliser, the estimator reads the second of two actor groups: parity, and the ONNX importer does not
    take the estimator's column selection for an input reordering."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("torch")
    from agile_jax.export import export_policy, onnx_import

    base = ActorCritic(obs_shapes={"policy": (4,), "critic": (5,)},
                       obs_groups={"actor": ["policy", "critic"], "critic": ["critic"]}, action_size=2,
                       actor_hidden_dims=(8,), critic_hidden_dims=(8,))
    net = with_estimator(base, ["critic"], 2, (6,))
    assert net.estimator_columns.tolist() == [4, 5, 6, 7, 8]
    params = net.init(jax.random.key(0))
    report = export_policy(net, params, {}, str(tmp_path))
    assert report["passed"] and max(max(v.values()) for v in report["max_abs_error"].values()) < 1e-5
    policy = onnx_import.load_onnx_policy(str(tmp_path / "policy.onnx"))
    assert policy.input_index() is None
    obs = {"policy": np.ones((1, 4), np.float32), "critic": np.linspace(-1, 1, 5, dtype=np.float32)[None]}
    flat = np.concatenate([obs["policy"], obs["critic"]], -1)
    np.testing.assert_allclose(np.asarray(policy(flat)), np.asarray(net.actor_mean(params, {}, obs)), atol=1e-5)


def test_checkpoint_round_trip_resumes_exactly(tmp_path):
    cfg = _estimator_config()
    cfg.env.num_envs, cfg.runner.num_steps_per_env = 16, 8
    straight, resumed = straight_and_resumed(cfg, tmp_path)
    assert "estimator" in resumed.state.params.by_network()
    assert leaves_equal(straight.state.params, resumed.state.params)
    assert leaves_equal(straight.state.normalizers, resumed.state.normalizers)


def test_config_errors_name_the_problem():
    cfg = _estimator_config()
    env = point_mass_env(cfg)
    cfg.algorithm.estimator_cfg.target_components = ["speed"]
    with pytest.raises(ConfigError, match=r"target_components.*available: \['distance', 'pos', 'vel'\]"):
        estimator_networks(cfg, env, make_networks(cfg, env))
    cfg.algorithm.estimator_cfg.target_components = ["vel"]
    cfg.algorithm.estimator_cfg.obs_components = ["critic"]
    with pytest.raises(ConfigError, match="not observation groups of the actor"):
        estimator_networks(cfg, env, make_networks(cfg, env))
    cfg.algorithm.estimator_cfg.obs_components = []
    cfg.policy.class_name = "ActorCriticRecurrent"
    with pytest.raises(ConfigError, match="feed-forward policies only"):
        estimator_networks(cfg, env, make_networks(cfg, env))
    cfg.policy.class_name = "ActorCritic"
    cfg.algorithm.estimator_cfg.loss_func = "cosine"
    with pytest.raises(ConfigError, match="unknown estimator loss_func 'cosine'"):
        OnPolicyRunner(env, cfg)


def test_t1_preset_estimates_the_critic_base_velocity():
    """The T1 preset resolves ``base_lin_vel`` to critic columns 3..5 and the policy reads 225 + 3 inputs."""
    from experiments.configs import get_preset, make_env

    cfg = get_preset("t1_velocity_estimator")
    cfg.env.num_envs = 2
    env = make_env(cfg)
    networks = estimator_networks(cfg, env, make_networks(cfg, env))
    assert networks.estimate_size == 3 and networks.estimator_groups == ("policy",)
    params = jax.eval_shape(networks.init, jax.random.key(0))
    assert params.actor["mlp"]["params"]["Dense_0"]["kernel"].shape == (5 * 45 + 3, 256)
    ext = estimator.component_index({"critic": env.env.critic_layout}, ["critic"], ["base_lin_vel"],
                                    networks.obs_shapes)
    assert ext.tolist() == [3, 4, 5]
    assert cfg.algorithm.symmetry_cfg.enabled


@pytest.mark.slow  # the T1 preset end to end (about 95 s); CI runs it
def test_t1_preset_trains_one_iteration_and_exports_with_parity(tmp_path):
    """T1 smoke run (symmetry on): a finite estimator loss, and the exported graph runs estimator + actor."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("torch")
    from agile_jax import config as config_lib
    from agile_jax.export import export_policy
    from experiments.configs import get_preset, make_env

    cfg = config_lib.apply_overrides(get_preset("t1_velocity_estimator"), [
        "num_envs=4", "runner.num_steps_per_env=2", "runner.progress_bar=false", "runner.logger=none"])
    env = make_env(cfg)
    runner = OnPolicyRunner(env, cfg)
    runner.state, out = runner.trainer.iteration(runner.state)
    assert np.isfinite(float(out.metrics["estimator"])) and float(out.metrics["estimator"]) > 0
    report = export_policy(runner.networks, runner.state.params, runner.state.normalizers, str(tmp_path), env=env)
    assert report["passed"] and report["network"]["estimator"]["output_dim"] == 3
