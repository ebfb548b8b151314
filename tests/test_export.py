"""Export parity (ONNX, TorchScript) with the JAX policy, the parity gate, the IO descriptor and the CLI."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import sysconfig

import jax
import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

from agile_jax.export import (  # noqa: E402  # noqa: E402
    ExportParityError,
    _torch_modules,
    export_policy,
    export_runner,
    io_descriptor,
    onnx_import,
    policy_spec,
)
from agile_jax.export import onnx as onnx_export  # noqa: E402
from agile_jax.export.onnx import UnsupportedActivationError, build_model  # noqa: E402
from agile_jax.export.torchscript import build_module  # noqa: E402
from agile_jax.networks import normalization  # noqa: E402
from agile_jax.networks.actor_critic import ActorCritic, make_inference_fn  # noqa: E402
from agile_jax.networks.mlp import ACTIVATIONS  # noqa: E402
from agile_jax.training.runner import OnPolicyRunner  # noqa: E402
from tests.helpers import point_mass_config, point_mass_env  # noqa: E402

TOL = 1e-5


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A point-mass runner trained 2 iterations with observation normalisation, and its run directory."""
    run_dir = str(tmp_path_factory.mktemp("run") / "point_mass_run")
    cfg = point_mass_config()
    runner = OnPolicyRunner(point_mass_env(cfg), cfg, log_dir=run_dir)
    runner.learn(2)
    runner.checkpointer.wait()
    return runner, run_dir


