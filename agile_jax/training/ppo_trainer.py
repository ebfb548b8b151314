"""The PPO iteration (feed-forward or recurrent) as an :class:`~agile_jax.training.iteration.Algorithm`.

Per iteration, inside one jitted program: the extensions' ``schedule`` (from the episodes finished before
the iteration), the rollout, the extensions' ``shape`` (rewards), GAE, the extensions' ``update`` (statistics,
own networks), epochs x minibatches of PPO (:func:`agile_jax.algorithms.ppo.make_update_fn`, whose losses,
augmentation and learning-rate rules also come from the extensions), and the observation normalisers.

The run's extensions come from :func:`build_chain`, which walks the method records of
:data:`agile_jax.extensions.METHODS` around PPO's own terms.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from agile_jax.algorithms import gae, optim, ppo
from agile_jax.algorithms.recurrent import trajectory_minibatches
from agile_jax.config_base import ConfigError
from agile_jax.extensions import METHODS, critic_warmup, entropy, termination, tppo
from agile_jax.extensions.base import Batch, Chain, Extension, Rollout, Spec, Stats, chain
from agile_jax.extensions.method import BuildContext, env_spec
from agile_jax.networks import normalization
from agile_jax.networks.actor_critic import ActorCritic
from agile_jax.policies.latents import onnx_estimator_latent
from agile_jax.policies.load import load_policy
from agile_jax.runtime import episodes, parallel
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
from agile_jax.training.rollout import ActingHidden, make_stateful_rollout_fn
from agile_jax.types import PRNGKey

# The class names a PPO run accepts in ``algorithm.class_name`` (st_rl's and LeggedGym-Ex's names): plain PPO and
# every name a method's record lists.
PPO_CLASSES = ("PPO", *dict.fromkeys(name for method in METHODS for name in method.class_names))


def check_algorithm_class(cfg) -> None:
    """One line for an unknown ``algorithm.class_name`` or one that names a method the config leaves off."""
    name = cfg.algorithm.class_name
    if name not in PPO_CLASSES:
        raise ConfigError(f"unknown algorithm.class_name '{name}'; available: {list(PPO_CLASSES)} (distillation: "
                          "experiments/distill.py)")
    for method in METHODS:
        if name in method.class_names and not method.enabled(cfg):
            raise ConfigError(f"algorithm.class_name={name} needs {method.block}.enabled=true (and its settings)")


def build_context(env, cfg, mirror_obs=None, mirror_actions=None) -> BuildContext:
    """The methods' :class:`BuildContext` for ``env`` under ``cfg``: the env's spec (mirror functions: the user's,
    else the env's), the shared PPO settings (``cfg.algorithm``), the data axis and the policy loaders of the
    training layer."""
    return BuildContext(env=env_spec(env, mirror_obs, mirror_actions), ppo=cfg.algorithm, axis=parallel.AXIS,
                        load_policy=load_policy, load_estimator_latent=onnx_estimator_latent)


def build_networks(cfg, ctx: BuildContext, networks: ActorCritic) -> ActorCritic:
    """``networks`` wrapped by every enabled method that changes the policy, in :data:`METHODS` order."""
    for method in METHODS:
        if method.networks is not None and method.enabled(cfg):
            networks = method.networks(cfg, ctx, networks)
    return networks


def ppo_terms(cfg, max_episode_length: int) -> list[Extension]:
    """PPO's own extensions (timeout bootstrap, surrogate, value, entropy) with the entropy annealing and the critic
    warm-up of ``cfg`` applied (the surrogate and entropy terms wait for the value phase to end)."""
    alg = cfg.algorithm
    schedule = entropy.make_schedule(alg.entropy_coef, cfg.runner.max_iterations, max_episode_length, cfg.runner)
    timeout, surrogate, value, ent = ppo.default_extensions(alg, schedule)
    return [timeout, *_value_phase(cfg, [surrogate, value, ent], value)]


def _value_phase(cfg, extensions: Sequence[Extension], value: Extension) -> list[Extension]:
    """``extensions`` with their losses off in the critic warm-up's value phase, ``value``'s excepted."""
    warmup = cfg.algorithm.critic_warmup_steps
    return critic_warmup.value_only(extensions, warmup, value) if warmup > 0 else list(extensions)


def build_chain(cfg, ctx: BuildContext, networks: ActorCritic, extra: Sequence[Extension] = ()) -> Chain:
    """Every extension the config enables, plus ``extra`` ones (user methods), as one :class:`Chain`.

    Order: the enabled methods of stage ``first`` (in :data:`METHODS` order: AMP, reward normalisation, RND),
    ``extra``, the timeout bootstrap, the termination bootstrap, PPO's surrogate, value and entropy terms (left
    out when TPPO replaces them), then the enabled methods of stage ``rest``. ``extra`` extensions thus add
    rewards as RSL-RL adds RND's (before bootstrapping), and their losses are summed before PPO's.
    """
    check_algorithm_class(cfg)
    timeout, surrogate, value, ent = ppo_terms(cfg, ctx.env.max_episode_length)
    policy = [surrogate, value, ent]
    if tppo.replaces_ppo_terms(cfg):  # TPPO as DAgger: no surrogate, value or entropy term
        if cfg.algorithm.critic_warmup_steps > 0:
            raise ConfigError("algorithm.critic_warmup_steps trains PPO's value term alone first, and TPPO without "
                              "PPO (tppo_cfg.using_ppo=false) has none; set algorithm.critic_warmup_steps=0")
        policy = []
    built = {stage: [] for stage in ("first", "rest")}
    for method in METHODS:
        if method.enabled(cfg):
            built[method.stage].extend(method.build(cfg, ctx, networks))
    # The value phase of a critic warm-up trains the critic alone: the methods' losses wait too.
    first, extra, rest = (_value_phase(cfg, part, value) for part in (built["first"], extra, built["rest"]))
    return chain(first, extra, [timeout], [termination.extension(cfg.algorithm.gamma), *policy, *rest])


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
        last_values, _ = networks.value_step(state.params, state.normalizers, last_obs, collected.hidden.critic)
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
            :func:`build_chain`).
        mesh: device mesh (default: :func:`parallel.make_mesh` with ``runner.num_devices``).
    """
    alg = cfg.algorithm
    extensions = extensions if extensions is not None else build_chain(cfg, build_context(env, cfg), networks)
    tx = optim.optimizer_from(alg)
    spec = Spec(obs_shapes=dict(env.observation_shapes), action_size=env.action_size, num_envs=env.num_envs,
                networks=networks)

    acting = bool(extensions.actors)

    def init(key: PRNGKey, num_envs: int) -> InitialState:
        hidden = networks.init_hidden(num_envs)
        if acting:  # per-env state of the extensions that act, sharded like the envs
            hidden = ActingHidden(actor=hidden.actor, critic=hidden.critic,
                                  extensions=extensions.init_carry(jax.random.fold_in(key, 2), num_envs))
        return InitialState(params=networks.init(key), normalizers=networks.init_normalizers(),
                            extensions=extensions.init(jax.random.fold_in(key, 1), spec), hidden=hidden)

    algorithm = Algorithm(rollout=make_stateful_rollout_fn(env, networks, cfg.runner.num_steps_per_env, extensions),
                          learn=make_ppo_learn(cfg, networks, extensions, tx, parallel.AXIS), init=init,
                          rollout_reads_extensions=acting)
    return build_trainer(cfg, env, networks, tx, algorithm, mesh, extensions)
