"""CNN encoders (RSL-RL 5.5.1's ``CNN`` / ``CNNModel``): shapes, parameter counts and weight parity against
rsl-rl-lib, the state-dict mapping, configuration errors, PPO training on a 2-D observation, export parity and an
exact resume."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
rsl_models = pytest.importorskip("rsl_rl.models")
rsl_modules = pytest.importorskip("rsl_rl.modules")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from tensordict import TensorDict  # noqa: E402

from agile_jax.config import AlgorithmConfig, ConfigError, PolicyConfig, RunnerConfig, TrainConfig  # noqa: E402
from agile_jax.networks.actor_critic import make_inference_fn  # noqa: E402
from agile_jax.networks.cnn import CNN, cnn_params_from_state_dict, cnn_params_to_state_dict  # noqa: E402
from agile_jax.networks.cnn_actor_critic import ActorCriticCNN, make_actor_critic_cnn, params_from_rsl_rl  # noqa: E402
from agile_jax.networks.from_config import make_networks  # noqa: E402
from agile_jax.training.ppo_trainer import build_context, build_networks  # noqa: E402
from agile_jax.training.runner import OnPolicyRunner  # noqa: E402
from envs.core import VecEnv  # noqa: E402
from envs.tasks.point_mass_grid import PointMassGrid, PointMassGridConfig  # noqa: E402
from tests.helpers import leaves_equal  # noqa: E402

# Every option of RSL-RL's CNN at least once: per-layer lists, paddings, norms, pooling, dilation, activations.
CNN_CFGS = [
    dict(output_channels=[4, 8], kernel_size=3, stride=[1, 2], padding="zeros", norm=["layer", "none"],
         max_pool=[False, True]),
    dict(output_channels=[4, 6, 5], kernel_size=[3, 2, 3], stride=[2, 1, 1], dilation=[1, 2, 1], padding="reflect",
         norm="batch", activation="relu", global_pool="avg"),
    dict(output_channels=[3], kernel_size=5, padding="circular", activation="tanh", global_pool="max"),
    dict(output_channels=[3, 4], kernel_size=3, padding="replicate", max_pool=True, activation="gelu"),
    dict(output_channels=[3, 4], kernel_size=[5, 3], stride=2, padding="none", norm="layer", activation="swish"),
]
IMAGE = (2, 11, 17)  # [C, H, W], the height scan's H x W
SHAPES = {"policy": (6,), "scan": IMAGE, "critic": (4,)}
GROUPS = {"actor": ["policy", "scan"], "critic": ["critic", "scan"]}


def _randomised(module: torch.nn.Module) -> torch.nn.Module:
    """Non-trivial norm weights and running statistics, eval mode (BatchNorm uses its running statistics)."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.LayerNorm)):
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen))
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen))
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen))
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
    return module.eval()


def _images(n: int = 5, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, *IMAGE)).astype(np.float32)


@pytest.mark.parametrize("cfg", CNN_CFGS)
def test_encoder_matches_rsl_rl_shapes_counts_and_outputs(cfg):
    """Same output width, parameter count and Sequential layout as RSL-RL's CNN; its weights give its outputs."""
    ref = _randomised(rsl_modules.CNN(IMAGE[1:], IMAGE[0], **cfg))
    cnn = CNN.from_cfg(IMAGE[1:], IMAGE[0], cfg)
    assert cnn.output_dim == ref.output_dim and cnn.sequential_length + (cfg.get("global_pool", "none") != "none") \
        + 1 == len(ref)
    fresh = jax.eval_shape(cnn.init, jax.random.key(0))
    trainable = [x for k, p in fresh.items() for n, x in p.items() if n not in ("mean", "var")]  # BatchNorm stats
    assert sum(x.size for x in trainable) == sum(p.numel() for p in ref.parameters())
    params = cnn_params_from_state_dict(ref.state_dict(), cnn)
    x = _images()
    with torch.no_grad():
        expected = ref(torch.from_numpy(x)).numpy()
    # Leading axes are batch axes: [T, B, C, H, W] -> [T, B, L].
    out = np.asarray(jax.jit(cnn.apply)(params, jnp.asarray(x).reshape(1, 5, *IMAGE)))[0]
    assert out.shape == expected.shape == (5, ref.output_dim)
    np.testing.assert_allclose(out, expected, atol=1e-5)
    # The inverse mapping loads into a fresh RSL-RL CNN (strict) and reproduces the outputs.
    back = rsl_modules.CNN(IMAGE[1:], IMAGE[0], **cfg).eval()
    state = {k: torch.from_numpy(v) for k, v in cnn_params_to_state_dict(params, cnn).items()}
    missing, unexpected = back.load_state_dict(state, strict=False)
    assert not unexpected and all(k.endswith("num_batches_tracked") for k in missing)
    with torch.no_grad():
        np.testing.assert_allclose(back(torch.from_numpy(x)).numpy(), expected, atol=1e-6)


