"""A TorchScript policy (``policy.pt``) read once into a pure JAX function.

Supported layouts are the deployment modules of this package, RSL-RL 5.x (``_TorchMLPModel``,
``_TorchLSTMModel``, ``_TorchGRUModel``) and Isaac Lab / AGILE exporters: an optional observation normaliser
(``_mean`` / ``_std`` buffers + ``eps``, or ``obs_mean`` / ``obs_denominator`` buffers), an optional
``nn.LSTM`` / ``nn.GRU`` whose state the module keeps in ``[layers, 1, H]`` buffers, then a chain of
``nn.Linear`` and activation modules, then an identity output. Anything else is refused by name. After the
conversion the JAX function is run against the TorchScript module on random observations (a few steps for
recurrent ones) and the import fails if they disagree.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from agile_jax import precision
from agile_jax.networks.recurrent import RNN, rnn_from_torch

IDENTITY_MODULES = ("Identity", "_IdentityDeterministicOutput")
SEQUENTIAL_MODULES = ("Sequential", "MLP")
PARITY_TOL = 1e-4


class UnsupportedTorchScriptError(ValueError):
    """The TorchScript module is not a (normaliser ->) (RNN ->) Linear/activation chain this importer reads."""


def _elu(x, alpha):
    return jnp.where(x > 0, x, alpha * jnp.expm1(jnp.minimum(x, 0.0)))


def _celu(x, alpha):
    return jnp.maximum(x, 0.0) + jnp.minimum(0.0, alpha * jnp.expm1(jnp.minimum(x, 0.0) / alpha))


def _leaky_relu(x, negative_slope):
    return jnp.where(x >= 0, x, negative_slope * x)


def _softplus(x, beta, threshold):
    return jnp.where(beta * x > threshold, x, jax.nn.softplus(beta * x) / beta)


def _gelu(x, approximate):
    return jax.nn.gelu(x, approximate=approximate == "tanh")


# Activation module name -> (JAX function, {attribute: torch default}); attributes are read from the module.
ACTIVATIONS: dict[str, tuple[Callable, dict]] = {
    "ELU": (_elu, {"alpha": 1.0}),
    "CELU": (_celu, {"alpha": 1.0}),
    "SELU": (jax.nn.selu, {}),
    "ReLU": (jax.nn.relu, {}),
    "LeakyReLU": (_leaky_relu, {"negative_slope": 0.01}),
    "Tanh": (jnp.tanh, {}),
    "Sigmoid": (jax.nn.sigmoid, {}),
    "Softplus": (_softplus, {"beta": 1.0, "threshold": 20.0}),
    "GELU": (_gelu, {"approximate": "none"}),
    "SiLU": (jax.nn.silu, {}),
    "Mish": (lambda x: x * jnp.tanh(jax.nn.softplus(x)), {}),
    "Identity": (lambda x: x, {}),
}


def _activation(module) -> Callable:
    """JAX function of a scripted activation module, with its attributes (``alpha`` ...) bound."""
    kind = module.original_name
    if kind not in ACTIVATIONS:
        raise UnsupportedTorchScriptError(
            f"activation module '{kind}' is not supported; supported: {sorted(ACTIVATIONS)}")
    fn, defaults = ACTIVATIONS[kind]
    return functools.partial(fn, **{name: getattr(module, name, value) for name, value in defaults.items()})


def _numpy(tensor) -> np.ndarray:
    return np.array(tensor.detach().cpu().numpy(), np.float32)


@dataclass(frozen=True)
class ImportedPolicy:
    """A deterministic ``normaliser -> [RNN] -> MLP`` policy as arrays and a JAX ``apply``.

    Attributes:
        obs_dim, action_dim: input and output widths.
        layers: ``(kernel [in, out], bias [out])`` of each Linear, in order.
        activations: the function after each Linear (identity where there is none, e.g. after the last).
        obs_mean, obs_denominator: normaliser ``(x - mean) / denominator`` (``None``: no normaliser).
        rnn: the recurrent layer (``None`` for an MLP) and ``rnn_params`` its weights.
        source: where it was read from.
    """

    obs_dim: int
    action_dim: int
    layers: tuple
    activations: tuple
    obs_mean: np.ndarray | None = None
    obs_denominator: np.ndarray | None = None
    rnn: RNN | None = None
    rnn_params: Any = None
    source: str = ""
    input_index: np.ndarray | None = None

    @property
    def is_recurrent(self) -> bool:
        return self.rnn is not None

    def init_state(self, num_envs: int) -> tuple:
        """Zero state ``[num_envs, layers, H]`` per part (empty for an MLP)."""
        return self.rnn.zero_state((num_envs,)) if self.rnn is not None else ()

    def apply(self, x: jax.Array, state: tuple = ()) -> tuple[jax.Array, tuple]:
        """Actions ``[N, A]`` for ``x`` ``[N, D]`` and the next state."""
        if self.input_index is not None:  # the module's first op: exported layout -> its training layout
            x = x[..., self.input_index]
        if self.obs_mean is not None:
            x = (x - self.obs_mean) / self.obs_denominator
        if self.rnn is not None:
            x, state = self.rnn.step(self.rnn_params, x, state)
        for (kernel, bias), act in zip(self.layers, self.activations):
            x = act(x @ kernel + bias)
        return x, state


def _identity(x):
    return x


def _mlp(sequential) -> tuple[tuple, tuple]:
    """``(layers, activations)`` of a scripted ``Sequential``: one activation (maybe identity) after each Linear."""
    layers, activations = [], []
    for name, child in sequential.named_children():
        if child.original_name == "Linear":
            bias = child.bias if child.bias is not None else np.zeros(child.weight.shape[0], np.float32)
            layers.append((_numpy(child.weight).T.copy(), _numpy(bias) if not isinstance(bias, np.ndarray) else bias))
            activations.append(_identity)
        elif child.original_name in SEQUENTIAL_MODULES:
            raise UnsupportedTorchScriptError(f"nested container '{name}' inside the MLP is not supported")
        elif not layers or activations[-1] is not _identity:
            raise UnsupportedTorchScriptError(f"module '{name}' ({child.original_name}) does not follow a Linear")
        else:
            activations[-1] = _activation(child)
    if not layers:
        raise UnsupportedTorchScriptError("the MLP has no Linear layer")
    return tuple(layers), tuple(activations)


def _normalizer(module, child) -> tuple[np.ndarray, np.ndarray] | None:
    """``(mean, denominator)`` of the normaliser (a child with ``_mean``/``_std``, or top-level buffers)."""
    buffers = dict(module.named_buffers(recurse=False))
    if "obs_mean" in buffers and "obs_denominator" in buffers:
        return _numpy(buffers["obs_mean"]).reshape(-1), _numpy(buffers["obs_denominator"]).reshape(-1)
    if child is None:
        return None
    inner = dict(child.named_buffers(recurse=False))
    eps = np.float32(getattr(child, "eps", 1e-2))
    return _numpy(inner["_mean"]).reshape(-1), (_numpy(inner["_std"]) + eps).reshape(-1)


def _classify(module) -> dict:
    """The module's parts by role; unknown children are refused by name."""
    if module.original_name in SEQUENTIAL_MODULES:
        return {"mlp": module, "normalizer": None, "rnn": None}
    parts = {"mlp": None, "normalizer": None, "rnn": None}
    for name, child in module.named_children():
        kind = child.original_name
        buffers = {n for n, _ in child.named_buffers(recurse=False)}
        if kind in ("LSTM", "GRU"):
            role = "rnn"
        elif kind in SEQUENTIAL_MODULES:
            role = "mlp"
        elif {"_mean", "_std"} <= buffers:
            role = "normalizer"
        elif kind in IDENTITY_MODULES:
            continue
        else:
            raise UnsupportedTorchScriptError(
                f"unsupported submodule '{name}' ({kind}); the importer reads a normaliser, an LSTM/GRU, a "
                f"Sequential of Linear + activation modules and an identity output")
        if parts[role] is not None:
            raise UnsupportedTorchScriptError(f"more than one {role} submodule ('{name}')")
        parts[role] = child
    if parts["mlp"] is None:
        raise UnsupportedTorchScriptError("no Sequential/MLP of Linear layers found in the module")
    return parts


