"""Rollout collection: ``lax.scan`` over ``num_steps_per_env`` steps of a vmapped env.

The policy's recurrent state rides in the scan carry: each transition stores the state *before* acting
(what the update replays from), and the state of an env is zeroed right after its episode ends
(RSL-RL's ``reset(dones)`` in ``process_env_step``). Feed-forward networks carry an empty state.
Extensions that take part in acting (an :class:`~agile_jax.extensions.base.Actor`, e.g. TPPO's teacher) run
after the policy sampled and after the env stepped, with their per-env state in ``hidden.extensions``
(:class:`ActingHidden`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import struct

from agile_jax.extensions.base import ActStep, Chain, named_key
from agile_jax.networks import distributions
from agile_jax.networks.actor_critic import ActorCritic
from agile_jax.networks.records import ActorCriticHidden
from agile_jax.networks.recurrent import reset_state
from agile_jax.types import Array, PRNGKey, Transition


class EpisodeLog(NamedTuple):
    """Per-step episode outcomes ``[T, N]`` (meaningful where ``done``) for the runner's statistics."""

    done: Array
    episode_return: Array
    episode_length: Array


class RolloutCarry(NamedTuple):
    """Scan carry of the rollout.

    Attributes:
        env_state: batched env state ``[N, ...]``.
        hidden: recurrent state, an :class:`~agile_jax.networks.records.ActorCriticHidden` (leaves ``[N, ...]``;
            empty for MLPs), an :class:`ActingHidden` with extensions that act, a :class:`DistillationHidden` when
            distilling.
        step: control step within the rollout.
    """

    env_state: object
    hidden: Any
    step: Array


@struct.dataclass
class ActingHidden(ActorCriticHidden):
    """The recurrent state of actor and critic, and the per-env state of the extensions that act, ``{name:
    state}`` (see :class:`~agile_jax.extensions.base.Actor`); fields in alphabetical order, as
    :mod:`agile_jax.networks.records` explains."""

    extensions: dict

    @property
    def policy(self) -> ActorCriticHidden:
        """The actor's and the critic's state alone (what each transition stores)."""
        return ActorCriticHidden(actor=self.actor, critic=self.critic)


@struct.dataclass
class DistillationHidden:
    """The recurrent state of a distillation rollout: the student's (the actor of the student's actor-critic) and
    the teacher's, leaves ``[N, ...]`` (each empty for a feed-forward network); fields in alphabetical order."""

    actor: Any
    teacher: Any


def per_env_keys(key: PRNGKey, env_ids: Array) -> Array:
    """One key per env, derived from its *global* index so results do not depend on the device split."""
    return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, env_ids)


def make_stateful_rollout_fn(env, networks: ActorCritic, num_steps: int, extensions: Chain | None = None):
    """Builds ``rollout(params, normalizers, env_state, hidden, key, env_ids)``.

    Args:
        env: an ``envs.core.VecEnv`` (its ``step`` maps ``[N]`` states and ``[N, A]`` actions).
        networks: the actor-critic (feed-forward or recurrent).
        num_steps: ``num_steps_per_env`` (T).
        extensions: the run's extensions; those that act (:attr:`Chain.actors`) run each step, and the rollout
            then takes their states as a last argument ``ext_states`` and carries their per-env state in an
            :class:`ActingHidden`. Without actors the rollout runs no extension code.

    Returns:
        ``rollout(...) -> (env_state, hidden, Transition [T, N], StepInfo [T, N])``; the transitions hold the
        observation each action was chosen on (RSL-RL stores the pre-step observation) and the recurrent
        state before acting; ``hidden`` is the state after the last step (zeroed for finished envs).
    """

    def step_fn(params, normalizers, key, env_ids, carry: RolloutCarry, _, ext_states=None):
        state, hidden = carry.env_state, carry.hidden
        obs = state.obs
        policy_hidden = hidden.policy if acting else hidden
        # Act: Gaussian sample around the actor mean (std state-independent or from the actor's output).
        (mean, std), actor_hidden = networks.actor_dist_step(params, normalizers, obs, hidden.actor)
        std = jnp.broadcast_to(std, mean.shape)
        keys = per_env_keys(jax.random.fold_in(key, carry.step), env_ids)
        actions = jax.vmap(distributions.sample)(keys, mean, std)
        if acting:  # extensions may replace actions per env; the executed ones are stored
            act_keys = per_env_keys(jax.random.fold_in(named_key(key, "act"), carry.step), env_ids)
            ext_carry, actions, records = extensions.act(ext_states, hidden.extensions,
                                                         ActStep(obs, actions, mean, std, carry.step), act_keys)
        log_probs = distributions.log_prob(mean, std, actions)
        values, critic_hidden = networks.value_step(params, normalizers, obs, hidden.critic)
        # Step every env (finished ones auto-reset) and clear the recurrent state of finished episodes.
        next_state, info = env.step(state, actions)
        next_hidden = reset_state(ActorCriticHidden(actor=actor_hidden, critic=critic_hidden), info.done)
        extras = {"bad_termination_sigma": info.bad_termination_sigma,
                  "good_termination_sigma": info.good_termination_sigma}
        if acting:
            next_hidden = ActingHidden(actor=next_hidden.actor, critic=next_hidden.critic,
                                       extensions=extensions.process_env_step(ext_states, ext_carry, info.done,
                                                                              act_keys))
            extras["act"] = records
        transition = Transition(
            obs=obs,
            actions=actions,
            rewards=info.reward,
            dones=info.done,
            time_outs=info.time_out,
            values=values,
            log_probs=log_probs,
            action_mean=mean,
            action_std=std,
            hidden=policy_hidden,
            extras=extras,
        )
        return RolloutCarry(next_state, next_hidden, carry.step + 1), (transition, info)

    acting = extensions is not None and bool(extensions.actors)
    return _scan_steps(step_fn, num_steps)


