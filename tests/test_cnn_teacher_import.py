"""This package's CNN policy exports read back as teachers: ``policy.onnx`` through the ONNX importer's ``Conv`` /
``MaxPool`` / ``Pad`` / pooling operators and ``policy.pt`` through the TorchScript importer's ``CNNPolicy`` layout
give the JAX network's actions (and onnxruntime's / torch's) on a batch of envs; the convolution and pooling
operators against torch and onnxruntime on an odd case (strides 2 and 3, asymmetric pads, non-square input and
kernel, dilation, groups); unsupported attribute values and foreign CNN modules are refused in one line."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import onnx  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from agile_jax.export import onnx as onnx_export  # noqa: E402
from agile_jax.export import policy_spec, torchscript  # noqa: E402
from agile_jax.export.onnx_import import UnsupportedOnnxOperatorError, load_onnx_policy  # noqa: E402
from agile_jax.export.torchscript_import import UnsupportedTorchScriptError  # noqa: E402
from agile_jax.networks import normalization  # noqa: E402
from agile_jax.networks.actor_critic import concat_groups, make_inference_fn  # noqa: E402
from agile_jax.networks.cnn_actor_critic import make_actor_critic_cnn  # noqa: E402
from agile_jax.policies.load import load_policy  # noqa: E402

ENVS, A, TOL = 5, 3, 1e-5
# Four small images, one per padding mode, with every layer kind of the export between them, and two 1-D groups
# that are not contiguous in the flat input.
SHAPES = {"scan": (2, 7, 9), "policy": (5,), "depth": (1, 6, 5), "grid": (1, 5, 6), "edge": (1, 4, 5), "vel": (3,),
          "critic": (4,)}
CNN_CFGS = {
    "scan": dict(output_channels=[3, 4], kernel_size=3, stride=[1, 2], padding="zeros", norm=["layer", "none"],
                 max_pool=[True, False]),
    "depth": dict(output_channels=[3, 2], kernel_size=[3, 2], stride=[2, 1], dilation=[1, 2], padding="reflect",
                  norm="batch", activation="relu", global_pool="avg"),
    "grid": dict(output_channels=[2], kernel_size=3, padding="circular", activation="tanh", global_pool="max"),
    "edge": dict(output_channels=[2], kernel_size=2, padding="replicate", max_pool=True, activation="gelu"),
}
GROUPS = {"actor": ["scan", "policy", "depth", "grid", "edge", "vel"], "critic": ["critic", "scan"]}


def _observations(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {g: (rng.standard_normal((n, *s)) * 1.5 + 0.3).astype(np.float32) for g, s in SHAPES.items()}


def _flat(obs) -> np.ndarray:
    return np.array(concat_groups(obs, GROUPS["actor"], SHAPES))


@pytest.fixture(scope="module")
def cnn_export(tmp_path_factory):
    """A randomly initialised CNN actor (non-trivial norms and normaliser) exported as ``policy.onnx`` (opset 11,
    batch 1, and opset 18 with a dynamic batch) and ``policy.pt``, with the JAX actions on ``ENVS`` observations."""
    net = make_actor_critic_cnn(CNN_CFGS, CNN_CFGS["scan"], allow_batch_norm=True, obs_shapes=SHAPES,
                                obs_groups=GROUPS, action_size=A, actor_hidden_dims=(16,), critic_hidden_dims=(8,),
                                actor_obs_normalization=True)
    params = jax.jit(net.init)(jax.random.key(3))
    rng = np.random.default_rng(1)
    cnns = params.actor["cnns"]
    for group, index in (("scan", 0), ("depth", 0), ("depth", 1)):  # LayerNorm / BatchNorm away from identity
        norm = cnns[group][f"norm_{index}"]
        cnns[group][f"norm_{index}"] = {
            **{k: np.asarray(v) + rng.normal(0, 0.3, v.shape).astype(np.float32) for k, v in norm.items()},
            **({"var": np.asarray(norm["var"]) * rng.uniform(0.5, 2.0, norm["var"].shape).astype(np.float32)}
               if "var" in norm else {})}
    width_1d = SHAPES["policy"][0] + SHAPES["vel"][0]
    norms = {"actor": normalization.update(normalization.init(width_1d),
                                           rng.normal(0.5, 2.0, (64, width_1d)).astype(np.float32))}
    spec = policy_spec(net, params, norms, {})
    out = tmp_path_factory.mktemp("cnn_export")
    paths = {"onnx": str(out / "policy.onnx"), "onnx18": str(out / "policy18.onnx"),
             "torchscript": str(out / "policy.pt")}
    onnx_export.export_onnx(spec, paths["onnx"], 11, False)
    onnx_export.export_onnx(spec, paths["onnx18"], 18, True)
    torchscript.export_torchscript(spec, paths["torchscript"])
    obs = _observations(ENVS, seed=2)
    expected = np.asarray(jax.jit(make_inference_fn(net)(params, norms))(obs))
    assert expected.shape == (ENVS, A) and float(np.max(np.abs(expected))) > 0.05
    return paths, obs, expected


@pytest.mark.parametrize("name", ["onnx", "onnx18"])
def test_onnx_cnn_teacher_matches_the_network_and_onnxruntime(cnn_export, name):
    """Opset 11 (batch 1) read the way TPPO and distillation read a teacher (``bind`` to the env's groups, images
    ``[N, C, H, W]`` as they come), opset 18 (dynamic batch) on the flat input."""
    paths, obs, expected = cnn_export
    flat = _flat(obs)
    teacher = load_policy(paths[name])
    assert (teacher.obs_dim, teacher.action_dim, teacher.is_recurrent) == (flat.shape[1], A, False)
    assert teacher.obs_groups == tuple(GROUPS["actor"])  # from the export's metadata
    ops = {n.op_type for n in onnx.load_model(paths[name]).graph.node}
    assert {"Conv", "MaxPool", "Pad", "GlobalMaxPool", "GlobalAveragePool", "ReduceMean"} <= ops
    if name == "onnx":
        with pytest.raises(ValueError, match="takes .* observations but the groups"):
            teacher.bind(["policy", "scan"], SHAPES)
        act = jax.jit(teacher.bind(GROUPS["actor"], SHAPES))
        actions, state = act({g: jnp.asarray(v) for g, v in obs.items()}, teacher.init_state(ENVS))
    else:
        actions, state = jax.jit(teacher.apply)(jnp.asarray(flat), teacher.init_state(ENVS))
    actions = np.asarray(actions)
    assert state == ()
    reference = onnx_export.run_onnx(paths[name], flat)
    err_net, err_ort = float(np.max(np.abs(actions - expected))), float(np.max(np.abs(actions - reference)))
    print(f"{name}: max abs error vs JAX network {err_net:.2e}, vs onnxruntime {err_ort:.2e}")
    assert err_net < TOL and err_ort < TOL, (err_net, err_ort)


def test_torchscript_cnn_teacher_matches_the_network_and_torch(cnn_export):
    paths, obs, expected = cnn_export
    flat = _flat(obs)
    teacher = load_policy(paths["torchscript"])
    assert (teacher.obs_dim, teacher.action_dim, teacher.is_recurrent) == (flat.shape[1], A, False)
    assert [e["shape"] for e in teacher.description["cnn"]] == [list(SHAPES[g]) for g in CNN_CFGS]
    actions, state = jax.jit(teacher.apply)(jnp.asarray(flat), teacher.init_state(ENVS))
    actions = np.asarray(actions)
    assert state == ()
    with torch.no_grad():
        reference = torch.jit.load(paths["torchscript"])(torch.from_numpy(flat)).numpy()
    err_net, err_torch = float(np.max(np.abs(actions - expected))), float(np.max(np.abs(actions - reference)))
    print(f"torchscript: max abs error vs JAX network {err_net:.2e}, vs torch {err_torch:.2e}")
    assert err_net < TOL and err_torch < TOL, (err_net, err_torch)


def test_tppo_iteration_runs_with_a_cnn_teacher_file(tmp_path):
    """One TPPO iteration on the grid point mass (the position only in the 2-D ``grid`` group) whose teacher is an
    exported CNN ``policy.onnx``: the run reads it, executes its actions and distils them (finite losses)."""
    from agile_jax.config import AlgorithmConfig, PolicyConfig, RunnerConfig, TrainConfig
    from agile_jax.networks.from_config import make_networks
    from agile_jax.training.runner import OnPolicyRunner
    from envs.core import VecEnv
    from envs.tasks.point_mass_grid import PointMassGrid, PointMassGridConfig

    cfg = TrainConfig(
        env=PointMassGridConfig(num_envs=4, episode_length=20),
        policy=PolicyConfig(class_name="ActorCriticCNN", actor_hidden_dims=[8], critic_hidden_dims=[8],
                            actor_cnn_cfg={"output_channels": [2], "kernel_size": 3, "stride": 2, "max_pool": True,
                                           "padding": "zeros"}),
        algorithm=AlgorithmConfig(num_learning_epochs=1, num_mini_batches=1),
        runner=RunnerConfig(num_steps_per_env=4, save_interval=100, progress_bar=False, logger="tensorboard",
                            obs_groups={"actor": ["policy", "grid"], "critic": ["critic", "grid"]}))
    env = VecEnv(PointMassGrid(cfg.env), cfg.env.num_envs)
    teacher = make_networks(cfg, env)  # a CNN actor on the actor's groups, exported as the teacher
    path = onnx_export.export_onnx(policy_spec(teacher, jax.jit(teacher.init)(jax.random.key(5)), {}, {}),
                                   str(tmp_path / "teacher.onnx"))
    cfg.algorithm.tppo_cfg.teacher_policy = path
    cfg.algorithm.tppo_cfg.label_action_with_critic_obs = False
    runner = OnPolicyRunner(env, cfg)
    runner.state, out = runner.trainer.iteration(runner.state)
    assert all(bool(v) for v in out.finite.values()), out.finite
    assert np.isfinite(float(out.metrics["distillation"])) and float(out.metrics["distillation"]) > 0


# -- the operators on an odd case -------------------------------------------------------------------------------


def _onnx_model(nodes, inputs, output_shape, initializers, opset: int = 13) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "ops", [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, output_shape)],
                              initializer=[numpy_helper.from_array(v, k) for k, v in initializers.items()])
    model = helper.make_model_gen_version(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(model, full_check=True)
    return model


def _both(model: onnx.ModelProto, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(JAX importer under jit, onnxruntime)`` outputs of a one-input model."""
    ours = np.asarray(jax.jit(load_onnx_policy(model).__call__)(jnp.asarray(x)))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return ours, session.run(None, {"x": x})[0]


