"""Export of recurrent policies: ONNX with explicit state I/O (no ONNX LSTM/GRU op), TorchScript with state
buffers ``[layers, 1, H]`` and ``reset()``; step-by-step parity with the JAX policy over sequences with resets."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from agile_jax.export import export_policy, io_descriptor, policy_spec  # noqa: E402
from agile_jax.export.onnx import build_model  # noqa: E402
from agile_jax.networks import normalization  # noqa: E402
from agile_jax.networks.recurrent import ActorCriticRecurrent, make_recurrent_inference_fn, reset_state  # noqa: E402

D, A, H = 5, 2, 6
STEPS, ENVS = 12, 3


def _policy(rnn_type: str, layers: int, seed: int = 0):
    net = ActorCriticRecurrent({"policy": (3,), "extra": (2,)}, {"actor": ["policy", "extra"], "critic": ["policy"]},
                               A, (8, 8), (8,), activation="tanh", rnn_type=rnn_type, rnn_hidden_dim=H,
                               rnn_num_layers=layers, actor_obs_normalization=True)
    params = net.init(jax.random.key(seed))
    samples = jax.random.normal(jax.random.key(seed + 1), (128, D)) * 2.0 + 0.5
    return net, params, {"actor": normalization.update(normalization.init(D), samples)}


def _jax_sequence(net, params, norms, obs: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """``[T, N, A]`` for ``obs [T, N, D]`` (groups split back), states zeroed where ``starts``."""
    policy = jax.jit(make_recurrent_inference_fn(net)(params, norms))
    hidden, out = net.init_hidden(obs.shape[1]).actor, []
    for t in range(obs.shape[0]):
        hidden = reset_state(hidden, jnp.asarray(starts[t]))
        actions, hidden = policy({"policy": jnp.asarray(obs[t, :, :3]), "extra": jnp.asarray(obs[t, :, 3:])}, hidden)
        out.append(np.asarray(actions))
    return np.stack(out)


def _sequence():
    rng = np.random.default_rng(1)
    starts = np.zeros((STEPS, ENVS), bool)
    starts[0] = True
    starts[5, 1] = starts[8, 0] = True
    return (rng.normal(size=(STEPS, ENVS, D)) * 2 + 0.5).astype(np.float32), starts


@pytest.mark.parametrize("rnn_type,layers", [("lstm", 1), ("lstm", 2), ("gru", 2)])
def test_export_round_trip_step_by_step(tmp_path, rnn_type, layers):
    net, params, norms = _policy(rnn_type, layers)
    report = export_policy(net, params, norms, str(tmp_path))
    assert report["passed"] and report["network"]["state"][0]["shape"] == [layers, 1, H]
    obs, starts = _sequence()
    ref = _jax_sequence(net, params, norms, obs, starts)
    # ONNX: explicit h_in/c_in -> h_out/c_out, fed back step by step, zeros at a reset; no LSTM/GRU operator.
    model = onnx.load(str(tmp_path / "policy.onnx"))
    assert not {"LSTM", "GRU", "RNN"} & {n.op_type for n in model.graph.node}
    session = ort.InferenceSession(str(tmp_path / "policy.onnx"), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    assert names == (["obs", "h_in", "c_in"] if rnn_type == "lstm" else ["obs", "h_in"])
    assert [o.name for o in session.get_outputs()] == ["actions"] + [n.replace("_in", "_out") for n in names[1:]]
    # TorchScript: state in buffers [layers, 1, H], reset() clears it.
    module = torch.jit.load(str(tmp_path / "policy.pt"))
    buffers = dict(module.named_buffers())
    assert buffers["hidden_state"].shape == (layers, 1, H) and ("cell_state" in buffers) == (rnn_type == "lstm")
    worst = {"onnx": 0.0, "torchscript": 0.0}
    for env in range(ENVS):
        states = None
        for t in range(STEPS):
            if starts[t, env]:
                states = [np.zeros((layers, 1, H), np.float32) for _ in names[1:]]
                module.reset()
            res = session.run(None, {"obs": obs[t, env][None], **dict(zip(names[1:], states))})
            states = res[1:]
            with torch.no_grad():
                ts = module(torch.from_numpy(obs[t, env][None].copy())).numpy()[0]
            worst["onnx"] = max(worst["onnx"], float(np.max(np.abs(res[0][0] - ref[t, env]))))
            worst["torchscript"] = max(worst["torchscript"], float(np.max(np.abs(ts - ref[t, env]))))
    assert max(worst.values()) < 1e-5, worst
    desc = io_descriptor.read_io_descriptor(str(tmp_path / "policy.yaml"))
    assert [i["name"] for i in desc["policy"]["inputs"]] == names


def test_dynamic_batch_and_opsets(tmp_path):
    net, params, norms = _policy("gru", 1, seed=3)
    obs, starts = _sequence()
    ref = _jax_sequence(net, params, norms, obs, starts)
    spec = policy_spec(net, params, norms)
    for opset in (11, 17):
        path = str(tmp_path / f"policy_{opset}.onnx")
        onnx.save_model(build_model(spec, opset=opset, dynamic_batch=True), path)
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        h = np.zeros((1, ENVS, H), np.float32)
        for t in range(STEPS):
            h = np.where(starts[t][None, :, None], 0.0, h).astype(np.float32)
            actions, h = session.run(None, {"obs": obs[t], "h_in": h})
            np.testing.assert_allclose(actions, ref[t], atol=1e-5)


def test_recurrent_parity_gate_refuses_a_wrong_export(tmp_path, monkeypatch):
    from agile_jax.export import ExportParityError
    from agile_jax.export import onnx as onnx_export

    net, params, norms = _policy("lstm", 1)
    original = onnx_export._lstm_cell

    def broken(g, x, h, c, layer, p, width):  # forgets the cell state
        return original(g, x, h, g.op("Mul", [c, g.const(g.fresh("zero"), np.array(0.0))]), layer, p, width)

    monkeypatch.setattr(onnx_export, "_lstm_cell", broken)
    with pytest.raises(ExportParityError, match="onnx on 'random'"):
        export_policy(net, params, norms, str(tmp_path / "out"), formats=("onnx",))
    assert not (tmp_path / "out").exists()