def _scan_steps(step_fn, num_steps: int):
    """``rollout(params, normalizers, env_state, hidden, key, env_ids)``: ``num_steps`` of ``step_fn`` in a scan."""

    def rollout(params, normalizers, env_state, hidden, key: PRNGKey, env_ids: Array, ext_states=None):
        carry = RolloutCarry(env_state, hidden, jnp.zeros((), jnp.int32))
        acting = {} if ext_states is None else {"ext_states": ext_states}  # extension states, for their act hooks
        carry, (transitions, infos) = jax.lax.scan(
            lambda c, x: step_fn(params, normalizers, key, env_ids, c, x, **acting), carry, None, length=num_steps
        )
        return carry.env_state, carry.hidden, transitions, infos

    return rollout


def make_rollout_fn(env, networks: ActorCritic, num_steps: int):
    """Builds ``rollout(params, normalizers, env_state, key, env_ids) -> (env_state, Transition, StepInfo)``.

    The stateless form of :func:`make_stateful_rollout_fn`: a recurrent policy starts from a zero state and
    its final state is dropped (fine for evaluation and notebooks; training carries the state).
    """
    stateful = make_stateful_rollout_fn(env, networks, num_steps)

    def rollout(params, normalizers, env_state, key: PRNGKey, env_ids: Array):
        hidden = networks.init_hidden(jax.tree.leaves(env_state)[0].shape[0])
        env_state, _, transitions, infos = stateful(params, normalizers, env_state, hidden, key, env_ids)
        return env_state, transitions, infos

    return rollout


class DistillTransition(NamedTuple):
    """One control step of a distillation rollout, stored as ``[T, N, ...]``.

    Attributes:
        obs: observation groups seen before the step.
        actions: the student's sampled actions ``[T, N, A]``.
        teacher_actions: the teacher's deterministic actions on the same observation ``[T, N, A]``.
        dones: episode ended at this step ``[T, N]``.
        hidden: the student's state before acting (empty for MLP students).
        action_std: the std the student sampled with ``[T, N, A]``.
    """

    obs: Any
    actions: Array
    teacher_actions: Array
    dones: Array
    hidden: Any
    action_std: Any = ()


def make_distill_rollout_fn(env, student: ActorCritic, teacher, num_steps: int):
    """Builds ``rollout(params, normalizers, env_state, hidden, key, env_ids)`` for distillation.

    The student (the ``actor`` of ``student``) samples the actions; ``teacher(obs, state) -> (actions, state)``
    labels them. ``hidden`` is a :class:`DistillationHidden`, both states zeroed for finished episodes.

    Returns:
        ``rollout(...) -> (env_state, hidden, DistillTransition [T, N], StepInfo [T, N])``.
    """

    def step_fn(params, normalizers, key, env_ids, carry: RolloutCarry, _):
        state, hidden = carry.env_state, carry.hidden
        # The student acts (sampled), the teacher labels (deterministic).
        (mean, std), student_hidden = student.actor_dist_step(params, normalizers, state.obs, hidden.actor)
        std = jnp.broadcast_to(std, mean.shape)
        keys = per_env_keys(jax.random.fold_in(key, carry.step), env_ids)
        actions = jax.vmap(distributions.sample)(keys, mean, std)
        teacher_actions, teacher_hidden = teacher(state.obs, hidden.teacher)
        # Step every env and clear the states of finished episodes.
        next_state, info = env.step(state, actions)
        next_hidden = reset_state(DistillationHidden(actor=student_hidden, teacher=teacher_hidden), info.done)
        transition = DistillTransition(obs=state.obs, actions=actions, teacher_actions=teacher_actions,
                                       dones=info.done, hidden=hidden.actor, action_std=std)
        return RolloutCarry(next_state, next_hidden, carry.step + 1), (transition, info)

    return _scan_steps(step_fn, num_steps)
