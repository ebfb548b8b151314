"""LSTM / GRU encoders and the recurrent actor-critic (RSL-RL's ``RNNModel``: normaliser -> RNN -> MLP head).

The cells are written out with PyTorch's parameter layout and gate order, so weights copy one to one
(``weight_ih_l<k> = kernel_ih.T``, ``bias_ih_l<k> = bias_ih``, likewise ``hh``)::

    {"layer_0": {"kernel_ih": [D, G*H], "kernel_hh": [H, G*H], "bias_ih": [G*H], "bias_hh": [G*H]}, ...}

with ``G = 4`` gates ``i, f, g, o`` for an LSTM and ``G = 3`` gates ``r, z, n`` for a GRU. A network's
recurrent state is a tuple of arrays ``[..., layers, H]`` (LSTM ``(h, c)``, GRU ``(h,)``); the
actor-critic's state is ``ActorCriticHidden(actor=state, critic=state)`` (batch-major, so rollouts store it as
``[T, N, layers, H]`` like every other per-step field).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from agile_jax.networks import distributions
from agile_jax.networks.actor_critic import ActorCritic
from agile_jax.networks.records import ActorCriticHidden, ActorCriticParams
from agile_jax.types import Array, Observation, Params, PRNGKey

GATES = {"lstm": 4, "gru": 3}
RNNState = tuple  # (h, c) for an LSTM, (h,) for a GRU; each [..., layers, H]


def lstm_cell(p: Params, x: Array, h: Array, c: Array) -> tuple[Array, Array]:
    """One ``torch.nn.LSTM`` step: ``x [..., D]``, ``h, c [..., H]`` -> ``(h', c')``."""
    gates = x @ p["kernel_ih"] + p["bias_ih"] + h @ p["kernel_hh"] + p["bias_hh"]
    i, f, g, o = jnp.split(gates, 4, axis=-1)
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    return jax.nn.sigmoid(o) * jnp.tanh(c), c


def gru_cell(p: Params, x: Array, h: Array) -> Array:
    """One ``torch.nn.GRU`` step: ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``, ``h' = (1 - z) n + z h``."""
    ir, iz, in_ = jnp.split(x @ p["kernel_ih"] + p["bias_ih"], 3, axis=-1)
    hr, hz, hn = jnp.split(h @ p["kernel_hh"] + p["bias_hh"], 3, axis=-1)
    r = jax.nn.sigmoid(ir + hr)
    z = jax.nn.sigmoid(iz + hz)
    n = jnp.tanh(in_ + r * hn)
    return (1.0 - z) * n + z * h


def reset_state(state: Any, dones: Array) -> Any:
    """Zeroes the rows of every leaf ``[N, ...]`` of ``state`` where ``dones`` ``[N]`` holds."""
    def zero(x):
        mask = dones.astype(bool).reshape(dones.shape + (1,) * (x.ndim - dones.ndim))
        return jnp.where(mask, jnp.zeros_like(x), x)

    return jax.tree.map(zero, state)


