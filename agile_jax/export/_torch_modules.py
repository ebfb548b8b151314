"""``torch.nn.Module`` twins of the exported policies (imported only when torch is installed).

They are scripted with ``torch.jit.script``; the saved archive carries their TorchScript code, so it
loads with plain ``torch.jit.load`` where this package is not installed.
"""

from __future__ import annotations

from typing import Optional, Union

import numpy as np
import torch
from torch import nn

from agile_jax.export.spec import PolicySpec


def make_activation(name: str) -> nn.Module:
    """The torch module computing agile_jax's activation ``name`` (RSL-RL's names and modules)."""
    table = {
        "elu": lambda: nn.ELU(), "selu": lambda: nn.SELU(), "relu": lambda: nn.ReLU(), "crelu": lambda: nn.CELU(),
        "lrelu": lambda: nn.LeakyReLU(0.01), "tanh": lambda: nn.Tanh(), "sigmoid": lambda: nn.Sigmoid(),
        "softplus": lambda: nn.Softplus(), "gelu": lambda: nn.GELU(), "swish": lambda: nn.SiLU(),
        "mish": lambda: nn.Mish(), "identity": lambda: nn.Identity(),
    }
    if name not in table:
        raise ValueError(f"activation '{name}' has no torch equivalent here; supported: {sorted(table)}")
    return table[name]()


def make_mlp(layers, activation: str) -> nn.Sequential:
    """Linear layers with ``weight = kernel.T`` and one activation module between them."""
    modules: list[nn.Module] = []
    for i, (kernel, bias) in enumerate(layers):
        linear = nn.Linear(kernel.shape[0], kernel.shape[1])
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(np.array(kernel.T, np.float32, order="C")))
            linear.bias.copy_(torch.from_numpy(np.array(bias)))
        modules.append(linear)
        if i < len(layers) - 1:
            modules.append(make_activation(activation))
    return nn.Sequential(*modules)


class MLPPolicy(nn.Module):
    """Deterministic MLP policy with the input reordering and the observation normaliser as buffers.

    ``forward(obs [B, D] or [D]) -> actions [B, A] or [A]``; ``reset()`` is a no-op kept for the deployment
    interface shared with recurrent policies.
    """

    def __init__(self, spec: PolicySpec):
        super().__init__()
        # Exported input layout -> env layout (identity when the spec has no input_index).
        index = spec.input_index if spec.input_index is not None else np.arange(spec.obs_dim)
        self.reorder = spec.input_index is not None
        self.register_buffer("input_index", torch.from_numpy(np.array(index, np.int64)))
        mean = spec.obs_mean if spec.normalized else np.zeros(spec.obs_dim, np.float32)
        denom = spec.obs_denominator if spec.normalized else np.ones(spec.obs_dim, np.float32)
        # Normaliser buffers: (x - mean) / (std + eps) with the denominator precomputed in float32.
        self.register_buffer("obs_mean", torch.from_numpy(np.array(mean, np.float32)))
        self.register_buffer("obs_denominator", torch.from_numpy(np.array(denom, np.float32)))
        self.mlp = make_mlp(spec.layers, spec.activation)

    def normalize(self, obs: torch.Tensor) -> torch.Tensor:
        """The input in the env layout, normalised: ``(obs[..., index] - mean) / denominator``."""
        if self.reorder:
            obs = obs.index_select(-1, self.input_index)
        return (obs - self.obs_mean) / self.obs_denominator

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.normalize(obs))

    @torch.jit.export
    def reset(self) -> None:
        """Clears recurrent state (nothing to clear for an MLP)."""
        pass


class EstimatorMLPPolicy(MLPPolicy):
    """:class:`MLPPolicy` whose actor reads the normalised input followed by a state estimate.

    ``forward(obs) = mlp(cat(x, estimator(x[..., columns])))`` with ``x`` the normalised input.
    """

    def __init__(self, spec: PolicySpec):
        super().__init__(spec)
        self.register_buffer("estimator_columns", torch.from_numpy(np.array(spec.estimator.columns, np.int64)))
        self.estimator = make_mlp(spec.estimator.layers, spec.activation)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = self.normalize(obs)
        estimate = self.estimator(x.index_select(-1, self.estimator_columns))
        return self.mlp(torch.cat([x, estimate], -1))


