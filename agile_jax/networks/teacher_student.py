"""LeggedGym-Ex's teacher-student actor-critic (``ActorCriticTS``) as an ``(init, apply)`` pair.

Two encoders produce a latent of ``num_latent_dims`` values that the actor reads after its observation::

    x = normalise(concat(actor groups))                     [..., D]
    p = normalise(concat(privileged groups))                [..., P]   (normalised when the critic's input is)
    z = privilege_encoder(p)                                [..., L]   teacher latent (PPO trains it)
    z_hat = history_encoder(x[..., history columns])        [..., L]   student latent (trained to match z)
    teacher mean = actor_mlp(concat(x, z))                  (``act``: the rollout and PPO's forward pass)
    student mean = actor_mlp(concat(x, z_hat))              (``act_student``: evaluation and export)

The critic reads its own observation set, as in :class:`ActorCritic`. Params
(:class:`~agile_jax.networks.records.TeacherStudentParams`)::

    actor: {"mlp", "std", "privilege_encoder"}, critic: {"mlp"}, history_encoder: {"mlp"}

The privilege encoder sits in the actor's params so that per-network gradient clipping treats it as part of the
actor (LeggedGym-Ex clips actor, critic, privilege encoder and std together; joint clipping does the same). The
history encoder has its own entry: PPO's loss never reads it, and its own optimiser trains it
(:mod:`agile_jax.extensions.teacher_student`).

The history groups must be groups of the actor's observation, so the deployed student takes the actor's
observation alone (for the T1 task the policy group already carries five frames of history).
:meth:`TeacherStudentActorCritic.deployed` gives the student as a :class:`StudentActorCritic`, which the
exporters, evaluation and ``get_inference_policy`` use.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from agile_jax.networks import normalization
from agile_jax.networks.actor_critic import ActorCritic, concat_groups
from agile_jax.networks.column_encoder import ColumnEncoderActorCritic, LatentActorCritic, group_columns
from agile_jax.networks.mlp import MLP
from agile_jax.networks.records import EstimatorParams, TeacherStudentParams
from agile_jax.types import Array, Observation, Params, PRNGKey


@dataclasses.dataclass(frozen=True)
class TeacherStudentActorCritic(LatentActorCritic):
    """The teacher-student policy (see the module docstring): a
    :class:`~agile_jax.networks.column_encoder.LatentActorCritic` whose latent is the teacher's or the student's.

    ``obs_groups`` holds, besides ``"actor"`` and ``"critic"``, the ``"privileged"`` groups the privilege encoder
    reads and the ``"history"`` groups (groups of the actor) the history encoder reads.

    Attributes:
        num_latent_dims: width ``L`` of the latent.
        privilege_encoder_hidden_dims: hidden widths of the privilege encoder MLP.
        history_encoder_hidden_dims: hidden widths of the history encoder MLP.
    """

    num_latent_dims: int = 8
    privilege_encoder_hidden_dims: Sequence[int] = (256, 128)
    history_encoder_hidden_dims: Sequence[int] = (256, 128)

    # -- structure ----------------------------------------------------------------------------------
    @property
    def latent_width(self) -> int:
        return self.num_latent_dims

    @property
    def privilege_encoder_mlp(self) -> MLP:
        return MLP(tuple(self.privilege_encoder_hidden_dims), self.num_latent_dims, self.activation)

    @property
    def history_encoder_mlp(self) -> MLP:
        return MLP(tuple(self.history_encoder_hidden_dims), self.num_latent_dims, self.activation)

    @property
    def history_columns(self) -> np.ndarray:
        """Columns of the (normalised) actor input the history encoder reads ``[H]``."""
        return group_columns(self.obs_groups, self.obs_shapes, self.obs_groups["history"])

    # -- init ---------------------------------------------------------------------------------------
    def init(self, key: PRNGKey) -> TeacherStudentParams:
        """Fresh params: the actor's input widened by the latent, the two encoders."""
        key_base, key_actor, key_privileged, key_history = jax.random.split(key, 4)
        actor, critic = self.init_actor_and_critic(key_base, key_actor)
        privileged = self.privilege_encoder_mlp.init(key_privileged, jnp.zeros((1, self.obs_dim("privileged"))))
        return TeacherStudentParams(actor={**actor, "privilege_encoder": privileged}, critic=critic,
                                    history_encoder=self.init_history_encoder(key_history))

    def init_history_encoder(self, key: PRNGKey) -> Params:
        """Fresh history encoder params ``{"mlp"}``."""
        return {"mlp": self.history_encoder_mlp.init(key, jnp.zeros((1, len(self.history_columns))))}

    def init_normalizers(self) -> dict[str, normalization.NormalizerState]:
        """The actor's and critic's normalisers, and the privileged input's when the critic normalises."""
        out = super().init_normalizers()
        if self.critic_obs_normalization:
            out["privileged"] = normalization.init(self.obs_dim("privileged"))
        return out

    def normalizer_inputs(self, obs: Observation) -> dict[str, Array]:
        """Raw inputs of every normaliser (the privileged one included)."""
        out = super().normalizer_inputs(obs)
        if self.critic_obs_normalization:
            out["privileged"] = concat_groups(obs, self.obs_groups["privileged"], self.obs_shapes)
        return out

    # -- apply --------------------------------------------------------------------------------------
    def teacher_latent(self, params: Params, normalizers: Mapping, obs: Observation) -> Array:
        """``z = privilege_encoder(p)`` ``[..., L]``."""
        p = self.network_input("privileged", normalizers, obs)
        return self.privilege_encoder_mlp.apply(params.actor["privilege_encoder"], p)

    def history_input(self, normalizers: Mapping, obs: Observation) -> Array:
        """The history encoder's input: the history columns of the normalised actor input ``[..., H]``."""
        return self.network_input("actor", normalizers, obs)[..., self.history_columns]

    def student_latent(self, params: Params, normalizers: Mapping, obs: Observation) -> Array:
        """``z_hat = history_encoder(history)`` ``[..., L]``."""
        return self.history_encoder_mlp.apply(params.history_encoder["mlp"], self.history_input(normalizers, obs))

    def _actor_on(self, params: Params, normalizers: Mapping, obs: Observation, latent: Array) -> Array:
        return self.actor_on(params, self.network_input("actor", normalizers, obs), latent)

    def actor_output(self, params: Params, normalizers: Mapping, obs: Observation) -> Array:
        """The teacher's raw actor output ``[..., A]`` (LeggedGym-Ex's ``act``: the privileged latent)."""
        return self._actor_on(params, normalizers, obs, self.teacher_latent(params, normalizers, obs))

    def act_student(self, params: Params, normalizers: Mapping, obs: Observation) -> Array:
        """The student's deterministic action ``[..., A]`` (LeggedGym-Ex's ``act_student``: the history latent)."""
        output = self._actor_on(params, normalizers, obs, self.student_latent(params, normalizers, obs))
        return self.output_mean(output)

    # -- deployment ---------------------------------------------------------------------------------
    def deployed(self, params: TeacherStudentParams) -> tuple[StudentActorCritic, EstimatorParams]:
        """The student as a policy of its own, and its params (actor, critic, the history encoder as estimator)."""
        base = {f.name: getattr(self, f.name) for f in dataclasses.fields(ActorCritic)}
        student = StudentActorCritic(**base, num_latent_dims=self.num_latent_dims,
                                     history_encoder_hidden_dims=tuple(self.history_encoder_hidden_dims))
        actor = {k: v for k, v in params.actor.items() if k != "privilege_encoder"}
        return student, EstimatorParams(actor=actor, critic=params.critic, estimator=params.history_encoder)