def _rnn(child) -> tuple[RNN, Any]:
    if getattr(child, "batch_first", False) or getattr(child, "bidirectional", False):
        raise UnsupportedTorchScriptError("batch_first or bidirectional RNNs are not supported")
    params = rnn_from_torch({name: p for name, p in child.named_parameters()})
    kind = child.original_name.lower()
    return RNN(kind, int(child.input_size), int(child.hidden_size), int(child.num_layers)), params


def convert_module(module, source: str = "") -> ImportedPolicy:
    """An :class:`ImportedPolicy` from a loaded (scripted) module; raises :class:`UnsupportedTorchScriptError`."""
    parts = _classify(module)
    layers, activations = _mlp(parts["mlp"])
    norm = _normalizer(module, parts["normalizer"])
    rnn, rnn_params = _rnn(parts["rnn"]) if parts["rnn"] is not None else (None, None)
    obs_dim = rnn.input_dim if rnn is not None else layers[0][0].shape[0]
    if norm is not None and norm[0].shape[0] != obs_dim:
        raise UnsupportedTorchScriptError(f"normaliser width {norm[0].shape[0]} does not match the input {obs_dim}")
    return ImportedPolicy(obs_dim=int(obs_dim), action_dim=int(layers[-1][0].shape[1]), layers=layers,
                          activations=activations, obs_mean=None if norm is None else norm[0],
                          obs_denominator=None if norm is None else norm[1], rnn=rnn, rnn_params=rnn_params,
                          source=source, input_index=_input_index(module))


