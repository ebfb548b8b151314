"""st_rl's TPPO (teacher-guided PPO) as one extension: a teacher labels and partly executes the rollout.

A trained teacher policy (an exported file, read once into a JAX function) labels every stored step with its
action, and a per-env mask decides who acts: where ``use_teacher_act_mask`` is set the env executes the
teacher's label, elsewhere the student's sample (st_rl's ``act``). The mask starts set in every env and is
redrawn for an env when its episode ends, with probability ``teacher_act_prob`` (a constant or a schedule of
the iteration, st_rl's ``GET_PROB_FUNC``; ``process_env_step``). The student learns from PPO's terms and::

    loss_distillation = coef(it) * mean_rows d(mean_student(obs), label)         d = distill_target
    loss_latent_k     = distill_latent_coef * mean_rows d(latent_k(obs), teacher_latent_k(obs))

with ``d`` one of ``real`` (L2 norm), ``mse_sum`` (sum of squares), ``l1`` (L1 norm), ``tanh``
(``2 * mean BCE((x + 1) / 2, (y + 1) / 2)``), ``scaled_tanh`` (that BCE times the L1 norm over ``A``) or
``max_log_prob`` (``-log pi(label)``). ``using_ppo=False`` drops PPO's terms (DAgger; the assembly leaves
them out). The transition stores the *executed* action, as st_rl does; its log-prob is the executed action's
under the acting student (st_rl keeps the log-prob of the student's own sample, which makes the first PPO
ratio of a teacher-executed step an arbitrary number; here it starts at 1).

Rollout side (:class:`~agile_jax.extensions.base.Actor`): the per-env carry holds the mask, the teacher's
recurrent state (reset at dones) and, with ``buffer_dilation_ratio > 1``, st_rl's queue storage: the labelled
steps of the last ``int(ratio * T) - T`` steps before this rollout, ``[N, L, T, ...]`` for ``L`` earlier
rollouts. Step ``t`` hands the queued steps at ``t`` to the record (so every minibatch row brings its own older
samples) and pushes its own; the queue fills one rollout per iteration, as st_rl's grows. The distillation
losses average over the current and the valid queued rows; PPO's terms see the current rollout only (queued
steps have no fresh advantages; st_rl uses the ratio with ``using_ppo=False``).

``hidden_state_resample_prob`` (recurrent students): each stored recurrent state of the minibatch is replaced
by uniform draws in [-1, 1] with that probability (st_rl's trajectory-start resampling; the draws are made once
per iteration and reused by the epochs). ``clip_min_std`` floors the state-independent std parameter after
each update (st_rl's ``clip_std``). Metrics: ``Loss/distillation``, ``Loss/distill_latent_<k>``,
``Train/teacher_act_prob``, ``Train/teacher_act_fraction`` (share of steps the teacher executed) and
``Train/distillation_loss_coef`` when it follows a schedule.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from agile_jax.config_base import ConfigError
from agile_jax.extensions.base import Actor, ActStep, Extension, Minibatch, Rollout, Spec, Stats
from agile_jax.extensions.method import BuildContext, Method
from agile_jax.networks import distributions
from agile_jax.networks.actor_critic import concat_groups
from agile_jax.networks.recurrent import reset_state
from agile_jax.types import Array, Observation, PRNGKey


@dataclass
class TPPOConfig:
    """st_rl's ``TPPO`` (``algorithm.tppo_cfg``, teacher-guided PPO), on when ``teacher_policy`` names a policy file.

    The teacher (``policy.onnx`` / ``policy.pt``, anything :func:`agile_jax.policies.load.load_policy` reads)
    labels every step with its action on the critic observations (``label_action_with_critic_obs``, else the
    actor's; ``action_labels_from_sample``: a sample of a teacher that has an action std). Envs whose
    ``use_teacher_act_mask`` is set execute the label instead of the student's sample; the mask starts all set and
    is redrawn per env when its episode ends, with ``teacher_act_prob`` (a number in [0, 1] or st_rl's schedule
    ``linear`` | ``exp`` | ``tanh`` of the iteration, scaled by ``update_times_scale``). The loss adds
    ``distillation_loss_coef`` (a number or a schedule name) times ``distill_target`` (``real``: L2 norm,
    ``mse_sum``, ``l1``, ``tanh``: BCE of (x+1)/2, ``scaled_tanh``, ``max_log_prob``) between the student mean and
    the labels; ``using_ppo=false`` drops PPO's terms (DAgger). ``distill_latent_obs_component_mapping``
    ``{student component: teacher component}`` adds ``distill_latent_coef`` x ``distill_latent_target`` between the
    student's and the teacher's state-estimator outputs. ``buffer_dilation_ratio`` > 1 keeps that many rollouts of
    labelled steps for the distillation losses; ``hidden_state_resample_prob`` redraws stored recurrent states in
    [-1, 1]; ``clip_min_std`` is the floor of the action std after each update."""

    teacher_policy: str = ""
    label_action_with_critic_obs: bool = True
    teacher_act_prob: Any = "exp"  # float in [0, 1] | "linear" | "exp" | "tanh"
    update_times_scale: float = 100.0
    using_ppo: bool = True
    distillation_loss_coef: Any = 1.0  # float | "linear" | "exp" | "tanh"
    distill_target: str = "real"
    distill_latent_coef: float = 1.0
    distill_latent_target: str = "real"
    distill_latent_obs_component_mapping: Optional[dict] = None  # noqa: UP045 (OmegaConf needs Optional)
    buffer_dilation_ratio: float = 1.0
    hidden_state_resample_prob: float = 0.0
    action_labels_from_sample: bool = False
    clip_min_std: float = 0.0


SCHEDULES = ("linear", "exp", "tanh")
TARGETS = ("real", "mse_sum", "l1", "tanh", "scaled_tanh", "max_log_prob")
LATENT_TARGETS = ("real", "mse_sum", "l1", "tanh", "scaled_tanh")


# -- st_rl's schedules and distances ------------------------------------------------------------------


def scheduled_prob(option: str, update_times_scale: float, iteration: Array) -> Array:
    """st_rl's ``GET_PROB_FUNC(option, update_times_scale)(iteration)`` (float32 scalar).

    ``linear``: ``max(0, 1 - x / s)``; ``exp``: ``max(0, (1 - 1 / s) ** x)``;
    ``tanh``: ``max(0, 0.5 * (1 - tanh((x - s) / s)))``.
    """
    x, inv = jnp.asarray(iteration, jnp.float32), 1.0 / update_times_scale
    if option == "linear":
        value = 1.0 - inv * x
    elif option == "exp":
        value = jnp.power(jnp.float32(1.0 - inv), x)
    elif option == "tanh":
        value = 0.5 * (1.0 - jnp.tanh(inv * (x - update_times_scale)))
    else:
        raise ValueError(f"unknown schedule '{option}', expected a number or one of {list(SCHEDULES)}")
    return jnp.maximum(0.0, value)


def coefficient(value: float | str, update_times_scale: float) -> Callable[[Array], Array]:
    """``iteration -> coefficient``: a constant, or the schedule named ``value``."""
    if isinstance(value, str):
        return lambda it: scheduled_prob(value, update_times_scale, it)
    return lambda it: jnp.float32(value)


def _bce(x: Array, y: Array) -> Array:
    """PyTorch's element-wise ``binary_cross_entropy`` (logs clamped at -100; ``x`` clipped into [0, 1])."""
    x = jnp.clip(x, 0.0, 1.0)
    return -(y * jnp.maximum(jnp.log(x), -100.0) + (1.0 - y) * jnp.maximum(jnp.log1p(-x), -100.0))


def distance(target: str, x: Array, y: Array, std: Array | None = None) -> Array:
    """st_rl's per-row distillation distance ``[...]`` between ``x`` and ``y`` ``[..., A]``.

    Args:
        target: one of :data:`TARGETS`.
        x: the student's output (action mean or latent).
        y: the teacher's (label or latent).
        std: the student's action std (``max_log_prob`` only).
    """
    diff = x - y
    if target == "real":
        return jnp.sqrt(jnp.sum(jnp.square(diff), axis=-1))
    if target == "mse_sum":
        return jnp.sum(jnp.square(diff), axis=-1)
    if target == "l1":
        return jnp.sum(jnp.abs(diff), axis=-1)
    if target in ("tanh", "scaled_tanh"):
        bce = 2.0 * jnp.mean(_bce((x + 1.0) * 0.5, (y + 1.0) * 0.5), axis=-1)
        return bce if target == "tanh" else bce * jnp.sum(jnp.abs(diff), axis=-1) / x.shape[-1]
    if target == "max_log_prob":
        return -distributions.log_prob(x, jnp.broadcast_to(std, x.shape), y)
    raise ValueError(f"unknown distill_target '{target}', expected one of {list(TARGETS)}")


# -- the teacher, the states and the options ---------------------------------------------------------


class TeacherPolicy(NamedTuple):
    """The teacher as TPPO uses it.

    Attributes:
        act: ``(obs, state) -> (actions [n, A], state)``, deterministic, on the env's observation groups.
        init_state: ``num_envs -> state`` (``()`` for a feed-forward teacher).
        action_std: the teacher's action std ``[A]`` (``action_labels_from_sample``), or ``None``.
        latents: student component -> ``obs -> [n, K]``, the teacher's latent it is distilled towards.
    """

    act: Callable[[Observation, Any], tuple[Array, Any]]
    init_state: Callable[[int], Any]
    action_std: Array | None = None
    latents: Mapping[str, Callable[[Observation], Array]] = {}


@struct.dataclass
class TPPOState:
    """Replicated state: the redraw probability of the next rollout, the distillation weight and a key.

    Attributes:
        act_prob: ``teacher_act_prob(it)``, used by the redraws of the next rollout (float32).
        distill_coef: ``distillation_loss_coef(it)`` (float32).
        key: key of this iteration's hidden-state resampling.
    """

    act_prob: Array
    distill_coef: Array
    key: PRNGKey


@struct.dataclass
class Queue:
    """st_rl's queue storage, per env: ``L`` earlier rollouts of labelled steps ``[n, L, T, ...]``.

    Attributes:
        obs: the actor's observation groups.
        labels: the teacher's labels ``[n, L, T, A]``.
        latents: component -> teacher latent ``[n, L, T, K]``.
        valid: a step has been stored there ``[n, L, T]``.
    """

    obs: dict
    labels: Array
    latents: dict
    valid: Array


@struct.dataclass
class Carry:
    """Per-env rollout state.

    Attributes:
        use_teacher: st_rl's ``use_teacher_act_mask`` ``[n]`` bool.
        teacher_state: the teacher's recurrent state (leaves ``[n, ...]``).
        queue: the :class:`Queue` (``()`` without buffer dilation).
    """

    use_teacher: Array
    teacher_state: Any
    queue: Any = ()


def check_options(cfg, networks, teacher: TeacherPolicy) -> None:
    """Refuses options that cannot work together, naming the option (``ValueError``)."""
    for name in ("teacher_act_prob", "distillation_loss_coef"):
        value = getattr(cfg, name)
        ok = value in SCHEDULES if isinstance(value, str) else isinstance(value, (int, float)) and value >= 0
        if not ok or (name == "teacher_act_prob" and not isinstance(value, str) and value > 1):
            top = " in [0, 1]" if name == "teacher_act_prob" else " >= 0"
            raise ValueError(f"{name}={value!r}: expected a number{top} or one of {list(SCHEDULES)}")
    if cfg.update_times_scale <= 0 or cfg.buffer_dilation_ratio < 1 or not 0 <= cfg.hidden_state_resample_prob <= 1:
        raise ValueError("update_times_scale must be > 0, buffer_dilation_ratio >= 1 and hidden_state_resample_prob "
                         "in [0, 1]")
    if cfg.distill_target not in TARGETS or cfg.distill_latent_target not in LATENT_TARGETS:
        raise ValueError(f"distill_target='{cfg.distill_target}' / distill_latent_target='{cfg.distill_latent_target}'"
                         f": expected one of {list(TARGETS)} / {list(LATENT_TARGETS)}")
    if cfg.hidden_state_resample_prob > 0 and not networks.is_recurrent:
        raise ValueError("hidden_state_resample_prob needs a recurrent policy (policy.class_name=ActorCriticRecurrent)")
    if cfg.buffer_dilation_ratio > 1 and networks.is_recurrent:
        raise ValueError("buffer_dilation_ratio > 1 needs a feed-forward policy (queued steps carry no state)")
    if cfg.buffer_dilation_ratio > 1 and cfg.distill_target == "max_log_prob" and getattr(
            networks, "state_dependent_std", False):
        raise ValueError("distill_target=max_log_prob with buffer_dilation_ratio > 1 needs a state-independent std")
    if cfg.action_labels_from_sample and teacher.action_std is None:
        raise ValueError("action_labels_from_sample needs a teacher with an action std (an RSL-RL model_<it>.pt "
                         "checkpoint; exported policy files are deterministic); set action_labels_from_sample=false")
    if cfg.clip_min_std < 0 or (cfg.clip_min_std > 0 and getattr(networks, "state_dependent_std", False)):
        raise ValueError("clip_min_std must be >= 0, and 0 for a state-dependent std")
    for student in dict(cfg.distill_latent_obs_component_mapping or {}):
        if student not in getattr(networks, "estimator_groups", ()):
            raise ValueError(f"distill_latent_obs_component_mapping: the student has no encoder of '{student}' (its "
                             f"state estimator reads {list(getattr(networks, 'estimator_groups', ()))}; enable "
                             "algorithm.estimator_cfg)")
        obs = {g: jax.ShapeDtypeStruct((1, *shape), jnp.float32) for g, shape in networks.obs_shapes.items()}
        width = jax.eval_shape(teacher.latents[student], obs).shape[-1]
        if width != networks.estimate_size:
            raise ValueError(f"distill_latent_obs_component_mapping: the teacher's latent has {width} values, the "
                             f"student's estimate {networks.estimate_size}")


# -- rollout side: who acts, the labels and the queue -------------------------------------------------


def queue_layout(num_steps: int, ratio: float) -> np.ndarray:
    """``keep [L, T]``: whether queued step ``t`` of the ``l``-th earlier rollout lies in st_rl's dilated buffer.

    The buffer holds the last ``int(ratio * T)`` steps; step ``t`` of the rollout ``l + 1`` rollouts back is
    ``(l + 2) * T - t`` steps before the end of the current one. ``L = ceil((int(ratio * T) - T) / T)``.
    """
    total = int(ratio * num_steps)
    layers = max(math.ceil((total - num_steps) / num_steps), 0)
    t, layer = np.arange(num_steps)[None, :], np.arange(layers)[:, None]
    return t >= (layer + 2) * num_steps - total


def _at(x: Array, t: Array) -> Array:
    """``x[:, :, t]`` of a queue leaf ``[n, L, T, ...]``."""
    return jax.lax.dynamic_index_in_dim(x, t, axis=2, keepdims=False)


def _push(x: Array, new: Array, t: Array) -> Array:
    """Queue leaf ``[n, L, T, ...]`` with ``new`` ``[n, ...]`` at layer 0 of step ``t`` and older layers shifted."""
    column = jnp.concatenate([new[:, None].astype(x.dtype), _at(x, t)[:, :-1]], axis=1)
    return jax.lax.dynamic_update_index_in_dim(x, column, t, axis=2)


def cycle_queue(queue: Queue, keep: Array, t: Array, obs: dict, labels: Array, latents: dict) -> tuple[dict, Queue]:
    """The queued steps at ``t`` (``[n, L, ...]``, with ``valid``) and the queue with step ``t`` pushed."""
    old = {"obs": jax.tree.map(lambda x: _at(x, t), queue.obs), "labels": _at(queue.labels, t),
           "latents": jax.tree.map(lambda x: _at(x, t), queue.latents), "valid": _at(queue.valid, t) & keep[:, t]}
    queue = Queue(obs=jax.tree.map(lambda x, y: _push(x, y, t), queue.obs, obs), labels=_push(queue.labels, labels, t),
                  latents=jax.tree.map(lambda x, y: _push(x, y, t), queue.latents, latents),
                  valid=_push(queue.valid, jnp.ones(labels.shape[:1], bool), t))
    return old, queue


def make_actor(teacher: TeacherPolicy, actor_groups, obs_shapes: Mapping, action_size: int, num_steps: int,
               ratio: float, from_sample: bool) -> Actor:
    """TPPO's rollout hooks: the teacher labels, the mask picks who acts, dones redraw the mask.

    Args:
        teacher: the teacher (labels, latents, recurrent state).
        actor_groups: the student's observation groups (stored in the queue).
        obs_shapes: group -> shape.
        action_size: ``A``.
        num_steps: ``T``.
        ratio: ``buffer_dilation_ratio``.
        from_sample: ``action_labels_from_sample``.
    """
    keep = jnp.asarray(queue_layout(num_steps, ratio))
    layers = keep.shape[0]
    dummy = {g: jax.ShapeDtypeStruct((1, *shape), jnp.float32) for g, shape in obs_shapes.items()}
    latent_sizes = {k: int(jax.eval_shape(fn, dummy).shape[-1]) for k, fn in teacher.latents.items()}

    def init(key, num_envs: int) -> Carry:
        queue: Any = ()
        if layers:  # an empty queue of L earlier rollouts
            shape = (num_envs, layers, num_steps)
            queue = Queue(obs={g: jnp.zeros((*shape, *obs_shapes[g])) for g in actor_groups},
                          labels=jnp.zeros((*shape, action_size)),
                          latents={k: jnp.zeros((*shape, size)) for k, size in latent_sizes.items()},
                          valid=jnp.zeros(shape, bool))
        return Carry(use_teacher=jnp.ones((num_envs,), bool), teacher_state=teacher.init_state(num_envs), queue=queue)

    def act(state: TPPOState, carry: Carry, step: ActStep, keys: Array):
        # The teacher's label (its mean, or a sample of it) on the same step.
        labels, teacher_state = teacher.act(step.obs, carry.teacher_state)
        if from_sample:
            noise = jax.vmap(lambda k: jax.random.normal(k, (action_size,)))(keys)
            labels = labels + teacher.action_std * noise
        # Envs under the mask execute the label.
        actions = jnp.where(carry.use_teacher[:, None], labels, step.actions)
        latents = {k: fn(step.obs) for k, fn in teacher.latents.items()}
        record = {"labels": labels, "use_teacher": carry.use_teacher, "latents": latents}
        queue = carry.queue
        if layers:  # hand over the queued steps at t, then store this one
            obs = {g: step.obs[g] for g in actor_groups}
            record["old"], queue = cycle_queue(queue, keep, step.t, obs, labels, latents)
        return carry.replace(teacher_state=teacher_state, queue=queue), actions, record

    def process_env_step(state: TPPOState, carry: Carry, dones: Array, keys: Array) -> Carry:
        # A finished episode redraws its env's mask and clears the teacher's state.
        draw = jax.vmap(jax.random.uniform)(keys) < state.act_prob
        return carry.replace(use_teacher=jnp.where(dones, draw, carry.use_teacher),
                             teacher_state=reset_state(carry.teacher_state, dones))

    return Actor(init=init, act=act, process_env_step=process_env_step)


# -- learning side -------------------------------------------------------------------------------------


def _env_ids(n: int, axis_name: str | None) -> Array:
    """Global ids of this device's ``n`` envs."""
    offset = jax.lax.axis_index(axis_name) * n if axis_name else 0
    return offset + jnp.arange(n)


def resample_draws(key: PRNGKey, hidden: Any, prob: float, axis_name: str | None) -> dict:
    """Per step and env ``[T, N]``: whether to resample its stored state, and uniform [-1, 1] values like it.

    The draws of an env come from its global id, so they do not depend on the device split.
    """
    some = jax.tree.leaves(hidden)[0]
    keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, _env_ids(some.shape[1], axis_name))

    def per_env(k: PRNGKey):
        k_mask, k_values = jax.random.split(k)
        leaves, treedef = jax.tree.flatten(hidden)
        values = [jax.random.uniform(jax.random.fold_in(k_values, i), (x.shape[0], *x.shape[2:]), minval=-1.0,
                                     maxval=1.0) for i, x in enumerate(leaves)]
        return jax.random.uniform(k_mask, (some.shape[0],)) < prob, jax.tree.unflatten(treedef, values)

    mask, values = jax.vmap(per_env, out_axes=1)(keys)
    return {"mask": mask, "values": values}


