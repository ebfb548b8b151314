"""RSL-RL 5.x checkpoints (``model_<it>.pt``) to and from agile_jax params and normalisers.

RSL-RL's PPO checkpoint is ``{actor_state_dict, critic_state_dict, optimizer_state_dict, iter, infos}`` (a
distillation checkpoint has ``student_state_dict`` / ``teacher_state_dict``). Actor and critic may be
``MLPModel`` s or ``RNNModel`` s (LSTM / GRU), the actor's distribution a ``GaussianDistribution`` (std
parameter) or a ``HeteroscedasticGaussianDistribution`` (state-dependent std); the state-dict layouts are in
:mod:`agile_jax.export.rsl_rl_models`. Flax ``Dense_i.kernel`` is ``mlp.<2i>.weight.T``. Hidden sizes come from the
weight shapes; the activation (and a heteroscedastic std's ``std_type``) are not stored in the state dict, so they
are read from an Isaac Lab ``params/agent.yaml`` next to the checkpoint when there is one, else taken from the
caller (RSL-RL's defaults ``elu`` / ``scalar``).

Activation names and functions agree with RSL-RL's (``crelu`` is CELU, ``gelu`` the exact erf form).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import numpy as np
import optax
import yaml

from agile_jax.export.rsl_rl_models import ModelLayout, model_state_dict, read_model
from agile_jax.export.torchscript import require_torch
from agile_jax.networks import distributions
from agile_jax.networks.actor_critic import ActorCritic
from agile_jax.networks.mlp import resolve_activation
from agile_jax.networks.normalization import NormalizerState
from agile_jax.networks.records import ActorCriticParams
from agile_jax.networks.recurrent import make_actor_critic
from agile_jax.types import Params


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
        distribution_class: the actor's distribution (``GaussianDistribution`` /
            ``HeteroscedasticGaussianDistribution``).
        rnn_type, rnn_hidden_dim, rnn_num_layers: the RNN of ``RNNModel`` actor and critic (``None``: MLPs).
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
    distribution_class: str = distributions.GAUSSIAN
    rnn_type: str | None = None
    rnn_hidden_dim: int = 0
    rnn_num_layers: int = 0

    def networks(self, obs_shapes: Mapping[str, tuple[int, ...]] | None = None,
                 obs_groups: Mapping[str, list[str]] | None = None) -> ActorCritic:
        """The matching :class:`ActorCritic` / :class:`ActorCriticRecurrent` (default groups: ``policy`` -> actor,
        ``critic`` -> critic)."""
        shapes = dict(obs_shapes or {"policy": (self.actor_obs_dim,), "critic": (self.critic_obs_dim,)})
        groups = dict(obs_groups or {"actor": ["policy"], "critic": ["critic"]})
        fields = dict(obs_shapes=shapes, obs_groups=groups, action_size=self.action_size,
                      actor_hidden_dims=self.actor_hidden_dims, critic_hidden_dims=self.critic_hidden_dims,
                      activation=self.activation, noise_std_type=self.noise_std_type,
                      actor_obs_normalization=self.actor_obs_normalization,
                      critic_obs_normalization=self.critic_obs_normalization,
                      distribution_class=self.distribution_class)
        net = make_actor_critic(self.rnn_type, self.rnn_hidden_dim, self.rnn_num_layers, **fields)
        for name, dim in (("actor", self.actor_obs_dim), ("critic", self.critic_obs_dim)):
            if net.obs_dim(name) != dim:
                raise ValueError(f"obs_shapes/obs_groups give the {name} {net.obs_dim(name)} inputs, "
                                 f"the checkpoint expects {dim}")
        return net


class RslRlCheckpoint(NamedTuple):
    """An RSL-RL checkpoint in agile_jax form."""

    layout: RslRlLayout
    params: ActorCriticParams
    normalizers: dict[str, NormalizerState]
    iteration: int
    infos: Any


# -- RSL-RL -> agile_jax ----------------------------------------------------------------------------


class _AnyTagLoader(yaml.SafeLoader):
    """A safe YAML loader that reads Python-tagged nodes (``!!python/tuple`` ...) as plain data."""


def _plain_node(loader, suffix, node):
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_scalar(node)


_AnyTagLoader.add_multi_constructor("", _plain_node)


def model_cfg_from_run_dir(checkpoint_path: str, sections: tuple[str, ...] = ("actor", "policy")) -> dict:
    """The first of ``sections`` in an Isaac Lab ``params/agent.yaml`` beside ``checkpoint_path`` ({} if none).

    RSL-RL 5.x configs have ``actor`` / ``critic`` (``student`` / ``teacher``) sections; older ones ``policy``.
    """
    run_dir = os.path.dirname(os.path.abspath(checkpoint_path))
    for path in (os.path.join(run_dir, "params", "agent.yaml"), os.path.join(run_dir, "agent.yaml")):
        if os.path.isfile(path):
            with open(path) as f:
                cfg = yaml.load(f, Loader=_AnyTagLoader) or {}
            for section in sections:
                if isinstance(cfg.get(section), dict):
                    return dict(cfg[section])
    return {}


def activation_from_run_dir(checkpoint_path: str) -> str | None:
    """The actor activation in an Isaac Lab ``params/agent.yaml`` beside ``checkpoint_path``, if any."""
    activation = model_cfg_from_run_dir(checkpoint_path).get("activation")
    return str(activation) if activation else None


def std_type_from_run_dir(checkpoint_path: str) -> str | None:
    """The actor's ``distribution_cfg.std_type`` in ``params/agent.yaml`` beside ``checkpoint_path``, if any."""
    dist = model_cfg_from_run_dir(checkpoint_path).get("distribution_cfg") or {}
    return str(dist["std_type"]) if isinstance(dist, dict) and dist.get("std_type") else None


