"""A TorchScript policy (``policy.pt``) read once into a pure JAX function.

Supported layouts are the deployment modules of this package, RSL-RL 5.x (``_TorchMLPModel``,
``_TorchLSTMModel``, ``_TorchGRUModel``) and Isaac Lab / AGILE exporters: an optional observation normaliser
(``_mean`` / ``_std`` buffers + ``eps``, or ``obs_mean`` / ``obs_denominator`` buffers), an optional
``nn.LSTM`` / ``nn.GRU`` whose state the module keeps in ``[layers, 1, H]`` buffers, then a chain of
``nn.Linear`` and activation modules, then an identity output. Anything else is refused by name. After the
conversion the JAX function is run against the TorchScript module on random observations (a few steps for
recurrent ones) and the import fails if they disagree.

CNN policies are read in exactly the layout of this package's export (``CNNPolicy``,
:mod:`agile_jax.export._torch_cnn`), recognised by its class name and parts: the input reordering and the
normaliser buffers, the ``columns_1d`` buffer, the ``starts`` / ``image_shapes`` attributes and an ``encoders``
list of ``Sequential`` CNNs (``Conv2d`` with any padding mode, ``BatchNorm2d`` with running statistics,
``LayerNorm``, the activations, ``MaxPool2d``, ``AdaptiveMax/AvgPool2d(1)``, ending in ``Flatten``) before the
MLP. Its forward is that module's: ``mlp(cat([x[:, columns_1d]] + [cnn_k(x[:, start_k:start_k + C*H*W]
.reshape(-1, C, H, W))]))`` on the normalised ``x``. Other convolutional modules are refused in one line.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from agile_jax.export import _jax_layers
from agile_jax.networks.recurrent import RNN, rnn_from_torch
from agile_jax.runtime import precision

IDENTITY_MODULES = ("Identity", "_IdentityDeterministicOutput")
SEQUENTIAL_MODULES = ("Sequential", "MLP")
PARITY_TOL = 1e-4
CNN_POLICY = "CNNPolicy"  # agile_jax.export._torch_cnn.CNNPolicy, the only CNN layout read


class UnsupportedTorchScriptError(ValueError):
    """The TorchScript module is not a (normaliser ->) (RNN ->) Linear/activation chain, nor agile_jax's exported
    ``CNNPolicy``, that this importer reads."""


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
        input_index: the module's first op ``x[..., input_index]`` (``None``: none).
        columns_1d, encoders: a ``CNNPolicy``'s 1-D columns (``None``: none) and its CNNs
            (:class:`ImportedEncoder`); the MLP then reads ``[x[..., columns_1d], cnn_0(x), ...]``.
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
    columns_1d: np.ndarray | None = None
    encoders: tuple = ()

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
        if self.encoders:  # CNNPolicy: the 1-D columns, then each CNN on its image columns
            parts = [] if self.columns_1d is None else [x[..., self.columns_1d]]
            x = jnp.concatenate(parts + [encoder.apply(x) for encoder in self.encoders], axis=-1)
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
                f"Sequential of Linear + activation modules and an identity output (convolutions only in "
                f"agile_jax's exported {CNN_POLICY} layout)")
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
    if module.original_name == CNN_POLICY:
        return _convert_cnn(module, source)
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


# -- CNN policies (agile_jax's CNNPolicy) ---------------------------------------------------------------


@dataclass(frozen=True)
class ImportedEncoder:
    """One CNN of a ``CNNPolicy``: columns ``[start, start + C * H * W)`` of the normalised input as ``[C, H, W]``.

    Attributes:
        start, shape: where the image lies in the flat input, and its ``(C, H, W)``.
        layers: JAX functions on ``[N, C, H, W]``, one per module of the ``Sequential`` (its order).
        kinds: the modules' class names; output_dim: width of the flattened output.
    """

    start: int
    shape: tuple[int, int, int]
    layers: tuple
    kinds: tuple[str, ...]
    output_dim: int

    def apply(self, x: jax.Array) -> jax.Array:
        """Features ``[..., output_dim]`` of the image columns of ``x`` ``[..., D]``."""
        c, h, w = self.shape
        y = x[..., self.start:self.start + c * h * w].reshape((-1, c, h, w))
        for layer in self.layers:
            y = layer(y)
        return y.reshape((*x.shape[:-1], -1))


_TORCH_PAD_MODES = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}
_CNN_MODULES = ("Conv2d", "BatchNorm2d", "LayerNorm", "MaxPool2d", "AdaptiveMaxPool2d", "AdaptiveAvgPool2d",
                "Flatten")


def _pair(value) -> tuple[int, int]:
    return tuple(int(v) for v in value) if isinstance(value, (tuple, list)) else (int(value),) * 2


def _conv2d(child, where: str) -> Callable:
    """``nn.Conv2d`` (any padding, padding mode, stride, dilation, groups) as a JAX function."""
    params = dict(child.named_parameters())
    weight, bias = _numpy(params["weight"]), _numpy(params["bias"]) if "bias" in params else None
    stride, dilation, groups = _pair(child.stride), _pair(child.dilation), int(child.groups)
    padding, mode = child.padding, str(child.padding_mode)
    if isinstance(padding, str):  # "valid" | "same" (torch puts the odd extra pixel after)
        totals = [0, 0] if padding == "valid" else [d * (k - 1) for d, k in zip(dilation, weight.shape[2:])]
        pads = [(t // 2, t - t // 2) for t in totals]
    else:
        pads = [(p, p) for p in _pair(padding)]
    if mode == "zeros":
        return functools.partial(_jax_layers.conv, kernel=weight, bias=bias, strides=stride, pads=pads,
                                 dilations=dilation, groups=groups)
    if mode not in _TORCH_PAD_MODES:
        raise UnsupportedTorchScriptError(f"{where}: Conv2d padding_mode '{mode}' is not supported")

    def conv(x):  # padding modes other than zeros pad explicitly first, as torch does
        x = jnp.pad(x, ((0, 0), (0, 0), *pads), mode=_TORCH_PAD_MODES[mode])
        return _jax_layers.conv(x, weight, bias, stride, [(0, 0)] * 2, dilation, groups)

    return conv


def _affine_norm(child, kind: str, where: str) -> Callable:
    """``LayerNorm`` over its ``normalized_shape`` (biased variance) or eval-mode ``BatchNorm2d``."""
    params, buffers, eps = dict(child.named_parameters()), dict(child.named_buffers()), float(child.eps)
    if kind == "BatchNorm2d":
        if "running_mean" not in buffers or "running_var" not in buffers:
            raise UnsupportedTorchScriptError(f"{where}: BatchNorm2d without running statistics is not supported")
        column = lambda v: _numpy(v)[:, None, None]  # noqa: E731 ([C] -> [C, 1, 1])
        mean, var = column(buffers["running_mean"]), column(buffers["running_var"])
        scale = column(params["weight"]) if "weight" in params else np.float32(1.0)
        shift = column(params["bias"]) if "bias" in params else np.float32(0.0)
        return lambda x: (x - mean) / jnp.sqrt(var + eps) * scale + shift
    axes = tuple(range(-len(tuple(child.normalized_shape)), 0))
    scale = _numpy(params["weight"]) if "weight" in params else np.float32(1.0)
    shift = _numpy(params["bias"]) if "bias" in params else np.float32(0.0)

    def layer_norm(x):
        mean = jnp.mean(x, axis=axes, keepdims=True)
        var = jnp.mean(jnp.square(x - mean), axis=axes, keepdims=True)
        return (x - mean) / jnp.sqrt(var + eps) * scale + shift

    return layer_norm


def _image_layer(child, where: str) -> Callable:
    """The JAX function of one module of a CNN encoder's ``Sequential``."""
    kind = child.original_name
    if kind == "Conv2d":
        return _conv2d(child, where)
    if kind in ("BatchNorm2d", "LayerNorm"):
        return _affine_norm(child, kind, where)
    if kind == "MaxPool2d":
        if child.ceil_mode or child.return_indices:
            raise UnsupportedTorchScriptError(f"{where}: MaxPool2d with ceil_mode or return_indices is not supported")
        padding = _pair(child.padding)
        return functools.partial(_jax_layers.max_pool, kernel=_pair(child.kernel_size), strides=_pair(child.stride),
                                 pads=[(p, p) for p in padding], dilations=_pair(child.dilation))
    if kind in ("AdaptiveMaxPool2d", "AdaptiveAvgPool2d"):
        size = child.output_size
        if list(size if isinstance(size, (tuple, list)) else (size, size)) != [1, 1]:
            raise UnsupportedTorchScriptError(f"{where}: {kind} to {size} is not supported (only to 1 x 1)")
        reduce = jnp.max if kind == "AdaptiveMaxPool2d" else jnp.mean
        return lambda x: reduce(x, axis=(-2, -1), keepdims=True)
    if kind == "Flatten":
        start, end = int(child.start_dim), int(child.end_dim)

        def flatten(x):
            s, e = start % x.ndim, end % x.ndim
            return x.reshape((*x.shape[:s], -1, *x.shape[e + 1:]))

        return flatten
    if kind in ACTIVATIONS:
        return _activation(child)
    raise UnsupportedTorchScriptError(f"{where}: module {kind} is not supported in a CNN encoder; supported: "
                                      f"{list(_CNN_MODULES)} and the activations {sorted(ACTIVATIONS)}")