def _weighted_distance(target: str, x: Array, y: Array, std, old: tuple | None) -> Array:
    """Mean distance over the current rows and, if given, the valid queued rows ``(x_old, y_old, valid)``."""
    d = distance(target, x, y, std)
    if old is None:
        return jnp.mean(d)
    x_old, y_old, valid = old
    w = valid.astype(d.dtype)
    return (jnp.sum(d) + jnp.sum(distance(target, x_old, y_old, std) * w)) / (d.size + jnp.sum(w))


def make_loss(networks, cfg, dilated: bool):
    """``loss(state, params, minibatch, key)``: the action distillation and the latent distillation terms."""
    mapping = dict(cfg.distill_latent_obs_component_mapping or {})

    def loss(state: TPPOState, params, mb: Minibatch, key: PRNGKey):
        ex = mb.extras
        n = ex["labels"].shape[0]
        mean = mb.forward.mean[:n]  # the original rows (augmentations come after them)
        std = mb.forward.std[:n] if mb.forward.std.ndim == mb.forward.mean.ndim else mb.forward.std
        old = ex.get("old")
        old_mean = networks.actor_mean(params, mb.normalizers, old["obs"]) if dilated else None
        action_old = (old_mean, old["labels"], old["valid"]) if dilated else None
        distill = _weighted_distance(cfg.distill_target, mean, ex["labels"], std, action_old)
        total, metrics = state.distill_coef * distill, {"distillation": distill}
        if mapping:  # the student's encoder latent is its state estimate, on the same rows
            latent = networks.estimate(params, mb.normalizers, jax.tree.map(lambda x: x[:n], mb.data.obs))
            latent_old = networks.estimate(params, mb.normalizers, old["obs"]) if dilated else None
        for k in mapping:
            queued = (latent_old, old["latents"][k], old["valid"]) if dilated else None
            value = _weighted_distance(cfg.distill_latent_target, latent, ex["latents"][k], None, queued)
            total, metrics[f"distill_latent_{k}"] = total + cfg.distill_latent_coef * value, value
        return total, jax.tree.map(jax.lax.stop_gradient, metrics)

    return loss


