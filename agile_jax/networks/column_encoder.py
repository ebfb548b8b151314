"""Actors that read their input followed by a latent, and the one whose latent encodes some of its input's columns.

:class:`LatentActorCritic` is ``actor_mlp(concat(x, latent))``, with ``x`` the actor's normalised input: the shape
of the estimator, the deployed student and the teacher-student policy (whose teacher's latent encodes the
privileged observation, :mod:`agile_jax.networks.teacher_student`).

:class:`ColumnEncoderActorCritic` is ``actor_mlp(concat(x, encoder(x[..., estimator_columns])))``. st_rl's
estimator (the encoder estimates privileged state, detached from the actor's gradient) and LeggedGym-Ex's deployed
student (the encoder is the history encoder) share this shape, and so do their exports: the encoder takes the
exporters' ``estimator`` slot (:mod:`agile_jax.export.spec`), so ONNX, TorchScript and ``policy.yaml`` need
nothing per method.

Params: :class:`~agile_jax.networks.records.EstimatorParams` with actor ``{"mlp", "std"}``, critic ``{"mlp"}``
and estimator (the encoder) ``{"mlp"}``; the actor MLP's input is ``D + encoder width`` wide.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from agile_jax.networks.actor_critic import ActorCritic
from agile_jax.networks.mlp import MLP
from agile_jax.networks.records import EstimatorParams
from agile_jax.types import Array, Observation, Params, PRNGKey


def group_columns(obs_groups: Mapping[str, Sequence[str]], obs_shapes: Mapping[str, tuple[int, ...]],
                  picked: Sequence[str]) -> np.ndarray:
    """Columns of the actor's concatenated input that belong to the ``picked`` groups, in the actor's order ``[H]``."""
    start, columns = 0, []
    for group in obs_groups["actor"]:
        width = int(np.prod(obs_shapes[group]))
        if group in picked:
            columns.append(np.arange(start, start + width))
        start += width
    return np.concatenate(columns).astype(np.int32)


@dataclasses.dataclass(frozen=True)
class LatentActorCritic(ActorCritic):
    """The shared base: an actor whose MLP reads its normalised input followed by a latent of
    :attr:`latent_width` values (the critic is :class:`ActorCritic`'s)."""

    @property
    def latent_width(self) -> int:
        raise NotImplementedError

    def init_actor_and_critic(self, key_critic: PRNGKey, key_actor: PRNGKey) -> tuple[Params, Params]:
        """Fresh ``(actor, critic)`` params, the actor's input widened by the latent."""
        critic = ActorCritic.init(self, key_critic).critic
        return self.init_actor(key_actor, self.obs_dim("actor") + self.latent_width), critic

    def actor_on(self, params: Params, x: Array, latent: Array) -> Array:
        """Raw actor output ``actor_mlp(concat(x, latent))`` on the normalised actor input ``x``."""
        return self.actor_mlp.apply(params.actor["mlp"], jnp.concatenate([x, latent], axis=-1))


@dataclasses.dataclass(frozen=True)
class ColumnEncoderActorCritic(LatentActorCritic):
    """The latent is an encoder's output on some of the input's columns; a subclass names its encoder
    (:attr:`encoder_mlp`) and the columns it reads (:attr:`estimator_columns`), and whether the actor's gradient
    stops at the encoder's output (:attr:`detach_encoder`)."""

    detach_encoder: ClassVar[bool] = False

    @property
    def latent_width(self) -> int:
        return self.encoder_mlp.output_dim

    @property
    def encoder_mlp(self) -> MLP:
        raise NotImplementedError

    @property
    def estimator_columns(self) -> np.ndarray:
        """Columns of the actor's (normalised) input the encoder reads (the exporters' name)."""
        raise NotImplementedError

    def init(self, key: PRNGKey) -> EstimatorParams:
        """Fresh params: the actor's input widened by the encoder's output, and the encoder."""
        key_base, key_actor, key_encoder = jax.random.split(key, 3)
        actor, critic = self.init_actor_and_critic(key_base, key_actor)
        encoder = self.encoder_mlp.init(key_encoder, jnp.zeros((1, len(self.estimator_columns))))
        return EstimatorParams(actor=actor, critic=critic, estimator={"mlp": encoder})

    def encode(self, params: Params, x: Array) -> Array:
        """The encoder's output ``[..., K]`` on the normalised actor input ``x``."""
        return self.encoder_mlp.apply(params.estimator["mlp"], x[..., self.estimator_columns])

    def actor_output(self, params: Params, normalizers: Mapping, obs: Observation) -> Array:
        """Raw actor output (the mean ``[..., A]``, plus the std parameter when heteroscedastic) of the actor on its
        input followed by the encoder's output."""
        x = self.network_input("actor", normalizers, obs)
        encoded = self.encode(params, x)
        if self.detach_encoder:
            encoded = jax.lax.stop_gradient(encoded)
        return self.actor_on(params, x, encoded)
