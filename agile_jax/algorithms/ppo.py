"""The PPO update as a pure function: minibatching, the extensions' loss sum, the adaptive-KL step.

``make_update_fn(cfg, networks, tx, extensions)`` returns
``update(carry, normalizers, ext_states, batch, key) -> (carry, metrics)`` over a time-major rollout batch:
epochs x minibatches in nested ``lax.scan`` s, one permutation per update reused by every epoch, the
learning rate decided per minibatch from that minibatch's KL before its optimiser step. Every loss term,
PPO's own included (:func:`default_extensions`), and every augmentation or learning-rate rule comes from
the :class:`~agile_jax.extensions.base.Chain`; the update itself has no per-extension branches.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from agile_jax.algorithms import gae, losses, optim
from agile_jax.extensions.base import Batch, Chain, Extension, Forward, Rollout, chain
from agile_jax.networks import distributions
from agile_jax.networks.actor_critic import ActorCritic
from agile_jax.types import Array, PRNGKey


class SGDCarry(NamedTuple):
    """Scan carry of the minibatch loop (and the learner part of the train state).

    Attributes:
        params: network params.
        opt_state: optax state (holds the learning rate).
        num_updates: gradient steps taken so far (int32 scalar).
    """

    params: Any
    opt_state: Any
    num_updates: Array


class UpdateKeys(NamedTuple):
    """The update's random keys: the minibatch permutation and the loss terms."""

    permutation: PRNGKey
    losses: PRNGKey


def timeout_bootstrap(gamma: float) -> Extension:
    """``r += gamma * V(s_t) * time_out`` (RSL-RL's ``process_env_step``) as a shaping extension."""

    def shape(state, rollout: Rollout):
        tr = rollout.transitions
        return state, rollout._replace(rewards=gae.bootstrap_timeouts(rollout.rewards, tr.values, tr.time_outs,
                                                                      gamma)), {}

    return Extension("timeout_bootstrap", shape=shape)


def default_extensions(cfg, entropy_schedule: Callable | None = None) -> list[Extension]:
    """PPO's own terms: timeout bootstrap, clipped surrogate, (clipped) value loss, entropy bonus.

    Args:
        cfg: an ``AlgorithmConfig``.
        entropy_schedule: ``(coef, stats) -> coef`` for the entropy coefficient (annealing), or ``None``.
    """
    return [
        timeout_bootstrap(cfg.gamma),
        losses.surrogate(cfg.clip_param),
        losses.value(cfg.clip_param, cfg.value_loss_coef, cfg.use_clipped_value_loss),
        losses.entropy(cfg.entropy_coef, entropy_schedule),
    ]


def flat_minibatches(batch: Batch, key: PRNGKey, num_mini_batches: int) -> Batch:
    """Shuffled minibatches ``[M, T*N // M, ...]`` from a time-major batch ``[T, N, ...]``.

    Flat index ``t * N + n``; one permutation; the last ``T*N - M*mbs`` shuffled samples are unused.
    """
    leaves = jax.tree.leaves(batch.actions)
    total = leaves[0].shape[0] * leaves[0].shape[1]
    mbs = total // num_mini_batches
    perm = jax.random.permutation(key, total)[: num_mini_batches * mbs].reshape(num_mini_batches, mbs)
    flat = jax.tree.map(lambda x: x.reshape(total, *x.shape[2:]), batch)
    return jax.tree.map(lambda x: x[perm], flat)


def forward(networks: ActorCritic, params, normalizers, batch: Batch, num_original: int) -> Forward:
    """Network outputs on ``batch`` (``num_original`` first rows are the un-augmented samples).

    A flat minibatch is ``[B, ...]``; a trajectory minibatch of a recurrent policy is ``[T, B, ...]`` with
    stored states, and every output keeps that ``[T, B]`` layout (``num_original`` is then ``T``: all rows).
    The std is ``[A]`` (state-independent) or per row like the mean (heteroscedastic).
    """
    mean, std, value = networks.apply_batch_dist(params, normalizers, batch.obs, batch.hidden, batch.dones)
    log_prob = distributions.log_prob(mean, std, batch.actions)
    ent = distributions.entropy(jnp.broadcast_to(original_rows(std, mean, num_original), mean[:num_original].shape))
    return Forward(mean=mean, std=std, log_prob=log_prob, value=value, entropy=ent)


def original_rows(std: Array, mean: Array, num_original: int) -> Array:
    """The std of the first ``num_original`` rows: a per-row std is sliced, a state-independent ``[A]`` one kept."""
    return std[:num_original] if std.ndim == mean.ndim else std