def _std_floor(networks, clip_min_std: float):
    """``post_update``: the state-independent std parameter floored at ``clip_min_std`` (st_rl's ``clip_std``)."""
    floor = clip_min_std if networks.noise_std_type == "scalar" else math.log(clip_min_std)

    def post_update(state, params, normalizers, rollout: Rollout, key: PRNGKey):
        actor = dict(params.actor, std=jnp.maximum(params.actor["std"], floor))
        return state, params.replace(actor=actor), {}

    return post_update


def extension(networks, teacher: TeacherPolicy, cfg, num_steps: int, axis_name: str | None = None,
              name: str = "tppo") -> Extension:
    """TPPO as an :class:`Extension` (see the module docstring).

    Args:
        networks: the student actor-critic (an ``EstimatorActorCritic`` for latent distillation).
        teacher: the teacher (see :class:`TeacherPolicy`).
        cfg: an :class:`TPPOConfig` (st_rl's option names).
        num_steps: ``num_steps_per_env`` (T), for the queue of ``buffer_dilation_ratio``.
        axis_name: data-parallel axis (metrics are averaged over it).
        name: the extension's name (its state slot).

    Raises:
        ValueError: options that cannot work together (see :func:`check_options`).
    """
    check_options(cfg, networks, teacher)
    prob = coefficient(cfg.teacher_act_prob, cfg.update_times_scale)
    coef = coefficient(cfg.distillation_loss_coef, cfg.update_times_scale)
    dilated = bool(queue_layout(num_steps, cfg.buffer_dilation_ratio).shape[0])
    resample = cfg.hidden_state_resample_prob
    pmean = (lambda x: jax.lax.pmean(x, axis_name)) if axis_name else (lambda x: x)

    def init(key, spec: Spec) -> TPPOState:
        return TPPOState(act_prob=prob(0), distill_coef=coef(0), key=jax.random.key(0) if key is None else key)

    def schedule(state: TPPOState, stats: Stats) -> TPPOState:
        return state.replace(act_prob=prob(stats.iteration), distill_coef=coef(stats.iteration))

    def update(state: TPPOState, rollout: Rollout, returns, key: PRNGKey):
        record = rollout.transitions.extras["act"][name]
        metrics = {"Train/teacher_act_prob": state.act_prob,
                   "Train/teacher_act_fraction": pmean(jnp.mean(record["use_teacher"].astype(jnp.float32)))}
        if isinstance(cfg.distillation_loss_coef, str):
            metrics["Train/distillation_loss_coef"] = state.distill_coef
        return state.replace(key=key), metrics

    def batch_extras(state: TPPOState, rollout: Rollout) -> dict:
        record = rollout.transitions.extras["act"][name]
        extras = {k: record[k] for k in ("labels", "latents", "old") if k in record}
        if resample > 0:
            extras["resample"] = resample_draws(state.key, rollout.transitions.hidden, resample, axis_name)
        return extras

    def augment(batch):
        draws = batch.extras[name]["resample"]

        def pick(h: Array, v: Array) -> Array:
            return jnp.where(draws["mask"].reshape(draws["mask"].shape + (1,) * (h.ndim - 2)), v, h)

        return batch._replace(hidden=jax.tree.map(pick, batch.hidden, draws["values"]))

    actor = make_actor(teacher, tuple(networks.obs_groups["actor"]), networks.obs_shapes, networks.action_size,
                       num_steps, cfg.buffer_dilation_ratio, cfg.action_labels_from_sample)
    return Extension(name, init=init, schedule=schedule, update=update, batch_extras=batch_extras,
                     augment=augment if resample > 0 else None, loss=make_loss(networks, cfg, dilated),
                     post_update=_std_floor(networks, cfg.clip_min_std) if cfg.clip_min_std > 0 else None,
                     act=actor)


