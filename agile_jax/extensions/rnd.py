"""Random Network Distillation (RSL-RL 5.5's ``RandomNetworkDistillation``) as one extension.

A frozen, randomly initialised *target* MLP and a trained *predictor* MLP both embed the RND state (the
concatenated observation groups of the ``rnd_state`` set). The intrinsic reward of a step is the embedding
distance on the observation *after* the step::

    r_int = weight(step) * normalise_r(|| target(s') - predictor(s') ||_2),    s' = normalise_s(obs_{t+1})

and is added to the extrinsic reward before the timeout bootstrap (``shape``). After GAE (``update``), the
predictor takes ``num_learning_epochs x num_mini_batches`` Adam steps at its own learning rate on
``MSE(predictor(s), target(s))`` over the stored (pre-step) observations, then the state normaliser (``until``
1e8) sees every stored observation. With ``reward_normalization`` the reward is divided by the running std
of a per-env discounted sum of intrinsic rewards (``gamma`` 0.99, started by the first reward ever and never
reset; RSL-RL's ``EmpiricalDiscountedVariationNormalization``). The weight follows a ``constant`` / ``step`` /
``linear`` schedule of the env-step counter (one count per rollout step, as RSL-RL counts calls).

Differences from RSL-RL: the predictor draws its own minibatch permutation (RSL-RL reuses PPO's), and
``Rnd/mean_extrinsic_reward`` / ``Rnd/mean_intrinsic_reward`` are per-step means over the iteration's rollout
rather than per-episode sums over the last 100 episodes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

import jax
import jax.numpy as jnp
import optax
from flax import struct

from agile_jax.extensions.base import Extension, Rollout, Spec
from agile_jax.extensions.method import BuildContext, Method
from agile_jax.networks import normalization
from agile_jax.networks.actor_critic import resolve_obs_groups
from agile_jax.networks.mlp import MLP
from agile_jax.types import Array, Observation, PRNGKey


@dataclass
class RNDConfig:
    """RSL-RL ``rnd_cfg`` (Random Network Distillation); the state is the ``rnd_state`` set of
    ``runner.obs_groups``. ``weight`` is multiplied by the env's control step ``dt``, as RSL-RL does."""

    enabled: bool = False
    weight: float = 0.0
    weight_schedule: Optional[dict] = None  # noqa: UP045 {mode: constant|step|linear, initial_step, final_step, final_value}
    reward_normalization: bool = False
    state_normalization: bool = False
    learning_rate: float = 1e-3
    num_outputs: int = 1
    predictor_hidden_dims: list[int] = field(default_factory=lambda: [-1])
    target_hidden_dims: list[int] = field(default_factory=lambda: [-1])
    activation: str = "elu"


UNTIL = 1e8  # RSL-RL's normaliser limit for RND
REWARD_GAMMA = 0.99  # discount of the intrinsic-reward normaliser (RSL-RL's default)


@struct.dataclass
class RNDState:
    """Everything RND carries between iterations.

    Attributes:
        predictor, target: MLP params (the target is never updated).
        opt_state: the predictor's Adam state.
        state_norm: normaliser of the RND state ``[D]``.
        reward_norm: normaliser of the discounted intrinsic-reward sums (``[1]``).
        discounted: per-env discounted sum of intrinsic rewards ``[N]``.
        step: env steps counted so far (drives the weight schedule).
    """

    predictor: Any
    target: Any
    opt_state: Any
    state_norm: normalization.NormalizerState
    reward_norm: normalization.NormalizerState
    discounted: Array
    step: Array


def weight_at(step: Array, weight: float, schedule: dict | None) -> Array:
    """The intrinsic-reward weight at env step ``step`` (RSL-RL's ``constant`` / ``step`` / ``linear`` modes)."""
    step = jnp.asarray(step, jnp.float32)
    mode = (schedule or {}).get("mode", "constant")
    if mode == "constant":
        return jnp.float32(weight)
    final = schedule["final_value"]
    if mode == "step":
        return jnp.where(step < schedule["final_step"], weight, final).astype(jnp.float32)
    if mode == "linear":
        start, end = schedule["initial_step"], schedule["final_step"]
        ramp = weight + (final - weight) * (step - start) / (end - start)
        return jnp.where(step < start, weight, jnp.where(step > end, final, ramp)).astype(jnp.float32)
    raise ValueError(f"unknown RND weight_schedule mode '{mode}', expected constant, step or linear")


