"""One training iteration as one jitted, data-parallel function: rollout, returns, update.

``Trainer.iteration(state) -> (state, IterationOutput)`` is a pure function of the
:class:`TrainState`; the same state always gives the same result, which is what makes runs
deterministic and resumes exact.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import struct
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from agile_jax import precision
from agile_jax.algorithms import gae, optim, ppo, shaping
from agile_jax.algorithms.losses import Batch
from agile_jax.algorithms.recurrent import trajectory_minibatches
from agile_jax.networks import normalization
from agile_jax.networks.actor_critic import ActorCritic
from agile_jax.training import episodes, parallel
from agile_jax.training.rollout import make_stateful_rollout_fn
from agile_jax.types import Array, LossTerm, PRNGKey


@struct.dataclass
class TrainState:
    """Everything a run carries from one iteration to the next (and saves in checkpoints).

    Attributes:
        params: ``{"actor": ..., "critic": ...}`` network params.
        opt_state: optax state; holds the (adaptive) learning rate.
        normalizers: observation normaliser states of the networks that normalise.
        shaping: states of the rollout-side reward shapers, in list order.
        hyper: scheduled coefficients (``entropy_coef`` ...), so schedules resume exactly.
        env_state: batched env state ``[N, ...]`` (sharded over devices).
        key: PRNG key of the next iteration.
        iteration: number of iterations done.
        episodes: the last 100 finished episodes (returns and lengths), replicated.
        hidden: the policy's recurrent state between rollouts, ``{"actor": ..., "critic": ...}`` with leaves
            ``[N, ...]`` (sharded like the env state; empty for feed-forward networks).
    """

    params: Any
    opt_state: Any
    normalizers: dict
    shaping: tuple
    hyper: dict
    env_state: Any
    key: PRNGKey
    iteration: Array
    episodes: episodes.EpisodeWindow
    hidden: Any = ()


class IterationOutput(NamedTuple):
    """What the host needs after an iteration: replicated scalars only (one small device-to-host transfer).

    Attributes:
        metrics: scalar losses and statistics (``value``, ``surrogate``, ``entropy``, ``learning_rate`` ...).
        episode_stats: ``Train/mean_reward`` and ``Train/mean_episode_length`` over the last 100 finished
            episodes (NaN before the first one ends).
        episode_extras: ``Episode_Reward/<term>`` and ``Episode_Termination/<term>`` means over the
            episodes that ended in this iteration, plus ``episode_count``.
        finite: name -> bool, whether each checked quantity was free of NaN/inf.
    """

    metrics: dict
    episode_stats: dict
    episode_extras: dict
    finite: dict


class Collected(NamedTuple):
    """Output of the rollout half of an iteration."""

    env_state: Any
    transitions: Any
    infos: Any
    hidden: Any = ()


# Order in which non-finite quantities are reported (the first offender is named).
FINITE_CHECKS = ("observations", "rewards", "values", "loss", "params")


def _all_finite(tree, axis_name) -> Array:
    ok = jnp.all(jnp.array([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)] or [True]))
    return jax.lax.pmin(ok.astype(jnp.int32), axis_name) > 0


def _episode_extras(infos, axis_name) -> dict:
    """Means over the episodes that ended in the rollout, combined over devices."""
    done = infos.done.astype(jnp.float32)
    count = jax.lax.psum(jnp.sum(done), axis_name)
    denom = jnp.maximum(count, 1.0)
    out = {"episode_count": count}
    for name, sums in infos.episode_sums.items():
        out[f"Episode_Reward/{name}"] = jax.lax.psum(jnp.sum(sums * done), axis_name) / denom
    for name, fired in infos.termination_terms.items():
        ended = jnp.logical_and(fired, infos.done).astype(jnp.float32)
        out[f"Episode_Termination/{name}"] = jax.lax.psum(jnp.sum(ended), axis_name) / denom
    return out


def finish_iteration(window: episodes.EpisodeWindow, metrics: dict, infos, finite: dict,
                     axis_name: str) -> tuple[episodes.EpisodeWindow, IterationOutput]:
    """Adds the rollout's finished episodes to ``window`` and assembles the iteration's host outputs."""
    window = episodes.record(window, infos.done, infos.episode_return, infos.episode_length, axis_name)
    mean_return, mean_length = episodes.means(window)
    stats = {"Train/mean_reward": mean_return, "Train/mean_episode_length": mean_length}
    return window, IterationOutput(metrics=metrics, episode_stats=stats,
                                   episode_extras=_episode_extras(infos, axis_name), finite=finite)


OUTPUT_SPEC = IterationOutput(metrics=P(), episode_stats=P(), episode_extras=P(), finite=P())


def sharded_program(fn: Callable, mesh: Mesh, in_specs, out_specs, matmul_precision: str) -> Callable:
    """``fn`` as one jitted ``shard_map`` program over ``mesh``, traced at ``matmul_precision``."""
    program = jax.jit(jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False))
    return precision.with_precision(program, matmul_precision)


def collect_local(rollout, state: TrainState, key: PRNGKey, axis_name: str) -> Collected:
    """Runs ``rollout`` on this device's envs (inside ``shard_map``), with env ids global over the mesh.

    ``rollout(params, normalizers, env_state, hidden, key, env_ids) -> (env_state, hidden, transitions, infos)``;
    per-env keys derive from the global env ids, so the result does not depend on the device count.
    """
    n_local = jax.tree.leaves(state.env_state)[0].shape[0]
    env_ids = jax.lax.axis_index(axis_name) * n_local + jnp.arange(n_local)
    env_state, hidden, tr, infos = rollout(state.params, state.normalizers, state.env_state, state.hidden, key,
                                           env_ids)
    return Collected(env_state=env_state, transitions=tr, infos=infos, hidden=hidden)


@dataclass(frozen=True)
class Trainer:
    """Static pieces of a run and its pure ``init`` / ``iteration`` functions.

    Build it with :func:`make_trainer`. ``iteration`` is the fused, jitted iteration; ``collect`` and
    ``learn`` are its two halves as separate programs (``learn(state, collect(state))`` computes the same
    iteration), for timing collection and learning separately.
    """

    env: Any
    networks: ActorCritic
    cfg: Any
    tx: Any
    mesh: Mesh
    init: Callable[[PRNGKey], TrainState]
    iteration: Callable[[TrainState], tuple[TrainState, IterationOutput]]
    collect: Callable[[TrainState], Collected]
    learn: Callable[[TrainState, Collected], tuple[TrainState, IterationOutput]]


def _batch_from_rollout(tr, advantages, returns, extras: dict) -> Batch:
    return Batch(obs=tr.obs, actions=tr.actions, old_log_probs=tr.log_probs, old_values=tr.values,
                 advantages=advantages, returns=returns, old_mean=tr.action_mean, old_std=tr.action_std,
                 dones=tr.dones, hidden=tr.hidden, extras=extras)


def make_trainer(cfg, env, networks: ActorCritic, shapers: Sequence[shaping.RewardShaper] | None = None,
                 terms: Sequence[LossTerm] | None = None, augment=None, batch_extras: Sequence[Callable] = (),
                 lr_hooks: Sequence[Callable] = (), entropy_schedule: Callable | None = None,
                 mesh: Mesh | None = None) -> Trainer:
    """Assembles the PPO iteration for a batched env.

    Args:
        cfg: a ``TrainConfig`` (``algorithm`` and ``runner`` sections are used here).
        env: an ``envs.core.VecEnv`` whose ``num_envs`` is the *global* batch.
        networks: the actor-critic.
        shapers: rollout-side reward shapers (default: timeout bootstrap only).
        terms: PPO loss terms (default: surrogate, value, entropy).
        augment: minibatch augmentation (``Batch -> Batch``).
        batch_extras: ``(rollout, last_obs) -> dict`` of ``[T, N, ...]`` arrays merged into ``Batch.extras``.
        lr_hooks: ``(lr, hyper) -> lr`` applied per minibatch before the adaptive rule.
        entropy_schedule: ``(coef, iteration, mean_episode_length) -> coef`` decided at the start of each
            iteration from the episodes finished before it (AGILE's entropy annealing), or ``None``.
        mesh: device mesh (default: :func:`parallel.make_mesh` with ``runner.num_devices``).
    """
    alg, run = cfg.algorithm, cfg.runner
    mesh = mesh or parallel.make_mesh(run.num_devices)
    parallel.check_divisible(env.num_envs, mesh)
    axis = parallel.AXIS
    shapers = list(shapers if shapers is not None else [shaping.timeout_bootstrap(alg.gamma)])
    tx = optim.make_optimizer(alg.learning_rate, alg.max_grad_norm, alg.grad_clip_mode, alg.optimizer)
    rollout = make_stateful_rollout_fn(env, networks, run.num_steps_per_env)
    # Recurrent policies learn from whole trajectories of env blocks, feed-forward ones from shuffled samples.
    minibatch_fn = trajectory_minibatches if networks.is_recurrent else ppo.flat_minibatches
    update = ppo.make_update_fn(alg, networks, tx, terms=terms, augment=augment, minibatch_fn=minibatch_fn,
                                lr_hooks=lr_hooks, axis_name=axis)
    until = run.normalizer_until

    def local_collect(state: TrainState) -> Collected:
        _, key_roll, _ = jax.random.split(state.key, 3)
        return collect_local(rollout, state, key_roll, axis)

    def local_learn(state: TrainState, collected: Collected):
        key, _, key_update = jax.random.split(state.key, 3)
        env_state, tr, infos = collected.env_state, collected.transitions, collected.infos
        hyper = state.hyper
        if entropy_schedule is not None:  # decided from the episodes that ended before this iteration
            coef = entropy_schedule(hyper["entropy_coef"], state.iteration, episodes.means(state.episodes)[1])
            hyper = dict(hyper, entropy_coef=coef)
        # Value of the observation after the last step (the critic's state is read, not advanced).
        last_values, _ = networks.value_step(state.params, state.normalizers, env_state.obs, collected.hidden["critic"])
        # Rollout-side shaping (timeout bootstrap, ...), then GAE.
        shaping_states, rewards, shaping_metrics = shaping.apply_shapers(shapers, state.shaping, tr)
        advantages, returns = gae.compute_gae(rewards, tr.values, tr.dones, last_values, alg.gamma, alg.lam)
        shaping_states = shaping.update_shapers(shapers, shaping_states, returns)
        # Epochs x minibatches of PPO.
        extras = {}
        for build in batch_extras:
            extras.update(build(tr, env_state.obs))
        batch = _batch_from_rollout(tr, advantages, returns, extras)
        params, opt_state, hyper, metrics = update(state.params, state.opt_state, state.normalizers, hyper, batch,
                                                   key_update)
        # Normalisers see every stored observation once per iteration (RSL-RL 5.5).
        normalizers = {
            name: normalization.update(state.normalizers[name], x, until, axis)
            for name, x in networks.normalizer_inputs(tr.obs).items()
        }
        metrics = dict(metrics, **shaping_metrics, mean_std=jnp.mean(networks.action_std(params)),
                       mean_step_reward=jax.lax.pmean(jnp.mean(tr.rewards), axis))
        metrics["Train/entropy_coef"] = hyper["entropy_coef"]
        finite = {
            "observations": _all_finite(tr.obs, axis),
            "rewards": _all_finite(tr.rewards, axis),
            "values": _all_finite(tr.values, axis),
            "loss": _all_finite(metrics, axis),
            "params": _all_finite(params, axis),
        }
        window, out = finish_iteration(state.episodes, metrics, infos, finite, axis)
        new_state = TrainState(params=params, opt_state=opt_state, normalizers=normalizers, shaping=shaping_states,
                               hyper=hyper, env_state=env_state, key=key, iteration=state.iteration + 1,
                               episodes=window, hidden=collected.hidden)
        return new_state, out

    def local_iteration(state: TrainState):
        return local_learn(state, local_collect(state))

    state_spec = _state_spec()
    collected_spec = Collected(env_state=P(axis), transitions=P(None, axis), infos=P(None, axis), hidden=P(axis))
    sharded = lambda fn, in_specs, out_specs: sharded_program(fn, mesh, in_specs, out_specs, run.matmul_precision)
    iteration = sharded(local_iteration, (state_spec,), (state_spec, OUTPUT_SPEC))
    collect = sharded(local_collect, (state_spec,), collected_spec)
    learn = sharded(local_learn, (state_spec, collected_spec), (state_spec, OUTPUT_SPEC))

    reset = precision.with_precision(jax.jit(env.reset, out_shardings=parallel.env_sharded(mesh)),
                                     run.matmul_precision)

    def init(key: PRNGKey) -> TrainState:
        key_params, key_env, key_next = jax.random.split(key, 3)
        params = networks.init(key_params)
        env_keys = jax.random.split(key_env, env.num_envs)
        env_state = reset(env_keys)
        state = TrainState(
            params=params, opt_state=tx.init(params), normalizers=networks.init_normalizers(),
            shaping=shaping.init_shapers(shapers),
            hyper={"entropy_coef": jnp.asarray(alg.entropy_coef, jnp.float32), "num_updates": jnp.zeros((), jnp.int32)},
            env_state=env_state, key=key_next, iteration=jnp.zeros((), jnp.int32), episodes=episodes.init_window(),
            hidden=networks.init_hidden(env.num_envs),
        )
        return place_state(state, mesh)

    return Trainer(env=env, networks=networks, cfg=cfg, tx=tx, mesh=mesh, init=init, iteration=iteration,
                   collect=collect, learn=learn)


def _state_spec() -> TrainState:
    """Partition spec prefix of a :class:`TrainState`: env state split over devices, the rest replicated."""
    return TrainState(params=P(), opt_state=P(), normalizers=P(), shaping=P(), hyper=P(),
                      env_state=P(parallel.AXIS), key=P(), iteration=P(), episodes=P(), hidden=P(parallel.AXIS))


def place_state(state: TrainState, mesh: Mesh) -> TrainState:
    """Puts a (host or device) train state onto ``mesh`` with the trainer's shardings."""
    rep, env_sh = parallel.replicated(mesh), parallel.env_sharded(mesh)
    placed = parallel.put(state.replace(env_state=None, hidden=()), rep)
    return placed.replace(env_state=parallel.put(state.env_state, env_sh), hidden=parallel.put(state.hidden, env_sh))