@dataclass(frozen=True)
class RNN:
    """A stacked LSTM or GRU (``torch.nn.LSTM`` / ``GRU`` with ``batch_first=False``, no dropout).

    Attributes:
        rnn_type: ``"lstm"`` or ``"gru"``.
        input_dim: width ``D`` of the input.
        hidden_dim: width ``H`` of the state.
        num_layers: stacked layers.
    """

    rnn_type: str
    input_dim: int
    hidden_dim: int = 256
    num_layers: int = 1

    def __post_init__(self):
        if self.rnn_type not in GATES:
            raise ValueError(f"unknown rnn_type '{self.rnn_type}', expected one of {sorted(GATES)}")

    def init(self, key: PRNGKey) -> Params:
        """PyTorch's default: every weight and bias ``U(-1/sqrt(H), 1/sqrt(H))``."""
        width, bound = GATES[self.rnn_type] * self.hidden_dim, 1.0 / math.sqrt(self.hidden_dim)
        params = {}
        for layer, k in enumerate(jax.random.split(key, self.num_layers)):
            fan_in = self.input_dim if layer == 0 else self.hidden_dim
            shapes = {"kernel_ih": (fan_in, width), "kernel_hh": (self.hidden_dim, width),
                      "bias_ih": (width,), "bias_hh": (width,)}
            keys = dict(zip(shapes, jax.random.split(k, 4)))
            params[f"layer_{layer}"] = {name: jax.random.uniform(keys[name], shape, jnp.float32, -bound, bound)
                                        for name, shape in shapes.items()}
        return params

    def zero_state(self, batch_shape: tuple[int, ...]) -> RNNState:
        """All-zero state, each part ``[*batch_shape, layers, H]``."""
        zeros = jnp.zeros((*batch_shape, self.num_layers, self.hidden_dim), jnp.float32)
        return (zeros, zeros) if self.rnn_type == "lstm" else (zeros,)

    def step(self, params: Params, x: Array, state: RNNState) -> tuple[Array, RNNState]:
        """One time step: ``x [..., D]`` -> output of the last layer ``[..., H]`` and the new state."""
        new_h, new_c = [], []
        for layer in range(self.num_layers):
            p, h = params[f"layer_{layer}"], state[0][..., layer, :]
            if self.rnn_type == "lstm":
                x, c = lstm_cell(p, x, h, state[1][..., layer, :])
                new_c.append(c)
            else:
                x = gru_cell(p, x, h)
            new_h.append(x)
        state = (jnp.stack(new_h, axis=-2),) + ((jnp.stack(new_c, axis=-2),) if new_c else ())
        return x, state

    def sequence(self, params: Params, xs: Array, stored: RNNState, dones: Array) -> Array:
        """Outputs ``[T, B, H]`` of trajectories split at ``dones``, as RSL-RL's padded-trajectory update.

        A trajectory starts at ``t = 0`` and after every done; it starts from the state stored at its first
        step (``stored [T, B, layers, H]``, the state before acting), and runs unbroken until its end. This
        is what ``split_and_pad_trajectories`` + RNN + ``unpad_trajectories`` computes, without the padding.

        Args:
            params: RNN params.
            xs: inputs ``[T, B, D]``.
            stored: per-step stored states (state before acting at each step).
            dones: ``[T, B]`` episode ended at step ``t``.
        """
        starts = jnp.concatenate([jnp.ones_like(dones[:1], bool), dones[:-1].astype(bool)], axis=0)

        def body(state, inputs):
            x, start, stored_t = inputs
            # A new trajectory takes its stored initial state; a running one continues.
            state = jax.tree.map(lambda s, st: jnp.where(start[:, None, None], st, s), state, stored_t)
            y, state = self.step(params, x, state)
            return state, y

        init = jax.tree.map(lambda s: s[0], stored)
        _, ys = jax.lax.scan(body, init, (xs, starts, stored))
        return ys


def rnn_to_torch(params: Params) -> dict[str, np.ndarray]:
    """RNN params as a ``torch.nn.LSTM`` / ``GRU`` state dict (``weight_ih_l<k>`` ``[G*H, D]`` ...), NumPy float32."""
    out = {}
    for layer in range(len(params)):
        p = params[f"layer_{layer}"]
        for part in ("ih", "hh"):
            out[f"weight_{part}_l{layer}"] = np.ascontiguousarray(np.asarray(p[f"kernel_{part}"], np.float32).T)
            out[f"bias_{part}_l{layer}"] = np.asarray(p[f"bias_{part}"], np.float32)
    return out


def rnn_from_torch(state_dict, prefix: str = "") -> Params:
    """RNN params from a ``torch.nn.LSTM`` / ``GRU`` state dict (keys ``<prefix>weight_ih_l<k>`` ...).

    Values may be torch tensors or arrays; a missing bias (``bias=False``) becomes zeros.
    """
    def get(name):
        value = state_dict[prefix + name]
        return np.array(value.detach().cpu().numpy() if hasattr(value, "detach") else value, np.float32)  # a copy

    params, layer = {}, 0
    while prefix + f"weight_ih_l{layer}" in state_dict:
        entry = {}
        for part in ("ih", "hh"):
            kernel = get(f"weight_{part}_l{layer}").T
            bias_key = f"bias_{part}_l{layer}"
            bias = get(bias_key) if prefix + bias_key in state_dict else np.zeros(kernel.shape[1], np.float32)
            entry[f"kernel_{part}"], entry[f"bias_{part}"] = jnp.asarray(kernel), jnp.asarray(bias)
        params[f"layer_{layer}"] = entry
        layer += 1
    if not params:
        raise ValueError(f"no '{prefix}weight_ih_l0' in the state dict; keys: {sorted(state_dict)[:8]} ...")
    return params