@pytest.mark.parametrize("group", [1, 2])
def test_conv_with_strides_asymmetric_pads_and_dilation_matches_torch(group):
    """``[2, 4, 7, 10]`` input, ``3 x 2`` kernel, strides ``(2, 3)``, pads ``h: (1, 2), w: (0, 1)``, dilations
    ``(2, 1)``: torch's ``conv2d`` after an explicit ``F.pad`` (torch pads symmetrically only)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 7, 10)).astype(np.float32)
    w = rng.standard_normal((6, 4 // group, 3, 2)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    model = _onnx_model([helper.make_node("Conv", ["x", "w", "b"], ["y"], kernel_shape=[3, 2], strides=[2, 3],
                                          pads=[1, 0, 2, 1], dilations=[2, 1], group=group)],
                        [("x", [2, 4, 7, 10])], [2, 6, 3, 4], {"w": w, "b": b})
    ours, runtime = _both(model, x)
    padded = torch.nn.functional.pad(torch.from_numpy(x), (0, 1, 1, 2))  # (w_before, w_after, h_before, h_after)
    expected = torch.nn.functional.conv2d(padded, torch.from_numpy(w), torch.from_numpy(b), stride=(2, 3),
                                          dilation=(2, 1), groups=group).numpy()
    # (7 + 3 - 2 * 2 - 1) // 2 + 1 = 3 rows, (10 + 1 - 1 - 1) // 3 + 1 = 4 columns
    assert ours.shape == expected.shape == (2, 6, 3, 4)
    np.testing.assert_allclose(ours, expected, atol=1e-5)
    np.testing.assert_allclose(ours, runtime, atol=1e-5)


def test_max_pool_with_stride_2_asymmetric_pads_and_same_padding_matches_torch():
    """``3 x 2`` windows, strides 2, pads ``h: (1, 1), w: (1, 0)`` on ``[1, 2, 5, 8]`` (the padding never wins,
    even for all-negative inputs), and ``auto_pad=SAME_UPPER`` against onnxruntime."""
    x = -np.abs(np.random.default_rng(1).standard_normal((1, 2, 5, 8)).astype(np.float32)) - 1.0
    model = _onnx_model([helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[3, 2], strides=[2, 2],
                                          pads=[1, 1, 1, 0])], [("x", [1, 2, 5, 8])], [1, 2, 3, 4], {})
    ours, runtime = _both(model, x)
    padded = torch.nn.functional.pad(torch.from_numpy(x), (1, 0, 1, 1), value=-float("inf"))
    expected = torch.nn.functional.max_pool2d(padded, (3, 2), stride=2).numpy()
    assert ours.shape == expected.shape == (1, 2, 3, 4)
    np.testing.assert_array_equal(ours, expected)
    np.testing.assert_array_equal(ours, runtime)
    # The first output row by hand: rows {pad, 0, 1}, column windows {pad, 0}, {1, 2}, {3, 4}, {5, 6}.
    np.testing.assert_array_equal(ours[0, :, 0], np.stack([x[0, :, :2, 0].max(-1), *(
        x[0, :, :2, 2 * j - 1:2 * j + 1].max((-2, -1)) for j in (1, 2, 3))], -1))
    same = _onnx_model([helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2],
                                         auto_pad="SAME_UPPER")], [("x", [1, 2, 5, 8])], [1, 2, 3, 4], {})
    ours, runtime = _both(same, x)
    np.testing.assert_array_equal(ours, runtime)


def test_unsupported_pooling_attributes_are_refused():
    x = np.zeros((1, 1, 5, 5), np.float32)
    ceil = _onnx_model([helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1)],
                       [("x", [1, 1, 5, 5])], [1, 1, 3, 3], {})
    with pytest.raises(UnsupportedOnnxOperatorError, match="MaxPool with ceil_mode=1"):
        load_onnx_policy(ceil)(x)
    indices = helper.make_graph([helper.make_node("MaxPool", ["x"], ["y", "i"], kernel_shape=[2, 2])], "ops",
                                [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 5, 5])],
                                [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 4, 4]),
                                 helper.make_tensor_value_info("i", TensorProto.INT64, [1, 1, 4, 4])])
    with pytest.raises(UnsupportedOnnxOperatorError, match="MaxPool with an Indices output"):
        load_onnx_policy(helper.make_model_gen_version(indices, opset_imports=[helper.make_opsetid("", 13)]))


class _ForeignCNN(torch.nn.Module):
    """Convolutions in a layout that is not this package's ``CNNPolicy``."""

    def __init__(self):
        super().__init__()
        self.encoders = torch.nn.ModuleList([torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Flatten())])
        self.mlp = torch.nn.Sequential(torch.nn.Linear(18, A))

    def forward(self, x):
        return self.mlp(self.encoders[0](x.reshape(-1, 1, 5, 5)))


def test_foreign_torchscript_cnn_is_refused_in_one_line(tmp_path):
    path = str(tmp_path / "foreign.pt")
    torch.jit.script(_ForeignCNN()).save(path)
    message = r"unsupported submodule 'encoders' \(ModuleList\).*convolutions only in agile_jax's exported CNNPolicy"
    with pytest.raises(UnsupportedTorchScriptError, match=message) as err:
        load_policy(path)
    assert "\n" not in str(err.value)
