"""Optimiser: gradient clipping (joint or per network), Adam, and the adaptive-KL learning rate.

The learning rate is an injected hyperparameter inside the optax state, so it is checkpointed with
the optimiser and a resumed run continues with the rate it had (RSL-RL keeps it as a Python float
and had to patch its restore).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from agile_jax.types import Array

MIN_LEARNING_RATE = 1e-5
MAX_LEARNING_RATE = 1e-2
_OPTIMIZERS = {"adam": optax.adam, "adamw": optax.adamw, "sgd": optax.sgd, "rmsprop": optax.rmsprop}


def _map_networks(fn, tree):
    """``fn`` applied to each top-level subtree of ``tree``: each network's part of a params record
    (:mod:`agile_jax.networks.records`) or each entry of a dict."""
    return jax.tree.map(fn, tree, is_leaf=lambda node: node is not tree)


def clip_by_global_norm_per_group(max_norm: float) -> optax.GradientTransformation:
    """Clips each top-level subtree of the gradients (``actor``, ``critic`` ...) by its own global norm.

    This is RSL-RL 5.x: ``clip_grad_norm_(actor)`` then ``clip_grad_norm_(critic)`` separately.
    """
    inner = optax.clip_by_global_norm(max_norm)

    def update_fn(updates, state, params=None):
        del params
        return _map_networks(lambda sub: inner.update(sub, optax.EmptyState())[0], updates), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)


def make_optimizer(learning_rate: float, max_grad_norm: float | None, grad_clip_mode: str = "per_network",
                   optimizer: str = "adam") -> optax.GradientTransformation:
    """``clip -> optimizer`` with the learning rate injected as a mutable hyperparameter.

    Args:
        learning_rate: initial learning rate.
        max_grad_norm: clip threshold; ``None`` disables clipping.
        grad_clip_mode: ``"per_network"`` (RSL-RL 5.x) or ``"joint"`` (one norm over all params, AGILE).
        optimizer: ``adam`` | ``adamw`` | ``sgd`` | ``rmsprop``.
    """
    if optimizer not in _OPTIMIZERS:
        raise ValueError(f"unknown optimizer '{optimizer}', expected one of {sorted(_OPTIMIZERS)}")
    if max_grad_norm is None:
        clip = optax.identity()
    elif grad_clip_mode == "per_network":
        clip = clip_by_global_norm_per_group(max_grad_norm)
    elif grad_clip_mode == "joint":
        clip = optax.clip_by_global_norm(max_grad_norm)
    else:
        raise ValueError(f"unknown grad_clip_mode '{grad_clip_mode}', expected 'per_network' or 'joint'")
    return optax.chain(clip, optax.inject_hyperparams(_OPTIMIZERS[optimizer])(learning_rate=learning_rate))


def optimizer_from(settings) -> optax.GradientTransformation:
    """:func:`make_optimizer` of an :class:`agile_jax.config.OptimizerSettings` (PPO's or distillation's
    ``algorithm`` section)."""
    return make_optimizer(settings.learning_rate, settings.max_grad_norm, settings.grad_clip_mode, settings.optimizer)


def _hyperparams_slot(opt_state) -> int:
    """Index of the ``inject_hyperparams`` state in the chain's state (found by its type, not its position)."""
    for i, sub in enumerate(opt_state):
        if hasattr(sub, "hyperparams") and "learning_rate" in sub.hyperparams:
            return i
    raise ValueError("the optimiser state holds no injected learning rate; build it with make_optimizer")


def get_learning_rate(opt_state) -> Array:
    """The current learning rate stored in an optimiser state made by :func:`make_optimizer`."""
    return opt_state[_hyperparams_slot(opt_state)].hyperparams["learning_rate"]


def set_learning_rate(opt_state, learning_rate: Array):
    """A copy of ``opt_state`` with the learning rate replaced."""
    slot = _hyperparams_slot(opt_state)
    inject = opt_state[slot]
    hyper = dict(inject.hyperparams, learning_rate=jnp.asarray(learning_rate, jnp.float32))
    return (*opt_state[:slot], inject._replace(hyperparams=hyper), *opt_state[slot + 1:])


def adaptive_learning_rate(learning_rate: Array, kl_mean: Array, desired_kl: float,
                           min_lr: float = MIN_LEARNING_RATE, max_lr: float = MAX_LEARNING_RATE) -> Array:
    """RSL-RL's KL rule, decided per minibatch before its optimiser step.

    ``kl > 2 desired -> max(min_lr, lr / 1.5)``; ``0 < kl < desired / 2 -> min(max_lr, lr * 1.5)``;
    otherwise unchanged. Comparisons are strict, so ``kl == 0`` leaves the rate alone.
    """
    lr = jnp.asarray(learning_rate, jnp.float32)
    decrease = kl_mean > 2.0 * desired_kl
    increase = jnp.logical_and(kl_mean > 0.0, kl_mean < desired_kl / 2.0)
    return jnp.where(decrease, jnp.maximum(min_lr, lr / 1.5), jnp.where(increase, jnp.minimum(max_lr, lr * 1.5), lr))


def global_norm(tree) -> Array:
    """L2 norm over all leaves of ``tree``."""
    return optax.global_norm(jax.tree.leaves(tree))
