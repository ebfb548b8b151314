"""An ONNX policy graph as a pure JAX function (ours, RSL-RL's ``export_policy_to_onnx``, ``torch.onnx.export``).

The graph is walked node by node at trace time: initializers and ``Constant`` outputs stay NumPy arrays
(so ``Shape``/``Reshape``/``Slice`` arithmetic is folded statically), everything that touches an input
becomes ``jax.numpy``. The result is jittable and differentiable. Weights stored as external data
(``policy.onnx.data``, as torch 2.13 writes them) are loaded from beside the file. Operators outside
:data:`SUPPORTED_OPS` are refused up front with their names.

Convolutional graphs (this package's CNN exports) are covered: ``Conv`` (1-3 spatial axes, groups, dilations,
explicit pads or ``auto_pad``), ``MaxPool`` (no ``ceil_mode``, no ``Indices`` output), ``GlobalMaxPool`` /
``GlobalAveragePool``, ``Pad`` (constant, reflect, edge, wrap) and ``ReduceMean`` / ``ReduceMax`` / ``ReduceSum``
(the LayerNorm written out); other attribute values are refused with :class:`UnsupportedOnnxOperatorError`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import onnx
from onnx import helper, numpy_helper

from agile_jax.export import _jax_layers


class UnsupportedOnnxOperatorError(ValueError):
    """The graph uses operators this importer does not implement."""


def _xp(*values):
    """NumPy when every value is static (folded at trace time), else ``jax.numpy``."""
    return np if all(v is None or isinstance(v, (np.ndarray, np.generic)) for v in values) else jnp


def _static(value, what: str) -> np.ndarray:
    if not isinstance(value, (np.ndarray, np.generic)):
        raise ValueError(f"{what} must be a constant (initializer or Constant node) to import the graph into JAX")
    return np.asarray(value)


def _binary(fn_name: str):
    def op(inputs, attrs, opset):
        a, b = inputs
        xp = _xp(a, b)
        if fn_name == "divide" and np.issubdtype(a.dtype, np.integer):
            return xp.trunc(a / b).astype(a.dtype)  # ONNX integer Div truncates
        return getattr(xp, fn_name)(a, b)

    return op


def _unary(fn: Callable):
    return lambda inputs, attrs, opset: fn(inputs[0], attrs)


def _gemm(inputs, attrs, opset):
    a, b = inputs[0], inputs[1]
    c = inputs[2] if len(inputs) > 2 else None
    xp = _xp(a, b, c)
    a = a.T if attrs.get("transA", 0) else a
    b = b.T if attrs.get("transB", 0) else b
    y = attrs.get("alpha", 1.0) * xp.matmul(a, b)
    return y if c is None else y + attrs.get("beta", 1.0) * c


def _reshape(inputs, attrs, opset):
    x, shape = inputs[0], [int(s) for s in _static(inputs[1], "Reshape shape")]
    if not attrs.get("allowzero", 0):
        shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return _xp(x).reshape(x, shape)


def _flatten(inputs, attrs, opset):
    x, axis = inputs[0], attrs.get("axis", 1)
    axis = axis + x.ndim if axis < 0 else axis
    return _xp(x).reshape(x, (int(np.prod(x.shape[:axis])), -1))


def _slice(inputs, attrs, opset):
    x = inputs[0]
    if opset < 10:
        starts, ends, axes, steps = attrs["starts"], attrs["ends"], attrs.get("axes"), None
    else:
        starts, ends = _static(inputs[1], "Slice starts"), _static(inputs[2], "Slice ends")
        axes = _static(inputs[3], "Slice axes") if len(inputs) > 3 and inputs[3] is not None else None
        steps = _static(inputs[4], "Slice steps") if len(inputs) > 4 and inputs[4] is not None else None
    axes = list(range(len(starts))) if axes is None else [int(a) for a in axes]
    steps = [1] * len(starts) if steps is None else [int(s) for s in steps]
    index = [slice(None)] * x.ndim
    for start, end, axis, step in zip(starts, ends, axes, steps):
        dim = x.shape[axis]
        # ONNX clamps out-of-range bounds (INT64_MAX ends mean "to the end").
        index[axis] = slice(int(np.clip(start, -dim, dim)), int(np.clip(end, -dim - 1, dim)), step)
    return x[tuple(index)]


def _axes(inputs, attrs, opset, name: str):
    if opset >= 13 and len(inputs) > 1 and inputs[1] is not None:
        return [int(a) for a in _static(inputs[1], f"{name} axes")]
    return attrs.get("axes")


def _squeeze(inputs, attrs, opset):
    x, axes = inputs[0], _axes(inputs, attrs, opset, "Squeeze")
    return _xp(x).squeeze(x, axis=None if axes is None else tuple(axes))


def _unsqueeze(inputs, attrs, opset):
    x, axes = inputs[0], _axes(inputs, attrs, opset, "Unsqueeze")
    out_rank = x.ndim + len(axes)
    for axis in sorted(a + out_rank if a < 0 else a for a in axes):
        x = _xp(x).expand_dims(x, axis)
    return x


def _clip(inputs, attrs, opset):
    x = inputs[0]
    lo = inputs[1] if opset >= 11 and len(inputs) > 1 else attrs.get("min")
    hi = inputs[2] if opset >= 11 and len(inputs) > 2 else attrs.get("max")
    return _xp(x, lo, hi).clip(x, lo, hi)


def _gelu(x, attrs):
    return jax.nn.gelu(x, approximate=attrs.get("approximate", "none") == "tanh")


def _elu(x, attrs):
    alpha = attrs.get("alpha", 1.0)
    return jnp.where(x > 0, x, alpha * jnp.expm1(jnp.minimum(x, 0.0)))


def _celu(x, attrs):
    alpha = attrs.get("alpha", 1.0)
    return jnp.maximum(x, 0.0) + jnp.minimum(0.0, alpha * jnp.expm1(jnp.minimum(x, 0.0) / alpha))


def _rnn_inputs(inputs, attrs, name: str, gates: int):
    """``(X, W, R, B, initial states...)`` of a forward ``LSTM``/``GRU`` node; unsupported variants are refused."""
    if attrs.get("direction", "forward") != "forward" or attrs.get("layout", 0) != 0:
        raise UnsupportedOnnxOperatorError(f"{name} with direction/layout other than forward/0")
    if attrs.get("clip") is not None or attrs.get("input_forget", 0) or "activations" in attrs:
        raise UnsupportedOnnxOperatorError(f"{name} with clip, input_forget or custom activations")
    if len(inputs) > 4 and inputs[4] is not None:
        raise UnsupportedOnnxOperatorError(f"{name} with sequence_lens")
    x, w, r = inputs[0], inputs[1][0], inputs[2][0]
    hidden = r.shape[-1]
    b = inputs[3][0] if len(inputs) > 3 and inputs[3] is not None else np.zeros(2 * gates * hidden, np.float32)
    return x, w, r, b, hidden


def _initial(inputs, index: int, batch: int, hidden: int):
    value = inputs[index] if len(inputs) > index and inputs[index] is not None else None
    return jnp.zeros((batch, hidden), jnp.float32) if value is None else value[0]


def _lstm(inputs, attrs, opset):
    """ONNX ``LSTM`` (forward, gates ``i, o, f, c``): outputs ``Y [T, 1, B, H]``, ``Y_h``, ``Y_c`` ``[1, B, H]``."""
    x, w, r, b, hidden = _rnn_inputs(inputs, attrs, "LSTM", 4)
    if len(inputs) > 7 and inputs[7] is not None:
        raise UnsupportedOnnxOperatorError("LSTM with peepholes")
    h0, c0 = _initial(inputs, 5, x.shape[1], hidden), _initial(inputs, 6, x.shape[1], hidden)

    def step(carry, xt):
        h, c = carry
        i, o, f, g = jnp.split(xt @ w.T + b[: 4 * hidden] + h @ r.T + b[4 * hidden:], 4, axis=-1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (h, c), h

    (h, c), ys = jax.lax.scan(step, (h0, c0), x)
    return ys[:, None], h[None], c[None]


def _gru(inputs, attrs, opset):
    """ONNX ``GRU`` (forward, gates ``z, r, h``, either ``linear_before_reset``): ``Y [T, 1, B, H]``, ``Y_h``."""
    x, w, r, b, hidden = _rnn_inputs(inputs, attrs, "GRU", 3)
    h0 = _initial(inputs, 5, x.shape[1], hidden)
    wb, rb = b[: 3 * hidden], b[3 * hidden:]
    r_z, r_r, r_h = jnp.split(r, 3, axis=0)
    rb_z, rb_r, rb_h = jnp.split(rb, 3)

    def step(h, xt):
        i_z, i_r, i_h = jnp.split(xt @ w.T + wb, 3, axis=-1)
        z = jax.nn.sigmoid(i_z + h @ r_z.T + rb_z)
        reset = jax.nn.sigmoid(i_r + h @ r_r.T + rb_r)
        if attrs.get("linear_before_reset", 0):
            cand = jnp.tanh(i_h + reset * (h @ r_h.T + rb_h))
        else:
            cand = jnp.tanh(i_h + (reset * h) @ r_h.T + rb_h)
        h = (1.0 - z) * cand + z * h
        return h, h

    h, ys = jax.lax.scan(step, h0, x)
    return ys[:, None], h[None]


def _spatial(attrs, x_shape, kernel, name: str) -> tuple[list[int], list[int], list[tuple[int, int]]]:
    """``(strides, dilations, pads)`` of a ``Conv`` / ``MaxPool`` node over the spatial axes of ``x_shape``
    (``pads`` resolved from ``auto_pad`` when it is set)."""
    n = len(kernel)
    strides = [int(s) for s in attrs.get("strides", [1] * n)]
    dilations = [int(d) for d in attrs.get("dilations", [1] * n)]
    if len(strides) != n or len(dilations) != n:
        raise UnsupportedOnnxOperatorError(f"{name} with strides {strides} / dilations {dilations} for a "
                                           f"{n}-D kernel")
    auto = attrs.get("auto_pad", "NOTSET")
    if auto == "NOTSET":
        pads = [int(p) for p in attrs.get("pads", [0] * 2 * n)]
        if len(pads) != 2 * n or min(pads) < 0:
            raise UnsupportedOnnxOperatorError(f"{name} with pads {pads} for a {n}-D kernel")
        return strides, dilations, [(pads[i], pads[i + n]) for i in range(n)]
    if auto == "VALID":
        return strides, dilations, [(0, 0)] * n
    if auto not in ("SAME_UPPER", "SAME_LOWER"):
        raise UnsupportedOnnxOperatorError(f"{name} with auto_pad={auto!r}")
    pads = []
    for size, k, s, d in zip(x_shape[2:], kernel, strides, dilations):
        total = max(0, (-(-size // s) - 1) * s + (k - 1) * d + 1 - size)  # output ceil(size / stride)
        small = total // 2
        pads.append((small, total - small) if auto == "SAME_UPPER" else (total - small, small))
    return strides, dilations, pads


def _conv(inputs, attrs, opset):
    """ONNX ``Conv`` (1-D to 3-D, groups, dilations, explicit or ``auto_pad`` padding)."""
    x, w = inputs[0], inputs[1]
    b = inputs[2] if len(inputs) > 2 else None
    kernel = [int(k) for k in attrs.get("kernel_shape", w.shape[2:])]
    group = int(attrs.get("group", 1))
    if x.ndim < 3 or w.ndim != x.ndim or tuple(kernel) != tuple(w.shape[2:]) or x.shape[1] != w.shape[1] * group:
        raise UnsupportedOnnxOperatorError(f"Conv of input {list(x.shape)} with weights {list(w.shape)}, "
                                           f"kernel_shape {kernel} and group {group}")
    strides, dilations, pads = _spatial(attrs, x.shape, kernel, "Conv")
    return _jax_layers.conv(x, w, b, strides, pads, dilations, group)


def _max_pool(inputs, attrs, opset):
    """ONNX ``MaxPool`` without ``ceil_mode`` (its ``Indices`` output is refused up front)."""
    x, kernel = inputs[0], [int(k) for k in attrs["kernel_shape"]]
    if attrs.get("ceil_mode", 0):
        raise UnsupportedOnnxOperatorError("MaxPool with ceil_mode=1")
    if x.ndim != len(kernel) + 2:
        raise UnsupportedOnnxOperatorError(f"MaxPool of input {list(x.shape)} with kernel_shape {kernel}")
    strides, dilations, pads = _spatial(attrs, x.shape, kernel, "MaxPool")
    return _jax_layers.max_pool(x, kernel, strides, pads, dilations)


def _global_pool(fn_name: str):
    return lambda i, a, o: getattr(_xp(i[0]), fn_name)(i[0], axis=tuple(range(2, i[0].ndim)), keepdims=True)


_PAD_MODES = ("constant", "reflect", "edge", "wrap")  # ONNX Pad modes, named as numpy / jax.numpy name them


def _pad(inputs, attrs, opset):
    """ONNX ``Pad`` (``pads`` an attribute before opset 11, an input from 11; optional ``axes`` from 18)."""
    x, mode = inputs[0], attrs.get("mode", "constant")
    if opset < 11:
        pads, value, axes = [int(p) for p in attrs["pads"]], attrs.get("value", 0.0), None
    else:
        pads = [int(p) for p in _static(inputs[1], "Pad pads")]
        value = inputs[2] if len(inputs) > 2 and inputs[2] is not None else 0.0
        axes = _static(inputs[3], "Pad axes") if len(inputs) > 3 and inputs[3] is not None else None
    axes = list(range(x.ndim)) if axes is None else [int(a) + x.ndim if a < 0 else int(a) for a in axes]
    if mode not in _PAD_MODES or min(pads, default=0) < 0 or len(pads) != 2 * len(axes):
        raise UnsupportedOnnxOperatorError(f"Pad with mode={mode!r} and pads {pads} (modes {list(_PAD_MODES)}, "
                                           "non-negative pads)")
    widths = [(0, 0)] * x.ndim
    for i, axis in enumerate(axes):
        widths[axis] = (pads[i], pads[i + len(axes)])
    xp = _xp(x, value)
    if mode == "constant":
        return xp.pad(x, widths, mode="constant", constant_values=xp.asarray(value, x.dtype).reshape(()))
    return xp.pad(x, widths, mode=mode)


def _reduce(fn_name: str, axes_input_opset: int):
    """``Reduce<fn>`` with ``axes`` an attribute before ``axes_input_opset`` and an input from it."""
    def op(inputs, attrs, opset):
        x = inputs[0]
        if opset >= axes_input_opset:
            axes = _static(inputs[1], "Reduce axes") if len(inputs) > 1 and inputs[1] is not None else None
        else:
            axes = attrs.get("axes")
        if axes is None or len(axes) == 0:
            if attrs.get("noop_with_empty_axes", 0):
                return x
            axes = range(x.ndim)
        return getattr(_xp(x), fn_name)(x, axis=tuple(int(a) for a in axes), keepdims=bool(attrs.get("keepdims", 1)))

    return op


_OPS: dict[str, Callable] = {
    "Add": _binary("add"), "Sub": _binary("subtract"), "Mul": _binary("multiply"), "Div": _binary("divide"),
    "Pow": _binary("power"), "MatMul": lambda i, a, o: _xp(*i).matmul(i[0], i[1]), "Gemm": _gemm,
    "Neg": _unary(lambda x, a: -x), "Sqrt": _unary(lambda x, a: _xp(x).sqrt(x)),
    "Exp": _unary(lambda x, a: _xp(x).exp(x)), "Log": _unary(lambda x, a: _xp(x).log(x)),
    "Abs": _unary(lambda x, a: _xp(x).abs(x)), "Reciprocal": _unary(lambda x, a: 1.0 / x),
    "Relu": _unary(lambda x, a: jnp.maximum(x, 0.0)), "Elu": _unary(_elu), "Celu": _unary(_celu),
    "LeakyRelu": _unary(lambda x, a: jnp.where(x >= 0, x, a.get("alpha", 0.01) * x)),
    "Selu": _unary(lambda x, a: a.get("gamma", 1.05070102214813232421875) * jnp.where(
        x > 0, x, a.get("alpha", 1.67326319217681884765625) * jnp.expm1(jnp.minimum(x, 0.0)))),
    "Tanh": _unary(lambda x, a: jnp.tanh(x)), "Sigmoid": _unary(lambda x, a: jax.nn.sigmoid(x)),
    "Softplus": _unary(lambda x, a: jax.nn.softplus(x)), "Mish": _unary(lambda x, a: x * jnp.tanh(jax.nn.softplus(x))),
    "Gelu": _unary(_gelu), "Erf": _unary(lambda x, a: jax.scipy.special.erf(x)),
    "Identity": _unary(lambda x, a: x), "Flatten": _flatten, "Reshape": _reshape, "Slice": _slice,
    "Concat": lambda i, a, o: _xp(*i).concatenate(i, axis=a["axis"]), "Squeeze": _squeeze, "Unsqueeze": _unsqueeze,
    "Shape": lambda i, a, o: np.asarray(i[0].shape, np.int64)[a.get("start", 0):a.get("end")],
    "Gather": lambda i, a, o: _xp(*i).take(i[0], i[1], axis=a.get("axis", 0)),
    "Cast": lambda i, a, o: i[0].astype(helper.tensor_dtype_to_np_dtype(a["to"])),
    "Clip": _clip, "LSTM": _lstm, "GRU": _gru,
    "Transpose": lambda i, a, o: _xp(i[0]).transpose(i[0], a.get("perm")),
    "Conv": _conv, "MaxPool": _max_pool, "GlobalMaxPool": _global_pool("max"),
    "GlobalAveragePool": _global_pool("mean"), "Pad": _pad, "ReduceMean": _reduce("mean", 18),
    "ReduceMax": _reduce("max", 18), "ReduceSum": _reduce("sum", 13),
}
SUPPORTED_OPS = tuple(sorted([*_OPS, "Constant"]))


def _constant(node: onnx.NodeProto) -> np.ndarray:
    """The value of a ``Constant`` node."""
    attr = node.attribute[0]
    value = helper.get_attribute_value(attr)
    if attr.name == "value":
        return numpy_helper.to_array(value)
    dtype = {"value_float": np.float32, "value_floats": np.float32, "value_int": np.int64, "value_ints": np.int64}
    if attr.name not in dtype:
        raise UnsupportedOnnxOperatorError(f"Constant node '{node.name}' with attribute '{attr.name}'")
    return np.asarray(value, dtype[attr.name])


def _check_supported(graph: onnx.GraphProto) -> None:
    unsupported = sorted({f"{n.domain + '.' if n.domain not in ('', 'ai.onnx') else ''}{n.op_type}"
                          for n in graph.node
                          if n.domain not in ("", "ai.onnx") or (n.op_type not in _OPS and n.op_type != "Constant")})
    if unsupported:
        raise UnsupportedOnnxOperatorError(
            f"the ONNX graph uses operators the JAX importer does not support: {unsupported}; "
            f"supported: {list(SUPPORTED_OPS)}")
    pools = [n.name or n.output[0] for n in graph.node if n.op_type == "MaxPool" and len(n.output) > 1 and n.output[1]]
    if pools:
        raise UnsupportedOnnxOperatorError(f"MaxPool with an Indices output (nodes {pools}) is not supported")


class OnnxPolicy:
    """A loaded ONNX graph: ``apply(*inputs) -> tuple(outputs)`` in JAX (jittable).

    Attributes:
        input_names, output_names: graph inputs (initializers excluded) and outputs, in order.
        input_shapes: per input, its dims (``None`` for symbolic ones).
        opset: default-domain opset of the model.
        metadata: the model's ``metadata_props``.
    """

    def __init__(self, model: onnx.ModelProto):
        if model.functions:
            import onnx.inliner

            model = onnx.inliner.inline_local_functions(model)
        graph = model.graph
        _check_supported(graph)
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)
        self._consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        self._nodes = list(graph.node)
        self.input_names = [i.name for i in graph.input if i.name not in self._consts]
        self.output_names = [o.name for o in graph.output]
        self.input_shapes = [[d.dim_value if d.HasField("dim_value") else None for d in i.type.tensor_type.shape.dim]
                             for i in graph.input if i.name not in self._consts]
        self.metadata = {p.key: p.value for p in model.metadata_props}

    def apply(self, *inputs: Any) -> tuple[jax.Array, ...]:
        """Runs the graph on ``inputs`` (in ``input_names`` order)."""
        if len(inputs) != len(self.input_names):
            raise ValueError(f"the graph takes {len(self.input_names)} inputs {self.input_names}, got {len(inputs)}")
        values: dict[str, Any] = dict(self._consts)
        values.update({n: jnp.asarray(x) for n, x in zip(self.input_names, inputs)})
        for node in self._nodes:
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            attrs = {k: v.decode() if isinstance(v, bytes) else v for k, v in attrs.items()}
            if node.op_type == "Constant":
                out = _constant(node)
            else:
                args = [values[name] if name else None for name in node.input]
                out = _OPS[node.op_type](args, attrs, self.opset)
            # Multi-output operators (LSTM, GRU) return a tuple in the node's output order.
            for name, value in zip(node.output, out if isinstance(out, tuple) else (out,)):
                if name:
                    values[name] = value
        return tuple(jnp.asarray(values[name]) for name in self.output_names)

    def input_index(self) -> np.ndarray | None:
        """``P`` when the graph starts by reordering its first input's features (``Gather(obs, P, axis=1)``,
        as this package's exports of a term-major history do), else ``None``."""
        first = self.input_names[0]
        for node in self._nodes:
            if first in node.input:
                axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
                if node.op_type == "Gather" and node.input[0] == first and axis in (1, -1) \
                        and node.input[1] in self._consts:
                    return np.asarray(self._consts[node.input[1]], np.int64)
                return None
        return None

    def __call__(self, obs: Any) -> jax.Array:
        """First output for a single-input graph (``obs -> actions``)."""
        return self.apply(obs)[0]


def load_onnx_policy(source: str | onnx.ModelProto) -> OnnxPolicy:
    """An :class:`OnnxPolicy` from a file (external data next to it is loaded) or a ``ModelProto``.

    Raises:
        UnsupportedOnnxOperatorError: the graph uses operators outside :data:`SUPPORTED_OPS`.
    """
    model = onnx.load_model(source) if isinstance(source, str) else source
    return OnnxPolicy(model)


def as_jax_policy(source: str | onnx.ModelProto, input_names: Sequence[str] | None = None):
    """A jitted ``obs -> actions`` function of a single-input ONNX policy."""
    policy = load_onnx_policy(source)
    if input_names is not None and list(input_names) != policy.input_names:
        raise ValueError(f"expected inputs {list(input_names)}, the graph has {policy.input_names}")
    return jax.jit(policy.__call__)
