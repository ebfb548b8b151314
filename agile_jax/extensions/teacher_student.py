"""LeggedGym-Ex's teacher-student PPO (``PPO_TS``) as one extension: the history encoder's latent matching.

The policy is a :class:`~agile_jax.networks.teacher_student.TeacherStudentActorCritic`: the teacher (actor on its
observation and the privilege encoder's latent ``z``) acts in the rollout and PPO trains actor, critic, privilege
encoder and std with its own optimiser, as LeggedGym-Ex's ``rl_parameters``. After PPO's epochs, the history
encoder (the student's) learns to reproduce the *updated* teacher latent with its own Adam optimiser at
``encoder_lr``, its gradients clipped to ``max_grad_norm`` (``post_update``)::

    for each of num_learning_epochs x num_mini_batches minibatches (one permutation, reused every epoch):
        repeat num_encoder_epochs times:
            loss = mean_{b, l} (z_hat[b, l] m[b] - z[b, l] m[b])^2        z = stop_gradient(privilege_encoder(p))
            history encoder <- Adam(clip(grad loss))                      m = 1 - done (LeggedGym-Ex's mask)

The mean runs over every element of the minibatch, masked rows included (``mse_loss`` of the masked tensors, as
LeggedGym-Ex computes it). The mean loss is logged as ``Loss/latent_matching``. With ``symmetry_cfg`` the teacher
learns from the mirror-augmented minibatches and the history encoder from the stored (unmirrored) steps.

Differences from LeggedGym-Ex: the encoders read the normalised inputs when the policy normalises (the history
encoder the actor's normaliser, the privilege encoder its own when ``critic_obs_normalization`` is set), the
history encoder reads groups of the actor's observation (so the deployed student takes the actor's observation
only), and the history encoder type is ``MLP`` (no ``TCN``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from agile_jax.config_base import ConfigError
from agile_jax.extensions.base import Extension, Rollout, Spec
from agile_jax.extensions.method import BuildContext, Method
from agile_jax.networks.cnn_actor_critic import refuse_cnn_policy
from agile_jax.networks.teacher_student import TeacherStudentActorCritic, with_teacher_student
from agile_jax.types import Array, Params, PRNGKey


@dataclass
class TeacherStudentConfig:
    """LeggedGym-Ex's ``PPO_TS`` / ``ActorCriticTS`` (``algorithm.ts_cfg``): a privilege encoder on the
    ``privileged`` set of ``runner.obs_groups`` (default: the critic's groups) gives the teacher's latent of
    ``num_latent_dims`` values (-1: the privileged width); a history encoder on the ``history`` set (groups of the
    actor; default: all of them) learns to match it with its own Adam at ``encoder_lr`` (``num_encoder_epochs``
    steps per minibatch) after PPO's epochs. The teacher acts in training; the student is evaluated and exported."""

    enabled: bool = False
    num_latent_dims: int = -1
    privilege_encoder_hidden_dims: list[int] = field(default_factory=lambda: [256, 128])
    history_encoder_type: str = "MLP"
    history_encoder_hidden_dims: list[int] = field(default_factory=lambda: [256, 128])
    encoder_lr: float = 1e-3
    num_encoder_epochs: int = 1


NAME = "teacher_student"


@struct.dataclass
class TeacherStudentState:
    """What the method carries between iterations.

    Attributes:
        opt_state: the history encoder's optimiser state (gradient clipping, Adam).
    """

    opt_state: Any


def latent_matching_loss(prediction: Array, target: Array, not_done: Array) -> Array:
    """``mean((prediction * m - target * m)^2)`` over every element of ``[B, L]``, ``m = not_done [B]``."""
    m = not_done[:, None].astype(prediction.dtype)
    return jnp.mean(jnp.square(prediction * m - target * m))


def make_encoder_optimizer(encoder_lr: float, max_grad_norm: float | None) -> optax.GradientTransformation:
    """LeggedGym-Ex's ``history_encoder_optimizer``: clip by global norm (if set), then Adam at ``encoder_lr``."""
    clip = optax.identity() if max_grad_norm is None else optax.clip_by_global_norm(max_grad_norm)
    return optax.chain(clip, optax.adam(encoder_lr))


def _minibatch_indices(key: PRNGKey, total: int, num_mini_batches: int, num_learning_epochs: int) -> Array:
    """``[epochs * M, total // M]`` rows: one permutation split into ``M`` minibatches, repeated every epoch."""
    size = total // num_mini_batches
    perm = jax.random.permutation(key, total)[: num_mini_batches * size].reshape(num_mini_batches, size)
    return jnp.tile(perm, (num_learning_epochs, 1))


def extension(networks: TeacherStudentActorCritic, num_learning_epochs: int, num_mini_batches: int,
              encoder_lr: float = 1e-3, num_encoder_epochs: int = 1, max_grad_norm: float | None = 1.0,
              axis_name: str | None = None) -> Extension:
    """The history encoder's training as an :class:`Extension` named ``teacher_student``.

    Args:
        networks: the teacher-student policy.
        num_learning_epochs, num_mini_batches: passes over the rollout and minibatches per pass (PPO's numbers).
        encoder_lr: the history encoder's Adam learning rate (LeggedGym-Ex's ``encoder_lr``).
        num_encoder_epochs: gradient steps per minibatch (LeggedGym-Ex's ``num_encoder_epochs``).
        max_grad_norm: the history encoder's gradient clip (PPO's ``max_grad_norm``, as LeggedGym-Ex uses it).
        axis_name: data-parallel axis the gradients and the loss are averaged over (inside ``shard_map``).
    """
    tx = make_encoder_optimizer(encoder_lr, max_grad_norm)

    def pmean(x):
        return jax.lax.pmean(x, axis_name) if axis_name else x

    def init(key: PRNGKey, spec: Spec) -> TeacherStudentState:
        return TeacherStudentState(opt_state=tx.init(networks.init_history_encoder(key)))

    def loss_fn(encoder: Params, history: Array, target: Array, not_done: Array) -> Array:
        prediction = networks.history_encoder_mlp.apply(encoder["mlp"], history)
        return latent_matching_loss(prediction, target, not_done)

    def post_update(state: TeacherStudentState, params: Params, normalizers: Mapping, rollout: Rollout,
                    key: PRNGKey):
        tr = rollout.transitions
        obs = jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:]), tr.obs)  # flat index t * N + n, as PPO's
        # Inputs and targets of every stored step: the latent of the privilege encoder PPO just updated.
        history = networks.history_input(normalizers, obs)
        target = jax.lax.stop_gradient(networks.teacher_latent(params, normalizers, obs))
        not_done = 1.0 - tr.dones.reshape(-1).astype(jnp.float32)

        def step(carry, rows):
            encoder, opt_state = carry
            loss, grads = jax.value_and_grad(loss_fn)(encoder, history[rows], target[rows], not_done[rows])
            updates, opt_state = tx.update(pmean(grads), opt_state, encoder)
            return (optax.apply_updates(encoder, updates), opt_state), loss

        # num_encoder_epochs steps on each minibatch in turn.
        rows = _minibatch_indices(key, not_done.shape[0], num_mini_batches, num_learning_epochs)
        (encoder, opt_state), losses = jax.lax.scan(step, (params.history_encoder, state.opt_state),
                                                    jnp.repeat(rows, num_encoder_epochs, axis=0))
        params = params.replace(history_encoder=encoder)
        return state.replace(opt_state=opt_state), params, {"latent_matching": pmean(jnp.mean(losses))}

    return Extension(NAME, init=init, post_update=post_update)


