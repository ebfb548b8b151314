"""Teachers read from exported files give the actions of onnxruntime / torch, step by step with resets.

Files: RSL-RL 5.5.1's own exports (``export_policy_to_onnx`` / ``export_policy_to_jit`` of ``MLPModel`` and
``RNNModel`` LSTM/GRU, with observation normalisation) and this package's exports (MLP, LSTM, GRU).
Unsupported operators and modules are refused by name.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("rsl_rl")
pytest.importorskip("onnxscript")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import onnx  # noqa: E402
from onnx import TensorProto, helper  # noqa: E402
from rsl_rl.models import MLPModel, RNNModel  # noqa: E402
from tensordict import TensorDict  # noqa: E402

from agile_jax.export import export_policy  # noqa: E402
from agile_jax.export.onnx_import import UnsupportedOnnxOperatorError  # noqa: E402
from agile_jax.export.torchscript_import import UnsupportedTorchScriptError  # noqa: E402
from agile_jax.networks import normalization  # noqa: E402
from agile_jax.networks.actor_critic import ActorCritic  # noqa: E402
from agile_jax.networks.recurrent import ActorCriticRecurrent, reset_state  # noqa: E402
from agile_jax.policies.load import load_policy  # noqa: E402

D, A, STEPS, ENVS = 6, 3, 9, 3
TOL = 1e-5


def _rsl_rl_model(kind: str):
    torch.manual_seed({"mlp": 0, "lstm": 1, "gru": 2}[kind])
    obs = TensorDict({"policy": torch.randn(64, D) * 2 + 1}, batch_size=[64])
    dist = {"class_name": "GaussianDistribution", "init_std": 1.0, "std_type": "scalar"}
    kwargs = dict(hidden_dims=[16, 8], obs_normalization=True, distribution_cfg=dist)
    if kind == "mlp":
        model = MLPModel(obs, {"actor": ["policy"]}, "actor", A, **kwargs)
    else:
        model = RNNModel(obs, {"actor": ["policy"]}, "actor", A, **kwargs, rnn_type=kind, rnn_hidden_dim=8,
                         rnn_num_layers=2)
    model.update_normalization(obs)  # non-trivial normaliser statistics
    return model.eval()


def _export_rsl_rl(kind: str, directory) -> dict[str, str]:
    model = _rsl_rl_model(kind)
    paths = {"onnx": str(directory / f"{kind}.onnx"), "torchscript": str(directory / f"{kind}.pt")}
    torch.jit.script(model.as_jit()).save(paths["torchscript"])
    exporter = model.as_onnx(verbose=False).eval()
    torch.onnx.export(exporter, exporter.get_dummy_inputs(), paths["onnx"], export_params=True, opset_version=18,
                      input_names=exporter.input_names, output_names=exporter.output_names)
    return paths


def _export_ours(kind: str, directory) -> dict[str, str]:
    kwargs = dict(obs_shapes={"policy": (D,)}, obs_groups={"actor": ["policy"], "critic": ["policy"]}, action_size=A,
                  actor_hidden_dims=(16, 8), critic_hidden_dims=(8,), actor_obs_normalization=True)
    net = ActorCritic(**kwargs) if kind == "mlp" else ActorCriticRecurrent(**kwargs, rnn_type=kind, rnn_hidden_dim=8,
                                                                             rnn_num_layers=2)
    params = net.init(jax.random.key(4))
    norms = {"actor": normalization.update(normalization.init(D), jax.random.normal(jax.random.key(5), (64, D)) + 1)}
    out = directory / f"ours_{kind}"
    export_policy(net, params, norms, str(out))
    return {"onnx": str(out / "policy.onnx"), "torchscript": str(out / "policy.pt")}


def _sequence(seed: int = 0):
    rng = np.random.default_rng(seed)
    obs = (rng.normal(size=(STEPS, ENVS, D)) * 2 + 1).astype(np.float32)
    starts = np.zeros((STEPS, ENVS), bool)
    starts[0] = True
    starts[4, 0] = starts[6, 2] = True
    return obs, starts


def _reference(fmt: str, path: str, obs: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Actions ``[T, N, A]``: each env run on its own (batch 1) through onnxruntime or torch."""
    out = np.zeros((STEPS, ENVS, A), np.float32)
    for env in range(ENVS):
        if fmt == "torchscript":
            module = torch.jit.load(path)
            for t in range(STEPS):
                if starts[t, env]:
                    module.reset()
                with torch.no_grad():
                    out[t, env] = module(torch.from_numpy(obs[t, env][None].copy())).numpy()[0]
        else:
            session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
            inputs = session.get_inputs()
            for t in range(STEPS):
                if starts[t, env]:
                    states = [np.zeros(i.shape, np.float32) for i in inputs[1:]]
                res = session.run(None, {inputs[0].name: obs[t, env][None], **dict(zip([i.name for i in inputs[1:]],
                                                                                        states))})
                out[t, env], states = res[0][0], res[1:]
    return out