def _rsl_models(share: bool, cnn_cfg: dict, obs: TensorDict):
    actor = rsl_models.CNNModel(obs, GROUPS, "actor", 3, hidden_dims=[32, 16], obs_normalization=True,
                                distribution_cfg={"class_name": "GaussianDistribution", "init_std": 0.7},
                                cnn_cfg=cnn_cfg)
    kwargs = {"cnns": actor.cnns} if share else {"cnn_cfg": cnn_cfg}
    critic = rsl_models.CNNModel(obs, GROUPS, "critic", 1, hidden_dims=[32, 16], obs_normalization=True, **kwargs)
    actor.update_normalization(obs)
    critic.update_normalization(obs)
    return _randomised(actor), _randomised(critic)


@pytest.mark.parametrize("share", [False, True])
def test_actor_critic_matches_rsl_rl_cnn_model(share):
    """Actor mean and value of RSL-RL CNNModels (1-D normaliser, shared encoders or not) within 1e-5."""
    cnn_cfg = CNN_CFGS[0]
    rng = np.random.default_rng(1)
    obs_np = {g: (rng.standard_normal((9, *s)) * 2 + 0.5).astype(np.float32) for g, s in SHAPES.items()}
    obs = TensorDict({g: torch.from_numpy(v) for g, v in obs_np.items()}, batch_size=[9])
    actor, critic = _rsl_models(share, cnn_cfg, obs)
    net = make_actor_critic_cnn(cnn_cfg, None, share, obs_shapes=SHAPES, obs_groups=GROUPS, action_size=3,
                                actor_hidden_dims=(32, 16), critic_hidden_dims=(32, 16), actor_obs_normalization=True,
                                critic_obs_normalization=True)
    torch_params = {id(p): p.numel() for m in (actor, critic) for p in m.parameters()}  # shared tensors once
    fresh = jax.eval_shape(net.init, jax.random.key(0))
    assert sum(x.size for x in jax.tree.leaves(fresh)) == sum(torch_params.values())
    assert ("cnns" in fresh.critic) == (not share)
    params, norms = params_from_rsl_rl(net, actor.state_dict(), critic.state_dict())
    assert jax.tree.structure(params) == jax.tree.structure(fresh)
    assert jax.tree.map(np.shape, params) == jax.tree.map(lambda x: x.shape, fresh)
    with torch.no_grad():
        mean, value = actor(obs).numpy(), critic(obs).numpy()[:, 0]
    apply = jax.jit(lambda p: (net.actor_mean(p, norms, obs_np), net.value(p, norms, obs_np)))
    np.testing.assert_allclose(np.asarray(apply(params)[0]), mean, atol=1e-5)
    np.testing.assert_allclose(np.asarray(apply(params)[1]), value, atol=1e-5)
    # With shared encoders the critic reads the actor's: changing them moves the value.
    if share:
        cnns = params.actor["cnns"]["scan"]
        moved = params.replace(actor={**params.actor, "cnns": {"scan": {
            **cnns, "conv_1": {**cnns["conv_1"], "bias": cnns["conv_1"]["bias"] + 1.0}}}})
        assert np.max(np.abs(np.asarray(apply(moved)[1]) - value)) > 1e-3


