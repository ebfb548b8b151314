"""One training iteration as one jitted, data-parallel function, for any on-policy method.

``Trainer.iteration(state) -> (state, IterationOutput)`` is a pure function of the
:class:`TrainState`; the same state always gives the same result, which is what makes runs
deterministic and resumes exact. :func:`build_trainer` assembles it from an :class:`Algorithm` (its
rollout, its learning step and its initial state): device mesh and shardings, the env reset, the episode
window and the host outputs are shared by PPO (:mod:`agile_jax.training.ppo_trainer`), recurrent PPO and
distillation (:mod:`agile_jax.training.distill_runner`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import struct
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from agile_jax.runtime import episodes, parallel, precision
from agile_jax.types import Array, PRNGKey


@struct.dataclass
class TrainState:
    """Everything a run carries from one iteration to the next (and saves in checkpoints).

    Attributes:
        params: network params, a record with one field per network (:mod:`agile_jax.networks.records`:
            ``params.actor``, ``params.critic`` ...).
        opt_state: optax state; holds the (adaptive) learning rate.
        normalizers: ``{observation set: state}``, the normaliser states of the networks that normalise (keyed
            like ``runner.obs_groups``: ``"actor"``, ``"critic"``, ``"privileged"``; an entry only where enabled).
        extensions: ``{name: state}``, each extension's own state (entropy coefficient, reward statistics,
            RND networks and optimiser ...), so schedules and extension statistics resume exactly.
        env_state: batched env state ``[N, ...]`` (sharded over devices).
        key: PRNG key of the next iteration.
        iteration: number of iterations done.
        num_updates: optimiser steps done.
        episodes: the last 100 finished episodes (returns and lengths), replicated.
        hidden: the policy's recurrent state between rollouts, with leaves ``[N, ...]`` (sharded like the env
            state; empty for feed-forward networks): an :class:`~agile_jax.networks.records.ActorCriticHidden`, or a
            record of :mod:`agile_jax.training.rollout` that adds the extensions' or the teacher's state.
        target_iteration: the iteration the current ``learn`` call stops at (RSL-RL's ``tot_iter = start_iter +
            num_learning_iterations``; ``runner.max_iterations`` until ``learn`` sets it). Schedules measure
            their progress against it; it belongs to the call, not to the run, so checkpoints do not store it.
    """

    params: Any
    opt_state: Any
    normalizers: dict
    extensions: dict
    env_state: Any
    key: PRNGKey
    iteration: Array
    num_updates: Array
    episodes: episodes.EpisodeWindow
    hidden: Any = ()
    target_iteration: Any = None


class IterationOutput(NamedTuple):
    """What the host needs after an iteration: replicated scalars only (one small device-to-host transfer).

    Attributes:
        metrics: scalar losses and statistics (``value``, ``surrogate``, ``entropy``, ``learning_rate`` ...).
        episode_stats: ``Train/mean_reward`` and ``Train/mean_episode_length`` over the last 100 finished
            episodes (NaN before the first one ends).
        episode_extras: ``Episode_Reward/<term>`` and ``Episode_Termination/<term>`` means over the
            episodes that ended in this iteration, plus ``episode_count``, and ``Curriculum/<name>``: the
            env's curriculum metrics averaged over every env at the rollout's last step.
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


def all_finite(tree, axis_name) -> Array:
    """Whether every leaf of ``tree`` is finite on every device (a replicated bool)."""
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
    for name, values in infos.curriculum.items():  # the rollout's last step, over every env
        last = values[-1].astype(jnp.float32)
        out[f"Curriculum/{name}"] = jax.lax.psum(jnp.sum(last), axis_name) / jax.lax.psum(last.size, axis_name)
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
    """``fn`` as one jitted ``shard_map`` program over ``mesh``, traced at ``matmul_precision``.

    Inputs and outputs carry the specs' ``NamedSharding``s explicitly, so an output fed back as the next input
    has exactly the type the program was compiled for (XLA would otherwise simplify e.g. ``P('data')`` on a
    one-device mesh to ``P()``, and the second call would compile again).
    """
    named = lambda specs: jax.tree.map(lambda spec: NamedSharding(mesh, spec), specs,
                                       is_leaf=lambda x: isinstance(x, P))
    program = jax.jit(jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False),
                      in_shardings=named(in_specs), out_shardings=named(out_specs))
    return precision.with_precision(program, matmul_precision)