def import_activation(name: str) -> str:
    """agile_jax's name for RSL-RL activation ``name`` (the names are shared; unknown ones are refused)."""
    name = name.lower()
    resolve_activation(name)
    return name


def read_file(path: str) -> dict:
    """``torch.load`` of an RSL-RL checkpoint file; anything that is not one is refused in one line.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a readable torch checkpoint, or one without model state dicts.
    """
    torch = require_torch()
    if not os.path.isfile(path):
        raise FileNotFoundError(f"RSL-RL checkpoint '{path}' not found; pass the path of a model_<iteration>.pt")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 (torch raises many types for a file that is not a checkpoint)
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
        raise ValueError(f"'{path}' is not a readable RSL-RL checkpoint ({type(err).__name__}: {first}); pass a "
                         "model_<iteration>.pt written by RSL-RL's runner") from None
    if not isinstance(checkpoint, dict) or not any(str(k).endswith("_state_dict") for k in checkpoint):
        raise ValueError(f"'{path}' holds no RSL-RL model state dicts (actor_state_dict, ...); pass a "
                         "model_<iteration>.pt written by RSL-RL's runner")
    return checkpoint


def _same_rnn(actor: ModelLayout, critic: ModelLayout) -> None:
    """Refuses actor/critic model pairs :class:`ActorCriticRecurrent` cannot hold (both recurrent, one RNN layout)."""
    a, c = (actor.rnn_type, actor.rnn_hidden_dim, actor.rnn_num_layers), (critic.rnn_type, critic.rnn_hidden_dim,
                                                                         critic.rnn_num_layers)
    if a != c:
        raise ValueError(f"the checkpoint's actor is an {actor.class_name} {a} and its critic an {critic.class_name} "
                         f"{c}; agile_jax's recurrent actor-critic gives both the same RNN")


def load_checkpoint(checkpoint: str | Mapping, activation: str | None = None,
                    std_type: str | None = None) -> RslRlCheckpoint:
    """Reads an RSL-RL PPO checkpoint (``MLPModel`` or ``RNNModel`` actor and critic) into params and normalisers.

    Args:
        checkpoint: path to ``model_<it>.pt`` or the loaded dict.
        activation: RSL-RL activation name; ``None``: from ``params/agent.yaml`` next to the file, else ``elu``.
        std_type: ``"scalar"`` / ``"log"`` of a heteroscedastic actor's std (not in the file); ``None``: from
            ``params/agent.yaml``, else ``scalar``. A Gaussian actor's comes from its parameter's name.

    Returns:
        ``RslRlCheckpoint(layout, params, normalizers, iteration, infos)``; ``layout.networks(...)`` builds
        the matching actor-critic.
    """
    if isinstance(checkpoint, str):
        activation = activation or activation_from_run_dir(checkpoint)
        std_type = std_type or std_type_from_run_dir(checkpoint)
        checkpoint = read_file(checkpoint)
    for key in ("actor_state_dict", "critic_state_dict"):
        if key not in checkpoint:
            raise ValueError(f"not an RSL-RL PPO checkpoint: '{key}' missing (keys: {sorted(checkpoint)})")
    actor, actor_params, actor_norm = read_model(checkpoint["actor_state_dict"], "actor", actor=True)
    critic, critic_params, critic_norm = read_model(checkpoint["critic_state_dict"], "critic", actor=False)
    if "CNNModel" in (actor.class_name, critic.class_name):
        raise ValueError("a CNNModel checkpoint stores no strides, paddings or pooling: load it into a network built "
                         "from the run's cnn_cfg (runner.init_from with policy.class_name=ActorCriticCNN)")
    _same_rnn(actor, critic)
    normalizers = {name: n for name, n in (("actor", actor_norm), ("critic", critic_norm)) if n is not None}
    layout = RslRlLayout(
        actor_obs_dim=actor.input_dim, critic_obs_dim=critic.input_dim, action_size=actor.output_dim,
        actor_hidden_dims=actor.hidden_dims, critic_hidden_dims=critic.hidden_dims,
        activation=import_activation(activation or "elu"), noise_std_type=actor.std_type or std_type or "scalar",
        actor_obs_normalization=actor.normalized, critic_obs_normalization=critic.normalized,
        distribution_class=actor.distribution_class, rnn_type=actor.rnn_type, rnn_hidden_dim=actor.rnn_hidden_dim,
        rnn_num_layers=actor.rnn_num_layers)
    params = ActorCriticParams(actor=actor_params, critic=critic_params)
    return RslRlCheckpoint(layout, jax.tree.map(np.asarray, params), normalizers,
                           int(checkpoint.get("iter", 0) or 0), checkpoint.get("infos"))