def test_state_dict_mismatches_are_named():
    cnn = CNN.from_cfg(IMAGE[1:], IMAGE[0], CNN_CFGS[0])
    sd = rsl_modules.CNN(IMAGE[1:], IMAGE[0], **CNN_CFGS[0]).state_dict()
    with pytest.raises(ValueError, match=r"'0.weight' has shape \[4, 2, 3, 3\], the CNN layout needs \[4, 2, 5, 5\]"):
        cnn_params_from_state_dict(sd, CNN.from_cfg(IMAGE[1:], IMAGE[0], {**CNN_CFGS[0], "kernel_size": 5}))
    with pytest.raises(ValueError, match=r"missing \['cnns.scan.1.bias'\], unexpected \[\]"):
        cnn_params_from_state_dict({f"cnns.scan.{k}": v for k, v in sd.items() if k != "1.bias"}, cnn, "cnns.scan.")


def _cnn_config(share: bool = False, **policy) -> TrainConfig:
    return TrainConfig(
        env=PointMassGridConfig(num_envs=32, episode_length=100),
        policy=PolicyConfig(class_name="ActorCriticCNN", actor_hidden_dims=[32, 32], critic_hidden_dims=[32, 32],
                            actor_obs_normalization=True, critic_obs_normalization=True,
                            actor_cnn_cfg={"output_channels": [4, 8], "kernel_size": 3, "stride": [1, 2],
                                           "padding": "zeros"}, **policy),
        algorithm=AlgorithmConfig(num_learning_epochs=4, num_mini_batches=2, share_cnn_encoders=share),
        runner=RunnerConfig(num_steps_per_env=16, save_interval=100, progress_bar=False, logger="tensorboard",
                            obs_groups={"actor": ["policy", "grid"], "critic": ["critic", "grid"]}))


def _env(cfg: TrainConfig) -> VecEnv:
    return VecEnv(PointMassGrid(cfg.env), cfg.env.num_envs)


def test_config_errors_name_the_problem():
    cfg = _cnn_config()
    env = _env(cfg)
    cases = [
        ({"actor_cnn_cfg": {"output_channels": [4], "kernel": 3}}, r"unknown cnn_cfg key 'kernel' \(did you mean "
                                                                   r"'kernel_size'\?\)"),
        ({"actor_cnn_cfg": {"output_channels": [4], "kernel_size": 3, "padding": "same"}},
         r"padding='same' is not one of \['none', 'zeros'"),
        ({"actor_cnn_cfg": {"output_channels": [4, 4], "kernel_size": 7}}, r"layer 1 \(kernel 7.*does not fit its "
                                                                            r"input \[3, 3\]"),
        ({"actor_cnn_cfg": {"output_channels": [4], "kernel_size": 3, "norm": "batch"}}, "norm='batch' cannot be "
                                                                                        "trained"),
        ({"actor_cnn_cfg": {"output_channels": [4], "kernel_size": [3, 3]}}, "kernel_size has 2 entries for 1 layers"),
        ({"actor_cnn_cfg": None}, r"groups \['grid'\] are 2-D"),
        ({"actor_cnn_cfg": {"depth": {"output_channels": [4], "kernel_size": 3}}}, r"name \['depth'\], but the 2-D "),
    ]
    for policy, message in cases:
        for key, value in policy.items():
            setattr(cfg.policy, key, value)
        with pytest.raises(ConfigError, match="policy.class_name=ActorCriticCNN: .*" + message):
            make_networks(cfg, env)
        cfg = _cnn_config()
    cfg.algorithm.share_cnn_encoders = True
    cfg.runner.obs_groups = {"actor": ["policy", "grid"], "critic": ["critic"]}
    with pytest.raises(ConfigError, match=r"share_cnn_encoders needs the same 2-D groups.*\['grid'\] and \[\]"):
        make_networks(cfg, env)
    cfg = _cnn_config()
    cfg.runner.obs_groups = {"actor": ["policy"], "critic": ["critic"]}
    with pytest.raises(ConfigError, match=r"no observation group .* is 2-D .*use policy.class_name=ActorCritic"):
        make_networks(cfg, env)
    cfg = _cnn_config()
    cfg.algorithm.estimator_cfg.enabled = True
    with pytest.raises(ConfigError, match="cannot be combined with algorithm.estimator_cfg"):
        build_networks(cfg, build_context(env, cfg), make_networks(cfg, env))


