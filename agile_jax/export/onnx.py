"""``policy.onnx`` built directly from the params with ``onnx.helper`` (no torch, no tracing).

The MLP graph is ``obs [B, D] -> [Gather(input_index)] -> Sub(mean) -> Div(std + eps) -> [MatMul -> Add -> act] x n
-> MatMul -> Add -> actions [B, A]``, weights as initializers. A policy with a state estimator concatenates
``estimator(Gather(x, columns))`` (its own Dense stack) to the normalised ``x`` before the first MatMul.
``B`` is 1 by default (static, like AGILE, Playground and RSL-RL exports) or a symbolic ``batch`` dimension. The
default opset is 11; the IR version is picked by ``helper.make_model_gen_version`` (``make_model`` would stamp an
IR that onnxruntime refuses).

Inputs/outputs are assembled generically: ``obs`` plus ``<s>_in`` for each recurrent state of the spec, and
``actions`` plus ``<s>_out``; a recurrent policy only adds a body builder to ``BODY_BUILDERS``.

A CNN policy (kind ``"cnn"``) keeps the single flat input; inside the graph::

    x      = (obs[:, input_index] - mean) / denominator     the 2-D columns have mean 0 and denominator 1
    x_1d   = concat(x[:, 1-D group columns])
    z_g    = CNN_g(reshape(x[:, columns of g], [-1, C, H, W]))   Conv / LayerNorm / BatchNorm / act / MaxPool ...
    actions = MLP(concat(x_1d, z_g1, ...))

written with standard operators at opset 11: ``Conv`` (zero padding in the op; reflect / replicate via ``Pad``,
circular via ``Slice`` + ``Concat``), the LayerNorm written out (``ReduceMean``, ``Sqrt`` ...), the BatchNorm as its
running-statistics affine map, ``MaxPool``, ``GlobalMaxPool`` / ``GlobalAveragePool`` and ``Flatten``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from agile_jax.export.spec import EncoderSpec, PolicySpec
from agile_jax.networks.cnn import NORM_EPS

DEFAULT_OPSET = 11
MIN_OPSET = 11
PRODUCER = "agile_jax"

_SELU_ALPHA = 1.6732632423543772
_SELU_GAMMA = 1.0507009873554805


class UnsupportedActivationError(ValueError):
    """The policy's activation has no ONNX lowering here."""


class GraphBuilder:
    """Collects nodes and initializers with unique names."""

    def __init__(self, opset: int):
        self.opset = opset
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0

    def fresh(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def const(self, name: str, value: np.ndarray) -> str:
        """Adds a float32 initializer and returns its name."""
        self.initializers.append(numpy_helper.from_array(np.asarray(value, np.float32), name))
        return name

    def int_const(self, hint: str, value) -> str:
        """Adds an int64 initializer (indices, shapes, slice bounds) under a fresh name and returns it."""
        name = self.fresh(hint)
        self.initializers.append(numpy_helper.from_array(np.asarray(value, np.int64), name))
        return name

    def op(self, op_type: str, inputs: list[str], output: str | None = None, **attrs) -> str:
        """Adds one node and returns its (single) output name."""
        output = output or self.fresh(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [output], name=self.fresh(f"n_{op_type}"), **attrs))
        return output


# -- activations ----------------------------------------------------------------------------------


def _gelu_exact(g: GraphBuilder, x: str) -> str:
    """``0.5 x (1 + erf(x / sqrt(2)))``, the exact GELU (torch's default, and agile_jax's)."""
    scaled = g.op("Mul", [x, g.const(g.fresh("gelu_k"), np.array(1.0 / math.sqrt(2.0)))])
    cdf = g.op("Mul", [g.op("Add", [g.op("Erf", [scaled]), g.const(g.fresh("one"), np.array(1.0))]),
                       g.const(g.fresh("half"), np.array(0.5))])
    return g.op("Mul", [x, cdf])


ACTIVATIONS: dict[str, Callable[[GraphBuilder, str], str]] = {
    "elu": lambda g, x: g.op("Elu", [x], alpha=1.0),
    "selu": lambda g, x: g.op("Selu", [x], alpha=_SELU_ALPHA, gamma=_SELU_GAMMA),
    "relu": lambda g, x: g.op("Relu", [x]),
    "crelu": lambda g, x: g.op("Elu", [x], alpha=1.0),  # CELU with alpha 1 equals ELU
    "lrelu": lambda g, x: g.op("LeakyRelu", [x], alpha=0.01),
    "tanh": lambda g, x: g.op("Tanh", [x]),
    "sigmoid": lambda g, x: g.op("Sigmoid", [x]),
    "softplus": lambda g, x: g.op("Softplus", [x]),
    "gelu": _gelu_exact,
    "swish": lambda g, x: g.op("Mul", [x, g.op("Sigmoid", [x])]),
    "mish": lambda g, x: (g.op("Mish", [x]) if g.opset >= 18
                          else g.op("Mul", [x, g.op("Tanh", [g.op("Softplus", [x])])])),
    "identity": lambda g, x: x,
}