def _obs(runner, n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {g: (3.0 * rng.standard_normal((n, *s))).astype(np.float32) for g, s in runner.networks.obs_shapes.items()}


def _jax_actions(runner, obs) -> np.ndarray:
    policy = make_inference_fn(runner.networks)(runner.state.params, runner.state.normalizers, deterministic=True)
    return np.asarray(policy(obs))


def test_parity_static_batch_on_random_and_real_observations(trained, tmp_path):
    runner, _ = trained
    norm = runner.state.normalizers["actor"]
    assert float(norm.count) > 0 and float(np.max(np.abs(norm.mean))) > 1e-3  # the normaliser is not trivial
    report = export_runner(runner, str(tmp_path / "out"), rollout_steps=8)
    assert report["passed"] and set(report["rows"]) == {"random", "env_state", "rollout"}
    for fmt in ("onnx", "torchscript"):
        assert max(report["max_abs_error"][fmt].values()) < TOL, report["max_abs_error"]
    files = sorted(os.listdir(tmp_path / "out"))
    assert files == ["export_report.json", "network_config.json", "policy.onnx", "policy.pt", "policy.yaml"]
    model = onnx.load(str(tmp_path / "out" / "policy.onnx"))
    assert (model.ir_version, model.opset_import[0].version) == (6, 11)
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert (model.graph.input[0].name, dims, model.graph.output[0].name) == ("obs", [1, 4], "actions")
    meta = {p.key: p.value for p in model.metadata_props}
    assert (meta["obs_dim"], meta["action_dim"]) == ("4", "2") and "agile_jax" in model.graph.doc_string
    saved = json.loads((tmp_path / "out" / "export_report.json").read_text())
    assert saved["max_abs_error"] == report["max_abs_error"]
    desc = io_descriptor.read_io_descriptor(str(tmp_path / "out" / "policy.yaml"))
    assert desc["policy"]["inputs"][0]["groups"] == [{"name": "policy", "dim": 4, "start": 0, "end": 4}]
    assert desc["scene"]["dt"] == pytest.approx(0.05) and desc["policy"]["obs_normalization"] == "baked"


def test_parity_dynamic_batch(trained, tmp_path):
    runner, _ = trained
    obs = _obs(runner, 37, seed=1)
    report = export_policy(runner.networks, runner.state.params, runner.state.normalizers, str(tmp_path),
                           formats=("onnx",), dynamic_batch=True, opset=17, observations={"wide": obs})
    assert report["passed"] and report["ir_version"] == 8
    session = ort.InferenceSession(str(tmp_path / "policy.onnx"), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == ["batch", 4]
    actions = session.run(None, {"obs": obs["policy"]})[0]  # the whole batch at once
    assert actions.shape == (37, 2)
    assert np.max(np.abs(actions - _jax_actions(runner, obs))) < TOL


def test_torchscript_loads_where_agile_jax_is_not_importable(trained, tmp_path):
    runner, _ = trained
    export_policy(runner.networks, runner.state.params, runner.state.normalizers, str(tmp_path / "out"),
                  formats=("torchscript",))
    obs = _obs(runner, 5, seed=2)
    np.save(tmp_path / "obs.npy", obs["policy"])
    script = (
        "import sys\n"
        "sys.path.append(sys.argv[1])\n"  # site-packages only: no .pth files, so no editable install
        "for name in ('agile_jax', 'envs', 'experiments'):\n"
        "    try:\n"
        "        __import__(name)\n"
        "    except ImportError:\n"
        "        pass\n"
        "    else:\n"
        "        raise SystemExit(name + ' is importable')\n"
        "import numpy as np, torch\n"
        "policy = torch.jit.load('out/policy.pt')\n"
        "policy.reset()\n"
        "with torch.no_grad():\n"
        "    np.save('actions.npy', policy(torch.from_numpy(np.load('obs.npy'))).numpy())\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    done = subprocess.run([sys.executable, "-I", "-S", "-c", script, sysconfig.get_paths()["purelib"]],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr + done.stdout
    assert np.max(np.abs(np.load(tmp_path / "actions.npy") - _jax_actions(runner, obs))) < TOL


def _corrupt_onnx_body(g, spec, inputs):
    (kernel, bias), *rest = spec.layers
    bad = dataclasses.replace(spec, layers=((kernel + 1e-3, bias), *rest))
    return onnx_export._mlp_body(g, bad, inputs)


class _CorruptTorchPolicy(_torch_modules.MLPPolicy):
    def __init__(self, spec):
        super().__init__(spec)
        with torch.no_grad():
            self.mlp[0].bias.add_(1e-3)


@pytest.mark.parametrize("broken", ["onnx", "torchscript"])
def test_mismatching_export_is_refused(trained, tmp_path, monkeypatch, broken):
    runner, _ = trained
    if broken == "onnx":
        monkeypatch.setitem(onnx_export.BODY_BUILDERS, "mlp", _corrupt_onnx_body)
    else:
        monkeypatch.setitem(_torch_modules.MODULE_BUILDERS, "mlp", _CorruptTorchPolicy)
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("previous export")
    with pytest.raises(ExportParityError, match=f"refusing to export.*{broken} on 'random'") as err:
        export_policy(runner.networks, runner.state.params, runner.state.normalizers, str(out))
    assert not err.value.report["passed"]
    assert sorted(os.listdir(out)) == ["old.txt"]  # nothing written or replaced
    assert sorted(os.listdir(tmp_path)) == ["out"]  # and no temporary directory left behind


def test_every_activation_exports_with_parity(tmp_path):
    obs = np.random.default_rng(3).normal(size=(16, 6)).astype(np.float32) * 3
    for name in ACTIVATIONS:
        net = ActorCritic({"policy": (6,), "critic": (6,)}, {"actor": ["policy"], "critic": ["policy"]}, 3,
                          (16, 8), (8,), name, actor_obs_normalization=True)
        params = net.init(jax.random.key(0))
        norms = {"actor": normalization.update(normalization.init(6), jax.random.normal(jax.random.key(1), (64, 6)))}
        spec = policy_spec(net, params, norms)
        ref = np.asarray(make_inference_fn(net)(params, norms)({"policy": obs}))
        path = str(tmp_path / f"{name}.onnx")
        onnx.save_model(build_model(spec, opset=11, dynamic_batch=True), path)
        got = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"obs": obs})[0]
        with torch.no_grad():
            got_torch = build_module(spec)(torch.from_numpy(obs)).numpy()
        assert np.max(np.abs(got - ref)) < TOL, name
        assert np.max(np.abs(got_torch - ref)) < TOL, name
        assert np.max(np.abs(np.asarray(onnx_import.load_onnx_policy(path)(obs)) - ref)) < TOL, name
    with pytest.raises(UnsupportedActivationError, match="'hardswish'"):
        build_model(dataclasses.replace(spec, activation="hardswish"))


class _DescribedEnv:
    """A stand-in env exposing ``io_description()`` like the humanoid tasks will."""

    num_envs, dt = 2, 0.02
    observation_shapes = {"policy": (4,), "critic": (5,)}

    def io_description(self):
        return {
            "observations": {"policy": [{"name": "joint_pos", "shape": [2], "scale": 1.0},
                                        {"name": "joint_vel", "shape": [2], "scale": 0.05}]},
            "actions": [{"name": "joint_pos", "action_type": "JointPositionAction", "shape": [2],
                         "joint_names": ["hip", "knee"], "scale": 0.5, "offset": np.array([0.1, -0.2])}],
            "articulations": {"robot": {"joint_names": ["hip", "knee"], "default_joint_stiffness": [40.0, 30.0]}},
            "scene": {"physics_dt": 0.005, "decimation": 4},
        }


def test_io_descriptor_uses_the_env_description(trained, tmp_path):
    runner, _ = trained
    export_policy(runner.networks, runner.state.params, runner.state.normalizers, str(tmp_path), env=_DescribedEnv(),
                  formats=("onnx",))
    desc = io_descriptor.read_io_descriptor(str(tmp_path / "policy.yaml"))
    assert [t["name"] for t in desc["observations"]["policy"]] == ["joint_pos", "joint_vel"]
    assert desc["actions"][0]["joint_names"] == ["hip", "knee"] and desc["actions"][0]["offset"] == [0.1, -0.2]
    assert desc["scene"] == {"dt": 0.02, "physics_dt": 0.005, "decimation": 4}
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "policy.onnx")).metadata_props}
    assert json.loads(meta["joint_names"]) == ["hip", "knee"]
    spec = policy_spec(runner.networks, runner.state.params, runner.state.normalizers)
    bad = _DescribedEnv()
    bad.io_description = lambda: {"observations": {"policy": [{"name": "joint_pos", "shape": [3]}]}}
    with pytest.raises(ValueError, match="add up to 3 values"):
        io_descriptor.describe(spec, bad)


