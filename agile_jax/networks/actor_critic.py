"""Actor-critic networks as ``(init, apply)`` pairs over params records of nested dicts.

Params layout (one record field per network, so gradient clipping can be per network or joint; see
:mod:`agile_jax.networks.records`)::

    ActorCriticParams(actor={"mlp": <flax params>, "std": [A]}, critic={"mlp": <flax params>})

With RSL-RL's ``HeteroscedasticGaussianDistribution`` (state-dependent std) the actor has no ``"std"``: its MLP
outputs ``2A`` values, the mean first and the std parameter second.

Observation normalisers live *outside* the params (``{"actor": NormalizerState, ...}``, only for the
networks that normalise) so an exporter can bake them into the graph.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from agile_jax.networks import distributions, normalization
from agile_jax.networks.mlp import MLP
from agile_jax.networks.records import ActorCriticHidden, ActorCriticParams
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
        init_noise_std, noise_std_type: Gaussian std parameter (``std_type`` ``"scalar"`` or ``"log"``).
        actor_obs_normalization, critic_obs_normalization: use an empirical normaliser.
        distribution_class: RSL-RL's ``"GaussianDistribution"`` (state-independent std) or
            ``"HeteroscedasticGaussianDistribution"`` (the actor outputs mean and std parameter per action).
        std_range: ``(min, max)`` the std is clamped to.
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
    distribution_class: str = distributions.GAUSSIAN
    std_range: tuple[float, float] = distributions.STD_RANGE
    is_recurrent: ClassVar[bool] = False

    def __post_init__(self):
        if self.distribution_class not in distributions.DISTRIBUTIONS:
            raise ValueError(f"unknown distribution class_name '{self.distribution_class}', expected one of "
                             f"{list(distributions.DISTRIBUTIONS)}")

    @property
    def state_dependent_std(self) -> bool:
        """Whether the actor outputs the std (``HeteroscedasticGaussianDistribution``)."""
        return self.distribution_class == distributions.HETEROSCEDASTIC

    @property
    def own_settings(self) -> dict[str, Any]:
        """The settings a subclass adds to these (its own dataclass fields: the estimator's, the recurrent
        cell's), which the exporter writes into ``network_config.json``; a subclass whose fields are not plain
        values (the CNN's encoders) overrides this."""
        base = {f.name for f in fields(ActorCritic)}
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in base}

    # -- structure ----------------------------------------------------------------------------------
    def obs_dim(self, name: str) -> int:
        """Width of the concatenated input of network ``name`` ("actor" or "critic")."""
        return sum(math.prod(self.obs_shapes[g]) for g in self.obs_groups[name])

    @property
    def actor_mlp(self) -> MLP:
        width = 2 * self.action_size if self.state_dependent_std else self.action_size
        return MLP(tuple(self.actor_hidden_dims), width, self.activation)

    @property
    def critic_mlp(self) -> MLP:
        return MLP(tuple(self.critic_hidden_dims), 1, self.activation)

    # -- init ---------------------------------------------------------------------------------------
    def init(self, key: PRNGKey) -> ActorCriticParams:
        """Fresh params: actor ``{"mlp", "std"}``, critic ``{"mlp"}``."""
        key_a, key_c = jax.random.split(key)
        critic = self.critic_mlp.init(key_c, jnp.zeros((1, self.obs_dim("critic"))))
        return ActorCriticParams(actor=self.init_actor(key_a, self.obs_dim("actor")), critic={"mlp": critic})

    def init_actor(self, key: PRNGKey, input_dim: int) -> Params:
        """Actor params ``{"mlp", "std"}`` for an MLP input of ``input_dim`` (heteroscedastic: ``{"mlp"}`` whose
        last layer's std half has zero weights and RSL-RL's initial bias)."""
        mlp = self.actor_mlp.init(key, jnp.zeros((1, input_dim)))
        if not self.state_dependent_std:
            return {"mlp": mlp, "std": distributions.init_std_param(self.action_size, self.init_noise_std,
                                                                     self.noise_std_type)}
        inner = mlp["params"]
        last = f"Dense_{len(inner) - 1}"
        a = self.action_size
        bias = distributions.init_std_bias(self.init_noise_std, self.noise_std_type)
        head = {"kernel": inner[last]["kernel"].at[:, a:].set(0.0), "bias": inner[last]["bias"].at[a:].set(bias)}
        return {"mlp": {**mlp, "params": {**inner, last: head}}}

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

    def actor_output(self, params: Params, normalizers: Mapping, obs: Observation) -> Array:
        """Raw actor MLP output ``[..., A]`` (heteroscedastic: ``[..., 2A]``, mean then std parameter)."""
        return self.actor_mlp.apply(params.actor["mlp"], self.network_input("actor", normalizers, obs))

    def output_mean(self, output: Array) -> Array:
        """The Gaussian mean ``[..., A]`` in a raw actor output (RSL-RL's ``deterministic_output``)."""
        return output[..., : self.action_size] if self.state_dependent_std else output

    def output_distribution(self, params: Params, output: Array) -> tuple[Array, Array]:
        """``(mean [..., A], std)`` of a raw actor output; ``std`` ``[A]`` if state-independent, else ``[..., A]``."""
        if self.state_dependent_std:
            return distributions.split_output(output, self.action_size, self.noise_std_type, self.std_range)
        return output, self.action_std(params)

    def actor_mean(self, params: Params, normalizers: Mapping, obs: Observation) -> Array:
        """Deterministic action (Gaussian mean) ``[..., A]``."""
        return self.output_mean(self.actor_output(params, normalizers, obs))

    def action_std(self, params: Params, normalizers: Mapping | None = None, obs: Observation | None = None) -> Array:
        """Action std: ``[A]`` (state-independent), or ``[..., A]`` on ``obs`` (heteroscedastic, feed-forward)."""
        if not self.state_dependent_std:
            return distributions.std_from_param(params.actor["std"], self.noise_std_type, self.std_range)
        if obs is None:
            raise ValueError("a HeteroscedasticGaussianDistribution's std depends on the observation: pass "
                             "normalizers and obs (or use actor_dist_step)")
        return self.output_distribution(params, self.actor_output(params, normalizers or {}, obs))[1]

    def mean_action_std(self, params: Params, action_std: Array) -> Array:
        """The logged ``mean_std``: mean of the state-independent std, else of ``action_std`` (the rollout's)."""
        return jnp.mean(action_std) if self.state_dependent_std else jnp.mean(self.action_std(params))

    def mean_mlp_params(self, params: Params) -> Params:
        """Actor MLP params computing the mean only (the std half of a heteroscedastic last layer cut off)."""
        mlp = params.actor["mlp"]
        if not self.state_dependent_std:
            return mlp
        inner = mlp["params"]
        last = f"Dense_{len(inner) - 1}"
        head = {"kernel": inner[last]["kernel"][:, : self.action_size], "bias": inner[last]["bias"][: self.action_size]}
        return {**mlp, "params": {**inner, last: head}}

    def value(self, params: Params, normalizers: Mapping, obs: Observation) -> Array:
        """Critic value ``[...]``."""
        return self.critic_mlp.apply(params.critic["mlp"], self.network_input("critic", normalizers, obs))[..., 0]

    # -- the interface shared with recurrent networks (state-carrying; the state is empty here) ---------
    def init_hidden(self, num_envs: int) -> ActorCriticHidden:
        """Recurrent state of actor and critic for ``num_envs`` envs (empty for MLPs)."""
        return ActorCriticHidden(actor=(), critic=())

    def actor_output_step(self, params: Params, normalizers: Mapping, obs: Observation,
                          hidden: Any) -> tuple[Array, Any]:
        """Raw actor output of one step (see :meth:`actor_output`) and the actor's next state."""
        return self.actor_output(params, normalizers, obs), hidden

    def actor_step(self, params: Params, normalizers: Mapping, obs: Observation, hidden: Any) -> tuple[Array, Any]:
        """Action mean ``[N, A]`` of one step and the actor's next state (unchanged for MLPs)."""
        output, hidden = self.actor_output_step(params, normalizers, obs, hidden)
        return self.output_mean(output), hidden

    def actor_dist_step(self, params: Params, normalizers: Mapping, obs: Observation,
                        hidden: Any) -> tuple[tuple[Array, Array], Any]:
        """``((mean [N, A], std [A] or [N, A]), next state)`` of one step (see :meth:`output_distribution`)."""
        output, hidden = self.actor_output_step(params, normalizers, obs, hidden)
        return self.output_distribution(params, output), hidden

    def value_step(self, params: Params, normalizers: Mapping, obs: Observation, hidden: Any) -> tuple[Array, Any]:
        """Value ``[N]`` of one step and the critic's next state (unchanged for MLPs)."""
        return self.value(params, normalizers, obs), hidden

    def apply_batch(self, params: Params, normalizers: Mapping, obs: Observation, hidden: Any,
                    dones: Array) -> tuple[Array, Array]:
        """Means ``[..., A]`` and values ``[...]`` of a stored minibatch (``hidden``/``dones`` unused for MLPs)."""
        return self.actor_mean(params, normalizers, obs), self.value(params, normalizers, obs)

    def apply_batch_dist(self, params: Params, normalizers: Mapping, obs: Observation, hidden: Any,
                         dones: Array) -> tuple[Array, Array, Array]:
        """Means ``[..., A]``, stds (``[A]`` or ``[..., A]``) and values ``[...]`` of a stored minibatch."""
        mean, std = self.output_distribution(params, self.actor_output(params, normalizers, obs))
        return mean, std, self.value(params, normalizers, obs)

    def normalizer_inputs(self, obs: Observation) -> dict[str, Array]:
        """Raw concatenated inputs of the normalising networks, for the normaliser update."""
        return {
            name: concat_groups(obs, self.obs_groups[name], self.obs_shapes)
            for name, on in (("actor", self.actor_obs_normalization), ("critic", self.critic_obs_normalization))
            if on
        }


def deployed_policy(networks: ActorCritic, params: Params) -> tuple[ActorCritic, Params]:
    """The policy a run deploys and its params: ``networks.deployed(params)`` where the networks define it (a
    teacher-student policy deploys its student), else ``(networks, params)``."""
    deployed = getattr(networks, "deployed", None)
    return deployed(params) if deployed is not None else (networks, params)


def make_inference_fn(networks: ActorCritic):
    """``make_policy(params, normalizers, deterministic=True) -> policy(obs, key=None) -> actions``.

    The single entry point shared by evaluation, export and viewers; it runs the deployed policy
    (:func:`deployed_policy`).
    """

    def make_policy(params: Params, normalizers: Mapping, deterministic: bool = True):
        net, params = deployed_policy(networks, params)

        def policy(obs: Observation, key: PRNGKey | None = None) -> Array:
            if deterministic:
                return net.actor_mean(params, normalizers, obs)
            (mean, std), _ = net.actor_dist_step(params, normalizers, obs, ())
            return distributions.sample(key, mean, jnp.broadcast_to(std, mean.shape))

        return policy

    return make_policy