# -- built from the config -----------------------------------------------------------------------------

TPPO_CLASSES = ("TPPO", "EstimatorTPPO", "ATPPO")


def enabled(cfg) -> bool:
    """Whether the run is st_rl's TPPO: a teacher in ``algorithm.tppo_cfg.teacher_policy`` (or the class named)."""
    alg = cfg.algorithm
    return bool(alg.tppo_cfg.teacher_policy) or alg.class_name in TPPO_CLASSES


def replaces_ppo_terms(cfg) -> bool:
    """TPPO as DAgger (``using_ppo=false``): the run has no surrogate, value or entropy term."""
    return enabled(cfg) and not cfg.algorithm.tppo_cfg.using_ppo


def _teacher(cfg, ctx: BuildContext, networks) -> TeacherPolicy:
    """The teacher of ``algorithm.tppo_cfg`` read with the context's policy loader, on the critic's (or actor's)
    groups."""
    tc, env = cfg.algorithm.tppo_cfg, ctx.env
    if ctx.load_policy is None:
        raise ValueError("this build context has no policy loader")
    which = "critic" if tc.label_action_with_critic_obs else "actor"
    groups, shapes = list(networks.obs_groups[which]), env.observation_shapes
    teacher = ctx.load_policy(tc.teacher_policy)
    width = sum(int(np.prod(shapes[g])) for g in groups)
    # A CNN checkpoint's input width depends on the image sizes (obs_dim -1): its bind checks the groups.
    if (teacher.obs_dim >= 0 and width != teacher.obs_dim) or teacher.action_dim != env.action_size:
        raise ValueError(f"the teacher '{tc.teacher_policy}' maps {teacher.obs_dim} observations to "
                         f"{teacher.action_dim} actions, but the {which} groups {groups} give {width} and the env "
                         f"takes {env.action_size}; set label_action_with_critic_obs to the observations it was "
                         "trained on")
    latents = {}
    for student, component in dict(tc.distill_latent_obs_component_mapping or {}).items():
        if ctx.load_estimator_latent is None:
            raise ValueError("distill_latent_obs_component_mapping: this build context cannot read a teacher's "
                             "estimator")
        latent, encoded = ctx.load_estimator_latent(tc.teacher_policy)
        if component not in encoded:
            raise ValueError(f"distill_latent_obs_component_mapping: the teacher encodes {list(encoded)}, not "
                             f"'{component}'")
        latents[student] = lambda obs, f=latent: f(concat_groups(obs, groups, shapes))
    return TeacherPolicy(act=teacher.bind(groups, shapes), init_state=teacher.init_state,
                         action_std=teacher.action_std, latents=latents)


