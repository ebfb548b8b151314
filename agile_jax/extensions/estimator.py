"""A state estimator whose estimate feeds the actor (st_rl's ``EstimatorPPO``) as one extension.

An estimator MLP maps observation groups the actor reads to a target taken from the critic's (privileged)
observations, e.g. the base linear velocity. The actor's input is its observation groups followed by the
estimate::

    x = normalise(concat(actor groups))                      [..., D]
    e = estimator(x[..., columns])                           [..., K]   columns: the estimator's groups in x
    action mean = actor_mlp(concat(x, stop_gradient(e)))     [..., A]

As in st_rl, the estimator is part of the policy (``params.estimator``), trained by the PPO optimiser
with its own supervised loss added to the objective with ``loss_coef`` (st_rl's ``estimator_loss_coef``),
and the estimate is detached where the actor reads it, so the policy gradient never moves the estimator::

    loss_estimator = mean_rows( sum_k loss_func(e_k, target_k) )          (st_rl: reduction "none", sum(-1), mean)

with ``loss_func`` one of ``mse`` / ``l1`` / ``smooth_l1`` (``beta``) / ``huber`` (``delta``), PyTorch's
element-wise definitions. The target is a set of named components of the critic observation set (term names
of the env's ``<group>_layout`` tables, e.g. ``base_lin_vel`` of the velocity task).

Symmetry: the loss is taken on every row of the (possibly mirror-augmented) minibatch; a mirrored row's
target is read from the mirrored critic observation, so the estimator learns that the estimate of a
mirrored observation is the mirrored target, and the mirror loss sees the whole policy (estimator included).

Difference from st_rl: st_rl *replaces* target components inside the policy observation (with probability
``replace_state_prob``); here the policy observation does not hold them and the estimate is appended, which
is st_rl's ``replace_state_prob = 1`` with the slot at the end. Feed-forward policies only.

The network (:class:`~agile_jax.networks.estimator.EstimatorActorCritic` and
:func:`~agile_jax.networks.estimator.with_estimator`) is :mod:`agile_jax.networks.estimator`; this module is the
loss, its config and the method record.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from agile_jax.config_base import ConfigError
from agile_jax.extensions.base import Extension, Minibatch
from agile_jax.extensions.method import BuildContext, Method
from agile_jax.networks.actor_critic import concat_groups
from agile_jax.networks.cnn_actor_critic import refuse_cnn_policy
from agile_jax.networks.estimator import EstimatorActorCritic, with_estimator
from agile_jax.types import Array


@dataclass
class EstimatorConfig:
    """st_rl's ``EstimatorPPO`` (``algorithm.estimator_cfg``): an estimator MLP fed by observation groups of the
    actor (``obs_components``; empty: all of them) learns named components of the critic observation
    (``target_components``, terms of the env's observation layout, e.g. ``base_lin_vel``); its estimate is
    appended to the actor's input. Trained by the PPO optimiser with ``loss_coef`` times its loss
    (``loss_func``: mse | l1 | smooth_l1 | huber, options in ``loss_kwargs``)."""

    enabled: bool = False
    obs_components: list[str] = field(default_factory=list)
    target_components: list[str] = field(default_factory=list)
    loss_func: str = "mse"
    loss_kwargs: dict = field(default_factory=dict)
    loss_coef: float = 1.0
    hidden_dims: list[int] = field(default_factory=lambda: [256, 128])


LossFunc = Callable[[Array, Array], Array]


def _smooth_l1(beta: float = 1.0) -> LossFunc:
    """PyTorch's ``smooth_l1_loss``: ``0.5 d^2 / beta`` where ``|d| < beta``, else ``|d| - 0.5 beta``."""
    def f(x: Array, y: Array) -> Array:
        d = jnp.abs(x - y)
        return jnp.where(d < beta, 0.5 * d * d / beta, d - 0.5 * beta) if beta > 0 else d
    return f


def _huber(delta: float = 1.0) -> LossFunc:
    """PyTorch's ``huber_loss``: ``0.5 d^2`` where ``|d| <= delta``, else ``delta (|d| - 0.5 delta)``."""
    def f(x: Array, y: Array) -> Array:
        d = jnp.abs(x - y)
        return jnp.where(d <= delta, 0.5 * d * d, delta * (d - 0.5 * delta))
    return f


LOSS_FUNCS: dict[str, Callable[..., LossFunc]] = {
    "mse": lambda: lambda x, y: jnp.square(x - y),
    "l1": lambda: lambda x, y: jnp.abs(x - y),
    "smooth_l1": _smooth_l1,
    "huber": _huber,
}


def make_loss_func(name: str, kwargs: Mapping | None = None) -> LossFunc:
    """Element-wise loss ``f(estimate, target) -> [..., K]`` by name (st_rl's ``*_loss`` names accepted too).

    Args:
        name: ``mse``, ``l1``, ``smooth_l1`` or ``huber`` (or ``mse_loss``, ``smooth_l1_loss`` ...).
        kwargs: the function's options (``beta`` for ``smooth_l1``, ``delta`` for ``huber``).
    """
    key = name.lower().removesuffix("_loss")
    if key not in LOSS_FUNCS:
        raise ValueError(f"unknown estimator loss_func '{name}', expected one of {sorted(LOSS_FUNCS)}")
    try:
        return LOSS_FUNCS[key](**dict(kwargs or {}))
    except TypeError:
        raise ValueError(f"estimator loss_kwargs {dict(kwargs or {})} do not fit loss_func '{name}'") from None


def estimation_loss(estimate: Array, target: Array, loss_func: LossFunc) -> Array:
    """``mean_rows(sum_k loss_func(estimate, target)_k)`` for ``[B, K]`` arrays (st_rl's reduction)."""
    return jnp.mean(jnp.sum(loss_func(estimate, target), axis=-1))


def component_index(layouts: Mapping[str, Sequence], groups: Sequence[str], components: Sequence[str],
                    shapes: Mapping[str, tuple[int, ...]]) -> np.ndarray:
    """Column indices of named components in the concatenation of ``groups`` (``[K]`` int).

    Args:
        layouts: group -> ``(name, size, ...)`` entries in observation order (the env's ``<group>_layout``).
        groups: the observation set's groups, concatenated in order.
        components: component names, in the order the target lists them.
        shapes: group -> shape (no batch axis).
    """
    offsets: dict[str, tuple[int, int]] = {}
    start = 0
    for group in groups:
        position = start
        for entry in layouts.get(group, ()):
            offsets.setdefault(entry[0], (position, int(entry[1])))
            position += int(entry[1])
        start += int(np.prod(shapes[group]))
    missing = [c for c in components if c not in offsets]
    if missing or not components:
        raise ValueError(f"estimator target components {missing or list(components)} are not in the layouts of "
                         f"observation groups {list(groups)}; available: {sorted(offsets)}")
    return np.concatenate([np.arange(offsets[c][0], sum(offsets[c])) for c in components]).astype(np.int32)


def extension(networks: EstimatorActorCritic, target_groups: Sequence[str], target_index: np.ndarray,
              loss_func: LossFunc, loss_coef: float = 1.0) -> Extension:
    """The estimator's loss as an :class:`Extension` named ``estimator`` (logged as ``Loss/estimator``).

    Args:
        networks: the policy with the estimator.
        target_groups: observation groups the target is read from (the critic's).
        target_index: columns of the target in their concatenation ``[K]``.
        loss_func: element-wise loss (see :func:`make_loss_func`).
        loss_coef: weight of the loss in the objective (st_rl's ``estimator_loss_coef``).
    """
    target_groups, index = tuple(target_groups), jnp.asarray(target_index)

    def loss(state, params, mb: Minibatch, key):
        obs = mb.data.obs
        estimate = networks.estimate(params, mb.normalizers, obs)
        target = concat_groups(obs, target_groups, networks.obs_shapes)[..., index]
        value = estimation_loss(estimate, target, loss_func)
        return loss_coef * value, {"estimator": jax.lax.stop_gradient(value)}

    return Extension("estimator", loss=loss)


def _target(cfg, ctx: BuildContext, networks) -> tuple[list[str], np.ndarray]:
    """The critic groups and the columns of ``algorithm.estimator_cfg.target_components`` in them."""
    groups = list(networks.obs_groups["critic"])
    layouts = {g: ctx.env.layouts[g] for g in groups if g in ctx.env.layouts}
    try:
        index = component_index(layouts, groups, cfg.algorithm.estimator_cfg.target_components, networks.obs_shapes)
    except ValueError as err:
        raise ConfigError(f"algorithm.estimator_cfg.target_components: {err}") from None
    return groups, index


def wrap_networks(cfg, ctx: BuildContext, networks) -> EstimatorActorCritic:
    """``networks`` with st_rl's state estimator from ``algorithm.estimator_cfg``."""
    ec = cfg.algorithm.estimator_cfg
    refuse_cnn_policy(networks, "estimator_cfg")
    _, index = _target(cfg, ctx, networks)
    try:
        return with_estimator(networks, ec.obs_components, len(index), ec.hidden_dims)
    except ValueError as err:
        raise ConfigError(f"algorithm.estimator_cfg: {err}") from None


def build(cfg, ctx: BuildContext, networks) -> list[Extension]:
    """The estimator's loss (``algorithm.estimator_cfg``) on the critic's target components."""
    ec = cfg.algorithm.estimator_cfg
    if not isinstance(networks, EstimatorActorCritic):
        raise ConfigError("algorithm.estimator_cfg is enabled but the policy has no estimator; build the networks "
                          "with agile_jax.extensions.estimator.METHOD.networks")
    groups, index = _target(cfg, ctx, networks)
    try:
        loss_func = make_loss_func(ec.loss_func, ec.loss_kwargs)
    except ValueError as err:
        raise ConfigError(f"algorithm.estimator_cfg: {err}") from None
    return [extension(networks, groups, index, loss_func, ec.loss_coef)]


METHOD = Method("estimator", "algorithm.estimator_cfg", enabled=lambda cfg: cfg.algorithm.estimator_cfg.enabled,
                build=build, networks=wrap_networks, config=EstimatorConfig,
                class_names=("EstimatorPPO", "EstimatorTPPO"))
