"""The ``torch.nn.Module`` twin of an exported CNN policy (imported only when torch is installed).

Each encoder is rebuilt as RSL-RL's ``CNN`` ``nn.Sequential`` (``Conv2d`` with its padding mode, ``LayerNorm`` /
``BatchNorm2d`` in eval mode, the activation, ``MaxPool2d(3, 2, 1)``, adaptive pooling, ``Flatten``) with the
spec's weights, so the scripted module computes what the JAX policy and the ONNX graph compute.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from agile_jax.export._torch_modules import MLPPolicy, make_activation
from agile_jax.export.spec import EncoderSpec, PolicySpec


def _copy(module: nn.Module, name: str, value) -> None:
    with torch.no_grad():
        getattr(module, name).copy_(torch.from_numpy(np.array(value, np.float32)))


def make_encoder(enc: EncoderSpec) -> nn.Sequential:
    """RSL-RL's ``CNN`` Sequential for ``enc`` with its weights (eval mode)."""
    cnn, modules = enc.cnn, []
    for i, layer in enumerate(cnn.layers):
        conv = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel, stride=layer.stride,
                         padding=layer.padding, dilation=layer.dilation, padding_mode=layer.mode)
        _copy(conv, "weight", enc.params[f"conv_{i}"]["kernel"])
        _copy(conv, "bias", enc.params[f"conv_{i}"]["bias"])
        modules.append(conv)
        p = enc.params.get(f"norm_{i}")
        if layer.norm == "layer":
            norm = nn.LayerNorm([layer.out_channels, *layer.out_hw])
        elif layer.norm == "batch":
            norm = nn.BatchNorm2d(layer.out_channels)
            _copy(norm, "running_mean", p["mean"])
            _copy(norm, "running_var", p["var"])
        if layer.norm != "none":
            _copy(norm, "weight", p["scale"])
            _copy(norm, "bias", p["bias"])
            modules.append(norm)
        modules.append(make_activation(cnn.activation))
        if layer.max_pool:
            modules.append(nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
    if cnn.global_pool != "none":
        modules.append(nn.AdaptiveMaxPool2d((1, 1)) if cnn.global_pool == "max" else nn.AdaptiveAvgPool2d((1, 1)))
    modules.append(nn.Flatten(start_dim=1))
    return nn.Sequential(*modules)


class CNNPolicy(MLPPolicy):
    """Normaliser -> 1-D columns and one CNN per 2-D group -> MLP, on the flat input.

    ``forward(obs [B, D] or [D]) -> actions [B, A] or [A]``: the columns of encoder ``k`` are
    ``[starts[k], starts[k] + C * H * W)`` of the normalised input, reshaped to ``[B, C, H, W]``.
    """

    def __init__(self, spec: PolicySpec):
        super().__init__(spec)
        self.register_buffer("columns_1d", torch.from_numpy(np.array(spec.columns_1d, np.int64)))
        self.has_1d = len(spec.columns_1d) > 0
        self.encoders = nn.ModuleList([make_encoder(e) for e in spec.encoders])
        self.starts = [e.start for e in spec.encoders]
        self.image_shapes = [list(e.shape) for e in spec.encoders]

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        single = obs.dim() == 1
        x = self.normalize(obs.unsqueeze(0) if single else obs)
        parts: list[torch.Tensor] = []
        if self.has_1d:
            parts.append(x.index_select(1, self.columns_1d))
        for k, encoder in enumerate(self.encoders):
            c, h, w = self.image_shapes[k][0], self.image_shapes[k][1], self.image_shapes[k][2]
            start = self.starts[k]
            parts.append(encoder(x[:, start:start + c * h * w].reshape(-1, c, h, w)))
        actions = self.mlp(torch.cat(parts, 1))
        return actions.squeeze(0) if single else actions