def test_onnx_import_matches_onnxruntime_and_names_unsupported_ops(trained, tmp_path):
    runner, _ = trained
    export_policy(runner.networks, runner.state.params, runner.state.normalizers, str(tmp_path), formats=("onnx",))
    path = str(tmp_path / "policy.onnx")
    policy = onnx_import.load_onnx_policy(path)
    assert (policy.input_names, policy.output_names, policy.input_shapes) == (["obs"], ["actions"], [[1, 4]])
    obs = _obs(runner, 1, seed=4)["policy"]
    expected = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"obs": obs})[0]
    assert np.max(np.abs(np.asarray(jax.jit(policy)(obs)) - expected)) < TOL
    model = onnx.load(path)
    model.graph.node.append(onnx.helper.make_node("Softmax", ["actions"], ["probs"]))
    model.graph.node.append(onnx.helper.make_node("TopK", ["probs", "k"], ["v", "i"]))
    with pytest.raises(onnx_import.UnsupportedOnnxOperatorError, match=r"\['Softmax', 'TopK'\]"):
        onnx_import.load_onnx_policy(model)


def test_export_script_restores_the_run_and_exports(trained, tmp_path, capsys):
    from experiments import export as export_script

    runner, run_dir = trained
    out = tmp_path / "exported"
    code = export_script.main([os.path.join(run_dir, "checkpoints", "2"), f"out={out}", "rollout_steps=4",
                               "format=onnx"])
    assert code == 0, capsys.readouterr().err
    assert "passed" in capsys.readouterr().out
    report = json.loads((out / "export_report.json").read_text())
    assert report["metadata"]["iteration"] == 2 and set(report["rows"]) == {"random", "env_state", "rollout"}
    session = ort.InferenceSession(str(out / "policy.onnx"), providers=["CPUExecutionProvider"])
    obs = _obs(runner, 1, seed=5)
    assert np.max(np.abs(session.run(None, {"obs": obs["policy"]})[0] - _jax_actions(runner, obs))) < TOL
    assert export_script.main([run_dir, "formt=onnx"]) == 2
    assert "unknown option 'formt'" in capsys.readouterr().err