def _teacher_actions(path: str, obs: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, object]:
    teacher = load_policy(path)
    apply = jax.jit(teacher.apply)
    state, out = teacher.init_state(ENVS), []
    for t in range(STEPS):
        state = reset_state(state, jnp.asarray(starts[t]))
        actions, state = apply(jnp.asarray(obs[t]), state)
        out.append(np.asarray(actions))
    return np.stack(out), teacher


@pytest.mark.parametrize("kind", ["mlp", "lstm", "gru"])
@pytest.mark.parametrize("source", ["rsl_rl", "ours"])
def test_teacher_matches_runtime(tmp_path, source, kind):
    paths = (_export_rsl_rl if source == "rsl_rl" else _export_ours)(kind, tmp_path)
    obs, starts = _sequence()
    for fmt, path in paths.items():
        ours, teacher = _teacher_actions(path, obs, starts)
        ref = _reference(fmt, path, obs, starts)
        assert teacher.is_recurrent == (kind != "mlp") and (teacher.obs_dim, teacher.action_dim) == (D, A)
        err = float(np.max(np.abs(ours - ref)))
        assert err < TOL, f"{source} {kind} {fmt}: max abs err {err:.3g}"
        assert float(np.max(np.abs(ref))) > 0.05
    if source == "ours":  # our ONNX files name the observation groups the teacher reads
        assert load_policy(paths["onnx"]).obs_groups == ("policy",)


def test_unsupported_onnx_operators_are_named(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Unsqueeze", ["obs", "axes"], ["x3"]),
         helper.make_node("ConvTranspose", ["x3", "w"], ["y"]), helper.make_node("Flatten", ["y"], ["h"]),
         helper.make_node("Softmax", ["h"], ["actions"])],
        "g", [helper.make_tensor_value_info("obs", TensorProto.FLOAT, [1, 1, D])],
        [helper.make_tensor_value_info("actions", TensorProto.FLOAT, [1, D])],
        initializer=[helper.make_tensor("w", TensorProto.FLOAT, [1, 1, 1], [1.0]),
                     helper.make_tensor("axes", TensorProto.INT64, [1], [1])])
    path = str(tmp_path / "conv.onnx")
    onnx.save_model(helper.make_model_gen_version(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    with pytest.raises(UnsupportedOnnxOperatorError, match=r"\['ConvTranspose', 'Softmax'\]"):
        load_policy(path)


class _ConvPolicy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv1d(1, 1, 1)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(D, A))

    def forward(self, x):
        return self.mlp(self.conv(x.unsqueeze(1)).squeeze(1))


class _ScaledPolicy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.mlp = torch.nn.Sequential(torch.nn.Linear(D, 4), torch.nn.Hardtanh(), torch.nn.Linear(4, A))

    def forward(self, x):
        return self.mlp(x)


class _DoubledPolicy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.mlp = torch.nn.Sequential(torch.nn.Linear(D, 4), torch.nn.ELU(), torch.nn.Linear(4, A))

    def forward(self, x):
        return 2.0 * self.mlp(x)


@pytest.mark.parametrize("module,message", [
    (_ConvPolicy, "unsupported submodule 'conv' \\(Conv1d\\)"),
    (_ScaledPolicy, "activation module 'Hardtanh' is not supported"),
    (_DoubledPolicy, "differs from the TorchScript module"),
])
def test_unsupported_torchscript_modules_are_refused(tmp_path, module, message):
    path = str(tmp_path / "policy.pt")
    torch.jit.script(module()).save(path)
    with pytest.raises(UnsupportedTorchScriptError, match=message):
        load_policy(path)


def test_missing_teacher_file_is_explained(tmp_path):
    with pytest.raises(FileNotFoundError, match="teacher policy .* not found"):
        load_policy(os.path.join(tmp_path, "nope.onnx"))