@dataclass(frozen=True)
class ActorCriticRecurrent(ActorCritic):
    """RSL-RL's recurrent actor and critic: each ``normaliser -> RNN -> MLP`` (``ActorCriticRecurrent``).

    Params: actor ``{"rnn", "mlp", "std"}`` (no ``"std"`` with a state-dependent std), critic ``{"rnn", "mlp"}``;
    the recurrent state ``ActorCriticHidden(actor=RNNState, critic=RNNState)``. Feed-forward entry points
    (``actor_mean``, ``actor_output``, ``value``) are refused: use :meth:`actor_step` / :meth:`actor_dist_step` /
    :meth:`value_step` (rollout) or :meth:`apply_batch` / :meth:`apply_batch_dist` (update).

    Attributes:
        rnn_type: ``"lstm"`` or ``"gru"``.
        rnn_hidden_dim: RNN state width (the MLP heads' input width).
        rnn_num_layers: stacked RNN layers.
    """

    rnn_type: str = "lstm"
    rnn_hidden_dim: int = 256
    rnn_num_layers: int = 1
    is_recurrent: ClassVar[bool] = True

    def rnn(self, name: str) -> RNN:
        """The RNN of network ``name`` ("actor" or "critic")."""
        return RNN(self.rnn_type.lower(), self.obs_dim(name), self.rnn_hidden_dim, self.rnn_num_layers)

    def init(self, key: PRNGKey) -> ActorCriticParams:
        """Fresh params: actor ``{"rnn", "mlp", "std"}``, critic ``{"rnn", "mlp"}``."""
        k_ar, k_am, k_cr, k_cm = jax.random.split(key, 4)
        latent = jnp.zeros((1, self.rnn_hidden_dim))
        return ActorCriticParams(
            actor={"rnn": self.rnn("actor").init(k_ar), **self.init_actor(k_am, self.rnn_hidden_dim)},
            critic={"rnn": self.rnn("critic").init(k_cr), "mlp": self.critic_mlp.init(k_cm, latent)},
        )

    def init_hidden(self, num_envs: int) -> ActorCriticHidden:
        """Zero state of both networks, ``[num_envs, layers, H]`` per part."""
        return ActorCriticHidden(actor=self.rnn("actor").zero_state((num_envs,)),
                                 critic=self.rnn("critic").zero_state((num_envs,)))

    def actor_output_step(self, params: Params, normalizers, obs: Observation, hidden: RNNState):
        """Raw actor output ``[N, A]`` (heteroscedastic ``[N, 2A]``) for one step, and the actor's new state."""
        x = self.network_input("actor", normalizers, obs)
        latent, hidden = self.rnn("actor").step(params.actor["rnn"], x, hidden)
        return self.actor_mlp.apply(params.actor["mlp"], latent), hidden

    def value_step(self, params: Params, normalizers, obs: Observation, hidden: RNNState):
        """Value ``[N]`` for one step, and the critic's new state."""
        x = self.network_input("critic", normalizers, obs)
        latent, hidden = self.rnn("critic").step(params.critic["rnn"], x, hidden)
        return self.critic_mlp.apply(params.critic["mlp"], latent)[..., 0], hidden

    def actor_sequence_output(self, params: Params, normalizers, obs: Observation, hidden: RNNState,
                              dones: Array) -> Array:
        """Raw actor outputs ``[T, B, A]`` (heteroscedastic ``[T, B, 2A]``) over stored trajectories."""
        xs = self.network_input("actor", normalizers, obs)
        latent = self.rnn("actor").sequence(params.actor["rnn"], xs, hidden, dones)
        return self.actor_mlp.apply(params.actor["mlp"], latent)

    def actor_sequence(self, params: Params, normalizers, obs: Observation, hidden: RNNState, dones: Array) -> Array:
        """Action means ``[T, B, A]`` over stored trajectories (see :meth:`RNN.sequence`)."""
        return self.output_mean(self.actor_sequence_output(params, normalizers, obs, hidden, dones))

    def _critic_sequence(self, params: Params, normalizers, obs: Observation, hidden, dones: Array) -> Array:
        xs = self.network_input("critic", normalizers, obs)
        latent = self.rnn("critic").sequence(params.critic["rnn"], xs, hidden.critic, dones)
        return self.critic_mlp.apply(params.critic["mlp"], latent)[..., 0]

    def apply_batch(self, params: Params, normalizers, obs: Observation, hidden, dones: Array):
        """Means ``[T, B, A]`` and values ``[T, B]`` of a trajectory minibatch (stored states ``[T, B, ...]``)."""
        mean = self.actor_sequence(params, normalizers, obs, hidden.actor, dones)
        return mean, self._critic_sequence(params, normalizers, obs, hidden, dones)

    def apply_batch_dist(self, params: Params, normalizers, obs: Observation, hidden, dones: Array):
        """Means ``[T, B, A]``, stds (``[A]`` or ``[T, B, A]``) and values ``[T, B]`` of a trajectory minibatch."""
        output = self.actor_sequence_output(params, normalizers, obs, hidden.actor, dones)
        mean, std = self.output_distribution(params, output)
        return mean, std, self._critic_sequence(params, normalizers, obs, hidden, dones)

    def actor_output(self, params, normalizers, obs):
        raise TypeError("ActorCriticRecurrent has no feed-forward actor_output; use actor_output_step (with its "
                        "state) or actor_sequence_output")

    def actor_mean(self, params, normalizers, obs):
        raise TypeError("ActorCriticRecurrent has no feed-forward actor_mean; use actor_step (with its state) "
                        "or actor_sequence")

    def value(self, params, normalizers, obs):
        raise TypeError("ActorCriticRecurrent has no feed-forward value; use value_step (with its state)")


