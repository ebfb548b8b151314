"""RSL-RL's ``CNN`` encoder (``rsl_rl/modules/cnn.py``, 5.5.1) as an ``(init, apply)`` pair over NCHW inputs.

A CNN is built from RSL-RL's ``cnn_cfg`` keys, verbatim: ``output_channels`` (one conv per entry),
``kernel_size``, ``stride``, ``dilation`` (an int for every layer or a list, one per layer), ``padding``
(``"none"`` | ``"zeros"`` | ``"reflect"`` | ``"replicate"`` | ``"circular"``; any mode but ``"none"`` pads so
that the output is ``ceil(input / stride)``), ``norm`` (``"none"`` | ``"batch"`` | ``"layer"``, one or per
layer), ``activation``, ``max_pool`` (bool, one or per layer: ``MaxPool2d(3, stride 2, padding 1)``),
``global_pool`` (``"none"`` | ``"max"`` | ``"avg"``) and ``flatten``. The layer order is RSL-RL's::

    for each layer: Conv2d -> [BatchNorm2d | LayerNorm([C, H, W])] -> activation -> [MaxPool2d]
    then [AdaptiveMax/AvgPool2d(1)] -> [Flatten]          (flattened C-major: c * H * W + h * W + w)

Params (conv kernels in PyTorch's ``[out, in, kH, kW]`` layout, so weights copy one to one)::

    {"conv_<i>": {"kernel": [O, I, k, k], "bias": [O]},
     "norm_<i>": {"scale", "bias"}                     # layer: [O, H, W]; batch: [O], plus "mean", "var" [O]
     ...}

``norm="batch"`` is evaluated as PyTorch's ``eval()`` mode (running statistics in ``mean`` / ``var``), for
networks loaded from RSL-RL checkpoints; PPO training refuses it (:class:`~agile_jax.networks.cnn_actor_critic.
ActorCriticCNN`), since batch statistics would be state carried through every rollout step.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from agile_jax.networks.mlp import ACTIVATIONS, resolve_activation
from agile_jax.types import Array, Params, PRNGKey

PADDINGS = ("none", "zeros", "reflect", "replicate", "circular")
NORMS = ("none", "batch", "layer")
GLOBAL_POOLS = ("none", "max", "avg")
CNN_CFG_KEYS = ("output_channels", "kernel_size", "stride", "dilation", "padding", "norm", "activation",
                "max_pool", "global_pool", "flatten")
_JNP_PAD = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}
NORM_EPS = 1e-5  # torch's LayerNorm / BatchNorm2d default


@dataclass(frozen=True)
class ConvLayer:
    """One ``Conv2d`` with what follows it, and its place in RSL-RL's ``nn.Sequential``.

    Attributes:
        in_channels, out_channels, kernel, stride, dilation: the convolution.
        padding: ``(pad_h, pad_w)`` on each side; mode: ``"zeros"`` or a padding mode of :data:`PADDINGS`.
        norm: ``"none"``, ``"batch"`` or ``"layer"``; out_hw: ``(H, W)`` after the conv (the LayerNorm's shape).
        max_pool: a ``MaxPool2d(3, 2, 1)`` follows the activation.
        index: Sequential index of the conv (its norm is at ``index + 1``).
    """

    in_channels: int
    out_channels: int
    kernel: int
    stride: int
    dilation: int
    padding: tuple[int, int]
    mode: str
    norm: str
    out_hw: tuple[int, int]
    max_pool: bool
    index: int


def _per_layer(value: Any, idx: int) -> Any:
    """RSL-RL's ``get_param``: ``value[idx]`` for a list/tuple, else ``value``."""
    return value[idx] if isinstance(value, (list, tuple)) else value


def same_padding(hw: tuple[int, int], kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """RSL-RL's ``_compute_padding``: padding giving an output of ``ceil(input / stride)``."""
    return tuple(math.ceil((stride * math.floor(n / stride) - n - stride + dilation * (kernel - 1) + 1) / 2)
                 for n in hw)


def conv_output_hw(hw: tuple[int, int], kernel: int, stride: int, dilation: int, padding: tuple[int, int],
                   max_pool: bool = False) -> tuple[int, int]:
    """RSL-RL's ``_compute_output_dim``: ``(H, W)`` after a conv (and a ``MaxPool2d(3, 2, 1)``)."""
    out = tuple(math.floor((n + 2 * p - dilation * (kernel - 1) - 1) / stride + 1) for n, p in zip(hw, padding))
    return tuple(math.ceil(n / 2) for n in out) if max_pool else out


@dataclass(frozen=True)
class CNN:
    """A CNN encoder for inputs ``[..., C, H, W]`` (RSL-RL's ``CNN``; build it with :meth:`from_cfg`).

    Attributes:
        input_dim: ``(H, W)`` of the input; input_channels: ``C``.
        layers: the convolutions in order.
        activation: RSL-RL activation name (after every conv, the last one included).
        global_pool: ``"none"``, ``"max"`` or ``"avg"``; flatten: flatten ``[C, H, W]`` to ``C * H * W``.
        padding: the ``cnn_cfg`` padding mode (each layer holds its resolved padding).
    """

    input_dim: tuple[int, int]
    input_channels: int
    layers: tuple[ConvLayer, ...]
    activation: str = "elu"
    global_pool: str = "none"
    flatten: bool = True
    padding: str = "none"

    @classmethod
    def from_cfg(cls, input_dim: Sequence[int], input_channels: int, cfg: Mapping[str, Any]) -> CNN:
        """The CNN of an RSL-RL ``cnn_cfg`` dict for an input ``[C, H, W]``.

        Raises:
            ValueError: unknown or missing keys, wrong values or an input too small for the layers (one line).
        """
        cfg = check_cnn_cfg(cfg)
        channels, hw, index, layers = int(input_channels), tuple(int(n) for n in input_dim), 0, []
        padding = cfg.get("padding", "none")
        for i, out in enumerate(cfg["output_channels"]):
            k, s, d = (int(_per_layer(cfg.get(name, 1), i)) for name in ("kernel_size", "stride", "dilation"))
            pad = same_padding(hw, k, s, d) if padding != "none" else (0, 0)
            norm, pool = str(_per_layer(cfg.get("norm", "none"), i)), bool(_per_layer(cfg.get("max_pool", False), i))
            conv_hw = conv_output_hw(hw, k, s, d, pad)
            if min(pad) < 0 or min(conv_hw) < 1:
                raise ValueError(f"cnn_cfg layer {i} (kernel {k}, stride {s}, dilation {d}) does not fit its input "
                                 f"{list(hw)}: use smaller kernels/strides or fewer layers")
            layers.append(ConvLayer(channels, int(out), k, s, d, pad, "zeros" if padding in ("none", "zeros")
                                    else padding, norm, conv_hw, pool, index))
            index += 1 + (norm != "none") + 1 + pool  # conv, norm, activation, pool
            channels, hw = int(out), conv_output_hw(hw, k, s, d, pad, pool)
        return cls(tuple(int(n) for n in input_dim), int(input_channels), tuple(layers), cfg.get("activation", "elu"),
                   cfg.get("global_pool", "none"), bool(cfg.get("flatten", True)), padding)

    # -- structure ----------------------------------------------------------------------------------
    @property
    def output_hw(self) -> tuple[int, int]:
        """``(H, W)`` of the feature map before flattening."""
        if self.global_pool != "none":
            return (1, 1)
        hw = self.input_dim
        for layer in self.layers:
            hw = conv_output_hw(hw, layer.kernel, layer.stride, layer.dilation, layer.padding, layer.max_pool)
        return hw

    @property
    def output_channels(self) -> int:
        return self.layers[-1].out_channels if self.layers else self.input_channels

    @property
    def output_dim(self) -> int:
        """Width of the flattened output ``C * H * W`` (RSL-RL's ``output_dim`` with ``flatten=True``)."""
        return self.output_channels * self.output_hw[0] * self.output_hw[1]

    @property
    def sequential_length(self) -> int:
        """Modules of RSL-RL's ``nn.Sequential`` (the index of the global pool, if any)."""
        return sum(2 + (c.norm != "none") + c.max_pool for c in self.layers)

    def to_cfg(self) -> dict:
        """The RSL-RL ``cnn_cfg`` dict of this CNN (per-layer lists)."""
        per_layer = {key: [getattr(c, name) for c in self.layers] for key, name in (
            ("output_channels", "out_channels"), ("kernel_size", "kernel"), ("stride", "stride"),
            ("dilation", "dilation"), ("norm", "norm"), ("max_pool", "max_pool"))}
        return {**per_layer, "padding": self.padding, "activation": self.activation, "global_pool": self.global_pool,
                "flatten": self.flatten}

    # -- init / apply -------------------------------------------------------------------------------
    def init(self, key: PRNGKey) -> Params:
        """PyTorch's defaults: conv weights and biases ``U(+-1/sqrt(fan_in))``, norms scale 1 and shift 0."""
        params = {}
        for i, (layer, k) in enumerate(zip(self.layers, jax.random.split(key, max(len(self.layers), 1)))):
            fan_in = layer.in_channels * layer.kernel * layer.kernel
            bound = 1.0 / math.sqrt(fan_in)
            k_w, k_b = jax.random.split(k)
            shape = (layer.out_channels, layer.in_channels, layer.kernel, layer.kernel)
            params[f"conv_{i}"] = {"kernel": jax.random.uniform(k_w, shape, jnp.float32, -bound, bound),
                                   "bias": jax.random.uniform(k_b, (layer.out_channels,), jnp.float32, -bound, bound)}
            if layer.norm != "none":
                params[f"norm_{i}"] = _init_norm(layer)
        return params

    def apply(self, params: Params, x: Array) -> Array:
        """Encodes ``x`` ``[..., C, H, W]`` -> ``[..., C' * H' * W']`` (``[..., C', H', W']`` without flatten)."""
        batch = x.shape[:-3]
        x = x.reshape((-1, *x.shape[-3:]))
        act = resolve_activation(self.activation)
        for i, layer in enumerate(self.layers):
            # Conv -> norm -> activation -> max pool, RSL-RL's order.
            x = conv2d(x, params[f"conv_{i}"], layer)
            if layer.norm != "none":
                x = _apply_norm(params[f"norm_{i}"], x, layer.norm)
            x = act(x)
            if layer.max_pool:
                x = max_pool(x)
        if self.global_pool != "none":
            pool = jnp.max if self.global_pool == "max" else jnp.mean
            x = pool(x, axis=(-2, -1), keepdims=True)
        return x.reshape((*batch, -1)) if self.flatten else x.reshape((*batch, *x.shape[1:]))


def _init_norm(layer: ConvLayer) -> dict:
    """``LayerNorm([O, H, W])`` or ``BatchNorm2d(O)`` at PyTorch's initial values."""
    shape = (layer.out_channels, *layer.out_hw) if layer.norm == "layer" else (layer.out_channels,)
    norm = {"scale": jnp.ones(shape, jnp.float32), "bias": jnp.zeros(shape, jnp.float32)}
    if layer.norm == "batch":
        norm.update(mean=jnp.zeros(shape, jnp.float32), var=jnp.ones(shape, jnp.float32))
    return norm


def conv2d(x: Array, p: Params, layer: ConvLayer) -> Array:
    """``torch.nn.Conv2d`` on ``x`` ``[B, C, H, W]`` with its padding mode (non-zero modes pad explicitly)."""
    (ph, pw), pads = layer.padding, ((layer.padding[0],) * 2, (layer.padding[1],) * 2)
    if layer.mode != "zeros" and (ph or pw):
        x = jnp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), mode=_JNP_PAD[layer.mode])
        pads = ((0, 0), (0, 0))
    y = jax.lax.conv_general_dilated(x, p["kernel"], (layer.stride,) * 2, pads, rhs_dilation=(layer.dilation,) * 2,
                                     dimension_numbers=("NCHW", "OIHW", "NCHW"))
    return y + p["bias"][:, None, None]


