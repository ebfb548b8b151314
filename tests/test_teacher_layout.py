"""Teachers from exports whose graphs take AGILE's term-major history: fed the env's layout, they act as trained."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

pytest.importorskip("onnx")
torch = pytest.importorskip("torch")

from agile_jax.export import onnx as onnx_export  # noqa: E402
from agile_jax.export import policy_spec, torchscript  # noqa: E402
from agile_jax.networks.actor_critic import ActorCritic, make_inference_fn  # noqa: E402
from agile_jax.policies.load import load_policy  # noqa: E402

HISTORY, WIDTH = 5, 9  # frames x features of the policy group


@pytest.fixture(scope="module")
def reordered_export(tmp_path_factory):
    """A trained-looking actor exported with a term-major input (the env keeps frames [5, 9] frame-major)."""
    net = ActorCritic({"policy": (HISTORY * WIDTH,), "critic": (7,)}, {"actor": ["policy"], "critic": ["critic"]}, 4,
                      actor_hidden_dims=(32, 32), critic_hidden_dims=(8,))
    params = net.init(jax.random.key(3))
    # Term-major: each feature's 5 frames together; env flat index of (frame f, feature k) is f * WIDTH + k.
    order = np.array([f * WIDTH + k for k in range(WIDTH) for f in range(HISTORY)])
    spec = dataclasses.replace(policy_spec(net, params, net.init_normalizers(), {}), input_index=np.argsort(order))
    out = tmp_path_factory.mktemp("export")
    onnx_export.export_onnx(spec, str(out / "policy.onnx"), onnx_export.DEFAULT_OPSET, False)
    torchscript.export_torchscript(spec, str(out / "policy.pt"))
    policy = make_inference_fn(net)(params, net.init_normalizers(), deterministic=True)
    return out, policy, order


@pytest.mark.parametrize("name", ["policy.onnx", "policy.pt"])
def test_teacher_reads_the_env_layout(reordered_export, name):
    out, policy, order = reordered_export
    x_env = np.random.default_rng(0).normal(size=(6, HISTORY * WIDTH)).astype(np.float32)
    expected = np.asarray(policy({"policy": x_env, "critic": np.zeros((6, 7), np.float32)}))
    teacher = load_policy(str(out / name))
    actions, _ = teacher.apply(x_env, teacher.init_state(6))
    np.testing.assert_allclose(np.asarray(actions), expected, atol=1e-5)
    # The graph itself takes the term-major input: fed the env layout unchanged, it would act differently.
    if name.endswith(".pt"):
        module = torch.jit.load(str(out / name))
        np.testing.assert_allclose(module(torch.from_numpy(x_env[:, order])).detach().numpy(), expected, atol=1e-5)
        assert np.max(np.abs(module(torch.from_numpy(x_env)).detach().numpy() - expected)) > 1e-3
