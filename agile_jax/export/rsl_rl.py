"""RSL-RL 5.x checkpoints (``model_<it>.pt``) to and from agile_jax params and normalisers.

RSL-RL's PPO checkpoint is ``{actor_state_dict, critic_state_dict, optimizer_state_dict, iter, infos}``.
An ``MLPModel`` state dict holds (names from ``rsl_rl/models/mlp_model.py``, ``modules/mlp.py``,
``modules/normalization.py``, ``modules/distribution.py``)::

    obs_normalizer._mean / _var / _std  [1, D]     (only with obs_normalization=True)
    obs_normalizer.count                 int64
    distribution.std_param | distribution.log_std_param  [A]   (actor, GaussianDistribution)
    mlp.<2i>.weight [out, in], mlp.<2i>.bias [out]  (Linear layers; activations sit at odd indices)

Flax ``Dense_i.kernel`` is ``mlp.<2i>.weight.T``. Hidden sizes come from the weight shapes; the activation
is not stored in the state dict, so it is read from an Isaac Lab ``params/agent.yaml`` next to the
checkpoint when there is one, else taken from the caller (RSL-RL's default ``elu``).

Activation names and functions agree with RSL-RL's (``crelu`` is CELU, ``gelu`` the exact erf form).
"""

from __future__ import annotations

import os
import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import numpy as np
import optax
import yaml

from agile_jax.export.spec import mlp_layers
from agile_jax.export.torchscript import require_torch
from agile_jax.networks.actor_critic import ActorCritic
from agile_jax.networks.mlp import resolve_activation
from agile_jax.networks.normalization import NormalizerState
from agile_jax.types import Params

_LINEAR = re.compile(r"^mlp\.(\d+)\.weight$")


@dataclass(frozen=True)
class RslRlLayout:
    """Network layout read from an RSL-RL checkpoint.

    Attributes:
        actor_obs_dim, critic_obs_dim: input widths.
        action_size: number of actions.
        actor_hidden_dims, critic_hidden_dims: hidden widths.
        activation: agile_jax activation name.
        noise_std_type: ``"scalar"`` (``std_param``) or ``"log"`` (``log_std_param``).
        actor_obs_normalization, critic_obs_normalization: whether a normaliser is stored.
    """

    actor_obs_dim: int
    critic_obs_dim: int
    action_size: int
    actor_hidden_dims: tuple[int, ...]
    critic_hidden_dims: tuple[int, ...]
    activation: str
    noise_std_type: str
    actor_obs_normalization: bool
    critic_obs_normalization: bool

    def networks(self, obs_shapes: Mapping[str, tuple[int, ...]] | None = None,
                 obs_groups: Mapping[str, list[str]] | None = None) -> ActorCritic:
        """The matching :class:`ActorCritic` (default groups: ``policy`` -> actor, ``critic`` -> critic)."""
        shapes = dict(obs_shapes or {"policy": (self.actor_obs_dim,), "critic": (self.critic_obs_dim,)})
        groups = dict(obs_groups or {"actor": ["policy"], "critic": ["critic"]})
        net = ActorCritic(obs_shapes=shapes, obs_groups=groups, action_size=self.action_size,
                          actor_hidden_dims=self.actor_hidden_dims, critic_hidden_dims=self.critic_hidden_dims,
                          activation=self.activation, noise_std_type=self.noise_std_type,
                          actor_obs_normalization=self.actor_obs_normalization,
                          critic_obs_normalization=self.critic_obs_normalization)
        for name, dim in (("actor", self.actor_obs_dim), ("critic", self.critic_obs_dim)):
            if net.obs_dim(name) != dim:
                raise ValueError(f"obs_shapes/obs_groups give the {name} {net.obs_dim(name)} inputs, "
                                 f"the checkpoint expects {dim}")
        return net