def make_update_fn(
    cfg,
    networks: ActorCritic,
    tx: optax.GradientTransformation,
    extensions: Chain | None = None,
    minibatch_fn: Callable[[Batch, PRNGKey, int], Batch] = flat_minibatches,
    axis_name: str | None = None,
):
    """Builds the PPO update.

    Args:
        cfg: an ``AlgorithmConfig`` (closed over; never passed through jit).
        networks: the actor-critic.
        tx: optimiser from :func:`agile_jax.algorithms.optim.make_optimizer`.
        extensions: loss terms, augmentations and learning-rate rules; defaults to
            ``chain(default_extensions(cfg))``.
        minibatch_fn: splits the rollout batch into minibatches (recurrent policies use trajectories).
        axis_name: data-parallel axis; gradients, KL and metrics are averaged over it.

    Returns:
        ``update(carry, normalizers, ext_states, batch, key) -> (carry, metrics)``; ``carry`` is a
        :class:`SGDCarry`, ``ext_states`` the extensions' ``{name: state}`` (read only), ``batch`` time-major
        ``[T, N, ...]`` with raw advantages (normalised here).
    """
    extensions = extensions if extensions is not None else chain(default_extensions(cfg))
    adaptive = cfg.schedule == "adaptive" and cfg.desired_kl is not None
    if cfg.schedule not in ("adaptive", "fixed"):
        raise ValueError(f"unknown schedule '{cfg.schedule}', expected 'adaptive' or 'fixed'")

    def pmean(x):
        return jax.lax.pmean(x, axis_name) if axis_name else x

    def loss_fn(params, normalizers, ext_states, num_updates, mb: Batch, key):
        if cfg.normalize_advantage_per_mini_batch:
            mb = mb._replace(advantages=gae.normalize_advantages(mb.advantages))
        num_original = mb.actions.shape[0]
        full = extensions.augment(mb)
        out = forward(networks, params, normalizers, full, num_original)
        total, metrics = extensions.loss(ext_states, params, full, out, normalizers, num_updates, key)
        # KL(old || new) on the original rows only, for the learning-rate rule.
        new_std = jnp.broadcast_to(original_rows(out.std, out.mean, num_original), mb.old_mean.shape)
        kl = distributions.kl(mb.old_mean, mb.old_std, jax.lax.stop_gradient(out.mean[:num_original]),
                              jax.lax.stop_gradient(new_std))
        return total, (metrics, jnp.mean(kl))

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def sgd_step(normalizers, ext_states, carry: SGDCarry, xs):
        mb, key = xs
        (_, (metrics, kl_mean)), grads = grad_fn(carry.params, normalizers, ext_states, carry.num_updates, mb, key)
        grads, kl_mean = pmean(grads), pmean(kl_mean)
        # Learning rate for this step: the extensions' rules, then the adaptive rule decided on this minibatch.
        lr = extensions.learning_rate(ext_states, optim.get_learning_rate(carry.opt_state), carry.num_updates)
        if adaptive:
            lr = optim.adaptive_learning_rate(lr, kl_mean, cfg.desired_kl)
        opt_state = optim.set_learning_rate(carry.opt_state, lr)
        updates, opt_state = tx.update(grads, opt_state, carry.params)
        params = optax.apply_updates(carry.params, updates)
        metrics = dict(metrics, kl=kl_mean)
        return SGDCarry(params, opt_state, carry.num_updates + 1), pmean(metrics)

    def update(carry: SGDCarry, normalizers, ext_states: dict, batch: Batch, key: PRNGKey):
        if not cfg.normalize_advantage_per_mini_batch:
            batch = batch._replace(advantages=gae.normalize_advantages(batch.advantages, axis_name))
        keys = UpdateKeys(*jax.random.split(key))
        minibatches = minibatch_fn(batch, keys.permutation, cfg.num_mini_batches)
        step_keys = jax.random.split(keys.losses, (cfg.num_learning_epochs, cfg.num_mini_batches))
        carry = carry._replace(num_updates=jnp.asarray(carry.num_updates, jnp.int32))

        def epoch(c, epoch_keys):
            return jax.lax.scan(lambda c2, xs: sgd_step(normalizers, ext_states, c2, xs), c, (minibatches, epoch_keys))

        carry, metrics = jax.lax.scan(epoch, carry, step_keys)
        metrics = jax.tree.map(jnp.mean, metrics)
        metrics["learning_rate"] = optim.get_learning_rate(carry.opt_state)
        return carry, metrics

    return update