def _load_rnn(rnn: nn.Module, spec: PolicySpec) -> None:
    """Copies the spec's RNN layers into ``rnn`` (``weight = kernel.T``; PyTorch's gate order already)."""
    with torch.no_grad():
        for k, p in enumerate(spec.rnn):
            for part in ("ih", "hh"):
                getattr(rnn, f"weight_{part}_l{k}").copy_(torch.from_numpy(np.array(p[f"kernel_{part}"].T, order="C")))
                getattr(rnn, f"bias_{part}_l{k}").copy_(torch.from_numpy(np.array(p[f"bias_{part}"])))


class LSTMPolicy(MLPPolicy):
    """Normaliser -> ``nn.LSTM`` -> MLP with the state in buffers ``hidden_state`` / ``cell_state`` ``[layers, 1, H]``.

    Two calls: ``forward(obs [1, D]) -> actions [1, A]`` advances the internal state and ``reset()`` zeroes it
    (RSL-RL's layout); ``forward(obs [1, D], hidden [2 * layers, 1, H]) -> (actions [1, A], hidden)`` is
    stateless, with ``h`` in the first ``layers`` rows of ``hidden`` and ``c`` in the rest (AGILE's RNN path).
    """

    def __init__(self, spec: PolicySpec):
        super().__init__(spec)
        layers, width = len(spec.rnn), spec.rnn_hidden_dim
        self.rnn = nn.LSTM(spec.obs_dim, width, layers)
        _load_rnn(self.rnn, spec)
        self.register_buffer("hidden_state", torch.zeros(layers, 1, width))
        self.register_buffer("cell_state", torch.zeros(layers, 1, width))

    def forward(self, obs: torch.Tensor, hidden: Optional[torch.Tensor] = None  # noqa: UP045 (TorchScript parses these)
                ) -> Union[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:  # noqa: UP007
        x = self.normalize(obs).unsqueeze(0)
        if hidden is None:
            out, (h, c) = self.rnn(x, (self.hidden_state, self.cell_state))
            self.hidden_state[:] = h
            self.cell_state[:] = c
            return self.mlp(out.squeeze(0))
        layers = self.hidden_state.shape[0]
        out, (h, c) = self.rnn(x, (hidden[:layers], hidden[layers:]))
        return self.mlp(out.squeeze(0)), torch.cat([h, c], 0)

    @torch.jit.export
    def reset(self) -> None:
        """Zeroes the recurrent state (call at the start of every episode)."""
        self.hidden_state[:] = 0.0
        self.cell_state[:] = 0.0


class GRUPolicy(MLPPolicy):
    """Normaliser -> ``nn.GRU`` -> MLP with the state in the buffer ``hidden_state`` ``[layers, 1, H]``.

    Calls as :class:`LSTMPolicy`; the explicit state is ``hidden [layers, 1, H]``.
    """

    def __init__(self, spec: PolicySpec):
        super().__init__(spec)
        layers, width = len(spec.rnn), spec.rnn_hidden_dim
        self.rnn = nn.GRU(spec.obs_dim, width, layers)
        _load_rnn(self.rnn, spec)
        self.register_buffer("hidden_state", torch.zeros(layers, 1, width))

    def forward(self, obs: torch.Tensor, hidden: Optional[torch.Tensor] = None  # noqa: UP045 (TorchScript parses these)
                ) -> Union[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:  # noqa: UP007
        x = self.normalize(obs).unsqueeze(0)
        if hidden is None:
            out, h = self.rnn(x, self.hidden_state)
            self.hidden_state[:] = h
            return self.mlp(out.squeeze(0))
        out, h = self.rnn(x, hidden)
        return self.mlp(out.squeeze(0)), h

    @torch.jit.export
    def reset(self) -> None:
        """Zeroes the recurrent state (call at the start of every episode)."""
        self.hidden_state[:] = 0.0


MODULE_BUILDERS = {"mlp": MLPPolicy, "lstm": LSTMPolicy, "gru": GRUPolicy}