def _apply_norm(p: Params, x: Array, kind: str) -> Array:
    """``LayerNorm`` over ``[C, H, W]`` (biased variance), or ``BatchNorm2d`` with running statistics."""
    if kind == "layer":
        mean = jnp.mean(x, axis=(-3, -2, -1), keepdims=True)
        var = jnp.mean(jnp.square(x - mean), axis=(-3, -2, -1), keepdims=True)
        return (x - mean) / jnp.sqrt(var + NORM_EPS) * p["scale"] + p["bias"]
    mean, var, scale, bias = (p[name][:, None, None] for name in ("mean", "var", "scale", "bias"))
    return (x - mean) / jnp.sqrt(var + NORM_EPS) * scale + bias


def max_pool(x: Array) -> Array:
    """``MaxPool2d(kernel_size=3, stride=2, padding=1)`` on ``[B, C, H, W]`` (padding never wins the max)."""
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 1, 3, 3), (1, 1, 2, 2),
                                 ((0, 0), (0, 0), (1, 1), (1, 1)))


# -- configuration -----------------------------------------------------------------------------------
def _plain(value: Any) -> Any:
    """OmegaConf containers / tuples as plain dicts and lists."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) or type(value).__name__ == "ListConfig":
        return [_plain(v) for v in value]
    return value


def check_cnn_cfg(cfg: Mapping[str, Any]) -> dict:
    """A plain copy of one ``cnn_cfg`` after checking its keys and values (RSL-RL's accepted values).

    Raises:
        ValueError: one line naming the key and the valid values.
    """
    cfg = _plain(cfg)
    unknown = [k for k in cfg if k not in CNN_CFG_KEYS]
    if unknown:
        close = difflib.get_close_matches(unknown[0], CNN_CFG_KEYS, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ValueError(f"unknown cnn_cfg key '{unknown[0]}'{hint}; keys: {list(CNN_CFG_KEYS)}")
    for key in ("output_channels", "kernel_size"):
        if key not in cfg:
            raise ValueError(f"cnn_cfg needs '{key}' (e.g. output_channels: [16, 32], kernel_size: 3)")
    if not isinstance(cfg["output_channels"], list) or not cfg["output_channels"]:
        raise ValueError(f"cnn_cfg output_channels must be a non-empty list, got {cfg['output_channels']!r}")
    n = len(cfg["output_channels"])
    for key in ("kernel_size", "stride", "dilation", "norm", "max_pool"):
        if isinstance(cfg.get(key), list) and len(cfg[key]) != n:
            raise ValueError(f"cnn_cfg {key} has {len(cfg[key])} entries for {n} layers (output_channels)")
    for key in ("output_channels", "kernel_size", "stride", "dilation"):
        values = cfg.get(key, 1)
        if any(not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in (values if isinstance(values, list)
                                                                                 else [values])):
            raise ValueError(f"cnn_cfg {key} must be positive integers, got {values!r}")
    choices = {"padding": PADDINGS, "norm": NORMS, "global_pool": GLOBAL_POOLS, "activation": tuple(ACTIVATIONS)}
    for key, valid in choices.items():
        values = cfg.get(key, valid[0] if key != "activation" else "elu")
        for v in values if isinstance(values, list) and key == "norm" else [values]:
            if not isinstance(v, str) or v.lower() not in valid:
                raise ValueError(f"cnn_cfg {key}={v!r} is not one of {list(valid)}")
        cfg[key] = [v.lower() for v in values] if isinstance(values, list) else values.lower()
    if not cfg.get("flatten", True):
        raise ValueError("cnn_cfg flatten must be true: the encoder's output feeds the MLP (as in RSL-RL's CNNModel)")
    return cfg


def resolve_cnn_cfgs(cnn_cfg: Mapping[str, Any] | None, groups: Sequence[str]) -> dict[str, dict]:
    """One ``cnn_cfg`` per 2-D group, RSL-RL's rule: a dict of dicts is per group, anything else is shared.

    Raises:
        ValueError: no config, or per-group configs that do not name exactly ``groups``.
    """
    if not groups:
        return {}
    if cnn_cfg is None:
        raise ValueError(f"observation groups {list(groups)} are 2-D ([C, H, W]) and need a CNN configuration")
    cnn_cfg = _plain(cnn_cfg)
    if not all(isinstance(v, dict) for v in cnn_cfg.values()):
        return {group: cnn_cfg for group in groups}
    if sorted(cnn_cfg) != sorted(groups):
        raise ValueError(f"per-group CNN configurations name {sorted(cnn_cfg)}, but the 2-D observation groups are "
                         f"{sorted(groups)}")
    return {group: cnn_cfg[group] for group in groups}


# -- RSL-RL state dicts ------------------------------------------------------------------------------
def _numpy(value: Any) -> np.ndarray:
    return np.array(value.detach().cpu().numpy() if hasattr(value, "detach") else value, np.float32)


def cnn_params_from_state_dict(state_dict: Mapping[str, Any], cnn: CNN, prefix: str = "") -> Params:
    """CNN params from the state dict of an RSL-RL ``CNN`` (an ``nn.Sequential``), e.g. one encoder of a
    ``CNNModel``.

    ``cnn_params_from_state_dict(state_dict, cnn, prefix="") -> {"conv_<i>": {"kernel", "bias"}, "norm_<i>": ...}``

    Args:
        state_dict: torch tensors or arrays; the encoder's entries are ``<prefix><j>.weight`` / ``.bias`` (conv
            ``[O, I, k, k]``; LayerNorm ``[O, H, W]``; BatchNorm2d ``[O]`` plus ``running_mean`` / ``running_var``
            / ``num_batches_tracked``) with ``j`` the Sequential index. For a ``CNNModel`` (actor or critic) state
            dict use ``prefix="cnns.<group>."``. Entries outside ``prefix`` are ignored.
        cnn: the encoder layout (:meth:`CNN.from_cfg` with the run's ``cnn_cfg`` and the group's ``[C, H, W]``):
            strides, paddings and pooling are not stored in a state dict.
        prefix: key prefix of the encoder.

    Returns:
        Params for :meth:`CNN.apply` (float32 NumPy arrays).

    Raises:
        ValueError: a missing, unexpected or wrongly shaped entry (the key and both shapes are named).
    """
    expected = cnn_state_dict_shapes(cnn, prefix)
    present = {k for k in state_dict if k.startswith(prefix) and not k.endswith("num_batches_tracked")}
    if present - set(expected) or set(expected) - present:
        raise ValueError(f"state dict entries under '{prefix}' do not match the CNN layout: missing "
                         f"{sorted(set(expected) - present)}, unexpected {sorted(present - set(expected))}")
    arrays = {}
    for key, shape in expected.items():
        arrays[key] = _numpy(state_dict[key])
        if arrays[key].shape != shape:
            raise ValueError(f"state dict entry '{key}' has shape {list(arrays[key].shape)}, the CNN layout "
                             f"needs {list(shape)}")
    params = {}
    for i, layer in enumerate(cnn.layers):
        conv = f"{prefix}{layer.index}."
        params[f"conv_{i}"] = {"kernel": arrays[conv + "weight"], "bias": arrays[conv + "bias"]}
        if layer.norm != "none":
            norm = f"{prefix}{layer.index + 1}."
            params[f"norm_{i}"] = {"scale": arrays[norm + "weight"], "bias": arrays[norm + "bias"]}
            if layer.norm == "batch":
                params[f"norm_{i}"].update(mean=arrays[norm + "running_mean"], var=arrays[norm + "running_var"])
    return params


def cnn_state_dict_shapes(cnn: CNN, prefix: str = "") -> dict[str, tuple[int, ...]]:
    """``key -> shape`` of every tensor an RSL-RL ``CNN`` of this layout stores (``num_batches_tracked`` aside)."""
    shapes = {}
    for layer in cnn.layers:
        conv = f"{prefix}{layer.index}."
        shapes[conv + "weight"] = (layer.out_channels, layer.in_channels, layer.kernel, layer.kernel)
        shapes[conv + "bias"] = (layer.out_channels,)
        norm = f"{prefix}{layer.index + 1}."
        norm_shape = (layer.out_channels, *layer.out_hw) if layer.norm == "layer" else (layer.out_channels,)
        names = {"none": (), "layer": ("weight", "bias"),
                 "batch": ("weight", "bias", "running_mean", "running_var")}[layer.norm]
        shapes.update({norm + name: norm_shape for name in names})
    return shapes


def cnn_params_to_state_dict(params: Params, cnn: CNN, prefix: str = "") -> dict[str, np.ndarray]:
    """The inverse of :func:`cnn_params_from_state_dict`: RSL-RL ``CNN`` state-dict entries as float32 arrays."""
    out = {}
    for i, layer in enumerate(cnn.layers):
        conv, norm = f"{prefix}{layer.index}.", f"{prefix}{layer.index + 1}."
        out[conv + "weight"] = np.asarray(params[f"conv_{i}"]["kernel"], np.float32)
        out[conv + "bias"] = np.asarray(params[f"conv_{i}"]["bias"], np.float32)
        if layer.norm != "none":
            out[norm + "weight"] = np.asarray(params[f"norm_{i}"]["scale"], np.float32)
            out[norm + "bias"] = np.asarray(params[f"norm_{i}"]["bias"], np.float32)
        if layer.norm == "batch":
            out[norm + "running_mean"] = np.asarray(params[f"norm_{i}"]["mean"], np.float32)
            out[norm + "running_var"] = np.asarray(params[f"norm_{i}"]["var"], np.float32)
    return out