# -- agile_jax -> RSL-RL ----------------------------------------------------------------------------


def _adam_state(opt_state: Any):
    """The ``ScaleByAdamState`` inside an optax state, or ``None``."""
    found = [x for x in jax.tree.leaves(opt_state, is_leaf=lambda x: isinstance(x, optax.ScaleByAdamState))
             if isinstance(x, optax.ScaleByAdamState)]
    return found[0] if found else None


def _std_key(networks: ActorCritic) -> str | None:
    """The Gaussian actor's parameter name in RSL-RL (``None``: heteroscedastic, no parameter)."""
    if networks.state_dependent_std:
        return None
    return "std_param" if networks.noise_std_type == "scalar" else "log_std_param"


def _optimizer_state_dict(torch, networks: ActorCritic, actor_sd: Mapping, critic_sd: Mapping, opt_state: Any,
                          learning_rate: float) -> dict:
    """A ``torch.optim.Adam`` state dict over RSL-RL's parameter order, moments copied from optax's Adam."""
    names = [("actor", k) for k in actor_sd if not k.startswith("obs_normalizer")]
    names += [("critic", k) for k in critic_sd if not k.startswith("obs_normalizer")]
    tensors = [(actor_sd if net == "actor" else critic_sd)[k] for net, k in names]
    optimizer = torch.optim.Adam([torch.nn.Parameter(t.clone()) for t in tensors], lr=float(learning_rate))
    state = optimizer.state_dict()
    adam = _adam_state(opt_state) if opt_state is not None else None
    if adam is not None:
        # The moments are trees shaped like the params, so they map to the same state-dict names.
        moments = {(net, part): model_state_dict(torch, getattr(adam, part).by_network()[net], None,
                                                 _std_key(networks) if net == "actor" else None)
                   for net in ("actor", "critic") for part in ("mu", "nu")}
        step = torch.tensor(float(np.asarray(adam.count)), dtype=torch.float32)
        for i, (net, key) in enumerate(names):
            state["state"][i] = {"step": step.clone(), "exp_avg": moments[(net, "mu")][key].clone(),
                                 "exp_avg_sq": moments[(net, "nu")][key].clone()}
    return state


def to_checkpoint(networks: ActorCritic, params: Params, normalizers: Mapping[str, NormalizerState],
                  iteration: int = 0, opt_state: Any = None, learning_rate: float | None = None,
                  infos: Any = None) -> dict:
    """An RSL-RL PPO checkpoint dict that ``rsl_rl.runners.OnPolicyRunner.load`` accepts.

    The RSL-RL models must be built with ``class_name`` ``MLPModel`` (``RNNModel`` with the same ``rnn_type``,
    ``rnn_hidden_dim``, ``rnn_num_layers`` for a recurrent policy), ``hidden_dims``, ``activation`` (RSL-RL names),
    ``obs_normalization`` and ``distribution_cfg={"class_name": networks.distribution_class, "std_type":
    networks.noise_std_type}`` matching ``networks``.

    Args:
        networks, params, normalizers: the agile_jax actor-critic (feed-forward or recurrent).
        iteration: stored as ``iter``.
        opt_state: optional optax state; its Adam moments become the torch Adam state (fresh otherwise).
        learning_rate: Adam learning rate (default: the one injected in ``opt_state``, else 1e-3).
        infos: stored as ``infos``.
    """
    torch = require_torch()
    params = jax.device_get(params)
    actor_sd = model_state_dict(torch, params.actor, normalizers.get("actor"), _std_key(networks))
    critic_sd = model_state_dict(torch, params.critic, normalizers.get("critic"), None)
    if learning_rate is None:
        hyper = getattr(opt_state[1], "hyperparams", {}) if isinstance(opt_state, tuple) and len(opt_state) > 1 else {}
        learning_rate = float(np.asarray(hyper.get("learning_rate", 1e-3)))
    optimizer = _optimizer_state_dict(torch, networks, actor_sd, critic_sd, jax.device_get(opt_state), learning_rate)
    return {"actor_state_dict": actor_sd, "critic_state_dict": critic_sd, "optimizer_state_dict": optimizer,
            "iter": int(iteration), "infos": infos}


def save_checkpoint(path: str, networks: ActorCritic, params: Params, normalizers: Mapping[str, NormalizerState],
                    **kwargs) -> str:
    """Writes :func:`to_checkpoint` (``kwargs`` forwarded) to ``path`` (e.g. ``model_<it>.pt``); returns it."""
    torch = require_torch()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    torch.save(to_checkpoint(networks, params, normalizers, **kwargs), path)
    return path
