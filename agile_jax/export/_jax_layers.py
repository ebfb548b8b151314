"""Convolution and max pooling in pure JAX for the policy importers (:mod:`~agile_jax.export.onnx_import`,
:mod:`~agile_jax.export.torchscript_import`), on ``[N, C, *spatial]`` inputs (ONNX's and PyTorch's layout).

Padding is given per spatial axis as ``(before, after)``; both functions are jittable and differentiable.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp


def conv(x, kernel, bias, strides: Sequence[int], pads: Sequence[tuple[int, int]], dilations: Sequence[int],
         groups: int = 1) -> jax.Array:
    """Cross-correlation ``x [N, C, *S]`` * ``kernel [O, C / groups, *K]`` (+ ``bias [O]`` if not ``None``),
    zero-padded by ``pads``: ONNX ``Conv`` and ``torch.nn.Conv{1,2,3}d`` with ``padding_mode="zeros"``."""
    y = jax.lax.conv_general_dilated(jnp.asarray(x), jnp.asarray(kernel), tuple(int(s) for s in strides),
                                     tuple((int(lo), int(hi)) for lo, hi in pads),
                                     rhs_dilation=tuple(int(d) for d in dilations), feature_group_count=int(groups))
    if bias is None:
        return y
    return y + jnp.asarray(bias).reshape((-1,) + (1,) * (y.ndim - 2))


def max_pool(x, kernel: Sequence[int], strides: Sequence[int], pads: Sequence[tuple[int, int]],
             dilations: Sequence[int]) -> jax.Array:
    """Max over windows of ``x [N, C, *S]``; padded positions never win (ONNX ``MaxPool``, ``nn.MaxPool2d``)."""
    x = jnp.asarray(x)
    return jax.lax.reduce_window(x, jnp.array(-jnp.inf, x.dtype), jax.lax.max, (1, 1, *kernel), (1, 1, *strides),
                                 ((0, 0), (0, 0), *((int(lo), int(hi)) for lo, hi in pads)),
                                 window_dilation=(1, 1, *dilations))
