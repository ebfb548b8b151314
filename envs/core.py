"""Environment state, the pure batched env, auto-reset and episode statistics.

A task implements a *single-environment* ``reset(key)`` / ``step(state, action)`` pair that returns
an :class:`EnvState`. :class:`VecEnv` turns it into a batched env with

* a time limit (``time_out`` kept apart from ``terminated``),
* auto-reset (the observation returned for a finished env is the first one of its next episode,
  as in Isaac Lab and RSL-RL),
* per-term episode sums, so ``Episode_Reward/<name>`` and ``Episode_Termination/<name>`` come for free,
* persistent info: keys a task lists in ``persistent_info`` (e.g. startup domain randomisation, a global
  step counter for curricula) keep their values across auto-resets,
* a carry-over hook: a task may define ``carry_over(finished, fresh) -> fresh``, which maps the finished
  episode's last state and the freshly reset state of one env to the state the next episode starts from
  (e.g. a per-env curriculum level updated from how the episode went),
* curriculum metrics: a task may define ``curriculum_metrics(state) -> {name: scalar}``, read on every env
  after the step's resets and reported in :class:`StepInfo` (logged as ``Curriculum/<name>``, as Isaac Lab
  logs its curriculum terms).

Everything is a pure function of pytrees; there is no hidden state.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import struct

from agile_jax.types import Array, Env, Observation, PRNGKey

TERMINATION_TYPES = ("time_out", "bad", "good", "neutral")


@struct.dataclass
class EnvState:
    """State of one environment (add a leading ``[N]`` axis when batched).

    Attributes:
        data: physics state (``mjx.Data`` for MJX tasks, any pytree otherwise).
        obs: observation groups after this step, e.g. ``{"policy": [D], "critic": [Dc]}``.
        reward: total reward of this step, already weighted (and scaled by dt where the task says so).
        terminated: the task ended the episode (fall, tilt, ...), bool.
        time_out: the episode was truncated by a time limit, bool (a task sets it on every step, ``False`` when it
            has no truncation of its own; :class:`VecEnv` adds the time limit).
        reward_terms: name -> weighted value of each reward term at this step.
        termination_terms: name -> bool, which termination terms fired at this step.
        info: task-carried values (rng key, command, last action, delay buffers, ...).
        step_count: control steps since the episode started (int32), managed by :class:`VecEnv`.
        episode_return: running sum of ``reward`` over the episode, managed by :class:`VecEnv`.
        episode_sums: running per-term sums of ``reward_terms``, managed by :class:`VecEnv`.
    """

    data: Any
    obs: Observation
    reward: Array
    terminated: Array
    time_out: Array
    reward_terms: dict[str, Array]
    termination_terms: dict[str, Array]
    info: dict[str, Any]
    step_count: Array = struct.field(default_factory=lambda: jnp.zeros((), jnp.int32))
    episode_return: Array = struct.field(default_factory=lambda: jnp.zeros((), jnp.float32))
    episode_sums: dict[str, Array] = struct.field(default_factory=dict)


class TerminationSpec(NamedTuple):
    """How a termination term is treated by the learner (AGILE's ``DoneTermCfg``).

    Attributes:
        type: ``"time_out"`` (truncation, bootstrapped), ``"bad"`` / ``"good"`` (bootstrapped,
            then minus / plus ``sigma``), or ``"neutral"`` (a plain terminal state).
        sigma: value offset for good/bad terminations (AGILE's default 5.0).
    """

    type: str = "neutral"
    sigma: float = 5.0


class StepInfo(NamedTuple):
    """What :meth:`VecEnv.step` reports besides the next state, each ``[N]`` (dicts of ``[N]``).

    ``episode_*`` fields hold the statistics of the episode that just ended and are meaningful
    only where ``done`` is true. ``curriculum`` holds the task's ``curriculum_metrics`` after the step's
    resets (empty when the task defines none).
    """

    reward: Array
    terminated: Array
    time_out: Array
    done: Array
    episode_return: Array
    episode_length: Array
    episode_sums: dict[str, Array]
    termination_terms: dict[str, Array]
    bad_termination_sigma: Array
    good_termination_sigma: Array
    curriculum: dict[str, Array]


def _termination_sigmas(terms: dict[str, Array], specs: dict[str, TerminationSpec]) -> tuple[Array, Array]:
    """Max sigma over fired good / bad terms per env (AGILE's VecEnv wrapper), ``[N]`` each."""
    some = next(iter(terms.values())) if terms else None
    zeros = jnp.zeros(some.shape if some is not None else (), jnp.float32)
    bad, good = zeros, zeros
    for name, fired in terms.items():
        spec = specs.get(name, TerminationSpec())
        if spec.type == "bad":
            bad = jnp.maximum(bad, jnp.where(fired, spec.sigma, 0.0))
        elif spec.type == "good":
            good = jnp.maximum(good, jnp.where(fired, spec.sigma, 0.0))
    return bad, good


def _select_one(done: Array, fresh: EnvState, running: EnvState) -> EnvState:
    """One env's state after the step: ``fresh`` where ``done`` (a scalar), else ``running``.

    Physics data that knows how to merge itself (``mjx.Data.where``) does so: MJX-Warp data holds fields
    shared by the whole batch (the contact buffer), which an element-wise select would break.
    """
    def pick(f: Array, r: Array) -> Array:
        return jnp.where(done, f, r)

    data_where = getattr(running.data, "where", None)
    data = data_where(done, fresh.data) if data_where is not None else jax.tree.map(pick, fresh.data, running.data)
    rest = jax.tree.map(pick, fresh.replace(data=None), running.replace(data=None))
    return rest.replace(data=data)


class VecEnv:
    """A batch of ``num_envs`` copies of a single-env task, with time limit and auto-reset.

    Args:
        env: the single-environment task (see :class:`agile_jax.types.Env`).
        num_envs: batch size of this (per-device) env batch.
        termination_specs: optional per-term :class:`TerminationSpec`; terms missing here are
            neutral. A task may also expose ``termination_specs`` itself.
        init_at_random_ep_len: start episodes at a random ``step_count`` after the first reset so
            that resets spread out over time (RSL-RL's ``init_at_random_ep_len``).
    """

    def __init__(
        self,
        env: Env,
        num_envs: int,
        termination_specs: dict[str, TerminationSpec] | None = None,
        init_at_random_ep_len: bool = False,
    ):
        self.env = env
        self.num_envs = num_envs
        self.termination_specs = dict(getattr(env, "termination_specs", {}) or {})
        self.termination_specs.update(termination_specs or {})
        for name, spec in self.termination_specs.items():
            if spec.type not in TERMINATION_TYPES:
                raise ValueError(
                    f"termination '{name}': unknown type '{spec.type}', expected one of {TERMINATION_TYPES}")
        self.init_at_random_ep_len = init_at_random_ep_len
        self.persistent_info = tuple(getattr(env, "persistent_info", ()))
        self._carry_over = getattr(env, "carry_over", None)
        self._curriculum_metrics = getattr(env, "curriculum_metrics", None)

    # -- metadata passthrough ---------------------------------------------------------------------
    @property
    def observation_shapes(self):
        return self.env.observation_shapes

    @property
    def action_size(self) -> int:
        return self.env.action_size

    @property
    def max_episode_length(self) -> int:
        return self.env.max_episode_length

    # -- pure functions ---------------------------------------------------------------------------
    def reset(self, keys: PRNGKey) -> EnvState:
        """Resets every env. ``keys``: ``[N]`` keys (one per env, so batches shard without changing results)."""
        state = jax.vmap(self._reset_one)(keys)
        if self.init_at_random_ep_len:
            def offset(k):
                return jax.random.randint(jax.random.fold_in(k, 7), (), 0, self.max_episode_length)

            offsets = jax.vmap(offset)(keys)
            state = state.replace(step_count=offsets.astype(jnp.int32))
        return state

    def _reset_one(self, key: PRNGKey) -> EnvState:
        state = self.env.reset(key)
        zeros = jnp.zeros((), jnp.float32)
        return state.replace(
            step_count=jnp.zeros((), jnp.int32),
            episode_return=zeros,
            episode_sums={k: zeros for k in state.reward_terms},
        )

    def step(self, state: EnvState, actions: Array) -> tuple[EnvState, StepInfo]:
        """Steps every env ``[N]`` with ``actions`` ``[N, A]``; finished envs are reset in place.

        The resets are computed only when at least one env finished (a ``lax.cond`` over the batch), so
        the common step without a finished episode costs no more than the task's own step. A task's
        ``carry_over(finished, fresh)`` runs per env on the fresh states inside that branch.
        """
        running, info = jax.vmap(self._advance_one)(state, actions)

        def with_resets(running: EnvState) -> EnvState:
            # The key of a finished env's next episode comes from its own rng.
            keys = jax.vmap(lambda k: jax.random.fold_in(k, 1))(running.info["rng"])
            fresh = jax.vmap(self._reset_one)(keys)
            if self._carry_over is not None:
                fresh = jax.vmap(self._carry_over)(running, fresh)
            # The step's flags and reward stay visible on the returned state, reset or not.
            fresh = fresh.replace(
                reward=running.reward, terminated=running.terminated, time_out=running.time_out,
                reward_terms=running.reward_terms, termination_terms=running.termination_terms,
            )

            new_state = jax.vmap(_select_one)(info.done, fresh, running)
            # Info the task declares persistent (startup randomisation, global step counters) survives the reset.
            keep = {k: running.info[k] for k in self.persistent_info}
            return new_state.replace(info={**new_state.info, **keep})

        new_state = jax.lax.cond(jnp.any(info.done), with_resets, lambda r: r, running)
        if self._curriculum_metrics is not None:
            info = info._replace(curriculum=jax.vmap(self._curriculum_metrics)(new_state))
        return new_state, info

    def _advance_one(self, state: EnvState, action: Array) -> tuple[EnvState, StepInfo]:
        """One env's task step with the time limit and episode bookkeeping, before any reset."""
        # Physics and task terms.
        nxt = self.env.step(state, action)
        step_count = state.step_count + 1
        # Time limit: a truncation, never a termination.
        time_out = jnp.logical_or(nxt.time_out, step_count >= self.max_episode_length)
        terminated = jnp.logical_and(nxt.terminated, jnp.logical_not(time_out))
        done = jnp.logical_or(terminated, time_out)
        # A failure on the last step of the time limit counts as a time-out only (as `terminated` does).
        term_terms = {k: jnp.logical_and(v, terminated) for k, v in nxt.termination_terms.items() if k != "time_out"}
        term_terms["time_out"] = time_out
        # Episode bookkeeping (before a reset wipes it).
        ep_return = state.episode_return + nxt.reward
        ep_sums = {k: state.episode_sums[k] + v for k, v in nxt.reward_terms.items()}
        bad, good = _termination_sigmas({k: v for k, v in term_terms.items() if k != "time_out"},
                                        self.termination_specs)
        info = StepInfo(
            reward=nxt.reward,
            terminated=terminated,
            time_out=time_out,
            done=done,
            episode_return=ep_return,
            episode_length=step_count,
            episode_sums=ep_sums,
            termination_terms=term_terms,
            bad_termination_sigma=bad,
            good_termination_sigma=good,
            curriculum={},
        )
        running = nxt.replace(
            terminated=terminated,
            time_out=time_out,
            step_count=step_count,
            episode_return=ep_return,
            episode_sums=ep_sums,
            termination_terms=term_terms,
        )
        return running, info