def activation(g: GraphBuilder, name: str, x: str) -> str:
    """Applies the activation ``name`` to ``x``; unknown names raise :class:`UnsupportedActivationError`."""
    if name not in ACTIVATIONS:
        raise UnsupportedActivationError(
            f"activation '{name}' cannot be exported to ONNX; supported: {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name](g, x)


# -- bodies ---------------------------------------------------------------------------------------


def _reorder(g: GraphBuilder, spec: PolicySpec, x: str) -> str:
    """``obs[:, input_index]``: the exported input layout (AGILE's term-major history) -> the env's layout."""
    if spec.input_index is None:
        return x
    return g.op("Gather", [x, g.int_const("input_index", spec.input_index)], axis=1)


def _normalize(g: GraphBuilder, spec: PolicySpec, x: str) -> str:
    """The input reordered (if needed), then the observation normaliser with the JAX policy's arithmetic."""
    x = _reorder(g, spec, x)
    if spec.normalized:
        x = g.op("Sub", [x, g.const("obs_mean", spec.obs_mean)])
        x = g.op("Div", [x, g.const("obs_denominator", spec.obs_denominator)])
    return x


def _dense_stack(g: GraphBuilder, layers, act: str, prefix: str, x: str, output: str | None = None) -> str:
    """Dense ``layers`` named ``<prefix>.<i>.kernel/bias`` (no activation after the last one)."""
    last = len(layers) - 1
    for i, (kernel, bias) in enumerate(layers):
        x = g.op("MatMul", [x, g.const(f"{prefix}.{i}.kernel", kernel)])
        x = g.op("Add", [x, g.const(f"{prefix}.{i}.bias", bias)], output=output if i == last else None)
        if i < last:
            x = activation(g, act, x)
    return x


def _mlp_head(g: GraphBuilder, spec: PolicySpec, x: str) -> str:
    """Dense layers of ``spec`` (no activation after the last one) writing ``actions``."""
    return _dense_stack(g, spec.layers, spec.activation, "mlp", x, output="actions")


def _with_estimate(g: GraphBuilder, spec: PolicySpec, x: str, is_input: bool) -> str:
    """``Concat(x, estimator(x[:, columns]))`` when the policy has a state estimator, else ``x``.

    The Gather is skipped when the estimator reads every column in order; a Gather applied straight to the
    graph input (no reordering, no normaliser) reads from an ``Identity`` copy, since ``Gather(obs, P)`` as the
    first node is how an input reordering is recognised (:meth:`onnx_import.OnnxPolicy.input_index`).
    """
    if spec.estimator is None:
        return x
    columns, picked = spec.estimator.columns, x
    if not np.array_equal(columns, np.arange(spec.obs_dim)):
        source = g.op("Identity", [x]) if is_input else x
        picked = g.op("Gather", [source, g.int_const("estimator_columns", columns)], axis=1)
    estimate = _dense_stack(g, spec.estimator.layers, spec.activation, "estimator", picked)
    return g.op("Concat", [x, estimate], axis=1)


def _mlp_body(g: GraphBuilder, spec: PolicySpec, inputs: dict[str, str]) -> dict[str, str]:
    """Normaliser (+ estimate) + MLP: ``{"obs": name} -> {"actions": name}``."""
    x = _normalize(g, spec, inputs["obs"])
    return {"actions": _mlp_head(g, spec, _with_estimate(g, spec, x, x == inputs["obs"]))}


def _gates(g: GraphBuilder, gates: str, count: int, width: int) -> list[str]:
    """Splits ``[B, count * width]`` into ``count`` slices ``[B, width]`` (PyTorch's gate order)."""
    axes = g.int_const("axes", [1])
    return [g.op("Slice", [gates, g.int_const("start", [k * width]), g.int_const("end", [(k + 1) * width]), axes])
            for k in range(count)]


def _affine(g: GraphBuilder, x: str, layer: int, part: str, p: dict) -> str:
    """``x @ kernel_<part> + bias_<part>`` of RNN layer ``layer``."""
    kernel = g.const(f"rnn.{layer}.kernel_{part}", p[f"kernel_{part}"])
    return g.op("Add", [g.op("MatMul", [x, kernel]), g.const(f"rnn.{layer}.bias_{part}", p[f"bias_{part}"])])


def _lstm_cell(g: GraphBuilder, x: str, h: str, c: str, layer: int, p: dict, width: int) -> tuple[str, str]:
    """One LSTM step written out: ``c' = s(f) c + s(i) tanh(g)``, ``h' = s(o) tanh(c')``."""
    gates = g.op("Add", [_affine(g, x, layer, "ih", p), _affine(g, h, layer, "hh", p)])
    i, f, cand, o = _gates(g, gates, 4, width)
    c = g.op("Add", [g.op("Mul", [g.op("Sigmoid", [f]), c]), g.op("Mul", [g.op("Sigmoid", [i]), g.op("Tanh", [cand])])])
    return g.op("Mul", [g.op("Sigmoid", [o]), g.op("Tanh", [c])]), c


def _gru_cell(g: GraphBuilder, x: str, h: str, layer: int, p: dict, width: int) -> str:
    """One GRU step written out: ``n = tanh(i_n + r h_n)``, ``h' = (1 - z) n + z h``."""
    i_r, i_z, i_n = _gates(g, _affine(g, x, layer, "ih", p), 3, width)
    h_r, h_z, h_n = _gates(g, _affine(g, h, layer, "hh", p), 3, width)
    r = g.op("Sigmoid", [g.op("Add", [i_r, h_r])])
    z = g.op("Sigmoid", [g.op("Add", [i_z, h_z])])
    n = g.op("Tanh", [g.op("Add", [i_n, g.op("Mul", [r, h_n])])])
    keep = g.op("Sub", [g.const(g.fresh("one"), np.array(1.0)), z])
    return g.op("Add", [g.op("Mul", [keep, n]), g.op("Mul", [z, h])])


def _recurrent_body(g: GraphBuilder, spec: PolicySpec, inputs: dict[str, str]) -> dict[str, str]:
    """Normaliser + one step of a stacked LSTM/GRU + MLP head.

    ``{"obs", "h"[, "c"]} -> {"actions", "h"[, "c"]}`` with states ``[layers, B, H]`` (no ONNX ``LSTM``/``GRU`` op).
    """
    width, lstm = spec.rnn_hidden_dim, spec.kind == "lstm"
    x = _normalize(g, spec, inputs["obs"])
    new_h, new_c = [], []
    for layer, p in enumerate(spec.rnn):
        # This layer's state [B, H] out of the stacked [layers, B, H] inputs.
        index = g.int_const("layer", layer)
        h = g.op("Gather", [inputs["h"], index], axis=0)
        if lstm:
            x, c = _lstm_cell(g, x, h, g.op("Gather", [inputs["c"], index], axis=0), layer, p, width)
            new_c.append(c)
        else:
            x = _gru_cell(g, x, h, layer, p, width)
        new_h.append(x)
    # Stack the new states back to [layers, B, H].
    shape = g.int_const("state_shape", [1, -1, width])

    def stack(parts: list[str], name: str) -> str:
        return g.op("Concat", [g.op("Reshape", [part, shape]) for part in parts], output=name, axis=0)

    outputs = {"actions": _mlp_head(g, spec, x), "h": stack(new_h, "h_out")}
    if lstm:
        outputs["c"] = stack(new_c, "c_out")
    return outputs


# -- CNN ------------------------------------------------------------------------------------------


def _pad(g: GraphBuilder, x: str, pad: tuple[int, int], mode: str, shape_hw: tuple[int, int]) -> str:
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


def _reduce_mean(g: GraphBuilder, x: str) -> str:
    """Mean over ``C, H, W`` keeping the axes (``axes`` is an attribute before opset 18, an input from 18)."""
    if g.opset >= 18:
        return g.op("ReduceMean", [x, g.int_const("axes", [1, 2, 3])], keepdims=1)
    return g.op("ReduceMean", [x], axes=[1, 2, 3], keepdims=1)


def _norm(g: GraphBuilder, x: str, kind: str, p: Mapping, name: str) -> str:
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


def _encoder(g: GraphBuilder, enc: EncoderSpec, x: str) -> str:
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
        x = activation(g, cnn.activation, x)
        if layer.max_pool:
            x = g.op("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
        hw = layer.out_hw if not layer.max_pool else tuple((n + 1) // 2 for n in layer.out_hw)
    if cnn.global_pool != "none":
        x = g.op("GlobalMaxPool" if cnn.global_pool == "max" else "GlobalAveragePool", [x])
    return g.op("Flatten", [x], axis=1)


def _cnn_body(g: GraphBuilder, spec: PolicySpec, inputs: dict[str, str]) -> dict[str, str]:
    """CNN encoders on the 2-D groups + MLP: ``{"obs": name} -> {"actions": name}`` (normaliser, 1-D columns and CNN
    features, MLP head)."""
    x = _normalize(g, spec, inputs["obs"])
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
    return {"actions": _mlp_head(g, spec, latent)}


BODY_BUILDERS: dict[str, Callable[[GraphBuilder, PolicySpec, dict[str, str]], dict[str, str]]] = {
    "mlp": _mlp_body, "lstm": _recurrent_body, "gru": _recurrent_body, "cnn": _cnn_body}


# -- model ----------------------------------------------------------------------------------------


def io_names(spec: PolicySpec) -> tuple[list[str], list[str]]:
    """Graph input and output names: ``obs`` (+ ``<s>_in``) and ``actions`` (+ ``<s>_out``)."""
    return (["obs"] + [f"{s.name}_in" for s in spec.state], ["actions"] + [f"{s.name}_out" for s in spec.state])


def model_metadata(spec: PolicySpec, opset: int, dynamic_batch: bool) -> dict[str, str]:
    """String key/values stored in ``metadata_props`` (and mirrored in the doc string)."""
    meta = {"producer": PRODUCER, "obs_dim": str(spec.obs_dim), "action_dim": str(spec.action_dim),
            "opset": str(opset), "batch": "dynamic" if dynamic_batch else "1",
            "network": json.dumps(spec.describe())}
    for key, value in spec.metadata.items():
        meta[key] = value if isinstance(value, str) else json.dumps(value)
    return meta


def build_model(spec: PolicySpec, opset: int = DEFAULT_OPSET, dynamic_batch: bool = False) -> onnx.ModelProto:
    """The checked ONNX model of ``spec``.

    Args:
        spec: the policy.
        opset: default-domain opset (>= 11).
        dynamic_batch: symbolic ``batch`` first dimension instead of a static 1.

    Raises:
        UnsupportedActivationError: the activation has no ONNX lowering.
        ValueError: unknown spec kind or an opset this onnx package cannot write.
    """
    if not MIN_OPSET <= opset <= onnx.defs.onnx_opset_version():
        raise ValueError(f"opset {opset} is outside [{MIN_OPSET}, {onnx.defs.onnx_opset_version()}]")
    if spec.kind not in BODY_BUILDERS:
        raise ValueError(f"no ONNX builder for policy kind '{spec.kind}'; available: {sorted(BODY_BUILDERS)}")
    g = GraphBuilder(opset)
    batch = "batch" if dynamic_batch else 1
    in_names, out_names = io_names(spec)
    # Inputs and outputs: observation/action plus the recurrent state pairs.
    state_shapes = [[s.shape[0], batch, *s.shape[2:]] for s in spec.state]  # [layers, B, H]
    in_shapes = [[batch, spec.obs_dim]] + state_shapes
    out_shapes = [[batch, spec.action_dim]] + state_shapes
    outputs = BODY_BUILDERS[spec.kind](g, spec, dict(zip(["obs"] + [s.name for s in spec.state], in_names)))
    assert list(outputs.values()) == out_names, (outputs, out_names)
    meta = model_metadata(spec, opset, dynamic_batch)
    graph = helper.make_graph(
        g.nodes, f"{PRODUCER}_{spec.kind}_policy",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in zip(in_names, in_shapes)],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in zip(out_names, out_shapes)],
        initializer=g.initializers,
        doc_string=f"Deterministic policy exported by {PRODUCER}: " + json.dumps(meta, sort_keys=True),
    )
    model = helper.make_model_gen_version(graph, opset_imports=[helper.make_opsetid("", opset)],
                                          producer_name=PRODUCER, doc_string=graph.doc_string)
    helper.set_model_props(model, meta)
    onnx.checker.check_model(model, full_check=True)
    return model


def export_onnx(spec: PolicySpec, path: str, opset: int = DEFAULT_OPSET, dynamic_batch: bool = False) -> str:
    """Writes ``build_model(spec, ...)`` to ``path`` and returns the path."""
    onnx.save_model(build_model(spec, opset, dynamic_batch), path)
    return path


def ir_version(path: str) -> int:
    """The IR version stamped in an ONNX file."""
    return int(onnx.load_model(path, load_external_data=False).ir_version)


def run_onnx(path: str, obs: np.ndarray) -> np.ndarray:
    """Actions ``[N, A]`` of an exported (stateless) policy for ``obs`` ``[N, D]`` with onnxruntime.

    A static-batch model is run one row at a time.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    inp = session.get_inputs()[0]
    obs = np.asarray(obs, np.float32)
    if isinstance(inp.shape[0], int):
        rows = [obs[i:i + inp.shape[0]] for i in range(0, len(obs), inp.shape[0])]
        return np.concatenate([session.run(None, {inp.name: r})[0] for r in rows], axis=0)
    return session.run(None, {inp.name: obs})[0]
