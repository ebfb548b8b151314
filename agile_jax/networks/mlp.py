"""Flax MLP with RSL-RL's layer layout and PyTorch's default ``nn.Linear`` initialisation."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp

ACTIVATIONS: dict[str, Callable] = {
    "elu": nn.elu,
    "selu": nn.selu,
    "relu": nn.relu,
    "crelu": nn.celu,  # RSL-RL maps "crelu" to torch.nn.CELU (alpha 1)
    "lrelu": lambda x: nn.leaky_relu(x, 0.01),
    "tanh": jnp.tanh,
    "sigmoid": nn.sigmoid,
    "softplus": nn.softplus,
    "gelu": partial(nn.gelu, approximate=False),  # torch.nn.GELU default: the exact erf form
    "swish": nn.swish,
    "mish": lambda x: x * jnp.tanh(nn.softplus(x)),
    "identity": lambda x: x,
}


def resolve_activation(name: str) -> Callable:
    """Activation function by RSL-RL name; unknown names list the valid ones."""
    try:
        return ACTIVATIONS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown activation '{name}', expected one of {sorted(ACTIVATIONS)}") from None


def torch_kernel_init(key, shape, dtype=jnp.float32):
    """``nn.Linear`` default: kaiming-uniform with a=sqrt(5), i.e. U(+-1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(shape[0])
    return jax.random.uniform(key, shape, dtype, -bound, bound)


def torch_bias_init(fan_in: int):
    """``nn.Linear`` default bias: U(+-1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)
    return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)


class MLP(nn.Module):
    """``Linear -> act -> ... -> Linear`` (no activation after the last layer).

    Attributes:
        hidden_dims: widths of the hidden layers.
        output_dim: width of the output layer.
        activation: RSL-RL activation name.
    """

    hidden_dims: Sequence[int]
    output_dim: int
    activation: str = "elu"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        act = resolve_activation(self.activation)
        widths = (*self.hidden_dims, self.output_dim)
        for i, width in enumerate(widths):
            fan_in = x.shape[-1]
            x = nn.Dense(width, kernel_init=torch_kernel_init, bias_init=torch_bias_init(fan_in), name=f"Dense_{i}")(x)
            if i < len(widths) - 1:
                x = act(x)
        return x