def collect_local(rollout, state: TrainState, key: PRNGKey, axis_name: str,
                  with_extensions: bool = False) -> Collected:
    """Runs ``rollout`` on this device's envs (inside ``shard_map``), with env ids global over the mesh.

    ``rollout(params, normalizers, env_state, hidden, key, env_ids) -> (env_state, hidden, transitions, infos)``;
    per-env keys derive from the global env ids, so the result does not depend on the device count. With
    ``with_extensions`` the extensions' states are passed as a last argument (for extensions that act).
    """
    n_local = jax.tree.leaves(state.env_state)[0].shape[0]
    env_ids = jax.lax.axis_index(axis_name) * n_local + jnp.arange(n_local)
    extra = (state.extensions,) if with_extensions else ()
    env_state, hidden, tr, infos = rollout(state.params, state.normalizers, state.env_state, state.hidden, key,
                                           env_ids, *extra)
    return Collected(env_state=env_state, transitions=tr, infos=infos, hidden=hidden)


class IterationKeys(NamedTuple):
    """The random keys of one iteration, split from ``TrainState.key``."""

    next: PRNGKey
    rollout: PRNGKey
    learn: PRNGKey


class InitialState(NamedTuple):
    """An algorithm's part of a fresh train state.

    Attributes:
        params: network params.
        normalizers: observation normaliser states.
        extensions: ``{name: state}`` of the extensions.
        hidden: recurrent states with leaves ``[N, ...]`` (empty for feed-forward networks).
    """

    params: Any
    normalizers: Any
    extensions: dict
    hidden: Any


class Learned(NamedTuple):
    """What an algorithm's learning step returns.

    Attributes:
        state: the train state with ``params``, ``opt_state``, ``normalizers``, ``extensions``, ``num_updates``
            and ``hidden`` advanced (env state, key, iteration and episodes are the trainer's).
        metrics: replicated scalars for the log.
        finite: name -> replicated bool, whether each checked quantity was free of NaN/inf.
    """

    state: TrainState
    metrics: dict
    finite: dict


@dataclass(frozen=True)
class Algorithm:
    """What one on-policy method contributes to :func:`build_trainer`.

    Attributes:
        rollout: ``rollout(params, normalizers, env_state, hidden, key, env_ids) -> (env_state, hidden,
            transitions [T, N], infos [T, N])`` (see :mod:`agile_jax.training.rollout`).
        learn: ``learn(state, collected, key) -> Learned``, run inside ``shard_map`` (collectives over
            :data:`parallel.AXIS`).
        init: ``init(key, num_envs) -> InitialState``.
        rollout_reads_extensions: ``rollout`` takes the extensions' states as a last argument (a run with
            extensions that act, see :class:`agile_jax.extensions.base.Actor`).
    """

    rollout: Callable
    learn: Callable[[TrainState, Collected, PRNGKey], Learned]
    init: Callable[[PRNGKey, int], InitialState]
    rollout_reads_extensions: bool = False


@dataclass(frozen=True)
class Trainer:
    """Static pieces of a run and its pure ``init`` / ``iteration`` functions.

    Build it with :func:`build_trainer`. ``iteration`` is the fused, jitted iteration; ``collect`` and
    ``learn`` are its two halves as separate programs (``learn(state, collect(state))`` computes the same
    iteration), for timing collection and learning separately.
    """

    env: Any
    networks: Any
    cfg: Any
    tx: Any
    mesh: Mesh
    init: Callable[[PRNGKey], TrainState]
    iteration: Callable[[TrainState], tuple[TrainState, IterationOutput]]
    collect: Callable[[TrainState], Collected]
    learn: Callable[[TrainState, Collected], tuple[TrainState, IterationOutput]]
    extensions: Any = None


def iteration_keys(state: TrainState) -> IterationKeys:
    """The iteration's named keys (the same split in the collection and the learning half)."""
    return IterationKeys(*jax.random.split(state.key, 3))


