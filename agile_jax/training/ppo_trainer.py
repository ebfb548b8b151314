"""The PPO iteration (feed-forward or recurrent) as an :class:`~agile_jax.training.iteration.Algorithm`.

Per iteration, inside one jitted program: the extensions' ``schedule`` (from the episodes finished before
the iteration), the rollout, the extensions' ``shape`` (rewards), GAE, the extensions' ``update`` (statistics,
own networks), epochs x minibatches of PPO (:func:`agile_jax.algorithms.ppo.make_update_fn`, whose losses,
augmentation and learning-rate rules also come from the extensions), and the observation normalisers.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from agile_jax import parallel
from agile_jax.algorithms import gae, optim, ppo
from agile_jax.algorithms.recurrent import trajectory_minibatches
from agile_jax.extensions.base import Batch, Chain, Rollout, Spec, Stats
from agile_jax.networks import normalization
from agile_jax.networks.actor_critic import ActorCritic
from agile_jax.training import episodes
from agile_jax.training.assemble import build_extensions
from agile_jax.training.iteration import (
    Algorithm,
    Collected,
    InitialState,
    Learned,
    Trainer,
    TrainState,
    all_finite,
    build_trainer,
)
from agile_jax.training.rollout import make_stateful_rollout_fn
from agile_jax.types import PRNGKey


def _batch(rollout: Rollout, advantages, returns, extras: dict) -> Batch:
    tr = rollout.transitions
    return Batch(obs=tr.obs, actions=tr.actions, old_log_probs=tr.log_probs, old_values=tr.values,
                 advantages=advantages, returns=returns, old_mean=tr.action_mean, old_std=tr.action_std,
                 dones=tr.dones, hidden=tr.hidden, extras=extras)


def make_ppo_learn(cfg, networks: ActorCritic, extensions: Chain, tx, axis: str):
    """``learn(state, collected, key) -> Learned``: returns, extension hooks and the PPO update."""
    alg, until = cfg.algorithm, cfg.runner.normalizer_until
    minibatch_fn = trajectory_minibatches if networks.is_recurrent else ppo.flat_minibatches
    update = ppo.make_update_fn(alg, networks, tx, extensions, minibatch_fn=minibatch_fn, axis_name=axis)

    def learn(state: TrainState, collected: Collected, key: PRNGKey) -> Learned:
        tr, last_obs = collected.transitions, collected.env_state.obs
        # Schedules see the episodes that ended before this iteration.
        stats = Stats(iteration=state.iteration, mean_episode_length=episodes.means(state.episodes)[1],
                      num_updates=state.num_updates, target_iteration=state.target_iteration)
        ext_states = extensions.schedule(state.extensions, stats)
        # Value of the observation after the last step (the critic's state is read, not advanced).
        last_values, _ = networks.value_step(state.params, state.normalizers, last_obs, collected.hidden["critic"])
        # Rewards shaped by the extensions (normalisation, bootstraps, intrinsic rewards), then GAE.
        ext_states, rollout, shape_metrics = extensions.shape(ext_states, Rollout(tr, tr.rewards, last_obs))
        advantages, returns = gae.compute_gae(rollout.rewards, tr.values, tr.dones, last_values, alg.gamma, alg.lam)
        ext_states, ext_metrics = extensions.update(ext_states, rollout, returns, key)
        # Epochs x minibatches of PPO.
        batch = _batch(rollout, advantages, returns, extensions.batch_extras(ext_states, rollout))
        carry, metrics = update(ppo.SGDCarry(state.params, state.opt_state, state.num_updates), state.normalizers,
                                ext_states, batch, key)
        # Parts of the policy with optimisers of their own learn after PPO's epochs (PPO_TS's history encoder).
        ext_states, params, post_metrics = extensions.post_update(ext_states, carry.params, state.normalizers,
                                                                  rollout, key)
        carry = carry._replace(params=params)
        # Normalisers see every stored observation once per iteration (RSL-RL 5.5).
        normalizers = {name: normalization.update(state.normalizers[name], x, until, axis)
                       for name, x in networks.normalizer_inputs(tr.obs).items()}
        metrics = dict(metrics, **shape_metrics, **ext_metrics, **post_metrics,
                       mean_std=networks.mean_action_std(carry.params, tr.action_std),
                       mean_step_reward=jax.lax.pmean(jnp.mean(tr.rewards), axis))
        finite = {"observations": all_finite(tr.obs, axis), "rewards": all_finite(tr.rewards, axis),
                  "values": all_finite(tr.values, axis), "loss": all_finite(metrics, axis),
                  "params": all_finite(carry.params, axis)}
        new_state = state.replace(params=carry.params, opt_state=carry.opt_state, normalizers=normalizers,
                                  extensions=ext_states, num_updates=carry.num_updates, hidden=collected.hidden)
        return Learned(state=new_state, metrics=metrics, finite=finite)

    return learn


def make_trainer(cfg, env, networks: ActorCritic, extensions: Chain | None = None, mesh: Mesh | None = None) -> Trainer:
    """Assembles the PPO iteration for a batched env.

    Args:
        cfg: a ``TrainConfig`` (``algorithm`` and ``runner`` sections are used here).
        env: an ``envs.core.VecEnv`` whose ``num_envs`` is the *global* batch.
        networks: the actor-critic (feed-forward or recurrent).
        extensions: the run's extensions, PPO's own terms included (default: those ``cfg`` enables, see
            :func:`agile_jax.training.assemble.build_extensions`).
        mesh: device mesh (default: :func:`parallel.make_mesh` with ``runner.num_devices``).
    """
    alg = cfg.algorithm
    extensions = extensions if extensions is not None else build_extensions(cfg, env, networks)
    tx = optim.make_optimizer(alg.learning_rate, alg.max_grad_norm, alg.grad_clip_mode, alg.optimizer)
    spec = Spec(obs_shapes=dict(env.observation_shapes), action_size=env.action_size, num_envs=env.num_envs,
                networks=networks)

    acting = bool(extensions.actors)

    def init(key: PRNGKey, num_envs: int) -> InitialState:
        hidden = networks.init_hidden(num_envs)
        if acting:  # per-env state of the extensions that act, sharded like the envs
            hidden = {**hidden, "extensions": extensions.init_carry(jax.random.fold_in(key, 2), num_envs)}
        return InitialState(params=networks.init(key), normalizers=networks.init_normalizers(),
                            extensions=extensions.init(jax.random.fold_in(key, 1), spec), hidden=hidden)

    algorithm = Algorithm(rollout=make_stateful_rollout_fn(env, networks, cfg.runner.num_steps_per_env, extensions),
                          learn=make_ppo_learn(cfg, networks, extensions, tx, parallel.AXIS), init=init,
                          rollout_reads_extensions=acting)
    return build_trainer(cfg, env, networks, tx, algorithm, mesh, extensions)
