"""st_rl's state-estimator actor-critic (``EstimatorPPO``'s policy) as an ``(init, apply)`` pair.

An estimator MLP maps observation groups the actor reads to an estimate of ``K`` values; the actor reads its
observation groups followed by the estimate, detached::

    x = normalise(concat(actor groups))                      [..., D]
    e = estimator(x[..., columns])                           [..., K]   columns: the estimator's groups in x
    action mean = actor_mlp(concat(x, stop_gradient(e)))     [..., A]

Params: :class:`~agile_jax.networks.records.EstimatorParams` (actor ``{"mlp", "std"}``, critic ``{"mlp"}``,
estimator ``{"mlp"}``). The estimator's supervised loss and its config are the extension
:mod:`agile_jax.extensions.estimator`. Feed-forward policies only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import ClassVar

import numpy as np

from agile_jax.networks.actor_critic import ActorCritic
from agile_jax.networks.column_encoder import ColumnEncoderActorCritic, group_columns
from agile_jax.networks.mlp import MLP
from agile_jax.types import Array, Observation, Params


@dataclasses.dataclass(frozen=True)
class EstimatorActorCritic(ColumnEncoderActorCritic):
    """:class:`ActorCritic` whose actor reads its observation groups plus the estimator's estimate, detached
    (:class:`~agile_jax.networks.column_encoder.ColumnEncoderActorCritic` with the estimator as the encoder).

    Params: :class:`~agile_jax.networks.records.EstimatorParams` (actor ``{"mlp", "std"}``, critic ``{"mlp"}``,
    estimator ``{"mlp"}``); the actor MLP's input is ``D + estimate_size`` wide.

    Attributes:
        estimator_groups: the actor's observation groups the estimator reads (in the actor's order).
        estimate_size: width ``K`` of the estimate.
        estimator_hidden_dims: the estimator MLP's hidden widths (activation: the policy's).
    """

    detach_encoder: ClassVar[bool] = True
    estimator_groups: Sequence[str] = ()
    estimate_size: int = 0
    estimator_hidden_dims: Sequence[int] = (256, 128)

    @property
    def encoder_mlp(self) -> MLP:
        return MLP(tuple(self.estimator_hidden_dims), self.estimate_size, self.activation)

    @property
    def estimator_columns(self) -> np.ndarray:
        """Columns of the actor's (normalised) input the estimator reads ``[D_e]``."""
        return group_columns(self.obs_groups, self.obs_shapes, self.estimator_groups)

    def estimate(self, params: Params, normalizers: Mapping, obs: Observation) -> Array:
        """The estimate ``[..., K]`` (st_rl's ``get_estimated_state``)."""
        return self.encode(params, self.network_input("actor", normalizers, obs))


def with_estimator(networks: ActorCritic, groups: Sequence[str], estimate_size: int,
                   hidden_dims: Sequence[int]) -> EstimatorActorCritic:
    """``networks`` with an estimator of ``estimate_size`` values reading ``groups`` (empty: all actor groups).

    Raises:
        ValueError: a recurrent policy, or groups the actor does not read (the exported graph has only the
            actor's input).
    """
    if networks.is_recurrent:
        raise ValueError("estimator_cfg supports feed-forward policies only; set policy.class_name=ActorCritic")
    actor_groups = list(networks.obs_groups["actor"])
    groups = list(groups) or actor_groups
    unknown = [g for g in groups if g not in actor_groups]
    if unknown:
        raise ValueError(f"estimator obs_components {unknown} are not observation groups of the actor "
                         f"({actor_groups}); the estimator reads the policy observation only")
    fields = {f.name: getattr(networks, f.name) for f in dataclasses.fields(networks)}
    return EstimatorActorCritic(**fields, estimator_groups=tuple(groups), estimate_size=int(estimate_size),
                                estimator_hidden_dims=tuple(hidden_dims))