def build_trainer(cfg, env, networks, tx, algorithm: Algorithm, mesh: Mesh | None = None,
                  extensions=None) -> Trainer:
    """The jitted, sharded iteration of ``algorithm`` on a batched env.

    Args:
        cfg: a config with a ``runner`` section (``num_devices``, ``matmul_precision``).
        env: an ``envs.core.VecEnv`` whose ``num_envs`` is the *global* batch.
        networks: the networks (kept on the trainer for the runner and the exporters).
        tx: the optimiser (its state starts from ``tx.init(params)``).
        algorithm: the method's rollout, learning step and initial state.
        mesh: device mesh (default: :func:`parallel.make_mesh` with ``runner.num_devices``).
        extensions: the method's extension chain (kept on the trainer for reference), if any.
    """
    run = cfg.runner
    mesh = mesh or parallel.make_mesh(run.num_devices)
    parallel.check_divisible(env.num_envs, mesh)
    axis = parallel.AXIS

    def local_collect(state: TrainState) -> Collected:
        return collect_local(algorithm.rollout, state, iteration_keys(state).rollout, axis,
                             algorithm.rollout_reads_extensions)

    def local_learn(state: TrainState, collected: Collected):
        keys = iteration_keys(state)
        learned = algorithm.learn(state, collected, keys.learn)
        window, out = finish_iteration(state.episodes, learned.metrics, collected.infos, learned.finite, axis)
        new_state = learned.state.replace(env_state=collected.env_state, key=keys.next,
                                          iteration=state.iteration + 1, episodes=window)
        return new_state, out

    def local_iteration(state: TrainState):
        return local_learn(state, local_collect(state))

    state_spec = _state_spec()
    collected_spec = Collected(env_state=P(axis), transitions=P(None, axis), infos=P(None, axis), hidden=P(axis))
    sharded = lambda fn, in_specs, out_specs: sharded_program(fn, mesh, in_specs, out_specs, run.matmul_precision)
    reset = precision.with_precision(jax.jit(env.reset, out_shardings=parallel.env_sharded(mesh)),
                                     run.matmul_precision)

    def init(key: PRNGKey) -> TrainState:
        key_params, key_env, key_next = jax.random.split(key, 3)
        first = algorithm.init(key_params, env.num_envs)
        state = TrainState(params=first.params, opt_state=tx.init(first.params), normalizers=first.normalizers,
                           extensions=first.extensions, env_state=reset(jax.random.split(key_env, env.num_envs)),
                           key=key_next, iteration=jnp.zeros((), jnp.int32), num_updates=jnp.zeros((), jnp.int32),
                           episodes=episodes.init_window(), hidden=first.hidden,
                           target_iteration=jnp.asarray(run.max_iterations, jnp.int32))
        return place_state(state, mesh)

    return Trainer(env=env, networks=networks, cfg=cfg, tx=tx, mesh=mesh, init=init, extensions=extensions,
                   iteration=sharded(local_iteration, (state_spec,), (state_spec, OUTPUT_SPEC)),
                   collect=sharded(local_collect, (state_spec,), collected_spec),
                   learn=sharded(local_learn, (state_spec, collected_spec), (state_spec, OUTPUT_SPEC)))


def _state_spec() -> TrainState:
    """Partition spec prefix of a :class:`TrainState`: env state split over devices, the rest replicated."""
    return TrainState(params=P(), opt_state=P(), normalizers=P(), extensions=P(), env_state=P(parallel.AXIS), key=P(),
                      iteration=P(), num_updates=P(), episodes=P(), hidden=P(parallel.AXIS), target_iteration=P())


def place_state(state: TrainState, mesh: Mesh) -> TrainState:
    """Puts a (host or device) train state onto ``mesh`` with the trainer's shardings."""
    rep, env_sh = parallel.replicated(mesh), parallel.env_sharded(mesh)
    placed = parallel.put(state.replace(env_state=None, hidden=()), rep)
    return placed.replace(env_state=parallel.put(state.env_state, env_sh), hidden=parallel.put(state.hidden, env_sh))
