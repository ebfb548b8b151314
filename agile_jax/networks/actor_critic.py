"""Actor-critic networks as ``(init, apply)`` pairs over plain nested-dict params.

Params layout (one group per network, so gradient clipping can be per network or joint)::

    {"actor": {"mlp": <flax params>, "std": [A]}, "critic": {"mlp": <flax params>}}

Observation normalisers live *outside* the params (``{"actor": NormalizerState, ...}``, only for the
networks that normalise) so an exporter can bake them into the graph.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from agile_jax.networks import distributions, normalization
from agile_jax.networks.mlp import MLP
from agile_jax.types import Array, Observation, Params, PRNGKey

DEFAULT_OBS_SETS = ("actor", "critic")


def resolve_obs_groups(obs_groups: Mapping[str, Sequence[str]], available: Sequence[str],
                       sets: Sequence[str] = DEFAULT_OBS_SETS) -> dict[str, list[str]]:
    """RSL-RL v5 ``resolve_obs_groups``: each observation set -> the env groups it concatenates.

    A set missing from ``obs_groups`` defaults to a group of the same name if the env has one, else
    to ``"policy"``. Unknown group names are refused with the list of what the env provides.
    """
    resolved: dict[str, list[str]] = {}
    for name in sets:
        groups = list(obs_groups.get(name) or ([name] if name in available else ["policy"]))
        for group in groups:
            if group not in available:
                raise ValueError(
                    f"obs_groups['{name}'] asks for observation group '{group}', but the environment provides "
                    f"{sorted(available)}; fix runner.obs_groups."
                )
        resolved[name] = groups
    return resolved


def concat_groups(obs: Observation, groups: Sequence[str], shapes: Mapping[str, tuple[int, ...]]) -> Array:
    """Concatenates ``groups`` of ``obs`` in list order, each flattened over its own (non-batch) axes."""
    parts = []
    for group in groups:
        x = obs[group]
        ndim = len(shapes[group])
        if tuple(x.shape[x.ndim - ndim:]) != tuple(shapes[group]):
            raise ValueError(f"observation group '{group}' has shape {x.shape}, expected [..., {shapes[group]}]")
        parts.append(x.reshape(*x.shape[: x.ndim - ndim], -1))
    return jnp.concatenate(parts, axis=-1)


@dataclass(frozen=True)
class ActorCritic:
    """Gaussian MLP actor and MLP critic, RSL-RL's ``MLPModel`` pair.

    Attributes:
        obs_shapes: env observation group shapes (no batch axis).
        obs_groups: resolved ``{"actor": [...], "critic": [...]}``.
        action_size: number of actions.
        actor_hidden_dims, critic_hidden_dims, activation: MLP layout.
        init_noise_std, noise_std_type: Gaussian std parameter.
        actor_obs_normalization, critic_obs_normalization: use an empirical normaliser.
    """

    obs_shapes: Mapping[str, tuple[int, ...]]
    obs_groups: Mapping[str, Sequence[str]]
    action_size: int
    actor_hidden_dims: Sequence[int] = (256, 256, 256)
    critic_hidden_dims: Sequence[int] = (256, 256, 256)
    activation: str = "elu"
    init_noise_std: float = 1.0
    noise_std_type: str = "scalar"
    actor_obs_normalization: bool = False
    critic_obs_normalization: bool = False
    is_recurrent: ClassVar[bool] = False

    # -- structure ----------------------------------------------------------------------------------
    def obs_dim(self, name: str) -> int:
        """Width of the concatenated input of network ``name`` ("actor" or "critic")."""
        return sum(math.prod(self.obs_shapes[g]) for g in self.obs_groups[name])

    @property
    def actor_mlp(self) -> MLP:
        return MLP(tuple(self.actor_hidden_dims), self.action_size, self.activation)

    @property
    def critic_mlp(self) -> MLP:
        return MLP(tuple(self.critic_hidden_dims), 1, self.activation)

    # -- init ---------------------------------------------------------------------------------------
    def init(self, key: PRNGKey) -> Params:
        """Fresh params ``{"actor": {"mlp", "std"}, "critic": {"mlp"}}``."""
        key_a, key_c = jax.random.split(key)
        actor = self.actor_mlp.init(key_a, jnp.zeros((1, self.obs_dim("actor"))))
        critic = self.critic_mlp.init(key_c, jnp.zeros((1, self.obs_dim("critic"))))
        std = distributions.init_std_param(self.action_size, self.init_noise_std, self.noise_std_type)
        return {"actor": {"mlp": actor, "std": std}, "critic": {"mlp": critic}}

    def init_normalizers(self) -> dict[str, normalization.NormalizerState]:
        """Normaliser states for the networks that normalise their input."""
        out = {}
        if self.actor_obs_normalization:
            out["actor"] = normalization.init(self.obs_dim("actor"))
        if self.critic_obs_normalization:
            out["critic"] = normalization.init(self.obs_dim("critic"))
        return out

    # -- apply --------------------------------------------------------------------------------------
    def network_input(self, name: str, normalizers: Mapping, obs: Observation) -> Array:
        """Concatenated (and, if enabled, normalised) input of network ``name``, ``[..., D]``."""
        x = concat_groups(obs, self.obs_groups[name], self.obs_shapes)
        if name in normalizers:
            x = normalization.normalize(normalizers[name], x)
        return x

    def actor_mean(self, params: Params, normalizers: Mapping, obs: Observation) -> Array:
        """Deterministic action (Gaussian mean) ``[..., A]``."""
        return self.actor_mlp.apply(params["actor"]["mlp"], self.network_input("actor", normalizers, obs))

    def action_std(self, params: Params) -> Array:
        """State-independent action std ``[A]``."""
        return distributions.std_from_param(params["actor"]["std"], self.noise_std_type)

    def value(self, params: Params, normalizers: Mapping, obs: Observation) -> Array:
        """Critic value ``[...]``."""
        return self.critic_mlp.apply(params["critic"]["mlp"], self.network_input("critic", normalizers, obs))[..., 0]

    # -- the interface shared with recurrent networks (state-carrying; the state is empty here) ---------
    def init_hidden(self, num_envs: int) -> dict[str, Any]:
        """Recurrent state of actor and critic for ``num_envs`` envs (empty for MLPs)."""
        return {"actor": (), "critic": ()}

    def actor_step(self, params: Params, normalizers: Mapping, obs: Observation, hidden: Any) -> tuple[Array, Any]:
        """Action mean ``[N, A]`` of one step and the actor's next state (unchanged for MLPs)."""
        return self.actor_mean(params, normalizers, obs), hidden

    def value_step(self, params: Params, normalizers: Mapping, obs: Observation, hidden: Any) -> tuple[Array, Any]:
        """Value ``[N]`` of one step and the critic's next state (unchanged for MLPs)."""
        return self.value(params, normalizers, obs), hidden

    def apply_batch(self, params: Params, normalizers: Mapping, obs: Observation, hidden: Any,
                    dones: Array) -> tuple[Array, Array]:
        """Means ``[..., A]`` and values ``[...]`` of a stored minibatch (``hidden``/``dones`` unused for MLPs)."""
        return self.actor_mean(params, normalizers, obs), self.value(params, normalizers, obs)

    def normalizer_inputs(self, obs: Observation) -> dict[str, Array]:
        """Raw concatenated inputs of the normalising networks, for the normaliser update."""
        return {
            name: concat_groups(obs, self.obs_groups[name], self.obs_shapes)
            for name, on in (("actor", self.actor_obs_normalization), ("critic", self.critic_obs_normalization))
            if on
        }


def make_inference_fn(networks: ActorCritic):
    """``make_policy(params, normalizers, deterministic=True) -> policy(obs, key=None) -> actions``.

    The single entry point shared by evaluation, export and viewers.
    """

    def make_policy(params: Params, normalizers: Mapping, deterministic: bool = True):
        def policy(obs: Observation, key: PRNGKey | None = None) -> Array:
            mean = networks.actor_mean(params, normalizers, obs)
            if deterministic:
                return mean
            std = jnp.broadcast_to(networks.action_std(params), mean.shape)
            return distributions.sample(key, mean, std)

        return policy

    return make_policy
