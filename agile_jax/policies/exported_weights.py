"""The weights of an exported MLP policy read back from its ``policy.onnx``: what a fine-tuning stage needs to
start from a shipped policy (``runner.init_from=policies/t1_velocity``) when the run that trained it is gone.

This package's ONNX export writes the actor's Dense layers as ``mlp.<i>.kernel [in, out]`` / ``mlp.<i>.bias``
constants in the env's observation layout (a term-major input is first put back into that layout by a
``Gather``), and its layout in the ``network`` metadata (kind, hidden dims, activation, observation groups, whether
a normaliser is baked in). The export holds neither the critic nor the action std nor the optimiser state.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np

EXPORT_DESCRIPTOR = "policy.yaml"
EXPORT_ONNX = "policy.onnx"


@dataclass(frozen=True)
class ExportedMLP:
    """An exported MLP actor: its ``network`` metadata and its Dense layers ``(kernel [in, out], bias [out])``."""

    network: dict
    layers: tuple[tuple[np.ndarray, np.ndarray], ...]

    def flax_params(self) -> dict:
        """``{"params": {"Dense_i": {"kernel", "bias"}}}``, the layout of :class:`agile_jax.networks.mlp.MLP`."""
        return {"params": {f"Dense_{i}": {"kernel": kernel, "bias": bias} for i, (kernel, bias) in
                           enumerate(self.layers)}}


def export_onnx_path(path: str) -> str | None:
    """The ``policy.onnx`` that ``path`` names (an export directory: ``policy.yaml`` beside it; or the file
    itself), ``None`` for anything else."""
    if os.path.isdir(path) and os.path.isfile(os.path.join(path, EXPORT_DESCRIPTOR)):
        return os.path.join(path, EXPORT_ONNX)
    return path if path.endswith(".onnx") else None


def read_exported_mlp(onnx_path: str) -> ExportedMLP:
    """The actor of one of this package's ONNX exports.

    Raises:
        ValueError: the file is missing, is not an ONNX model, was not written by this package (no ``network``
            metadata), holds another kind of network than a plain MLP (recurrent, CNN, with an estimator) or a
            normaliser, or its constants do not match its metadata.
    """
    import onnx
    from onnx import numpy_helper

    if not os.path.isfile(onnx_path):
        raise ValueError(f"'{onnx_path}' does not exist (an export directory holds policy.onnx beside policy.yaml)")
    try:
        model = onnx.load_model(onnx_path)
    except Exception as err:  # protobuf raises its own DecodeError for files that are not ONNX
        raise ValueError(f"'{onnx_path}' is not an ONNX model ({type(err).__name__})") from None
    metadata = {p.key: p.value for p in model.metadata_props}
    try:
        network = json.loads(metadata["network"])
    except (KeyError, ValueError):
        raise ValueError(f"'{onnx_path}' has no agile_jax 'network' metadata: only this package's exports can "
                         "be read back into a network") from None
    if network.get("kind") != "mlp" or network.get("estimator"):
        kind = "an MLP with an estimator" if network.get("estimator") else f"a {network.get('kind')} network"
        raise ValueError(f"'{onnx_path}' holds {kind}; only plain MLP actors are read back from an export")
    if network.get("obs_normalization"):
        raise ValueError(f"'{onnx_path}' has its observation normaliser baked in, without the sample count that "
                         "training would continue from")
    constants = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    layers = []
    for i in range(len(network.get("hidden_dims", [])) + 1):
        kernel, bias = constants.get(f"mlp.{i}.kernel"), constants.get(f"mlp.{i}.bias")
        if kernel is None or bias is None:
            raise ValueError(f"'{onnx_path}' lacks the constants mlp.{i}.kernel / mlp.{i}.bias its metadata "
                             f"({network.get('kind')}, hidden dims {network.get('hidden_dims')}) promises")
        layers.append((np.asarray(kernel, np.float32), np.asarray(bias, np.float32)))
    return ExportedMLP(network=network, layers=tuple(layers))
