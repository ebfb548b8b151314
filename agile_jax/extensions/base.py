"""The ``Extension`` record: one optax-style bundle of optional hooks per training method.

An extension is a :class:`Extension` whose members are pure functions; every member but ``name`` and
``init`` is optional. The trainer calls them at fixed points of one iteration::

    schedule(state, stats) -> state                        start of the iteration (coefficients, annealing)
    shape(state, rollout) -> (state, rollout, metrics)     after the rollout, before GAE (rewards)
    update(state, rollout, returns, key) -> (state, metrics)   after GAE (own networks / optimisers, statistics)
    batch_extras(state, rollout) -> pytree [T, N, ...]     per-sample data the extension's loss needs
    augment(batch) -> batch                                each minibatch, before the forward pass
    loss(state, params, minibatch, key) -> (loss, metrics) each minibatch; summed into the objective
    learning_rate(state, lr, num_updates) -> lr            each gradient step, before the adaptive-KL rule
    post_update(state, params, normalizers, rollout, key) -> (state, params, metrics)
                                                           after PPO's epochs (a part of the policy that
                                                           another optimiser trains, e.g. PPO_TS's history encoder)

One member runs inside the rollout, for methods that take part in acting (st_rl's ``act`` /
``process_env_step``, e.g. TPPO's teacher executing its own actions in some envs); it is an :class:`Actor`::

    act.init(key, num_envs) -> carry                       per-env carry, leaves [N, ...] (sharded like the envs)
    act.act(state, carry, step, keys) -> (carry, actions, record)
                                                           each control step, after the policy sampled; may
                                                           replace actions per env; ``record`` [N, ...] is stored
    act.process_env_step(state, carry, dones, keys) -> carry   each control step, after the env stepped

The executed actions are what the transition stores, with their log-prob under the acting policy; each
``record`` lands in ``transitions.extras["act"][name]`` ([T, N, ...]) for the learning hooks. The carry lives
in ``TrainState.hidden.extensions[name]``; runs without an ``act`` member keep neither.

``init(key, spec) -> state`` gives the extension's state, which lives in its own slot of the train state
(``TrainState.extensions[name]``) and in checkpoints. :func:`chain` composes extensions in order: shaping,
augmentation and learning-rate rules are applied in list order, losses are summed in list order, and each
member only ever sees its own state and its own batch extras.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax

from agile_jax.types import Array, Metrics, Observation, PRNGKey, Transition


class Spec(NamedTuple):
    """What an extension's ``init`` may need to know about the run.

    Attributes:
        obs_shapes: observation group -> shape (no batch axis).
        action_size: action dimension ``A``.
        num_envs: global number of envs ``N``.
        networks: the actor-critic (or ``None``).
    """

    obs_shapes: Mapping[str, tuple[int, ...]]
    action_size: int
    num_envs: int = 0
    networks: Any = None


class Rollout(NamedTuple):
    """One collected rollout as the shaping and update hooks see it.

    Attributes:
        transitions: the stored steps ``[T, N, ...]`` (``transitions.rewards`` stay the raw env rewards).
        rewards: the rewards GAE will see, as shaped so far ``[T, N]``.
        last_obs: observations after the last step ``[N, ...]`` (``obs[t + 1]`` of the last step).
    """

    transitions: Transition
    rewards: Array
    last_obs: Observation


class Batch(NamedTuple):
    """A minibatch of stored samples, each ``[B, ...]``.

    Attributes:
        obs: observation groups the policy acted on.
        actions: sampled actions ``[B, A]``.
        old_log_probs: log-probs under the acting policy ``[B]``.
        old_values: values at acting time ``[B]``.
        advantages: (normalised) advantages ``[B]``.
        returns: value targets ``[B]``.
        old_mean: acting Gaussian mean ``[B, A]``.
        old_std: acting Gaussian std ``[B, A]``.
        dones: episode ended at this step ``[B]``.
        hidden: recurrent state before acting (empty for feed-forward policies).
        extras: samples of other per-step quantities extension terms may use (e.g. next obs).
    """

    obs: Observation
    actions: Array
    old_log_probs: Array
    old_values: Array
    advantages: Array
    returns: Array
    old_mean: Array
    old_std: Array
    dones: Array
    hidden: Any = ()
    extras: Any = ()


class Forward(NamedTuple):
    """Network outputs on a minibatch of ``B_aug`` rows (``B`` original rows first).

    Attributes:
        mean: action mean ``[B_aug, A]``.
        std: action std ``[A]`` (state-independent) or ``[B_aug, A]`` (heteroscedastic).
        log_prob: log-prob of the batch actions ``[B_aug]``.
        value: critic value ``[B_aug]``.
        entropy: entropy of the *original* rows ``[B]``.
    """

    mean: Array
    std: Array
    log_prob: Array
    value: Array
    entropy: Array


class Minibatch(NamedTuple):
    """What a ``loss`` sees for one gradient step.

    Attributes:
        data: the (augmented) minibatch ``[B_aug, ...]``; the first rows are the original samples.
        forward: network outputs on ``data``, shared by every loss.
        normalizers: observation normaliser states of the networks.
        extras: this extension's own ``batch_extras`` sampled like ``data`` (un-augmented rows), or ``None``.
        num_updates: gradient steps taken before this one (int32 scalar).
    """

    data: Batch
    forward: Forward
    normalizers: Any
    extras: Any
    num_updates: Array


class Stats(NamedTuple):
    """What ``schedule`` sees at the start of an iteration.

    Attributes:
        iteration: iterations done so far.
        mean_episode_length: mean length of the last 100 finished episodes (NaN before the first one).
        num_updates: gradient steps done so far.
        target_iteration: the iteration the current ``learn`` call ends at (start + ``num_learning_iterations``,
            RSL-RL's ``tot_iter``).
    """

    iteration: Array
    mean_episode_length: Array
    num_updates: Array
    target_iteration: Array | None = None


class ActStep(NamedTuple):
    """What an :class:`Actor` sees at one control step (``n`` local envs).

    Attributes:
        obs: observation groups the policy acted on ``[n, ...]``.
        actions: the actions so far ``[n, A]`` (the policy's samples, or what an earlier actor made of them).
        mean: the policy's Gaussian mean ``[n, A]``.
        std: the policy's Gaussian std ``[n, A]``.
        t: control step within the rollout (int32 scalar).
    """

    obs: Observation
    actions: Array
    mean: Array
    std: Array
    t: Array


class Actor(NamedTuple):
    """Rollout-side hooks of an extension that takes part in acting (see the module docstring).

    Attributes:
        init: ``(key, num_envs) -> carry`` with leaves ``[num_envs, ...]``.
        act: ``(state, carry, step: ActStep, keys [n]) -> (carry, actions [n, A], record [n, ...])``; ``keys`` are
            per-env keys derived from the global env ids (results do not depend on the device split).
        process_env_step: ``(state, carry, dones [n], keys [n]) -> carry`` after the env step, or ``None``.
    """

    init: Callable[[PRNGKey | None, int], Any]
    act: Callable[[Any, Any, ActStep, Array], tuple[Any, Array, Any]]
    process_env_step: Callable[[Any, Any, Array, Array], Any] | None = None


def no_state(key: PRNGKey, spec: Spec) -> tuple:
    """``init`` of a stateless extension."""
    del key, spec
    return ()


class Extension(NamedTuple):
    """One training method's hooks (see the module docstring); unset members are skipped."""

    name: str
    init: Callable[[PRNGKey, Spec], Any] = no_state
    shape: Callable[[Any, Rollout], tuple[Any, Rollout, Metrics]] | None = None
    loss: Callable[[Any, Any, Minibatch, PRNGKey], tuple[Array, Metrics]] | None = None
    augment: Callable[[Batch], Batch] | None = None
    schedule: Callable[[Any, Stats], Any] | None = None
    update: Callable[[Any, Rollout, Array, PRNGKey], tuple[Any, Metrics]] | None = None
    batch_extras: Callable[[Any, Rollout], Any] | None = None
    learning_rate: Callable[[Any, Array, Array], Array] | None = None
    post_update: Callable[[Any, Any, Any, Rollout, PRNGKey], tuple[Any, Any, Metrics]] | None = None
    act: Actor | None = None


def named_key(key: PRNGKey, name: str) -> PRNGKey:
    """A key of its own for ``name`` (``fold_in`` of a stable hash of the name)."""
    return jax.random.fold_in(key, zlib.crc32(name.encode()) & 0x7FFFFFFF)


@dataclass(frozen=True)
class Chain:
    """Extensions composed in order; states are a ``{name: state}`` mapping (build it with :func:`chain`)."""

    extensions: tuple[Extension, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(e.name for e in self.extensions)

    def _with(self, member: str) -> list[Extension]:
        return [e for e in self.extensions if getattr(e, member) is not None]

    def init(self, key: PRNGKey | None, spec: Spec | None) -> dict:
        """``{name: state}`` of every extension (each from its own named key; ``None`` for keyless ones)."""
        return {e.name: e.init(None if key is None else named_key(key, e.name), spec) for e in self.extensions}

    def schedule(self, states: dict, stats: Stats) -> dict:
        """Each ``schedule`` on its own state."""
        return {**states, **{e.name: e.schedule(states[e.name], stats) for e in self._with("schedule")}}

    def shape(self, states: dict, rollout: Rollout) -> tuple[dict, Rollout, Metrics]:
        """Each ``shape`` in order, each on the rollout its predecessors returned."""
        states, metrics = dict(states), {}
        for e in self._with("shape"):
            states[e.name], rollout, m = e.shape(states[e.name], rollout)
            metrics.update(m)
        return states, rollout, metrics

    def update(self, states: dict, rollout: Rollout, returns: Array, key: PRNGKey) -> tuple[dict, Metrics]:
        """Each ``update`` with its own named key."""
        states, metrics = dict(states), {}
        for e in self._with("update"):
            states[e.name], m = e.update(states[e.name], rollout, returns, named_key(key, e.name))
            metrics.update(m)
        return states, metrics

    def batch_extras(self, states: dict, rollout: Rollout) -> dict:
        """``{name: extras [T, N, ...]}`` of the extensions that declare batch extras."""
        return {e.name: e.batch_extras(states[e.name], rollout) for e in self._with("batch_extras")}

    def augment(self, batch: Batch) -> Batch:
        """Every ``augment`` in order."""
        for e in self._with("augment"):
            batch = e.augment(batch)
        return batch

    def loss(self, states: dict, params, data: Batch, forward: Forward, normalizers, num_updates: Array,
             key: PRNGKey) -> tuple[Array, Metrics]:
        """``sum_k loss_k`` in list order; each loss gets its own state, batch extras and named key."""
        extras = data.extras if isinstance(data.extras, Mapping) else {}
        total, metrics = 0.0, {}
        for e in self._with("loss"):
            mb = Minibatch(data=data, forward=forward, normalizers=normalizers, extras=extras.get(e.name),
                           num_updates=num_updates)
            loss, m = e.loss(states[e.name], params, mb, named_key(key, e.name))
            total = total + loss
            metrics.update(m)
        return total, metrics

    @property
    def actors(self) -> tuple[Extension, ...]:
        """The extensions with an ``act`` member (empty: the rollout runs no extension code)."""
        return tuple(self._with("act"))

    def init_carry(self, key: PRNGKey | None, num_envs: int) -> dict:
        """``{name: per-env carry}`` of the actors (each from its own named key)."""
        return {e.name: e.act.init(None if key is None else named_key(key, e.name), num_envs) for e in self.actors}

    def act(self, states: dict, carries: dict, step: ActStep, keys: Array) -> tuple[dict, Array, dict]:
        """Each actor's ``act`` in order, each on the actions its predecessor returned.

        Returns:
            ``(carries, executed actions [n, A], {name: record [n, ...]})``.
        """
        carries, records = dict(carries), {}
        for e in self.actors:
            own = jax.vmap(named_key, in_axes=(0, None))(keys, e.name)
            carries[e.name], actions, records[e.name] = e.act.act(states[e.name], carries[e.name], step, own)
            step = step._replace(actions=actions)
        return carries, step.actions, records

    def process_env_step(self, states: dict, carries: dict, dones: Array, keys: Array) -> dict:
        """Each actor's ``process_env_step`` (after the env step) on its own carry."""
        carries = dict(carries)
        for e in self.actors:
            if e.act.process_env_step is not None:
                own = jax.vmap(named_key, in_axes=(0, None))(keys, f"{e.name}/process_env_step")
                carries[e.name] = e.act.process_env_step(states[e.name], carries[e.name], dones, own)
        return carries

    def learning_rate(self, states: dict, lr: Array, num_updates: Array) -> Array:
        """Every ``learning_rate`` rule in order."""
        for e in self._with("learning_rate"):
            lr = e.learning_rate(states[e.name], lr, num_updates)
        return lr

    def post_update(self, states: dict, params, normalizers, rollout: Rollout,
                    key: PRNGKey) -> tuple[dict, Any, Metrics]:
        """Each ``post_update`` in order, on the params its predecessor returned, with its own named key."""
        states, metrics = dict(states), {}
        for e in self._with("post_update"):
            states[e.name], params, m = e.post_update(states[e.name], params, normalizers, rollout,
                                                      named_key(key, f"{e.name}/post_update"))
            metrics.update(m)
        return states, params, metrics


def chain(*extensions: Extension | Sequence[Extension]) -> Chain:
    """Composes extensions (or lists of them) in order; names must be unique."""
    flat: list[Extension] = []
    for item in extensions:
        flat.extend(item.extensions if isinstance(item, Chain) else [item] if isinstance(item, Extension) else item)
    names = [e.name for e in flat]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"extension names must be unique; repeated: {duplicates}")
    return Chain(tuple(flat))
