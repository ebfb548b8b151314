"""RSL-RL's ``CNNModel`` actor and critic: one CNN per 2-D observation group, an MLP on ``[1-D, CNN latents]``.

An observation group of shape ``[C, H, W]`` is 2-D (RSL-RL: a ``[B, C, H, W]`` tensor); any other group is
flattened into the 1-D part (an ``[H, F]`` history included, as :class:`ActorCritic` does). Each network computes::

    x_1d   = normalise(concat(1-D groups))                      [..., D_1d]   (the normaliser sees these only)
    z_g    = CNN_g(obs[g])  for each 2-D group g, in order      [..., L_g]    (RSL-RL's CNN, flattened C-major)
    output = MLP(concat(x_1d, z_g1, z_g2, ...))                 (RSL-RL's get_latent order)

Params (an :class:`~agile_jax.networks.records.ActorCriticParams`)::

    actor:  {"mlp", "std", "cnns": {group: CNN params}}
    critic: {"mlp", "cnns": {group: CNN params}}          # no critic "cnns" with share_cnn_encoders

With ``share_cnn_encoders`` (RSL-RL's ``algorithm.share_cnn_encoders``) the critic reads the actor's encoders:
one set of weights, trained by the sum of the actor's and the critic's losses (PyTorch accumulates both into the
shared tensors) with one optimiser step. For per-network gradient clipping the shared encoders count as the
actor's. (RSL-RL 5.5 lists the shared tensors in both parameter groups, so torch's Adam steps them twice per
update and clips their gradient with both norms; here they are stepped and clipped once.)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from agile_jax.config_base import ConfigError
from agile_jax.networks import normalization
from agile_jax.networks.actor_critic import ActorCritic, concat_groups
from agile_jax.networks.cnn import CNN, cnn_params_from_state_dict, resolve_cnn_cfgs
from agile_jax.networks.records import ActorCriticParams
from agile_jax.types import Array, Observation, Params, PRNGKey

Encoders = tuple[tuple[str, CNN], ...]  # (group, CNN) in the network's group order


def refuse_cnn_policy(networks, block: str) -> None:
    """One line when ``networks`` is a CNN actor-critic, for a method whose network wrapper rebuilds the actor's
    input (``algorithm.<block>``)."""
    if isinstance(networks, ActorCriticCNN):
        raise ConfigError(f"policy.class_name=ActorCriticCNN cannot be combined with algorithm.{block} (it rebuilds "
                          "the actor's input)")


def is_2d(shape: Sequence[int]) -> bool:
    """A group of shape ``[C, H, W]`` is encoded by a CNN (RSL-RL: a 4-D ``[B, C, H, W]`` tensor)."""
    return len(shape) == 3


@dataclass(frozen=True)
class ActorCriticCNN(ActorCritic):
    """:class:`ActorCritic` whose networks encode their 2-D groups with CNNs (RSL-RL's ``CNNModel`` pair).

    Build it with :func:`make_actor_critic_cnn` (RSL-RL ``cnn_cfg`` dicts). The observation normalisers cover
    the 1-D groups only, as RSL-RL's ``obs_normalizer``.

    Attributes:
        actor_encoders / critic_encoders: ``(group, CNN)`` per 2-D group of the network, in its group order
            (the critic's equal the actor's and hold no weights of their own with ``share_cnn_encoders``).
        share_cnn_encoders: the critic reads the actor's encoders.
    """

    actor_encoders: Encoders = ()
    critic_encoders: Encoders = ()
    share_cnn_encoders: bool = False

    # -- structure ----------------------------------------------------------------------------------
    def encoders(self, name: str) -> Encoders:
        return self.actor_encoders if name == "actor" else self.critic_encoders

    def groups_1d(self, name: str) -> list[str]:
        """The groups of network ``name`` that bypass the CNNs, in order."""
        return [g for g in self.obs_groups[name] if not is_2d(self.obs_shapes[g])]

    def obs_dim_1d(self, name: str) -> int:
        """Width ``D_1d`` of the (normalised) 1-D part of network ``name``'s input."""
        return sum(math.prod(self.obs_shapes[g]) for g in self.groups_1d(name))

    def latent_dim(self, name: str) -> int:
        """Width of network ``name``'s MLP input: ``D_1d`` plus every CNN's output."""
        return self.obs_dim_1d(name) + sum(cnn.output_dim for _, cnn in self.encoders(name))

    def cnn_params(self, params: Params, name: str) -> Params:
        """``{group: CNN params}`` network ``name`` reads (the actor's for a critic sharing them)."""
        owner = params.actor if name == "actor" or self.share_cnn_encoders else params.critic
        return owner.get("cnns", {})

    @property
    def own_settings(self) -> dict:
        """The encoders as RSL-RL's configs (:attr:`cnn_config`) for ``network_config.json``."""
        return self.cnn_config

    @property
    def cnn_config(self) -> dict:
        """RSL-RL's view of the encoders: ``actor_cnn_cfg`` / ``critic_cnn_cfg`` per group, ``share_cnn_encoders``."""
        return {"actor_cnn_cfg": {g: cnn.to_cfg() for g, cnn in self.actor_encoders},
                "critic_cnn_cfg": {g: cnn.to_cfg() for g, cnn in self.critic_encoders},
                "share_cnn_encoders": self.share_cnn_encoders}

    # -- init ---------------------------------------------------------------------------------------
    def init(self, key: PRNGKey) -> ActorCriticParams:
        """Fresh params: MLPs on the latent widths, CNNs at PyTorch's initialisation."""
        k_actor, k_critic, k_actor_cnn, k_critic_cnn = jax.random.split(key, 4)
        actor = self.init_actor(k_actor, self.latent_dim("actor"))
        critic = {"mlp": self.critic_mlp.init(k_critic, jnp.zeros((1, self.latent_dim("critic"))))}
        actor_cnns = _init_encoders(k_actor_cnn, self.actor_encoders)
        critic_cnns = {} if self.share_cnn_encoders else _init_encoders(k_critic_cnn, self.critic_encoders)
        return ActorCriticParams(actor={**actor, **({"cnns": actor_cnns} if actor_cnns else {})},
                                 critic={**critic, **({"cnns": critic_cnns} if critic_cnns else {})})

    def init_normalizers(self) -> dict[str, normalization.NormalizerState]:
        """Normaliser states over the 1-D inputs of the networks that normalise (and have 1-D inputs)."""
        return {name: normalization.init(self.obs_dim_1d(name)) for name in self._normalized()}

    def _normalized(self) -> list[str]:
        on = {"actor": self.actor_obs_normalization, "critic": self.critic_obs_normalization}
        return [name for name, flag in on.items() if flag and self.groups_1d(name)]

    # -- apply --------------------------------------------------------------------------------------
    def network_input(self, name: str, normalizers: Mapping, obs: Observation) -> Array:
        """The (normalised) 1-D part of network ``name``'s input ``[..., D_1d]`` (``D_1d`` may be 0)."""
        groups = self.groups_1d(name)
        if not groups:  # CNN features only (RSL-RL returns the CNN latent alone)
            first = obs[self.obs_groups[name][0]]
            return jnp.zeros((*first.shape[: first.ndim - 3], 0), jnp.float32)
        x = concat_groups(obs, groups, self.obs_shapes)
        return normalization.normalize(normalizers[name], x) if name in normalizers else x

    def latent(self, name: str, params: Params, normalizers: Mapping, obs: Observation) -> Array:
        """Network ``name``'s MLP input ``[..., D_1d + sum L_g]``: the 1-D part, then each CNN's features."""
        cnn_params = self.cnn_params(params, name)
        features = [cnn.apply(cnn_params[group], obs[group]) for group, cnn in self.encoders(name)]
        return jnp.concatenate([self.network_input(name, normalizers, obs), *features], axis=-1)

    def actor_output(self, params: Params, normalizers: Mapping, obs: Observation) -> Array:
        """Raw actor MLP output ``[..., A]`` (``[..., 2A]`` with a state-dependent std) on the latent."""
        return self.actor_mlp.apply(params.actor["mlp"], self.latent("actor", params, normalizers, obs))

    def actor_mean(self, params: Params, normalizers: Mapping, obs: Observation) -> Array:
        """Deterministic action (Gaussian mean) ``[..., A]``."""
        return self.output_mean(self.actor_output(params, normalizers, obs))

    def value(self, params: Params, normalizers: Mapping, obs: Observation) -> Array:
        """Critic value ``[...]``."""
        return self.critic_mlp.apply(params.critic["mlp"], self.latent("critic", params, normalizers, obs))[..., 0]

    def normalizer_inputs(self, obs: Observation) -> dict[str, Array]:
        """Raw 1-D inputs of the normalising networks, for the normaliser update."""
        return {name: concat_groups(obs, self.groups_1d(name), self.obs_shapes) for name in self._normalized()}


def _init_encoders(key: PRNGKey, encoders: Encoders) -> dict[str, Params]:
    keys = jax.random.split(key, max(len(encoders), 1))
    return {group: cnn.init(k) for (group, cnn), k in zip(encoders, keys)}


def _encoders(shapes: Mapping[str, tuple[int, ...]], groups: Sequence[str], cnn_cfg: Any, what: str) -> Encoders:
    """``(group, CNN)`` for the 2-D groups among ``groups`` from one RSL-RL ``cnn_cfg`` (shared or per group)."""
    two_d = [g for g in groups if is_2d(shapes[g])]
    try:
        cfgs = resolve_cnn_cfgs(cnn_cfg, two_d)
        return tuple((g, CNN.from_cfg(shapes[g][1:], shapes[g][0], cfgs[g])) for g in two_d)
    except ValueError as err:
        raise ValueError(f"{what}: {err}") from None


def make_actor_critic_cnn(actor_cnn_cfg: Any, critic_cnn_cfg: Any = None, share_cnn_encoders: bool = False,
                          allow_batch_norm: bool = False, **actor_critic: Any) -> ActorCriticCNN:
    """The CNN actor-critic from RSL-RL ``cnn_cfg`` dicts.

    Args:
        actor_cnn_cfg: one ``cnn_cfg`` for every 2-D actor group, or ``{group: cnn_cfg}``.
        critic_cnn_cfg: the same for the critic (``None``: the actor's configuration, separate weights);
            ignored with ``share_cnn_encoders``, as in RSL-RL.
        share_cnn_encoders: the critic uses the actor's encoders (its 2-D groups must be the actor's).
        allow_batch_norm: accept ``norm="batch"`` (evaluated with running statistics: for loaded networks, not
            for PPO training, whose rollouts would have to carry batch statistics).
        **actor_critic: the :class:`ActorCritic` fields (``obs_shapes``, ``obs_groups``, ``action_size`` ...).

    Raises:
        ValueError: one line naming the problem (no 2-D group, a bad ``cnn_cfg``, groups that cannot share).
    """
    shapes, groups = actor_critic["obs_shapes"], actor_critic["obs_groups"]
    two_d = {name: [g for g in groups[name] if is_2d(shapes[g])] for name in ("actor", "critic")}
    if not two_d["actor"] and not two_d["critic"]:
        raise ValueError(f"no observation group of the actor or critic is 2-D ([C, H, W]); shapes: "
                         f"{ {g: list(s) for g, s in shapes.items()} }; use policy.class_name=ActorCritic")
    actor = _encoders(shapes, groups["actor"], actor_cnn_cfg, "actor_cnn_cfg")
    if share_cnn_encoders:
        if sorted(two_d["actor"]) != sorted(two_d["critic"]):
            raise ValueError(f"share_cnn_encoders needs the same 2-D groups in actor and critic, got "
                             f"{two_d['actor']} and {two_d['critic']}")
        by_group = dict(actor)
        critic = tuple((g, by_group[g]) for g in two_d["critic"])
    else:
        cfg = critic_cnn_cfg if critic_cnn_cfg is not None else actor_cnn_cfg
        critic = _encoders(shapes, groups["critic"], cfg, "critic_cnn_cfg")
    if not allow_batch_norm and any(c.norm == "batch" for _, cnn in actor + critic for c in cnn.layers):
        raise ValueError("cnn_cfg norm='batch' cannot be trained here (batch statistics would be state carried "
                         "through every rollout step); use norm='layer' or 'none'")
    return ActorCriticCNN(**actor_critic, actor_encoders=actor, critic_encoders=critic,
                          share_cnn_encoders=bool(share_cnn_encoders))


# -- RSL-RL state dicts ------------------------------------------------------------------------------
def encoders_from_state_dict(state_dict: Mapping[str, Any], encoders: Encoders,
                             prefix: str = "cnns.") -> dict[str, Params]:
    """``{group: CNN params}`` from a ``CNNModel`` state dict (entries ``<prefix><group>.<j>.*``)."""
    return {group: cnn_params_from_state_dict(state_dict, cnn, f"{prefix}{group}.") for group, cnn in encoders}


def params_from_rsl_rl(networks: ActorCriticCNN, actor_state_dict: Mapping[str, Any],
                       critic_state_dict: Mapping[str, Any]) -> tuple[ActorCriticParams, dict]:
    """``(params, normalizers)`` from the state dicts of an RSL-RL ``CNNModel`` actor and critic.

    ``params_from_rsl_rl(networks, actor_state_dict, critic_state_dict) -> (params, normalizers)``: the MLP
    (``mlp.<2i>.weight`` -> ``Dense_i.kernel`` transposed), the Gaussian std parameter
    (``distribution.std_param`` / ``log_std_param``), the encoders (``cnns.<group>.<j>.*``, see
    :func:`~agile_jax.networks.cnn.cnn_params_from_state_dict`) and the 1-D normalisers (``obs_normalizer._mean``
    / ``_var`` / ``count``) are read; with ``share_cnn_encoders`` the critic's ``cnns.*`` entries (the same
    tensors) are not read again.

    Args:
        networks: the matching :class:`ActorCriticCNN` (from the run's ``cnn_cfg`` and observation shapes;
            ``allow_batch_norm=True`` for ``norm="batch"`` encoders); strides and paddings are not in a state dict.
        actor_state_dict, critic_state_dict: ``actor_state_dict`` / ``critic_state_dict`` of an RSL-RL 5.x
            checkpoint (torch tensors or arrays).

    Returns:
        ``params`` in :meth:`ActorCriticCNN.init`'s layout (float32 NumPy) and ``{"actor"/"critic":
        NormalizerState}`` for the networks that store a normaliser.

    Raises:
        ValueError: encoder entries missing, unexpected or shaped unlike ``networks``' encoders.
        KeyError: an MLP layer missing from a state dict.
    """
    params, normalizers = {}, {}
    for name, sd in (("actor", actor_state_dict), ("critic", critic_state_dict)):
        linear = sorted(int(k.split(".")[1]) for k in sd if k.startswith("mlp.") and k.endswith(".weight"))
        dense = {f"Dense_{i}": {"kernel": np.ascontiguousarray(_np(sd[f"mlp.{j}.weight"]).T),
                                "bias": _np(sd[f"mlp.{j}.bias"])} for i, j in enumerate(linear)}
        params[name] = {"mlp": {"params": dense}}
        std = [k for k in ("distribution.std_param", "distribution.log_std_param") if k in sd]
        if name == "actor" and std:
            params[name]["std"] = _np(sd[std[0]])
        if name == "actor" or not networks.share_cnn_encoders:
            cnns = encoders_from_state_dict(sd, networks.encoders(name))
            params[name].update({"cnns": cnns} if cnns else {})
        if "obs_normalizer._mean" in sd:
            normalizers[name] = normalization.NormalizerState(
                mean=_np(sd["obs_normalizer._mean"]).reshape(-1), var=_np(sd["obs_normalizer._var"]).reshape(-1),
                count=np.asarray(_np(sd["obs_normalizer.count"]), np.float32))
    return ActorCriticParams(**params), normalizers


def _np(value: Any) -> np.ndarray:
    return np.array(value.detach().cpu().numpy() if hasattr(value, "detach") else value, np.float32)
