"""Export of CNN policies (:class:`~agile_jax.networks.cnn_actor_critic.ActorCriticCNN`): spec and ONNX body.

The exported graph keeps the single flat input of every other policy, ``obs [B, D]``: the actor's groups
flattened and concatenated in ``obs_groups`` order, a 2-D group ``[C, H, W]`` flattened C-major
(``c * H * W + h * W + w``, what ``reshape(B, -1)`` of an NCHW tensor gives). ``policy.yaml`` lists each group's
``start`` / ``end`` columns and, for a 2-D group, its ``shape``. Inside the graph::

    x      = (obs[:, input_index] - mean) / denominator     the 2-D columns have mean 0 and denominator 1
    x_1d   = concat(x[:, 1-D group columns])
    z_g    = CNN_g(reshape(x[:, columns of g], [-1, C, H, W]))   Conv / LayerNorm / BatchNorm / act / MaxPool ...
    actions = MLP(concat(x_1d, z_g1, ...))

(RSL-RL's own export takes the 1-D part as ``obs`` and each 2-D group as an input of its own; the flat input
keeps ``policy.yaml``, the evaluators and the parity gate the same for every policy kind.) The ONNX builder
writes the CNN with standard operators at opset 11: ``Conv`` (zero padding in the op; reflect / replicate via
``Pad``, circular via ``Slice`` + ``Concat``), the LayerNorm written out (``ReduceMean``, ``Sqrt`` ...), the
BatchNorm as its running-statistics affine map, ``MaxPool``, ``GlobalMaxPool`` / ``GlobalAveragePool`` and
``Flatten``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from agile_jax.export import onnx as onnx_lib
from agile_jax.export.spec import NORMALIZER_EPS, PolicySpec, _check_chain, mlp_layers
from agile_jax.networks.cnn import CNN, NORM_EPS
from agile_jax.networks.normalization import NormalizerState
from agile_jax.types import Params


@dataclass(frozen=True)
class EncoderSpec:
    """One CNN of an exported policy, reading columns ``[start, start + C * H * W)`` of the (normalised) input.

    Attributes:
        group: the observation group; start: its first column; shape: ``(C, H, W)``.
        cnn: the layout (:class:`~agile_jax.networks.cnn.CNN`); params: its weights as float32 NumPy arrays.
    """

    group: str
    start: int
    shape: tuple[int, int, int]
    cnn: CNN
    params: Mapping

    @property
    def width(self) -> int:
        return int(np.prod(self.shape))

    def describe(self) -> dict:
        return {"group": self.group, "shape": list(self.shape), "columns": [self.start, self.start + self.width],
                "output_dim": self.cnn.output_dim, "cnn_cfg": self.cnn.to_cfg()}


def cnn_policy_spec(networks, params: Params, normalizers: Mapping[str, NormalizerState],
                    metadata: Mapping | None = None) -> PolicySpec:
    """The deterministic actor of an ``ActorCriticCNN`` as a :class:`PolicySpec` of kind ``"cnn"``.

    The normaliser is written over the whole flat input: the 1-D columns get the actor's statistics, the 2-D
    columns mean 0 and denominator 1 (exact identity in float32).
    """
    groups = tuple(networks.obs_groups["actor"])
    dims = tuple(int(np.prod(networks.obs_shapes[g])) for g in groups)
    starts = dict(zip(groups, np.cumsum((0,) + dims)[:-1].tolist()))
    columns_1d = [np.arange(starts[g], starts[g] + d) for g, d in zip(groups, dims) if g in networks.groups_1d("actor")]
    cnn_params = networks.cnn_params(params, "actor")
    encoders = tuple(EncoderSpec(g, int(starts[g]), tuple(networks.obs_shapes[g]), cnn,
                                 {k: {n: np.asarray(v, np.float32) for n, v in p.items()}
                                  for k, p in cnn_params[g].items()})
                     for g, cnn in networks.encoders("actor"))
    columns = np.concatenate(columns_1d).astype(np.int64) if columns_1d else np.zeros(0, np.int64)
    mean = denom = None
    if "actor" in normalizers:
        mean, denom = np.zeros(sum(dims), np.float32), np.ones(sum(dims), np.float32)
        state = normalizers["actor"]
        # Same float32 arithmetic as normalization.normalize on the 1-D part: (x - mean) / (sqrt(var) + eps).
        mean[columns] = np.asarray(state.mean, np.float32)
        denom[columns] = np.sqrt(np.asarray(state.var, np.float32)) + np.float32(NORMALIZER_EPS)
    spec = PolicySpec(kind="cnn", obs_dim=sum(dims), action_dim=int(networks.action_size),
                      layers=mlp_layers(networks.mean_mlp_params(params)), activation=networks.activation.lower(),
                      obs_mean=mean, obs_denominator=denom, obs_groups=groups, obs_group_dims=dims,
                      metadata=dict(metadata or {}), encoders=encoders, columns_1d=columns)
    _check_chain(spec.layers, len(columns) + sum(e.cnn.output_dim for e in encoders), spec.action_dim, "")
    return spec


# -- ONNX ----------------------------------------------------------------------------------------------
def _pad(g: onnx_lib.GraphBuilder, x: str, pad: tuple[int, int], mode: str, shape_hw: tuple[int, int]) -> str:
    """Explicit reflect / replicate (``Pad``) or circular (``Slice`` + ``Concat``) padding of ``[B, C, H, W]``."""
    ph, pw = pad
    if mode in ("reflect", "replicate"):
        pads = g.int_const("pads", [0, 0, ph, pw, 0, 0, ph, pw])
        return g.op("Pad", [x, pads], mode="reflect" if mode == "reflect" else "edge")
    for axis, p, n in ((2, ph, shape_hw[0]), (3, pw, shape_hw[1])):
        if p:
            axes = g.int_const("axes", [axis])
            head = g.op("Slice", [x, g.int_const("start", [n - p]), g.int_const("end", [n]), axes])
            tail = g.op("Slice", [x, g.int_const("start", [0]), g.int_const("end", [p]), axes])
            x = g.op("Concat", [head, x, tail], axis=axis)
    return x


def _reduce_mean(g: onnx_lib.GraphBuilder, x: str) -> str:
    """Mean over ``C, H, W`` keeping the axes (``axes`` is an attribute before opset 18, an input from 18)."""
    if g.opset >= 18:
        return g.op("ReduceMean", [x, g.int_const("axes", [1, 2, 3])], keepdims=1)
    return g.op("ReduceMean", [x], axes=[1, 2, 3], keepdims=1)


def _norm(g: onnx_lib.GraphBuilder, x: str, kind: str, p: Mapping, name: str) -> str:
    """``LayerNorm([C, H, W])`` written out, or ``BatchNorm2d`` with its running statistics."""
    if kind == "layer":
        mean = _reduce_mean(g, x)
        centred = g.op("Sub", [x, mean])
        var = _reduce_mean(g, g.op("Mul", [centred, centred]))
        std = g.op("Sqrt", [g.op("Add", [var, g.const(g.fresh("eps"), np.array(NORM_EPS))])])
        x = g.op("Div", [centred, std])
        return g.op("Add", [g.op("Mul", [x, g.const(f"{name}.scale", p["scale"])]), g.const(f"{name}.bias", p["bias"])])
    column = lambda v: np.asarray(v, np.float32)[:, None, None]  # noqa: E731 ([C] -> [C, 1, 1])
    std = np.sqrt(np.asarray(p["var"], np.float32) + np.float32(NORM_EPS))
    x = g.op("Div", [g.op("Sub", [x, g.const(f"{name}.mean", column(p["mean"]))]), g.const(f"{name}.std", column(std))])
    return g.op("Add", [g.op("Mul", [x, g.const(f"{name}.scale", column(p["scale"]))]),
                        g.const(f"{name}.bias", column(p["bias"]))])


def _encoder(g: onnx_lib.GraphBuilder, enc: EncoderSpec, x: str) -> str:
    """The encoder's layers on ``x`` ``[B, C, H, W]`` -> ``[B, output_dim]`` (RSL-RL's layer order)."""
    cnn, hw, prefix = enc.cnn, enc.shape[1:], f"cnns.{enc.group}"
    for i, layer in enumerate(cnn.layers):
        pad = layer.padding
        if layer.mode != "zeros" and (pad[0] or pad[1]):
            x, pad = _pad(g, x, pad, layer.mode, hw), (0, 0)
        p, name = enc.params[f"conv_{i}"], f"{prefix}.conv_{i}"
        weights = [g.const(f"{name}.kernel", p["kernel"]), g.const(f"{name}.bias", p["bias"])]
        x = g.op("Conv", [x, *weights], kernel_shape=[layer.kernel] * 2, strides=[layer.stride] * 2,
                 dilations=[layer.dilation] * 2, pads=[pad[0], pad[1], pad[0], pad[1]])
        if layer.norm != "none":
            x = _norm(g, x, layer.norm, enc.params[f"norm_{i}"], f"{prefix}.norm_{i}")
        x = onnx_lib.activation(g, cnn.activation, x)
        if layer.max_pool:
            x = g.op("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
        hw = layer.out_hw if not layer.max_pool else tuple((n + 1) // 2 for n in layer.out_hw)
    if cnn.global_pool != "none":
        x = g.op("GlobalMaxPool" if cnn.global_pool == "max" else "GlobalAveragePool", [x])
    return g.op("Flatten", [x], axis=1)


def cnn_body(g: onnx_lib.GraphBuilder, spec: PolicySpec, inputs: dict[str, str]) -> dict[str, str]:
    """``{"obs": name} -> {"actions": name}``: normaliser, 1-D columns and CNN features, MLP head."""
    x = onnx_lib._normalize(g, spec, inputs["obs"])
    axes = g.int_const("axes", [1])
    # The 1-D columns in one Gather (a Slice when they are contiguous, which they are for one group).
    parts = []
    cols = spec.columns_1d
    if len(cols) and np.array_equal(cols, np.arange(cols[0], cols[0] + len(cols))):
        parts.append(g.op("Slice", [x, g.int_const("start", [int(cols[0])]), g.int_const("end", [int(cols[-1]) + 1]),
                                    axes]))
    elif len(cols):
        source = g.op("Identity", [x]) if x == inputs["obs"] else x  # a leading Gather reads as a reordering
        parts.append(g.op("Gather", [source, g.int_const("columns_1d", cols)], axis=1))
    for enc in spec.encoders:
        # This group's columns as an NCHW image, then its CNN.
        flat = g.op("Slice", [x, g.int_const("start", [enc.start]), g.int_const("end", [enc.start + enc.width]), axes])
        image = g.op("Reshape", [flat, g.int_const("image_shape", [-1, *enc.shape])])
        parts.append(_encoder(g, enc, image))
    latent = parts[0] if len(parts) == 1 else g.op("Concat", parts, axis=1)
    return {"actions": onnx_lib._mlp_head(g, spec, latent)}
