"""RSL-RL 5.x model state dicts (``MLPModel``, ``RNNModel``) to and from agile_jax network params.

A model state dict holds (names from ``rsl_rl/models/{mlp,rnn}_model.py`` and ``rsl_rl/modules``)::

    obs_normalizer._mean / _var / _std  [1, D], obs_normalizer.count   (only with obs_normalization=True)
    distribution.std_param | distribution.log_std_param  [A]            (GaussianDistribution actors)
    mlp.<2i>.weight [out, in], mlp.<2i>.bias [out]                      (Linear layers; activations at odd i)
    rnn.rnn.weight_ih_l<k> [G*H, D], weight_hh_l<k> [G*H, H], bias_ih_l<k>, bias_hh_l<k>   (RNNModel; G = 4 LSTM, 3 GRU)

A ``HeteroscedasticGaussianDistribution`` actor stores no distribution entry: its last Linear has ``2A`` outputs
(mean, then std parameter). Whether that parameter is the std or its log is not stored (``params/agent.yaml``
says it). A ``CNNModel`` adds ``cnns.<group>.<j>.*`` entries; its strides, paddings and pooling are not stored, so
it is read against a network built from the run's ``cnn_cfg`` (see :mod:`agile_jax.networks.cnn_actor_critic`).

The agile_jax side of one network is ``{"mlp": {"params": {"Dense_i": {"kernel": W.T, "bias": b}}}, "std": [A],
"rnn": {"layer_k": ...}}`` (``std`` and ``rnn`` where they exist), as in :mod:`agile_jax.networks.actor_critic`.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from agile_jax.export.spec import mlp_layers
from agile_jax.networks import distributions
from agile_jax.networks.normalization import NormalizerState
from agile_jax.networks.recurrent import GATES, rnn_from_torch, rnn_to_torch
from agile_jax.types import Params

_LINEAR = re.compile(r"^mlp\.(\d+)\.weight$")
RNN_PREFIX = "rnn.rnn."
STD_KEYS = {"distribution.std_param": "scalar", "distribution.log_std_param": "log"}


@dataclass(frozen=True)
class ModelLayout:
    """What one RSL-RL model state dict says about its network.

    Attributes:
        class_name: ``"MLPModel"``, ``"RNNModel"`` or ``"CNNModel"``.
        input_dim: width of the (1-D) input of the normaliser / RNN / MLP (CNNModel: the MLP's input).
        output_dim: actions of an actor (``A``, also for a heteroscedastic one), 1 for a critic.
        hidden_dims: MLP hidden widths.
        distribution_class: RSL-RL distribution class of an actor (``None``: no distribution, a critic).
        std_type: ``"scalar"`` / ``"log"`` for a Gaussian; ``None`` when the file does not say (heteroscedastic).
        normalized: an observation normaliser is stored.
        rnn_type, rnn_hidden_dim, rnn_num_layers: the RNN of an ``RNNModel`` (``None`` / 0 otherwise).
    """

    class_name: str
    input_dim: int
    output_dim: int
    hidden_dims: tuple[int, ...]
    distribution_class: str | None
    std_type: str | None
    normalized: bool
    rnn_type: str | None = None
    rnn_hidden_dim: int = 0
    rnn_num_layers: int = 0


def to_numpy(value: Any) -> np.ndarray:
    """A float32 NumPy copy of a torch tensor or array."""
    return np.array(value.detach().cpu().numpy() if hasattr(value, "detach") else value, np.float32)


def model_class(sd: Mapping) -> str:
    """``"CNNModel"`` / ``"RNNModel"`` / ``"MLPModel"`` from the entries of a model state dict."""
    if any(k.startswith("cnns.") for k in sd):
        return "CNNModel"
    return "RNNModel" if RNN_PREFIX + "weight_ih_l0" in sd else "MLPModel"


def mlp_from_state_dict(sd: Mapping, what: str) -> dict:
    """Flax MLP params ``{"params": {"Dense_i": ...}}`` from the ``mlp.<j>.*`` entries of a state dict."""
    indices = sorted(int(m.group(1)) for key in sd if (m := _LINEAR.match(key)))
    if not indices:
        raise ValueError(f"{what}: no 'mlp.<i>.weight' entries, so this is not an RSL-RL MLPModel / RNNModel / "
                         f"CNNModel state dict (keys: {sorted(sd)[:8]} ...)")
    unknown = [k for k in sd if k.startswith("mlp.") and not re.match(r"^mlp\.\d+\.(weight|bias)$", k)]
    if unknown:
        raise ValueError(f"{what}: unsupported MLP entries {unknown}")
    return {"params": {f"Dense_{i}": {"kernel": np.ascontiguousarray(to_numpy(sd[f"mlp.{j}.weight"]).T),
                                      "bias": to_numpy(sd[f"mlp.{j}.bias"])}
                       for i, j in enumerate(indices)}}


def normalizer_from_state_dict(sd: Mapping) -> NormalizerState | None:
    """The ``obs_normalizer`` statistics of a state dict, or ``None`` without a normaliser."""
    if "obs_normalizer._mean" not in sd:
        return None
    return NormalizerState(mean=to_numpy(sd["obs_normalizer._mean"]).reshape(-1),
                           var=to_numpy(sd["obs_normalizer._var"]).reshape(-1),
                           count=np.asarray(to_numpy(sd["obs_normalizer.count"]), np.float32))


def _rnn_layout(sd: Mapping, what: str) -> tuple[str, int, int]:
    """``(rnn_type, hidden, layers)`` of an ``RNNModel`` state dict (gates from the weight shapes)."""
    hidden = int(sd[RNN_PREFIX + "weight_hh_l0"].shape[1])
    gates = int(sd[RNN_PREFIX + "weight_ih_l0"].shape[0]) // hidden
    rnn_type = {g: t for t, g in GATES.items()}.get(gates)
    if rnn_type is None:
        raise ValueError(f"{what}: an RNN with {gates} gates is neither an LSTM (4) nor a GRU (3)")
    layers = sum(1 for k in sd if re.match(rf"^{re.escape(RNN_PREFIX)}weight_ih_l\d+$", k))
    return rnn_type, hidden, layers


def read_model(sd: Mapping, what: str, actor: bool) -> tuple[ModelLayout, Params, NormalizerState | None]:
    """``(layout, network params, normaliser or None)`` of an RSL-RL ``MLPModel`` / ``RNNModel`` state dict.

    Args:
        sd: the model state dict (torch tensors or arrays).
        what: name for messages (``"actor"``, ``"critic"`` ...).
        actor: read the distribution (an actor); a critic has none.

    Raises:
        ValueError: not a model state dict, or an RNN that is neither LSTM nor GRU (one line).
    """
    class_name = model_class(sd)
    mlp = mlp_from_state_dict(sd, what)
    layers = mlp_layers(mlp)
    params: dict = {"mlp": mlp}
    rnn_type, rnn_hidden, rnn_layers = None, 0, 0
    if class_name == "RNNModel":
        rnn_type, rnn_hidden, rnn_layers = _rnn_layout(sd, what)
        params["rnn"] = {name: {k: np.asarray(v) for k, v in layer.items()}
                         for name, layer in rnn_from_torch(sd, RNN_PREFIX).items()}
    out_dim, dist, std_type = int(layers[-1][1].shape[0]), None, None
    if actor:
        std_key = next((k for k in STD_KEYS if k in sd), None)
        if std_key is not None:
            dist, std_type, params["std"] = distributions.GAUSSIAN, STD_KEYS[std_key], to_numpy(sd[std_key])
        else:  # no parameter: the std comes from the MLP's second half
            dist, out_dim = distributions.HETEROSCEDASTIC, out_dim // 2
    first = sd[RNN_PREFIX + "weight_ih_l0"].shape[1] if class_name == "RNNModel" else layers[0][0].shape[0]
    layout = ModelLayout(class_name=class_name, input_dim=int(first), output_dim=out_dim,
                         hidden_dims=tuple(int(b.shape[0]) for _, b in layers[:-1]), distribution_class=dist,
                         std_type=std_type, normalized="obs_normalizer._mean" in sd, rnn_type=rnn_type,
                         rnn_hidden_dim=rnn_hidden, rnn_num_layers=rnn_layers)
    return layout, params, normalizer_from_state_dict(sd)


def model_state_dict(torch, net: Mapping, normalizer: NormalizerState | None, std_key: str | None) -> OrderedDict:
    """An ``MLPModel`` / ``RNNModel`` state dict in RSL-RL's key order from one network's params.

    The order (normaliser buffers, distribution, MLP, RNN) is the modules' registration order, so the entries
    without ``obs_normalizer`` list the parameters in ``model.parameters()`` order (what torch's optimiser state
    is indexed by). The same call on a tree of Adam moments shaped like the params gives the moments by name.

    Args:
        torch: the torch module.
        net: ``{"mlp", "std"?, "rnn"?}`` of one network (arrays).
        normalizer: its normaliser, or ``None``.
        std_key: ``"std_param"`` / ``"log_std_param"`` for a Gaussian actor's ``net["std"]``; ``None`` otherwise.
    """
    sd: OrderedDict = OrderedDict()
    if normalizer is not None:
        mean, var = np.array(normalizer.mean, np.float32)[None], np.array(normalizer.var, np.float32)[None]
        sd["obs_normalizer._mean"], sd["obs_normalizer._var"] = torch.from_numpy(mean), torch.from_numpy(var)
        sd["obs_normalizer._std"] = torch.sqrt(torch.from_numpy(var.copy()))
        sd["obs_normalizer.count"] = torch.tensor(int(round(float(np.asarray(normalizer.count)))), dtype=torch.long)
    if std_key is not None:
        sd[f"distribution.{std_key}"] = torch.from_numpy(np.array(net["std"], np.float32))
    for i, (kernel, bias) in enumerate(mlp_layers(net["mlp"])):
        sd[f"mlp.{2 * i}.weight"] = torch.from_numpy(np.array(kernel.T, np.float32, order="C"))
        sd[f"mlp.{2 * i}.bias"] = torch.from_numpy(np.array(bias))
    if "rnn" in net:
        # torch.nn.LSTM / GRU register weight_ih, weight_hh, bias_ih, bias_hh per layer.
        tensors = rnn_to_torch(net["rnn"])
        for layer in range(len(net["rnn"])):
            for part in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                sd[f"{RNN_PREFIX}{part}_l{layer}"] = torch.from_numpy(np.array(tensors[f"{part}_l{layer}"]))
    return sd