def _input_index(module) -> np.ndarray | None:
    """The reordering this package's modules apply first (``reorder`` flag + ``input_index`` buffer), if any."""
    if not getattr(module, "reorder", False):
        return None
    buffers = dict(module.named_buffers(recurse=False))
    return _numpy(buffers["input_index"]).astype(np.int64) if "input_index" in buffers else None


def check_parity(module, policy: ImportedPolicy, steps: int = 6, seed: int = 0, tol: float = PARITY_TOL) -> float:
    """Max-abs difference between the TorchScript module and ``policy`` (batch 1, ``steps`` calls after ``reset``).

    Raises:
        UnsupportedTorchScriptError: the difference exceeds ``tol`` relative to the action scale.
    """
    import torch

    x = np.random.default_rng(seed).normal(size=(steps, 1, policy.obs_dim)).astype(np.float32)
    if policy.obs_mean is not None:  # inputs in the normaliser's range
        x = policy.obs_mean + policy.obs_denominator * x
    if hasattr(module, "reset"):
        module.reset()
    state, worst, scale = policy.init_state(1), 0.0, 1.0
    with torch.no_grad():
        for t in range(steps if policy.is_recurrent else 1):
            rows = x[t] if policy.is_recurrent else x[:, 0]
            ref = module(torch.from_numpy(rows)).numpy()
            with precision.exact():  # float32-exact whatever the training device's default
                ours, state = policy.apply(jnp.asarray(rows), jax.device_get(state))
            worst = max(worst, float(np.max(np.abs(np.asarray(ours) - ref))))
            scale = max(scale, float(np.max(np.abs(ref))))
    if hasattr(module, "reset"):
        module.reset()
    if not math.isfinite(worst) or worst > tol * scale:
        raise UnsupportedTorchScriptError(
            f"the imported policy differs from the TorchScript module by {worst:.3g} (actions up to {scale:.3g}); "
            f"its forward() is not the normaliser -> [RNN] -> MLP chain this importer reads:\n{module.code}")
    return worst


def load_torchscript_policy(path: str) -> ImportedPolicy:
    """Reads ``path`` with ``torch.jit.load`` into an :class:`ImportedPolicy` checked against torch."""
    from agile_jax.export.torchscript import require_torch

    torch = require_torch()
    module = torch.jit.load(path, map_location="cpu").eval()
    policy = convert_module(module, source=path)
    check_parity(module, policy)
    return policy