class RND:
    """RND's networks and pure functions (closed over the static settings).

    Args:
        groups: observation groups of the RND state, concatenated in order.
        num_outputs: embedding size.
        predictor_hidden_dims, target_hidden_dims: hidden widths (``-1``: the state size).
        activation: RSL-RL activation name.
        state_normalization, reward_normalization: RSL-RL's switches.
        weight: intrinsic-reward weight (already multiplied by the env step ``dt``, as RSL-RL does).
        weight_schedule: ``None`` or RSL-RL's schedule dict.
        learning_rate: the predictor's Adam learning rate.
        axis_name: data-parallel axis the statistics are combined over (inside ``shard_map``).
    """

    def __init__(self, groups: Sequence[str], num_outputs: int, predictor_hidden_dims: Sequence[int],
                 target_hidden_dims: Sequence[int], activation: str = "elu", state_normalization: bool = False,
                 reward_normalization: bool = False, weight: float = 0.0, weight_schedule: dict | None = None,
                 learning_rate: float = 1e-3, axis_name: str | None = None):
        self.axis_name = axis_name
        self.groups, self.num_outputs, self.activation = tuple(groups), num_outputs, activation
        self.predictor_hidden_dims, self.target_hidden_dims = tuple(predictor_hidden_dims), tuple(target_hidden_dims)
        self.state_normalization, self.reward_normalization = state_normalization, reward_normalization
        self.weight, self.weight_schedule = weight, dict(weight_schedule) if weight_schedule else None
        self.tx = optax.adam(learning_rate)

    def _mlp(self, hidden: Sequence[int], num_states: int) -> MLP:
        return MLP(tuple(num_states if h == -1 else h for h in hidden), self.num_outputs, self.activation)

    def state(self, obs: Observation) -> Array:
        """The RND state ``[..., D]``: the groups concatenated on the last axis."""
        return jnp.concatenate([obs[g].reshape(*obs[g].shape[: obs[g].ndim - 1], -1) for g in self.groups], -1)

    def init(self, key: PRNGKey, spec: Spec) -> RNDState:
        """Fresh predictor, target (different keys), optimiser and statistics."""
        dim = sum(math.prod(spec.obs_shapes[g]) for g in self.groups)
        k_pred, k_target = jax.random.split(key)
        x = jnp.zeros((1, dim), jnp.float32)
        predictor = self._mlp(self.predictor_hidden_dims, dim).init(k_pred, x)
        target = self._mlp(self.target_hidden_dims, dim).init(k_target, x)
        return RNDState(predictor=predictor, target=target, opt_state=self.tx.init(predictor),
                        state_norm=normalization.init(dim), reward_norm=normalization.init(1),
                        discounted=jnp.zeros((spec.num_envs,), jnp.float32), step=jnp.zeros((), jnp.int32))

    def embeddings(self, state: RNDState, predictor, obs: Observation) -> tuple[Array, Array]:
        """``(predictor(s), target(s))`` on the normalised RND state of ``obs``, each ``[..., num_outputs]``."""
        s = self.state(obs)
        if self.state_normalization:
            s = normalization.normalize(state.state_norm, s)
        dim = s.shape[-1]
        pred = self._mlp(self.predictor_hidden_dims, dim).apply(predictor, s)
        target = self._mlp(self.target_hidden_dims, dim).apply(state.target, s)
        return pred, jax.lax.stop_gradient(target)

    def intrinsic_reward(self, state: RNDState, obs: Observation) -> tuple[RNDState, Array, Array]:
        """One env step: ``(state, weighted intrinsic reward [N], weight)`` on the post-step ``obs`` ``[N, ...]``."""
        step = state.step + 1
        pred, target = self.embeddings(state, state.predictor, obs)
        reward = jnp.linalg.norm(target - pred, axis=-1)
        if self.reward_normalization:
            # RSL-RL starts the sum once, on the first reward ever (``avg is None``): the normaliser has no samples yet.
            started = state.reward_norm.count > 0
            discounted = jnp.where(started, state.discounted * REWARD_GAMMA + reward, reward)
            reward_norm = normalization.update(state.reward_norm, discounted[:, None], UNTIL, self.axis_name)
            std = reward_norm.std[0]
            reward = jnp.where(std > 0, reward / std, reward)
            state = state.replace(discounted=discounted, reward_norm=reward_norm)
        weight = weight_at(step, self.weight, self.weight_schedule)
        return state.replace(step=step), weight * reward, weight

    def loss(self, state: RNDState, predictor, obs: Observation) -> Array:
        """``MSE(predictor(s), target(s))`` over every element (the state normaliser is not updated)."""
        pred, target = self.embeddings(state, predictor, obs)
        return jnp.mean(jnp.square(pred - target))

    def predictor_step(self, state: RNDState, obs: Observation) -> tuple[RNDState, Array]:
        """One Adam step of the predictor on the minibatch ``obs`` ``[B, ...]``; returns the loss before it."""
        loss, grads = jax.value_and_grad(lambda p: self.loss(state, p, obs))(state.predictor)
        updates, opt_state = self.tx.update(grads, state.opt_state, state.predictor)
        return state.replace(predictor=optax.apply_updates(state.predictor, updates), opt_state=opt_state), loss


