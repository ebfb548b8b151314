"""An actor that reads its input followed by an encoder's output on some of its columns.

``actor_mlp(concat(x, encoder(x[..., estimator_columns])))``, with ``x`` the actor's normalised input. st_rl's
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
class ColumnEncoderActorCritic(ActorCritic):
    """The shared base; a subclass names its encoder (:attr:`encoder_mlp`) and the columns it reads
    (:attr:`estimator_columns`), and whether the actor's gradient stops at the encoder's output
    (:attr:`detach_encoder`)."""

    detach_encoder: ClassVar[bool] = False

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
        critic = super().init(key_base).critic
        actor = self.init_actor(key_actor, self.obs_dim("actor") + self.encoder_mlp.output_dim)
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
        return self.actor_mlp.apply(params.actor["mlp"], jnp.concatenate([x, encoded], axis=-1))