def build(cfg, ctx: BuildContext, networks) -> list[Extension]:
    """st_rl's TPPO from ``algorithm.tppo_cfg``."""
    alg, tc = cfg.algorithm, cfg.algorithm.tppo_cfg
    if not tc.teacher_policy:
        raise ConfigError(f"algorithm.class_name={alg.class_name} needs a teacher: set "
                          "algorithm.tppo_cfg.teacher_policy=<policy.onnx | policy.pt | model_<it>.pt | run dir>")
    if alg.class_name == "EstimatorTPPO" and not alg.estimator_cfg.enabled:
        raise ConfigError("algorithm.class_name=EstimatorTPPO is TPPO with a state estimator: set "
                          "algorithm.estimator_cfg.enabled=true (and its target_components)")
    if not tc.using_ppo and alg.schedule == "adaptive":
        raise ConfigError("algorithm.tppo_cfg.using_ppo=false trains without PPO's terms, so there is no policy KL "
                          "to adapt the learning rate to (st_rl keeps it fixed); set algorithm.schedule=fixed")
    try:
        return [extension(networks, _teacher(cfg, ctx, networks), tc, cfg.runner.num_steps_per_env, ctx.axis)]
    except (FileNotFoundError, ValueError) as err:
        raise ConfigError(f"algorithm.tppo_cfg: {err}") from None


METHOD = Method("tppo", "algorithm.tppo_cfg", enabled=enabled, build=build, config=TPPOConfig, class_names=TPPO_CLASSES,
                fixed_on_resume=("algorithm.tppo_cfg.buffer_dilation_ratio",
                                 "algorithm.tppo_cfg.distill_latent_obs_component_mapping"))
