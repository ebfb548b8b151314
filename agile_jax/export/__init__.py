"""Deployment artefacts and interop: ONNX, TorchScript, the IO descriptor, RSL-RL checkpoints.

* :func:`export_policy` / :func:`export_runner`: ``policy.onnx`` + ``policy.pt`` + ``policy.yaml``, written
  only after they reproduce the JAX policy within ``tol`` (report in ``export_report.json``).
* :mod:`agile_jax.export.onnx`, :mod:`~agile_jax.export.torchscript`, :mod:`~agile_jax.export.io_descriptor`:
  the single formats.
* :mod:`agile_jax.export.onnx_import`: an ONNX policy (ours, CNNs included, or RSL-RL's MLP or LSTM/GRU) as a JAX
  function; :mod:`~agile_jax.export.torchscript_import` the same for TorchScript policies (distillation teachers).
* Recurrent policies export with explicit state I/O (ONNX ``h_in``/``c_in`` -> ``h_out``/``c_out``) or internal
  state buffers and ``reset()`` (TorchScript, which also takes AGILE's packed ``hidden`` argument), checked step
  by step (:mod:`~agile_jax.export.sequence`).
* ``policy.yaml`` follows NVIDIA WBC-AGILE's IO-descriptor schema; the graphs read its term-major input.
* :mod:`agile_jax.export.rsl_rl`: RSL-RL 5.x ``model_<it>.pt`` checkpoints to and from agile_jax params.

torch is needed only for TorchScript and RSL-RL checkpoints and is imported on use.
"""

from agile_jax.export.exporter import ExportParityError, export_policy
from agile_jax.export.rollout import collect_observations, export_runner
from agile_jax.export.spec import PolicySpec, StateSpec, policy_spec

__all__ = [
    "ExportParityError",
    "PolicySpec",
    "StateSpec",
    "collect_observations",
    "export_policy",
    "export_runner",
    "policy_spec",
]
