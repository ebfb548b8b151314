"""Named records of a policy's parts that exist once per network: its params and its recurrent state.

Each network layout has its params record, so the fields name the networks a policy has::

    ActorParams(actor)                                   an actor alone (a distillation student, a loaded policy)
    ActorCriticParams(actor, critic)                     ActorCritic, ActorCriticRecurrent, ActorCriticCNN
    EstimatorParams(actor, critic, estimator)            an actor reading an encoder's output (column_encoder.py)
    TeacherStudentParams(actor, critic, history_encoder) the teacher-student policy (teacher_student.py)

Every field holds that network's nested dict of arrays (Flax's own ``{"params": {"Dense_0": ...}}`` inside), and
the recurrent state of an actor-critic is an :class:`ActorCriticHidden` (a rollout that carries more, the acting
extensions' or a distillation teacher's state, has a record of :mod:`agile_jax.training.rollout`). A record is a
pytree (a flax ``struct.dataclass``), so ``jax.tree.map``, optimisers and checkpoints treat it like any other node;
its leaves flatten in field order.

The fields are in alphabetical order, the order in which a dict with the same keys flattens, and checkpoints
store a record's fields by name just as a dict's keys: a checkpoint holding ``{"actor": ..., "critic": ...}``
dicts restores into these records leaf for leaf.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from flax import struct

from agile_jax.types import Params


@struct.dataclass
class ActorParams:
    """Params of a policy that is an actor alone: a distillation student, or a policy loaded for acting."""

    actor: Params

    def by_network(self) -> dict[str, Params]:
        """``{network name: params}`` in field order, for code that treats every network alike."""
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}


@struct.dataclass
class ActorCriticParams(ActorParams):
    """Params of an actor and a critic (the feed-forward, recurrent and CNN actor-critics)."""

    critic: Params


@struct.dataclass
class EstimatorParams(ActorCriticParams):
    """Params of an actor-critic whose actor also reads the output of an encoder on some of its input columns
    (st_rl's state estimator, or a teacher-student policy's deployed student with its history encoder)."""

    estimator: Params


@struct.dataclass
class TeacherStudentParams(ActorCriticParams):
    """Params of the teacher-student policy: the actor holds the privilege encoder, and the history encoder (the
    student's encoder, trained by its own optimiser) has its own entry."""

    history_encoder: Params


@struct.dataclass
class ActorCriticHidden:
    """The recurrent state of an actor and a critic (each ``()`` for a feed-forward network), with leaves
    ``[N, ...]`` per env."""

    actor: Any
    critic: Any
