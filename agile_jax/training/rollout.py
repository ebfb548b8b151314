"""Rollout collection: ``lax.scan`` over ``num_steps_per_env`` steps of a vmapped env."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from agile_jax.networks import distributions
from agile_jax.networks.actor_critic import ActorCritic
from agile_jax.types import Array, PRNGKey, Transition


class EpisodeLog(NamedTuple):
    """Per-step episode outcomes ``[T, N]`` (meaningful where ``done``) for the runner's statistics."""

    done: Array
    episode_return: Array
    episode_length: Array


class RolloutCarry(NamedTuple):
    """Scan carry of the rollout."""

    env_state: object
    step: Array


def per_env_keys(key: PRNGKey, env_ids: Array) -> Array:
    """One key per env, derived from its *global* index so results do not depend on the device split."""
    return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, env_ids)


def make_rollout_fn(env, networks: ActorCritic, num_steps: int):
    """Builds ``rollout(params, normalizers, env_state, key, env_ids)``.

    Args:
        env: an ``envs.core.VecEnv`` (its ``step`` maps ``[N]`` states and ``[N, A]`` actions).
        networks: the actor-critic.
        num_steps: ``num_steps_per_env`` (T).

    Returns:
        ``rollout(...) -> (env_state, Transition [T, N], StepInfo [T, N])``; the transitions hold the
        observation each action was chosen on (RSL-RL stores the pre-step observation).
    """

    def step_fn(params, normalizers, key, env_ids, carry: RolloutCarry, _):
        state = carry.env_state
        obs = state.obs
        # Act: Gaussian sample around the actor mean with the state-independent std.
        mean = networks.actor_mean(params, normalizers, obs)
        std = jnp.broadcast_to(networks.action_std(params), mean.shape)
        keys = per_env_keys(jax.random.fold_in(key, carry.step), env_ids)
        actions = jax.vmap(distributions.sample)(keys, mean, std)
        log_probs = distributions.log_prob(mean, std, actions)
        values = networks.value(params, normalizers, obs)
        # Step every env (finished ones auto-reset).
        next_state, info = env.step(state, actions)
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
            hidden=(),
            extras={
                "bad_termination_sigma": info.bad_termination_sigma,
                "good_termination_sigma": info.good_termination_sigma,
            },
        )
        return RolloutCarry(next_state, carry.step + 1), (transition, info)

    def rollout(params, normalizers, env_state, key: PRNGKey, env_ids: Array):
        carry = RolloutCarry(env_state, jnp.zeros((), jnp.int32))
        carry, (transitions, infos) = jax.lax.scan(
            lambda c, x: step_fn(params, normalizers, key, env_ids, c, x), carry, None, length=num_steps
        )
        return carry.env_state, transitions, infos

    return rollout