def wrap_networks(cfg, ctx: BuildContext, networks) -> TeacherStudentActorCritic:
    """``networks`` as LeggedGym-Ex's teacher-student policy from ``algorithm.ts_cfg``.

    The privilege encoder reads ``runner.obs_groups.privileged`` (default: the critic's groups), the history
    encoder ``runner.obs_groups.history`` (groups of the actor; default: all of them).
    """
    tc, alg = cfg.algorithm.ts_cfg, cfg.algorithm
    if tc.history_encoder_type != "MLP":
        raise ConfigError(f"algorithm.ts_cfg.history_encoder_type='{tc.history_encoder_type}' is not available; "
                          "use 'MLP'")
    refuse_cnn_policy(networks, "ts_cfg")
    if alg.estimator_cfg.enabled:
        raise ConfigError("algorithm.ts_cfg cannot be combined with algorithm.estimator_cfg (both change the actor's "
                          "input); disable one of them")
    if alg.optimizer == "adamw":  # weight decay would move the history encoder, which PPO must leave alone
        raise ConfigError("algorithm.ts_cfg trains the history encoder with its own Adam, and "
                          "algorithm.optimizer=adamw would also decay it; use algorithm.optimizer=adam")
    groups = cfg.runner.obs_groups
    privileged = list(groups.get("privileged") or networks.obs_groups["critic"])
    try:
        return with_teacher_student(networks, privileged, list(groups.get("history") or []), tc.num_latent_dims,
                                    tc.privilege_encoder_hidden_dims, tc.history_encoder_hidden_dims)
    except ValueError as err:
        raise ConfigError(f"algorithm.ts_cfg: {err}") from None


def build(cfg, ctx: BuildContext, networks) -> list[Extension]:
    """The history encoder's latent matching (``algorithm.ts_cfg``) with its own optimiser."""
    tc, ppo = cfg.algorithm.ts_cfg, ctx.ppo
    if not isinstance(networks, TeacherStudentActorCritic):
        raise ConfigError("algorithm.ts_cfg is enabled but the policy has no history encoder; build the networks "
                          "with agile_jax.extensions.teacher_student.METHOD.networks")
    return [extension(networks, ppo.num_learning_epochs, ppo.num_mini_batches, tc.encoder_lr, tc.num_encoder_epochs,
                      ppo.max_grad_norm, ctx.axis)]


METHOD = Method("ts", "algorithm.ts_cfg", enabled=lambda cfg: cfg.algorithm.ts_cfg.enabled, build=build,
                networks=wrap_networks, config=TeacherStudentConfig, class_names=("PPO_TS",),
                ranges={"algorithm.ts_cfg.encoder_lr": (lambda v: v > 0, "a number > 0"),
                        "algorithm.ts_cfg.num_encoder_epochs": (lambda v: v >= 1, "an integer >= 1"),
                        "algorithm.ts_cfg.num_latent_dims": (lambda v: v == -1 or v >= 1,
                                                             "an integer >= 1 (-1: the privileged width)")},
                fixed_on_resume=("algorithm.ts_cfg.enabled", "algorithm.ts_cfg.num_latent_dims",
                                 "algorithm.ts_cfg.history_encoder_type",
                                 "algorithm.ts_cfg.privilege_encoder_hidden_dims",
                                 "algorithm.ts_cfg.history_encoder_hidden_dims"))