class RslRlCheckpoint(NamedTuple):
    """An RSL-RL checkpoint in agile_jax form."""

    layout: RslRlLayout
    params: Params
    normalizers: dict[str, NormalizerState]
    iteration: int
    infos: Any


# -- RSL-RL -> agile_jax ----------------------------------------------------------------------------


def _numpy(sd: Mapping, key: str) -> np.ndarray:
    value = sd[key]
    return value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)


def _mlp_from_state_dict(sd: Mapping, what: str) -> dict:
    """Flax MLP params ``{"params": {"Dense_i": ...}}`` from the ``mlp.<j>.*`` entries of a state dict."""
    indices = sorted(int(m.group(1)) for key in sd if (m := _LINEAR.match(key)))
    if not indices:
        raise ValueError(f"{what}: no 'mlp.<i>.weight' entries; only RSL-RL MLPModel checkpoints are supported "
                         f"(keys: {sorted(sd)[:8]} ...)")
    unknown = [k for k in sd if k.startswith("mlp.") and not re.match(r"^mlp\.\d+\.(weight|bias)$", k)]
    if unknown:
        raise ValueError(f"{what}: unsupported MLP entries {unknown}")
    return {"params": {f"Dense_{i}": {"kernel": np.ascontiguousarray(_numpy(sd, f"mlp.{j}.weight").T),
                                      "bias": _numpy(sd, f"mlp.{j}.bias")}
                       for i, j in enumerate(indices)}}


def _normalizer_from_state_dict(sd: Mapping) -> NormalizerState | None:
    if "obs_normalizer._mean" not in sd:
        return None
    return NormalizerState(mean=_numpy(sd, "obs_normalizer._mean").reshape(-1).astype(np.float32),
                           var=_numpy(sd, "obs_normalizer._var").reshape(-1).astype(np.float32),
                           count=np.asarray(_numpy(sd, "obs_normalizer.count"), np.float32))


def _std_from_state_dict(sd: Mapping) -> tuple[np.ndarray, str]:
    for key, std_type in (("distribution.std_param", "scalar"), ("distribution.log_std_param", "log")):
        if key in sd:
            return _numpy(sd, key).astype(np.float32), std_type
    raise ValueError("actor_state_dict has no 'distribution.std_param' / 'distribution.log_std_param': only "
                     "RSL-RL's GaussianDistribution (state-independent std) can be imported")


class _AnyTagLoader(yaml.SafeLoader):
    """A safe YAML loader that reads Python-tagged nodes (``!!python/tuple`` ...) as plain data."""


def _plain_node(loader, suffix, node):
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_scalar(node)


_AnyTagLoader.add_multi_constructor("", _plain_node)


def activation_from_run_dir(checkpoint_path: str) -> str | None:
    """The actor activation in an Isaac Lab ``params/agent.yaml`` beside ``checkpoint_path``, if any."""
    run_dir = os.path.dirname(os.path.abspath(checkpoint_path))
    for path in (os.path.join(run_dir, "params", "agent.yaml"), os.path.join(run_dir, "agent.yaml")):
        if os.path.isfile(path):
            with open(path) as f:
                cfg = yaml.load(f, Loader=_AnyTagLoader) or {}
            for section in ("actor", "policy"):  # RSL-RL 5.x, then the older ActorCritic layout
                if isinstance(cfg.get(section), dict) and cfg[section].get("activation"):
                    return str(cfg[section]["activation"])
    return None


def import_activation(name: str) -> str:
    """agile_jax's name for RSL-RL activation ``name`` (the names are shared; unknown ones are refused)."""
    name = name.lower()
    resolve_activation(name)
    return name


