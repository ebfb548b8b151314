"""``policy.pt``: the policy rebuilt as a ``torch.nn.Module`` and scripted with ``torch.jit.script``.

``Linear.weight = kernel.T``, the input reordering and the normaliser as buffers, the same activation, and an
exported ``reset()`` (AGILE's and RSL-RL's deployment interface). Recurrent modules also accept AGILE's RNN call
``module(obs, hidden) -> (actions, hidden)`` (see :mod:`agile_jax.export._torch_modules`). torch is imported
lazily: install the ``export`` extra.
"""

from __future__ import annotations

import numpy as np

from agile_jax.export.spec import PolicySpec


class TorchUnavailableError(ImportError):
    """TorchScript export needs torch."""


def require_torch():
    try:
        import torch
    except ImportError as err:
        raise TorchUnavailableError(
            "TorchScript export needs PyTorch: pip install 'agile_jax[export]' (or a torch wheel), "
            "or export with formats=('onnx',)") from err
    return torch


def build_module(spec: PolicySpec):
    """The eager ``torch.nn.Module`` equivalent of ``spec`` (eval mode)."""
    require_torch()
    from agile_jax.export import _torch_modules

    if spec.kind == "cnn":  # CNN encoders on 2-D groups (agile_jax/export/_torch_cnn.py)
        from agile_jax.export._torch_cnn import CNNPolicy

        return CNNPolicy(spec).eval().requires_grad_(False)
    if spec.kind not in _torch_modules.MODULE_BUILDERS:
        raise ValueError(f"no TorchScript builder for policy kind '{spec.kind}'; "
                         f"available: {sorted(_torch_modules.MODULE_BUILDERS)}")
    builders = _torch_modules.MODULE_BUILDERS
    builder = _torch_modules.EstimatorMLPPolicy if spec.estimator is not None else builders[spec.kind]
    return builder(spec).eval().requires_grad_(False)


def export_torchscript(spec: PolicySpec, path: str) -> str:
    """Scripts ``build_module(spec)`` and saves it to ``path``; returns the path."""
    torch = require_torch()
    scripted = torch.jit.script(build_module(spec))
    scripted.save(path)
    return path


def run_torchscript(path: str, obs: np.ndarray) -> np.ndarray:
    """Actions ``[N, A]`` of a saved (stateless) TorchScript policy for ``obs`` ``[N, D]``."""
    torch = require_torch()
    module = torch.jit.load(path, map_location="cpu")
    module.eval()
    with torch.no_grad():
        module.reset()
        return module(torch.from_numpy(np.array(obs, np.float32))).numpy()