def make_actor_critic(rnn_type: str | None = None, rnn_hidden_dim: int = 0, rnn_num_layers: int = 1,
                      **fields) -> ActorCritic:
    """An :class:`ActorCritic` of ``fields``, or with ``rnn_type`` (``lstm`` | ``gru``) an
    :class:`ActorCriticRecurrent` whose actor and critic read their input through that RNN."""
    if rnn_type is None:
        return ActorCritic(**fields)
    return ActorCriticRecurrent(**fields, rnn_type=rnn_type, rnn_hidden_dim=rnn_hidden_dim,
                                rnn_num_layers=rnn_num_layers)


def make_recurrent_inference_fn(networks: ActorCriticRecurrent):
    """``make_policy(params, normalizers, deterministic=True) -> policy(obs, hidden, key=None) -> (actions, hidden)``.

    ``hidden`` is the actor's state (``networks.init_hidden(N).actor`` at the start); zero it for
    finished episodes with :func:`reset_state`.
    """

    def make_policy(params: Params, normalizers, deterministic: bool = True):
        def policy(obs: Observation, hidden: RNNState, key: PRNGKey | None = None):
            if deterministic:
                return networks.actor_step(params, normalizers, obs, hidden)
            (mean, std), hidden = networks.actor_dist_step(params, normalizers, obs, hidden)
            return distributions.sample(key, mean, jnp.broadcast_to(std, mean.shape)), hidden

        return policy

    return make_policy


class StatefulPolicy:
    """A recurrent policy that keeps its state between calls, like RSL-RL's inference policy.

    ``policy(obs) -> actions`` advances the state; ``policy.reset(dones=None)`` zeroes it (all rows, or
    the rows where ``dones`` ``[N]`` holds). The state is created on the first call for that batch size.
    """

    def __init__(self, networks: ActorCriticRecurrent, params: Params, normalizers, deterministic: bool = True):
        self.networks = networks
        self._step = jax.jit(make_recurrent_inference_fn(networks)(params, normalizers, deterministic))
        self.hidden: RNNState | None = None

    def __call__(self, obs: Observation, key: PRNGKey | None = None) -> Array:
        if self.hidden is None:
            batch = next(iter(obs.values())).shape[0]
            self.hidden = self.networks.init_hidden(batch).actor
        actions, self.hidden = self._step(obs, self.hidden, key)
        return actions

    def reset(self, dones: Array | None = None) -> None:
        if dones is None or self.hidden is None:
            self.hidden = None
        else:
            self.hidden = reset_state(self.hidden, jnp.asarray(dones))