def _encoder(sequential, index: int, start: int, shape) -> ImportedEncoder:
    """An :class:`ImportedEncoder` of ``encoders[index]`` (a ``Sequential`` ending in ``Flatten``)."""
    children = list(sequential.named_children())
    where = f"CNN encoder {index}"
    if sequential.original_name != "Sequential" or not children or children[-1][1].original_name != "Flatten":
        raise UnsupportedTorchScriptError(f"{where} ({sequential.original_name}) is not a Sequential ending in "
                                          "Flatten")
    layers = tuple(_image_layer(child, f"{where}, module '{name}'") for name, child in children)
    shape = tuple(int(n) for n in shape)
    encoder = ImportedEncoder(int(start), shape, layers, tuple(c.original_name for _, c in children), 0)
    try:
        width = encoder.start + int(np.prod(shape))
        out = jax.eval_shape(encoder.apply, jax.ShapeDtypeStruct((1, width), jnp.float32))
    except (TypeError, ValueError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise UnsupportedTorchScriptError(f"{where} does not run on its image {list(shape)}: {first}") from None
    return dataclasses.replace(encoder, output_dim=int(out.shape[-1]))


def _convert_cnn(module, source: str) -> ImportedPolicy:
    """An :class:`ImportedPolicy` of agile_jax's exported ``CNNPolicy`` (its parts checked by name)."""
    children = {name for name, _ in module.named_children()}
    buffers = dict(module.named_buffers(recurse=False))
    missing = [n for n in ("mlp", "encoders") if n not in children]
    missing += [n for n in ("input_index", "obs_mean", "obs_denominator", "columns_1d") if n not in buffers]
    missing += [n for n in ("reorder", "has_1d", "starts", "image_shapes") if not hasattr(module, n)]
    extra = sorted(children - {"mlp", "encoders"})
    if missing or extra:
        raise UnsupportedTorchScriptError(
            f"a {CNN_POLICY} module without {missing} or with extra submodules {extra}: only agile_jax's exported "
            f"CNN layout (agile_jax/export/_torch_cnn.py) is read")
    layers, activations = _mlp(module.mlp)
    mean, denominator = _normalizer(module, None)
    obs_dim = int(mean.shape[0])
    starts, shapes = list(module.starts), [list(s) for s in module.image_shapes]
    sequentials = list(module.encoders.children())
    if not (len(starts) == len(shapes) == len(sequentials)) or any(len(s) != 3 for s in shapes):
        raise UnsupportedTorchScriptError(f"{CNN_POLICY} with {len(sequentials)} encoders, starts {starts} and "
                                          f"image shapes {shapes} (one [C, H, W] each)")
    encoders = tuple(_encoder(seq, k, start, shape) for k, (seq, start, shape) in enumerate(zip(sequentials, starts,
                                                                                               shapes)))
    columns = np.asarray(buffers["columns_1d"].cpu().numpy(), np.int64) if module.has_1d else None
    used = [*(columns if columns is not None else []), *(e.start + int(np.prod(e.shape)) - 1 for e in encoders)]
    if used and (max(used) >= obs_dim or min(used) < 0):
        raise UnsupportedTorchScriptError(f"{CNN_POLICY} reads columns outside its {obs_dim} inputs")
    width = (0 if columns is None else len(columns)) + sum(e.output_dim for e in encoders)
    if layers[0][0].shape[0] != width:
        raise UnsupportedTorchScriptError(f"the MLP reads {layers[0][0].shape[0]} features but the 1-D columns and "
                                          f"the CNN outputs give {width}")
    return ImportedPolicy(obs_dim=obs_dim, action_dim=int(layers[-1][0].shape[1]), layers=layers,
                          activations=activations, obs_mean=mean, obs_denominator=denominator, source=source,
                          input_index=_input_index(module), columns_1d=columns, encoders=encoders)


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
    apply = jax.jit(policy.apply)  # one program, not one dispatch per op (a CNN has many)
    with torch.no_grad():
        for t in range(steps if policy.is_recurrent else 1):
            rows = x[t] if policy.is_recurrent else x[:, 0]
            ref = module(torch.from_numpy(rows)).numpy()
            with precision.exact():  # float32-exact whatever the training device's default
                ours, state = apply(jnp.asarray(rows), jax.device_get(state))
            worst = max(worst, float(np.max(np.abs(np.asarray(ours) - ref))))
            scale = max(scale, float(np.max(np.abs(ref))))
    if hasattr(module, "reset"):
        module.reset()
    if not math.isfinite(worst) or worst > tol * scale:
        raise UnsupportedTorchScriptError(
            f"the imported policy differs from the TorchScript module by {worst:.3g} (actions up to {scale:.3g}); "
            f"its forward() is not the normaliser -> [RNN | CNNs] -> MLP chain this importer reads:\n{module.code}")
    return worst


def load_torchscript_policy(path: str) -> ImportedPolicy:
    """Reads ``path`` with ``torch.jit.load`` into an :class:`ImportedPolicy` checked against torch."""
    from agile_jax.export.torchscript import require_torch

    torch = require_torch()
    module = torch.jit.load(path, map_location="cpu").eval()
    policy = convert_module(module, source=path)
    check_parity(module, policy)
    return policy