def load_checkpoint(checkpoint: str | Mapping, activation: str | None = None) -> RslRlCheckpoint:
    """Reads an RSL-RL PPO checkpoint into agile_jax params and normalisers.

    Args:
        checkpoint: path to ``model_<it>.pt`` or the loaded dict.
        activation: RSL-RL activation name; ``None``: from ``params/agent.yaml`` next to the file, else ``elu``.

    Returns:
        ``RslRlCheckpoint(layout, params, normalizers, iteration, infos)``; ``layout.networks(...)`` builds
        the matching :class:`ActorCritic`.
    """
    torch = require_torch()
    if isinstance(checkpoint, str):
        activation = activation or activation_from_run_dir(checkpoint)
        checkpoint = torch.load(checkpoint, map_location="cpu", weights_only=False)
    for key in ("actor_state_dict", "critic_state_dict"):
        if key not in checkpoint:
            raise ValueError(f"not an RSL-RL PPO checkpoint: '{key}' missing (keys: {sorted(checkpoint)})")
    actor_sd, critic_sd = checkpoint["actor_state_dict"], checkpoint["critic_state_dict"]
    actor, critic = _mlp_from_state_dict(actor_sd, "actor"), _mlp_from_state_dict(critic_sd, "critic")
    std, std_type = _std_from_state_dict(actor_sd)
    normalizers = {name: n for name, sd in (("actor", actor_sd), ("critic", critic_sd))
                   if (n := _normalizer_from_state_dict(sd)) is not None}
    a_layers, c_layers = mlp_layers(actor), mlp_layers(critic)
    layout = RslRlLayout(
        actor_obs_dim=a_layers[0][0].shape[0], critic_obs_dim=c_layers[0][0].shape[0],
        action_size=a_layers[-1][1].shape[0], actor_hidden_dims=tuple(b.shape[0] for _, b in a_layers[:-1]),
        critic_hidden_dims=tuple(b.shape[0] for _, b in c_layers[:-1]),
        activation=import_activation(activation or "elu"), noise_std_type=std_type,
        actor_obs_normalization="actor" in normalizers, critic_obs_normalization="critic" in normalizers)
    params = {"actor": {"mlp": actor, "std": std}, "critic": {"mlp": critic}}
    return RslRlCheckpoint(layout, jax.tree.map(np.asarray, params), normalizers,
                           int(checkpoint.get("iter", 0) or 0), checkpoint.get("infos"))


# -- agile_jax -> RSL-RL ----------------------------------------------------------------------------


def _state_dict(torch, mlp: Mapping, normalizer: NormalizerState | None, std: tuple[str, Any] | None) -> OrderedDict:
    """An ``MLPModel`` state dict (RSL-RL's key order) from Flax MLP params."""
    sd: OrderedDict = OrderedDict()
    if normalizer is not None:
        mean, var = np.array(normalizer.mean, np.float32)[None], np.array(normalizer.var, np.float32)[None]
        sd["obs_normalizer._mean"], sd["obs_normalizer._var"] = torch.from_numpy(mean), torch.from_numpy(var)
        sd["obs_normalizer._std"] = torch.sqrt(torch.from_numpy(var.copy()))
        sd["obs_normalizer.count"] = torch.tensor(int(round(float(np.asarray(normalizer.count)))), dtype=torch.long)
    if std is not None:
        sd[f"distribution.{std[0]}"] = torch.from_numpy(np.array(std[1], np.float32))
    for i, (kernel, bias) in enumerate(mlp_layers(mlp)):
        sd[f"mlp.{2 * i}.weight"] = torch.from_numpy(np.array(kernel.T, np.float32, order="C"))
        sd[f"mlp.{2 * i}.bias"] = torch.from_numpy(np.array(bias))
    return sd


def _adam_state(opt_state: Any):
    """The ``ScaleByAdamState`` inside an optax state, or ``None``."""
    found = [x for x in jax.tree.leaves(opt_state, is_leaf=lambda x: isinstance(x, optax.ScaleByAdamState))
             if isinstance(x, optax.ScaleByAdamState)]
    return found[0] if found else None