def _evaluate(runner, steps: int = 60) -> float:
    """Mean per-step distance reward of the deterministic policy from 64 fixed starts."""
    env, policy = runner.env, runner.get_inference_policy()
    state = env.reset(jax.random.split(jax.random.key(7), env.num_envs))
    step = jax.jit(lambda s: env.step(s, policy(s.obs))[0])
    total = 0.0
    for _ in range(steps):
        state = step(state)
        total += float(jnp.mean(state.reward_terms["distance"]))
    return total / steps


@pytest.fixture(scope="module")
def trained():
    """A CNN policy (encoder shared with the critic, mirror augmentation on) trained 40 iterations on the grid
    point mass (position visible through the CNN only); the states after 2 and 4 iterations are kept for the
    resume test."""
    cfg = _cnn_config(share=True)
    cfg.algorithm.symmetry_cfg.enabled = True
    runner = OnPolicyRunner(_env(cfg), cfg)
    before = _evaluate(runner)
    snapshots = {}
    for it in range(1, 41):
        runner.state, _ = runner.trainer.iteration(runner.state)
        if it in (2, 4):
            snapshots[it] = runner.state
    return cfg, runner, before, _evaluate(runner), snapshots


def test_ppo_learns_through_the_cnn(trained):
    """The deterministic policy parks near the origin, which it can only find through the grid image."""
    _, runner, before, after, _ = trained
    assert isinstance(runner.networks, ActorCriticCNN) and set(runner.state.params.critic) == {"mlp"}
    assert after > before + 0.25 and after > 0.45, (before, after)
    # The CNN carries the position: blanking the image (zero weights) moves the actions.
    obs = runner.state.env_state.obs
    params = runner.state.params
    blind = params.replace(actor={**params.actor, "cnns": jax.tree.map(jnp.zeros_like, params.actor["cnns"])})
    policy = make_inference_fn(runner.networks)
    moved = np.abs(np.asarray(policy(params, runner.state.normalizers)(obs) - policy(blind, runner.state.normalizers)
                              (obs)))
    assert moved.mean() > 0.1


def test_export_parity_with_the_image_in_the_flat_input(trained, tmp_path):
    pytest.importorskip("onnxruntime")
    from agile_jax.export import io_descriptor, onnx, torchscript

    _, runner, _, _, _ = trained
    report = runner.export(str(tmp_path), rollout_steps=4)
    assert report["passed"], report["max_abs_error"]
    for fmt in ("onnx", "torchscript"):
        assert max(report["max_abs_error"][fmt].values()) < 1e-5, report["max_abs_error"]
    desc = io_descriptor.read_io_descriptor(str(tmp_path / "policy.yaml"))
    assert desc["policy"]["type"] == "CNN"
    assert desc["policy"]["inputs"][0]["groups"] == [
        {"name": "policy", "dim": 2, "start": 0, "end": 2},
        {"name": "grid", "dim": 81, "start": 2, "end": 83, "shape": [1, 9, 9]}]
    assert report["network"]["encoders"][0]["output_dim"] == 8 * 4 * 4  # 9x9 -> 9x9 -> (9 - 3) // 2 + 1 = 4
    config = json.loads((tmp_path / "network_config.json").read_text())
    assert config["class_name"] == "ActorCriticCNN" and config["actor_cnn_cfg"]["grid"]["output_channels"] == [4, 8]
    # The flat input is [velocity, image flattened C-major]; the graphs reproduce the JAX policy on it.
    obs = jax.tree.map(np.asarray, runner.state.env_state.obs)
    flat = np.concatenate([obs["policy"], obs["grid"].reshape(len(obs["grid"]), -1)], -1)
    expected = np.asarray(runner.get_inference_policy()(obs))
    np.testing.assert_allclose(onnx.run_onnx(str(tmp_path / "policy.onnx"), flat), expected, atol=1e-5)
    np.testing.assert_allclose(torchscript.run_torchscript(str(tmp_path / "policy.pt"), flat), expected, atol=1e-5)
    module = torch.jit.load(str(tmp_path / "policy.pt"))
    with torch.no_grad():  # one unbatched observation [D] -> [A]
        np.testing.assert_allclose(module(torch.from_numpy(flat[0])).numpy(), expected[0], atol=1e-5)


