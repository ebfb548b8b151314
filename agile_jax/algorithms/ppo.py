"""The PPO update as a pure function: minibatching, the loss-term sum, the adaptive-KL step.

``make_update_fn(cfg, networks, tx, terms=..., augment=...)`` returns
``update(params, opt_state, normalizers, hyper, batch, key) -> (params, opt_state, hyper, metrics)`` over a
time-major rollout batch ``[T, N, ...]``. Epochs x minibatches run inside ``lax.scan``; one
permutation is drawn per update and reused by every epoch (RSL-RL). Extensions plug in as extra loss
terms and as a ``Batch -> Batch`` augmentation; the update itself has no per-extension branches.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from agile_jax.algorithms import gae, optim
from agile_jax.algorithms.losses import Batch, Forward, entropy_term, make_surrogate_term, make_value_term
from agile_jax.networks import distributions
from agile_jax.networks.actor_critic import ActorCritic
from agile_jax.types import LossTerm, PRNGKey


class SGDCarry(NamedTuple):
    """Scan carry of the minibatch loop."""

    params: Any
    opt_state: Any
    hyper: Any


def default_terms(cfg) -> list[LossTerm]:
    """The three PPO terms: clipped surrogate, (clipped) value loss, entropy bonus."""
    return [
        make_surrogate_term(cfg.clip_param),
        make_value_term(cfg.clip_param, cfg.value_loss_coef, cfg.use_clipped_value_loss),
        entropy_term,
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
    """
    mean, value = networks.apply_batch(params, normalizers, batch.obs, batch.hidden, batch.dones)
    std = networks.action_std(params)
    log_prob = distributions.log_prob(mean, std, batch.actions)
    ent = distributions.entropy(jnp.broadcast_to(std, mean[:num_original].shape))
    return Forward(mean=mean, std=std, log_prob=log_prob, value=value, entropy=ent)


def make_update_fn(
    cfg,
    networks: ActorCritic,
    tx: optax.GradientTransformation,
    terms: Sequence[LossTerm] | None = None,
    augment: Callable[[Batch], Batch] | None = None,
    minibatch_fn: Callable[[Batch, PRNGKey, int], Batch] = flat_minibatches,
    lr_hooks: Sequence[Callable] = (),
    axis_name: str | None = None,
):
    """Builds the PPO update.

    Args:
        cfg: an ``AlgorithmConfig`` (closed over; never passed through jit).
        networks: the actor-critic.
        tx: optimiser from :func:`agile_jax.algorithms.optim.make_optimizer`.
        terms: loss terms; defaults to :func:`default_terms`. Extensions append theirs.
        augment: ``Batch -> Batch`` applied to each minibatch before the forward pass (symmetry).
        minibatch_fn: splits the rollout batch into minibatches (recurrent policies use trajectories).
        lr_hooks: ``(lr, hyper) -> lr`` applied before the adaptive rule (e.g. AGILE's critic warm-up).
        axis_name: data-parallel axis; gradients, KL and metrics are averaged over it.

    Returns:
        ``update(params, opt_state, normalizers, hyper, batch, key) -> (params, opt_state, hyper, metrics)``;
        ``batch`` is time-major ``[T, N, ...]`` with raw advantages (normalised here); ``hyper["num_updates"]``
        counts gradient steps.
    """
    terms = list(default_terms(cfg) if terms is None else terms)
    augment = augment or (lambda b: b)
    adaptive = cfg.schedule == "adaptive" and cfg.desired_kl is not None
    if cfg.schedule not in ("adaptive", "fixed"):
        raise ValueError(f"unknown schedule '{cfg.schedule}', expected 'adaptive' or 'fixed'")

    def pmean(x):
        return jax.lax.pmean(x, axis_name) if axis_name else x

    def loss_fn(params, normalizers, hyper, mb: Batch, key):
        if cfg.normalize_advantage_per_mini_batch:
            mb = mb._replace(advantages=gae.normalize_advantages(mb.advantages))
        num_original = mb.actions.shape[0]
        full = augment(mb)
        out = forward(networks, params, normalizers, full, num_original)
        ctx = dict(hyper, normalizers=normalizers)  # what terms may read besides params and batch
        total, metrics = 0.0, {}
        for i, term in enumerate(terms):
            loss, m = term(params, full, out, ctx, jax.random.fold_in(key, i))
            total = total + loss
            metrics.update(m)
        # KL(old || new) on the original rows only, for the learning-rate rule.
        kl = distributions.kl(mb.old_mean, mb.old_std, jax.lax.stop_gradient(out.mean[:num_original]),
                              jax.lax.stop_gradient(jnp.broadcast_to(out.std, mb.old_mean.shape)))
        return total, (metrics, jnp.mean(kl))

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def sgd_step(normalizers, carry: SGDCarry, xs):
        mb, key = xs
        hyper = carry.hyper
        (_, (metrics, kl_mean)), grads = grad_fn(carry.params, normalizers, hyper, mb, key)
        grads, kl_mean = pmean(grads), pmean(kl_mean)
        # Learning rate for this step: hooks, then the adaptive rule decided on this very minibatch.
        lr = optim.get_learning_rate(carry.opt_state)
        for hook in lr_hooks:
            lr = hook(lr, hyper)
        if adaptive:
            lr = optim.adaptive_learning_rate(lr, kl_mean, cfg.desired_kl)
        opt_state = optim.set_learning_rate(carry.opt_state, lr)
        updates, opt_state = tx.update(grads, opt_state, carry.params)
        params = optax.apply_updates(carry.params, updates)
        hyper = dict(hyper, num_updates=hyper["num_updates"] + 1)
        metrics = dict(metrics, kl=kl_mean)
        return SGDCarry(params, opt_state, hyper), pmean(metrics)

    def update(params, opt_state, normalizers, hyper, batch: Batch, key: PRNGKey):
        if not cfg.normalize_advantage_per_mini_batch:
            batch = batch._replace(advantages=gae.normalize_advantages(batch.advantages, axis_name))
        key_perm, key_terms = jax.random.split(key)
        minibatches = minibatch_fn(batch, key_perm, cfg.num_mini_batches)
        step_keys = jax.random.split(key_terms, (cfg.num_learning_epochs, cfg.num_mini_batches))

        def epoch(carry, keys):
            return jax.lax.scan(lambda c, xs: sgd_step(normalizers, c, xs), carry, (minibatches, keys))

        carry, metrics = jax.lax.scan(epoch, SGDCarry(params, opt_state, hyper), step_keys)
        metrics = jax.tree.map(jnp.mean, metrics)
        metrics["learning_rate"] = optim.get_learning_rate(carry.opt_state)
        return carry.params, carry.opt_state, carry.hyper, metrics

    return update