def extension(rnd: RND, num_learning_epochs: int, num_mini_batches: int) -> Extension:
    """RND as an :class:`Extension` named ``rnd`` (logs ``Loss/rnd``, ``Rnd/weight``, ``Rnd/mean_*_reward``).

    Args:
        rnd: the networks and settings.
        num_learning_epochs, num_mini_batches: the predictor's passes over the rollout (PPO's numbers).
    """
    axis_name = rnd.axis_name

    def pmean(x):
        return jax.lax.pmean(x, axis_name) if axis_name else x

    def shape(state: RNDState, rollout: Rollout):
        obs = rollout.transitions.obs
        next_obs = jax.tree.map(lambda x, last: jnp.concatenate([x[1:], last[None]], 0), obs, rollout.last_obs)
        # The per-env discounted sums are stored for all envs; each device advances its own rows.
        state = state.replace(discounted=_local_rows(state.discounted, rollout.rewards.shape[1], axis_name))
        state, (intrinsic, weights) = jax.lax.scan(lambda s, o: _step(rnd, s, o), state, next_obs)
        if axis_name:
            state = state.replace(discounted=jax.lax.all_gather(state.discounted, axis_name, tiled=True))
        metrics = {"Rnd/mean_extrinsic_reward": pmean(jnp.mean(rollout.rewards)),
                   "Rnd/mean_intrinsic_reward": pmean(jnp.mean(intrinsic)), "Rnd/weight": weights[-1]}
        return state, rollout._replace(rewards=rollout.rewards + intrinsic), metrics

    def update(state: RNDState, rollout: Rollout, returns, key):
        obs = rollout.transitions.obs
        flat = jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:]), obs)
        total = jax.tree.leaves(flat)[0].shape[0]
        size = total // num_mini_batches
        perm = jax.random.permutation(key, total)[: num_mini_batches * size].reshape(num_mini_batches, size)

        def sgd(s, idx):
            mb = jax.tree.map(lambda x: x[idx], flat)
            loss, grads = jax.value_and_grad(lambda p: rnd.loss(s, p, mb))(s.predictor)
            updates, opt_state = rnd.tx.update(pmean(grads), s.opt_state, s.predictor)
            return s.replace(predictor=optax.apply_updates(s.predictor, updates), opt_state=opt_state), loss

        state, losses = jax.lax.scan(sgd, state, jnp.tile(perm, (num_learning_epochs, 1, 1)).reshape(-1, size))
        if rnd.state_normalization:
            state = state.replace(state_norm=normalization.update(state.state_norm, rnd.state(obs), UNTIL, axis_name))
        return state, {"rnd": pmean(jnp.mean(losses))}

    return Extension("rnd", init=rnd.init, shape=shape, update=update)


def _local_rows(x: Array, num_local: int, axis_name: str | None) -> Array:
    """This device's ``num_local`` rows of the all-env array ``x`` (all of it without an axis)."""
    if not axis_name:
        return x
    return jax.lax.dynamic_slice_in_dim(x, jax.lax.axis_index(axis_name) * num_local, num_local)


def _step(rnd: RND, state: RNDState, obs: Observation):
    state, reward, weight = rnd.intrinsic_reward(state, obs)
    return state, (reward, weight)


def build(cfg, ctx: BuildContext, networks) -> list[Extension]:
    """RSL-RL's RND from ``algorithm.rnd_cfg`` on the ``rnd_state`` observation set (weight times the env ``dt``)."""
    rc, ppo = cfg.algorithm.rnd_cfg, ctx.ppo
    groups = resolve_obs_groups(cfg.runner.obs_groups, list(ctx.env.observation_shapes), ("rnd_state",))["rnd_state"]
    dt = 1.0 if ctx.env.dt is None else ctx.env.dt
    net = RND(groups, rc.num_outputs, rc.predictor_hidden_dims, rc.target_hidden_dims, rc.activation,
              rc.state_normalization, rc.reward_normalization, rc.weight * dt,
              dict(rc.weight_schedule) if rc.weight_schedule else None, rc.learning_rate, ctx.axis)
    return [extension(net, ppo.num_learning_epochs, ppo.num_mini_batches)]


METHOD = Method("rnd", "algorithm.rnd_cfg", enabled=lambda cfg: cfg.algorithm.rnd_cfg.enabled, build=build,
                stage="first", fixed_on_resume=("algorithm.rnd_cfg.enabled",), config=RNDConfig)
