"""Framework-neutral description of a deterministic policy, the common input of every exporter.

A :class:`PolicySpec` holds NumPy copies of everything the deployed graph needs: the observation
normaliser, the layers and the activation. The ONNX and TorchScript builders read only this, so a new
network kind adds one spec ``kind`` plus one body builder per format, and declares its carried state in
``state`` (``h`` -> inputs ``h_in`` / outputs ``h_out``). Recurrent actors (kinds ``"lstm"`` / ``"gru"``) carry
``h`` (and ``c``) of shape ``[layers, 1, H]`` like RSL-RL's exports and hold their RNN weights in ``rnn``.
``input_index`` reorders the graph input before anything else (AGILE's term-major history layout -> the env's
frame-major one), so the deployed graph reads the layout ``policy.yaml`` describes. A policy with a state
estimator (``params.estimator``) holds it in ``estimator``: the graph appends ``estimator(x[..., columns])`` to
the normalised input ``x`` before the actor's layers.

A CNN policy (kind ``"cnn"``, :func:`cnn_policy_spec`) keeps the single flat input of every other policy,
``obs [B, D]``: the actor's groups flattened and concatenated in ``obs_groups`` order, a 2-D group ``[C, H, W]``
flattened C-major (``c * H * W + h * W + w``, what ``reshape(B, -1)`` of an NCHW tensor gives); each 2-D group has
an :class:`EncoderSpec`. ``policy.yaml`` lists each group's ``start`` / ``end`` columns and, for a 2-D group, its
``shape``. (RSL-RL's own export takes the 1-D part as ``obs`` and each 2-D group as an input of its own; the flat
input keeps ``policy.yaml``, the evaluators and the parity gate the same for every policy kind.)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from agile_jax.networks.actor_critic import ActorCritic
from agile_jax.networks.cnn import CNN
from agile_jax.networks.normalization import NormalizerState
from agile_jax.networks.records import EstimatorParams
from agile_jax.types import Params

NORMALIZER_EPS = 1e-2


@dataclass(frozen=True)
class StateSpec:
    """One recurrent state tensor carried between calls.

    Attributes:
        name: base name; the graph reads ``<name>_in`` and writes ``<name>_out`` (``h``, ``c``).
        shape: full shape including the batch axis, e.g. ``(layers, 1, hidden)`` as in RSL-RL.
    """

    name: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class EstimatorSpec:
    """A state estimator inside the policy: ``estimate = MLP(x[..., columns])`` on the normalised input ``x``.

    Attributes:
        columns: ``[D_e]`` int64, the columns of the normalised (env-layout) input the estimator reads.
        layers: ``(kernel [in, out], bias [out])`` per Dense layer, float32 (activation: the policy's).
    """

    columns: np.ndarray
    layers: tuple[tuple[np.ndarray, np.ndarray], ...]

    @property
    def output_dim(self) -> int:
        """Width ``K`` of the estimate."""
        return int(self.layers[-1][1].shape[0])


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


@dataclass(frozen=True)
class PolicySpec:
    """A deterministic policy ``obs [B, D] -> actions [B, A]`` as plain arrays.

    Attributes:
        kind: network kind: ``"mlp"``, ``"lstm"`` or ``"gru"``.
        obs_dim: width ``D`` of the concatenated observation.
        action_dim: width ``A`` of the action.
        layers: ``(kernel [in, out], bias [out])`` per Dense layer, float32.
        activation: RSL-RL activation name used between layers.
        obs_mean: normaliser mean ``[D]`` or ``None`` (no normaliser).
        obs_denominator: ``sqrt(var) + eps`` ``[D]`` or ``None``.
        obs_groups: env observation groups concatenated into ``obs``, in order.
        obs_group_dims: flattened width of each of ``obs_groups``.
        state: recurrent state tensors (empty for an MLP).
        rnn: recurrent layers (``"lstm"`` / ``"gru"`` kinds): per layer ``{"kernel_ih" [in, G*H], "kernel_hh"
            [H, G*H], "bias_ih", "bias_hh"}`` with PyTorch's gate order; the MLP ``layers`` read its output.
        metadata: free-form strings/numbers recorded in the exported files.
        input_index: ``[D]`` int64 or ``None``: the graph's first op is ``x = obs[..., input_index]``, mapping the
            exported input layout onto the env layout the network was trained on.
        estimator: the state estimator whose estimate is appended to the actor's input, or ``None``.
        encoders: kind ``"cnn"``: the CNN of each 2-D group (:class:`EncoderSpec`); the MLP
            reads the input's ``columns_1d`` (``[D_1d]`` int64) followed by every encoder's features.
    """

    kind: str
    obs_dim: int
    action_dim: int
    layers: tuple[tuple[np.ndarray, np.ndarray], ...]
    activation: str
    obs_mean: np.ndarray | None = None
    obs_denominator: np.ndarray | None = None
    obs_groups: tuple[str, ...] = ("policy",)
    obs_group_dims: tuple[int, ...] = ()
    state: tuple[StateSpec, ...] = ()
    rnn: tuple[dict, ...] = ()
    metadata: dict = field(default_factory=dict)
    input_index: np.ndarray | None = None
    estimator: EstimatorSpec | None = None
    encoders: tuple = ()
    columns_1d: np.ndarray | None = None

    @property
    def hidden_dims(self) -> tuple[int, ...]:
        """Output widths of all layers but the last."""
        return tuple(int(b.shape[0]) for _, b in self.layers[:-1])

    @property
    def normalized(self) -> bool:
        return self.obs_mean is not None

    @property
    def rnn_hidden_dim(self) -> int:
        """Width ``H`` of the recurrent state (0 for an MLP)."""
        return int(self.rnn[0]["kernel_hh"].shape[0]) if self.rnn else 0

    @property
    def hidden_shape(self) -> tuple[int, ...]:
        """Shape of the one packed state tensor of the explicit-state TorchScript call (``()`` for an MLP).

        ``[S, 1, H]`` with ``S = layers`` (GRU: ``h``) or ``2 * layers`` (LSTM: ``h`` rows, then ``c`` rows).
        """
        if not self.state:
            return ()
        return (len(self.state) * self.state[0].shape[0], 1, self.rnn_hidden_dim)

    def describe(self) -> dict:
        """A JSON-friendly summary (layout, not weights)."""
        return {
            "kind": self.kind, "obs_dim": self.obs_dim, "action_dim": self.action_dim,
            "hidden_dims": list(self.hidden_dims), "activation": self.activation,
            "obs_normalization": self.normalized, "normalizer_eps": NORMALIZER_EPS,
            "obs_groups": list(self.obs_groups), "obs_group_dims": list(self.obs_group_dims),
            "state": [{"name": s.name, "shape": list(s.shape)} for s in self.state],
            "input_reordered": self.input_index is not None,
            **({"estimator": {"input_dim": int(len(self.estimator.columns)), "output_dim": self.estimator.output_dim,
                              "hidden_dims": [int(b.shape[0]) for _, b in self.estimator.layers[:-1]]}}
               if self.estimator is not None else {}),
            **({"rnn_type": self.kind, "rnn_hidden_dim": self.rnn_hidden_dim, "rnn_num_layers": len(self.rnn)}
               if self.rnn else {}),
            **({"obs_dim_1d": int(len(self.columns_1d)), "encoders": [e.describe() for e in self.encoders]}
               if self.encoders else {}),
        }


def mlp_layers(mlp_params: Mapping) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """``(kernel, bias)`` pairs of a Flax MLP's ``Dense_0 .. Dense_k`` in order.

    Args:
        mlp_params: ``{"params": {"Dense_i": {"kernel": [in, out], "bias": [out]}}}`` (or the inner dict).
    """
    inner = mlp_params.get("params", mlp_params)
    count = len([k for k in inner if k.startswith("Dense_")])
    if count == 0 or any(f"Dense_{i}" not in inner for i in range(count)):
        raise ValueError(f"expected Flax MLP params Dense_0..Dense_k, got keys {sorted(inner)}")
    return tuple(
        (np.asarray(inner[f"Dense_{i}"]["kernel"], np.float32), np.asarray(inner[f"Dense_{i}"]["bias"], np.float32))
        for i in range(count)
    )


def policy_spec(networks: ActorCritic, params: Params, normalizers: Mapping[str, NormalizerState],
                metadata: Mapping | None = None) -> PolicySpec:
    """The deterministic actor of ``networks`` (Gaussian mean, normaliser baked in) as a :class:`PolicySpec`.

    Args:
        networks: the actor-critic structure.
        params: the networks' params record (``params.actor``: ``{"mlp": ..., "std": [A]}``).
        normalizers: ``{"actor": NormalizerState}`` when the actor normalises its input.
        metadata: extra entries for the exported files (e.g. ``{"joint_names": [...]}``).
    """
    if getattr(networks, "actor_encoders", None):  # CNN encoders on 2-D groups
        return cnn_policy_spec(networks, params, normalizers, metadata)
    layers = mlp_layers(networks.mean_mlp_params(params))  # a heteroscedastic actor exports its mean half
    groups = tuple(networks.obs_groups["actor"])
    dims = tuple(int(np.prod(networks.obs_shapes[g])) for g in groups)
    mean = denom = None
    rnn, carried, kind = (), (), "mlp"
    if networks.is_recurrent:
        rnn, carried, kind = recurrent_layers(params.actor["rnn"], networks.rnn_type)
    if "actor" in normalizers:
        state = normalizers["actor"]
        # Same float32 arithmetic as normalization.normalize: (x - mean) / (sqrt(var) + eps).
        mean = np.asarray(state.mean, np.float32)
        denom = np.sqrt(np.asarray(state.var, np.float32)) + np.float32(NORMALIZER_EPS)
    estimator = None
    if isinstance(params, EstimatorParams):  # an encoder whose output the actor reads (networks/column_encoder.py)
        estimator = EstimatorSpec(columns=np.asarray(networks.estimator_columns, np.int64),
                                  layers=mlp_layers(params.estimator["mlp"]))
    spec = PolicySpec(kind=kind, obs_dim=sum(dims), action_dim=int(networks.action_size), layers=layers,
                      activation=networks.activation.lower(), obs_mean=mean, obs_denominator=denom,
                      obs_groups=groups, obs_group_dims=dims, state=carried, rnn=rnn, metadata=dict(metadata or {}),
                      estimator=estimator)
    _check_layers(spec)
    return spec


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


def recurrent_layers(rnn_params: Mapping, rnn_type: str) -> tuple[tuple[dict, ...], tuple[StateSpec, ...], str]:
    """``(rnn layers, state specs, kind)`` of a recurrent actor's RNN params (state ``[layers, 1, H]``)."""
    layers = tuple({name: np.asarray(value, np.float32) for name, value in rnn_params[f"layer_{k}"].items()}
                   for k in range(len(rnn_params)))
    shape = (len(layers), 1, int(layers[0]["kernel_hh"].shape[0]))
    names = ("h", "c") if rnn_type == "lstm" else ("h",)
    return layers, tuple(StateSpec(n, shape) for n in names), rnn_type


def _check_layers(spec: PolicySpec) -> None:
    """Refuses layer shapes that do not chain from ``obs_dim`` (or the RNN state, plus the estimate) to
    ``action_dim``."""
    width = spec.rnn_hidden_dim or spec.obs_dim
    if spec.estimator is not None:
        if spec.rnn or len(spec.estimator.columns) == 0 or int(spec.estimator.columns.max()) >= spec.obs_dim:
            raise ValueError("the estimator needs a feed-forward policy and reads columns of the observation")
        _check_chain(spec.estimator.layers, len(spec.estimator.columns), spec.estimator.output_dim, "estimator ")
        width += spec.estimator.output_dim
    _check_chain(spec.layers, width, spec.action_dim, "")


def _check_chain(layers, width: int, out: int, name: str) -> None:
    for i, (kernel, bias) in enumerate(layers):
        if kernel.shape[0] != width or bias.shape != (kernel.shape[1],):
            raise ValueError(f"{name}layer {i}: kernel {kernel.shape} / bias {bias.shape} do not follow width {width}")
        width = kernel.shape[1]
    if width != out:
        raise ValueError(f"the last {name}layer outputs {width} values but {out} are expected")