def test_export_of_every_layer_kind_with_batch_norm_and_two_images(tmp_path):
    """Loaded-network layouts (eval-mode BatchNorm, all paddings, pooling) at opset 11 and 18, dynamic batch."""
    pytest.importorskip("onnxruntime")
    from agile_jax.export import export_policy
    from agile_jax.networks import normalization

    shapes = {**SHAPES, "depth": (3, 6, 6)}
    groups = {"actor": ["scan", "policy", "depth"], "critic": ["critic", "scan"]}
    cfgs = {"scan": CNN_CFGS[1], "depth": CNN_CFGS[2]}
    net = make_actor_critic_cnn(cfgs, {"scan": CNN_CFGS[0]}, allow_batch_norm=True, obs_shapes=shapes,
                                obs_groups=groups, action_size=3, actor_hidden_dims=(16,), critic_hidden_dims=(16,),
                                actor_obs_normalization=True)
    params = net.init(jax.random.key(3))
    norm = params.actor["cnns"]["scan"]["norm_0"]
    params.actor["cnns"]["scan"]["norm_0"] = {**norm, "mean": norm["mean"] + 0.3, "var": norm["var"] * 1.7}
    rng = np.random.default_rng(0)
    obs = {g: (rng.standard_normal((40, *s)) * 2 + 0.5).astype(np.float32) for g, s in shapes.items()}
    norms = {"actor": normalization.update(normalization.init(6), obs["policy"])}
    for opset, dynamic in ((11, False), (18, True)):
        report = export_policy(net, params, norms, str(tmp_path / str(opset)), observations=obs, opset=opset,
                               dynamic_batch=dynamic)
        assert report["passed"] and max(max(v.values()) for v in report["max_abs_error"].values()) < 1e-5
    assert report["network"]["obs_dim_1d"] == 6 and [e["group"] for e in report["network"]["encoders"]] == [
        "scan", "depth"]


def test_resume_and_tensorboard_are_unchanged(trained, tmp_path):
    """Two iterations, save, a fresh runner loads them and runs two more: bit-identical to four in one go; the
    TensorBoard run holds the usual PPO tags."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg, _, _, _, snapshots = trained
    first = OnPolicyRunner(_env(cfg), cfg, log_dir=str(tmp_path / "run1"))
    first.learn(2)
    first.close()
    assert leaves_equal(first.state.params, snapshots[2].params)
    second = OnPolicyRunner(_env(cfg), cfg, log_dir=str(tmp_path / "run2"))
    meta = second.load(str(tmp_path / "run1"))
    assert meta["iteration"] == 2
    second.learn(2)
    second.close()
    for field in ("params", "opt_state", "normalizers", "env_state"):
        assert leaves_equal(getattr(second.state, field), getattr(snapshots[4], field)), field
    acc = EventAccumulator(str(tmp_path / "run2"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"Loss/value", "Loss/surrogate", "Loss/learning_rate", "Policy/mean_std",
            "Perf/total_fps"} <= tags
    assert [e.step for e in acc.Scalars("Loss/value")] == [3, 4]
    assert os.path.isdir(tmp_path / "run2" / "checkpoints" / "4")