@dataclasses.dataclass(frozen=True)
class StudentActorCritic(ColumnEncoderActorCritic):
    """The deployed student of a :class:`TeacherStudentActorCritic`: ``actor_mlp(concat(x, history_encoder(x_h)))``.

    Params :class:`~agile_jax.networks.records.EstimatorParams` (actor ``{"mlp", "std"}``, critic ``{"mlp"}``,
    estimator ``{"mlp"}``): the history encoder is the encoder of
    :class:`~agile_jax.networks.column_encoder.ColumnEncoderActorCritic`, in the exporters' estimator slot, so ONNX,
    TorchScript and ``policy.yaml`` need nothing of their own.

    Attributes:
        num_latent_dims: width ``L`` of the latent.
        history_encoder_hidden_dims: hidden widths of the history encoder MLP.
    """

    num_latent_dims: int = 8
    history_encoder_hidden_dims: Sequence[int] = (256, 128)

    @property
    def encoder_mlp(self) -> MLP:
        return MLP(tuple(self.history_encoder_hidden_dims), self.num_latent_dims, self.activation)

    @property
    def estimator_columns(self) -> np.ndarray:
        """Columns of the normalised input the history encoder reads ``[H]`` (the exporters' name)."""
        return group_columns(self.obs_groups, self.obs_shapes, self.obs_groups["history"])


def with_teacher_student(networks: ActorCritic, privileged_groups: Sequence[str], history_groups: Sequence[str],
                         num_latent_dims: int, privilege_encoder_hidden_dims: Sequence[int],
                         history_encoder_hidden_dims: Sequence[int]) -> TeacherStudentActorCritic:
    """``networks`` turned into a teacher-student policy.

    Args:
        networks: a feed-forward :class:`ActorCritic` (its actor, critic and settings are kept).
        privileged_groups: env groups of the privilege encoder's input (e.g. the critic's).
        history_groups: groups of the actor's observation the history encoder reads (empty: all of them).
        num_latent_dims: latent width ``L``; ``-1``: the width of the privileged input (LeggedGym-Ex's go2_ts).
        privilege_encoder_hidden_dims, history_encoder_hidden_dims: the encoders' hidden widths.

    Raises:
        ValueError: a recurrent policy, unknown privileged groups, or history groups the actor does not read.
    """
    if networks.is_recurrent:
        raise ValueError("the teacher-student policy is feed-forward only; set policy.class_name=ActorCritic")
    actor_groups = list(networks.obs_groups["actor"])
    history = list(history_groups) or actor_groups
    unknown = [g for g in privileged_groups if g not in networks.obs_shapes]
    if unknown or not privileged_groups:
        raise ValueError(f"privileged observation groups {unknown or []} are not groups of the environment "
                         f"({sorted(networks.obs_shapes)}); fix runner.obs_groups.privileged")
    outside = [g for g in history if g not in actor_groups]
    if outside:
        raise ValueError(f"history groups {outside} are not observation groups of the actor ({actor_groups}); the "
                         "deployed student reads the actor's observation only: add them to runner.obs_groups.actor")
    width = sum(int(np.prod(networks.obs_shapes[g])) for g in privileged_groups)
    fields = {f.name: getattr(networks, f.name) for f in dataclasses.fields(networks)}
    fields["obs_groups"] = {**dict(networks.obs_groups), "privileged": list(privileged_groups), "history": history}
    return TeacherStudentActorCritic(**fields, num_latent_dims=width if num_latent_dims == -1 else int(num_latent_dims),
                                     privilege_encoder_hidden_dims=tuple(privilege_encoder_hidden_dims),
                                     history_encoder_hidden_dims=tuple(history_encoder_hidden_dims))