def _optimizer_state_dict(torch, actor_sd: Mapping, critic_sd: Mapping, opt_state: Any, learning_rate: float) -> dict:
    """A ``torch.optim.Adam`` state dict over RSL-RL's parameter order, moments copied from optax's Adam."""
    names = [("actor", k) for k in actor_sd if not k.startswith("obs_normalizer")]
    names += [("critic", k) for k in critic_sd if not k.startswith("obs_normalizer")]
    tensors = [(actor_sd if net == "actor" else critic_sd)[k] for net, k in names]
    optimizer = torch.optim.Adam([torch.nn.Parameter(t.clone()) for t in tensors], lr=float(learning_rate))
    state = optimizer.state_dict()
    adam = _adam_state(opt_state) if opt_state is not None else None
    if adam is not None:
        moments = {"mu": _state_dict(torch, adam.mu["actor"]["mlp"], None, ("std", adam.mu["actor"]["std"])),
                   "nu": _state_dict(torch, adam.nu["actor"]["mlp"], None, ("std", adam.nu["actor"]["std"]))}
        critic = {"mu": _state_dict(torch, adam.mu["critic"]["mlp"], None, None),
                  "nu": _state_dict(torch, adam.nu["critic"]["mlp"], None, None)}
        step = torch.tensor(float(np.asarray(adam.count)), dtype=torch.float32)
        for i, (net, key) in enumerate(names):
            src = moments if net == "actor" else critic
            key_m = re.sub(r"^distribution\.(log_)?std_param$", "distribution.std", key)
            state["state"][i] = {"step": step.clone(), "exp_avg": src["mu"][key_m].clone(),
                                 "exp_avg_sq": src["nu"][key_m].clone()}
    return state


def to_checkpoint(networks: ActorCritic, params: Params, normalizers: Mapping[str, NormalizerState],
                  iteration: int = 0, opt_state: Any = None, learning_rate: float | None = None,
                  infos: Any = None) -> dict:
    """An RSL-RL PPO checkpoint dict that ``rsl_rl.runners.OnPolicyRunner.load`` accepts.

    The RSL-RL models must be built with ``hidden_dims``, ``activation`` (RSL-RL names),
    ``obs_normalization`` and ``distribution_cfg={"class_name": "GaussianDistribution", "std_type":
    networks.noise_std_type}`` matching ``networks``.

    Args:
        networks, params, normalizers: the agile_jax actor-critic.
        iteration: stored as ``iter``.
        opt_state: optional optax state; its Adam moments become the torch Adam state (fresh otherwise).
        learning_rate: Adam learning rate (default: the one injected in ``opt_state``, else 1e-3).
        infos: stored as ``infos``.
    """
    torch = require_torch()
    std_key = "std_param" if networks.noise_std_type == "scalar" else "log_std_param"
    params = jax.device_get(params)
    actor_sd = _state_dict(torch, params["actor"]["mlp"], normalizers.get("actor"), (std_key, params["actor"]["std"]))
    critic_sd = _state_dict(torch, params["critic"]["mlp"], normalizers.get("critic"), None)
    if learning_rate is None:
        hyper = getattr(opt_state[1], "hyperparams", {}) if isinstance(opt_state, tuple) and len(opt_state) > 1 else {}
        learning_rate = float(np.asarray(hyper.get("learning_rate", 1e-3)))
    optimizer = _optimizer_state_dict(torch, actor_sd, critic_sd, jax.device_get(opt_state), learning_rate)
    return {"actor_state_dict": actor_sd, "critic_state_dict": critic_sd, "optimizer_state_dict": optimizer,
            "iter": int(iteration), "infos": infos}


def save_checkpoint(path: str, networks: ActorCritic, params: Params, normalizers: Mapping[str, NormalizerState],
                    **kwargs) -> str:
    """Writes :func:`to_checkpoint` (``kwargs`` forwarded) to ``path`` (e.g. ``model_<it>.pt``); returns it."""
    torch = require_torch()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    torch.save(to_checkpoint(networks, params, normalizers, **kwargs), path)
    return path
