"""Any policy source read once into a JAX function (a distillation teacher: AGILE's ``StudentTrainedTeacher``).

``load_policy(path)`` accepts ``policy.onnx`` (this package's export, CNN policies included, RSL-RL's
``export_policy_to_onnx`` or any ``torch.onnx.export`` of an MLP / single-step RNN / CNN of standard operators, via
:mod:`agile_jax.export.onnx_import`) and ``policy.pt`` TorchScript (ours, CNN policies included, RSL-RL's
``export_policy_to_jit``, Isaac Lab / AGILE exporters, via :mod:`agile_jax.export.torchscript_import`) and RSL-RL
5.x checkpoints ``model_<it>.pt`` (MLP / RNN / CNN models, via :mod:`agile_jax.policies.rsl_rl_checkpoint`).
The result runs inside the jitted rollout; neither onnxruntime nor torch is called after loading. Recurrent
teachers keep their state per env (reset at dones).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp

from agile_jax.policies.loaded import LoadedPolicy, file_sha256, from_env_layout


def _onnx_groups(metadata: Mapping[str, str]) -> tuple[str, ...] | None:
    """Observation groups recorded by this package's ONNX export (``network`` metadata), if any."""
    try:
        groups = json.loads(metadata.get("network", "{}")).get("obs_groups")
    except (TypeError, ValueError):
        return None
    return tuple(groups) if groups else None


def from_onnx(path: str) -> LoadedPolicy:
    """A :class:`LoadedPolicy` from an ONNX policy (``obs [1|B, D] (+ h_in[, c_in]) -> actions (+ h_out[, c_out])``).

    The graph is applied one env row at a time (``vmap``), so static batch-1 graphs work for any number of envs.

    Raises:
        agile_jax.export.onnx_import.UnsupportedOnnxOperatorError: the graph uses unsupported operators.
    """
    from agile_jax.export.onnx_import import load_onnx_policy

    policy = load_onnx_policy(path)
    state_inputs = policy.input_names[1:]
    state_shapes = [tuple(int(d or 1) for d in shape) for shape in policy.input_shapes[1:]]
    order = _state_outputs(policy.output_names, state_inputs)

    def apply_row(x, state):
        outputs = policy.apply(x[None], *state)
        return outputs[0][0], tuple(outputs[i] for i in order)

    apply = jax.vmap(apply_row)

    def init_state(num_envs: int):
        return tuple(jnp.zeros((num_envs, *shape), jnp.float32) for shape in state_shapes)

    apply = from_env_layout(apply, policy.input_index())
    obs_dim = int(policy.input_shapes[0][-1])
    action_dim = int(jax.eval_shape(apply, jnp.zeros((1, obs_dim)), init_state(1))[0].shape[-1])
    return LoadedPolicy(apply=apply, init_state=init_state, obs_dim=obs_dim, action_dim=action_dim,
                   is_recurrent=bool(state_inputs), source=path, obs_groups=_onnx_groups(policy.metadata),
                   sha256=file_sha256(path),
                   description={"format": "onnx", "inputs": policy.input_names, "outputs": policy.output_names})


def _state_outputs(output_names: Sequence[str], state_inputs: Sequence[str]) -> list[int]:
    """Output index of each state input: ``<x>_in`` -> ``<x>_out`` by name, else by position after the actions."""
    order = []
    for i, name in enumerate(state_inputs):
        twin = name[: -len("_in")] + "_out" if name.endswith("_in") else None
        order.append(output_names.index(twin) if twin in output_names else i + 1)
    if any(i >= len(output_names) for i in order):
        raise ValueError(f"the ONNX graph takes state inputs {list(state_inputs)} but has outputs {list(output_names)}")
    return order


def from_torchscript(path: str) -> LoadedPolicy:
    """A :class:`LoadedPolicy` from a TorchScript policy (see :mod:`agile_jax.export.torchscript_import`).

    Raises:
        agile_jax.export.torchscript_import.UnsupportedTorchScriptError: unsupported module layout.
    """
    from agile_jax.export.torchscript_import import load_torchscript_policy

    policy = load_torchscript_policy(path)
    layout = {"format": "torchscript", "hidden_dims": [int(k.shape[1]) for k, _ in policy.layers[:-1]],
              "rnn": None if policy.rnn is None else policy.rnn.rnn_type, "normalizer": policy.obs_mean is not None}
    if policy.encoders:
        layout["cnn"] = [{"start": e.start, "shape": list(e.shape), "modules": list(e.kinds)} for e in policy.encoders]
    return LoadedPolicy(apply=from_env_layout(policy.apply, policy.input_index), init_state=policy.init_state,
                   obs_dim=policy.obs_dim,
                   action_dim=policy.action_dim, is_recurrent=policy.is_recurrent, source=path,
                   sha256=file_sha256(path), description=layout)


def load_policy(path: str) -> LoadedPolicy:
    """The teacher in ``path``: a directory is a run of this package (``<run>`` or ``<run>/checkpoints``: its newest
    checkpoint, or ``<run>/checkpoints/<it>``, via :mod:`agile_jax.policies.run`), ``*.onnx`` is read as
    ONNX, an RSL-RL ``model_<it>.pt`` checkpoint (``torch.save`` archive) with
    :mod:`agile_jax.policies.rsl_rl_checkpoint`, anything else as TorchScript.

    Raises:
        FileNotFoundError: no such file or directory.
        ValueError: the file's operators/modules are not supported, or the run has no intact checkpoint (the
            message names the problem).
    """
    import os

    from agile_jax.policies import run as run_policy

    if os.path.isdir(path) or run_policy.is_run_checkpoint(path):
        return run_policy.from_run(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"teacher policy '{path}' not found; export one with experiments/export.py or "
                                "runner.export() (policy.onnx / policy.pt), or pass an RSL-RL model_<it>.pt or a run "
                                "directory of experiments/train.py")
    from agile_jax.policies import rsl_rl_checkpoint

    if rsl_rl_checkpoint.is_rsl_rl_checkpoint(path):
        return rsl_rl_checkpoint.from_rsl_rl_checkpoint(path)
    kind = "ONNX" if path.lower().endswith(".onnx") else "TorchScript"
    try:
        return from_onnx(path) if kind == "ONNX" else from_torchscript(path)
    except ValueError:
        raise  # unsupported operators / modules: already one clear line
    except Exception as err:  # noqa: BLE001 (parsers raise many types for a file that is not a model)
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise ValueError(f"teacher '{path}' is not a readable {kind} policy ({type(err).__name__}: {first}); "
                         "export one with experiments/export.py (policy.onnx / policy.pt)") from None
