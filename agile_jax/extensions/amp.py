"""st_rl's APPO / ATPPO (adversarial motion priors) as one extension.

A discriminator ``D`` (an MLP with its own Adam optimiser and its own observation normaliser,
``ref_obs_normalizer``) learns to tell the environment's AMP observations (``ref_obs``: the ``amp`` observation
group after each step, ``amp_obs_dim`` values) from expert ones drawn from reference motions
(:class:`agile_jax.motion.AMPLoader`), with st_rl's least-squares targets and gradient penalty::

    L_D = discriminator_loss_coef * (0.5 * mean((D(expert) - 1)^2) + 0.5 * mean((D(policy) + 1)^2)
                                     + discriminator_grad_pen * mean(|| dD/dx (expert) ||^2))

and rewards the policy for looking like the expert (``predict_style_reward``)::

    r_style = style_reward_coef * max(0, 1 - 0.25 * (D(ref_obs) - 1)^2)
    r       = (1 - task_reward_lerp) * r_style + task_reward_lerp * r_task

Hooks: ``shape`` mixes the style reward into the rewards (before reward normalisation and the bootstraps, where
st_rl's ``process_env_step`` does it); ``update`` (after GAE) folds the rollout's AMP observations and as many
expert samples into the normaliser, then takes ``num_learning_epochs x num_mini_batches`` discriminator steps,
each on a minibatch of the rollout and a fresh expert draw of the same size; ``loss`` adds ATPPO's terms:

* ``dagger_loss_coef * mean || mu(obs) - teacher(obs) ||``: the policy mean pulled towards a teacher policy (an
  exported policy read by :func:`agile_jax.policies.load.load_policy`) on the minibatch's own rows;
* ``mimic_loss_coef * mean || ref_obs - ref_motion ||``: st_rl's distance between the AMP observation and the
  time-aligned reference frame the environment provides (``ref_motion`` group), both normalised. Like st_rl's,
  it compares two observations and so carries no gradient to the policy; it is part of the logged objective.

Differences from st_rl: the discriminator is trained by its own optimiser in ``update`` rather than by PPO's
optimiser on the summed loss (``discriminator_loss_coef`` scales its loss; st_rl uses it as an on/off switch
with weight 1), and one normaliser (updated with policy and expert samples) serves both inputs, where st_rl
keeps a second one for the expert data.

Logged: ``Loss/discriminator``, ``Loss/discriminator_expert``, ``Loss/discriminator_policy``,
``Loss/grad_penalty``, ``Train/discriminator_accuracy``, ``Amp/expert_score``, ``Amp/policy_score``,
``Amp/style_reward``, ``Amp/task_reward`` (per-step means) and, with ATPPO's terms, ``Loss/dagger`` and
``Loss/mimic``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

import jax
import jax.numpy as jnp
import optax
from flax import struct

from agile_jax.config_base import ConfigError
from agile_jax.extensions.base import Extension, Minibatch, Rollout, Spec
from agile_jax.extensions.method import BuildContext, Method
from agile_jax.networks import normalization
from agile_jax.networks.actor_critic import concat_groups, resolve_obs_groups
from agile_jax.networks.mlp import MLP, resolve_activation
from agile_jax.types import Array, Observation, PRNGKey


@dataclass
class AMPConfig:
    """st_rl's ``APPO`` / ``ATPPO`` (``algorithm.amp_cfg``, adversarial motion priors): a discriminator on the env's
    ``amp`` observation group (``runner.obs_groups.amp``) learns to tell it from reference motions
    (``motion_files``: .npz motion files or shipped sets, see docs/motion_files.md) and rewards the policy with
    ``style_reward_coef * max(0, 1 - (D - 1)^2 / 4)``, mixed as ``(1 - task_reward_lerp) * style +
    task_reward_lerp * task``. ``discriminator_grad_pen`` weighs the gradient penalty on expert samples;
    the discriminator has its own Adam (``learning_rate``) and ``hidden_dims``. ATPPO: ``dagger_loss_coef`` pulls
    the policy mean towards the teacher policy in ``teacher_ac_path`` (observations: ``runner.obs_groups.teacher``);
    ``mimic_loss_coef`` weighs st_rl's ``|ref_obs - ref_motion|`` (needs an env ``ref_motion`` group).
    ``amp_obs_dim``: ``None`` takes the ``amp`` group's size, a number is checked against it."""

    enabled: bool = False
    motion_files: list[str] = field(default_factory=list)
    amp_obs_dim: Optional[int] = None  # noqa: UP045 (OmegaConf needs Optional)
    discriminator_loss_coef: float = 1.0
    discriminator_grad_pen: float = 5.0
    style_reward_coef: float = 1.0
    task_reward_lerp: float = 0.0
    hidden_dims: list[int] = field(default_factory=lambda: [1024, 512])
    activation: str = "relu"
    learning_rate: float = 1e-4
    mimic_loss_coef: float = 0.0
    dagger_loss_coef: float = 0.0
    teacher_ac_path: str = ""


UNTIL = 1e8  # st_rl's EmpiricalNormalization limit for the AMP observations


@struct.dataclass
class AMPState:
    """What the discriminator carries between iterations.

    Attributes:
        params: discriminator MLP params.
        opt_state: its Adam state.
        ref_obs_normalizer: statistics of the AMP observations ``[amp_obs_dim]``.
    """

    params: Any
    opt_state: Any
    ref_obs_normalizer: normalization.NormalizerState


# -- the math, as pure functions ------------------------------------------------------------------------


def least_squares_losses(expert_d: Array, policy_d: Array) -> tuple[Array, Array]:
    """``(mean((D_e - 1)^2), mean((D_p + 1)^2))``: st_rl's MSE to the targets +1 (expert) and -1 (policy)."""
    return jnp.mean(jnp.square(expert_d - 1.0)), jnp.mean(jnp.square(policy_d + 1.0))


def gradient_penalty(score: Callable[[Array], Array], expert_x: Array, coef: float) -> Array:
    """``coef * mean_b || dD/dx (x_b) ||^2`` over expert inputs ``[B, D]``; ``score`` maps ``[D]`` to a scalar."""
    grads = jax.vmap(jax.grad(score))(expert_x)
    return coef * jnp.mean(jnp.sum(jnp.square(grads), axis=-1))


def style_reward(d: Array, style_reward_coef: float) -> Array:
    """``style_reward_coef * max(0, 1 - 0.25 (d - 1)^2)`` of discriminator outputs ``d`` (any shape)."""
    return style_reward_coef * jnp.maximum(0.0, 1.0 - 0.25 * jnp.square(d - 1.0))


def predict_style_reward(d: Array, task_reward: Array, style_reward_coef: float,
                         task_reward_lerp: float) -> tuple[Array, Array, Array]:
    """st_rl's ``predict_style_reward``: ``(style_reward, task_reward, (1 - lerp) style + lerp task)``."""
    style = style_reward(d, style_reward_coef)
    return style, task_reward, (1.0 - task_reward_lerp) * style + task_reward_lerp * task_reward


def discriminator_accuracy(expert_d: Array, policy_d: Array) -> Array:
    """Share of correct calls, expert ``D > 0`` and policy ``D < 0`` weighted equally."""
    return 0.5 * (jnp.mean(expert_d > 0.0) + jnp.mean(policy_d < 0.0))


def mimic_loss(ref_obs: Array, ref_motion: Array) -> Array:
    """st_rl's ``mean || ref_obs - ref_motion ||_2`` over rows ``[B, D]``."""
    return jnp.mean(jnp.linalg.norm(ref_obs - ref_motion, axis=-1))


def dagger_loss(action_mean: Array, action_labels: Array) -> Array:
    """st_rl's ``mean || mu - a_label ||_2`` over rows ``[B, A]``."""
    return jnp.mean(jnp.linalg.norm(action_mean - action_labels, axis=-1))


# -- the discriminator ----------------------------------------------------------------------------------


class Discriminator:
    """The discriminator network, its optimiser and loss (closed over the static settings).

    Args:
        input_dim: ``amp_obs_dim``.
        hidden_dims: hidden widths (st_rl's ``hidden_dims``).
        activation: RSL-RL activation name (st_rl uses ReLU).
        learning_rate: its Adam learning rate.
        discriminator_grad_pen: gradient-penalty weight.
        discriminator_loss_coef: weight of the whole discriminator loss.
        axis_name: data-parallel axis (inside ``shard_map``) gradients and statistics are combined over.
    """

    def __init__(self, input_dim: int, hidden_dims: Sequence[int] = (1024, 512), activation: str = "relu",
                 learning_rate: float = 1e-4, discriminator_grad_pen: float = 5.0,
                 discriminator_loss_coef: float = 1.0, axis_name: str | None = None):
        self.input_dim, self.axis_name = int(input_dim), axis_name
        resolve_activation(activation)  # an unknown name fails here, in one line
        self.mlp = MLP(tuple(hidden_dims), 1, activation)
        self.grad_pen, self.loss_coef = float(discriminator_grad_pen), float(discriminator_loss_coef)
        self.tx = optax.adam(learning_rate)

    def init(self, key: PRNGKey, spec: Spec | None = None) -> AMPState:
        """Fresh network, optimiser and normaliser."""
        params = self.mlp.init(key, jnp.zeros((1, self.input_dim), jnp.float32))
        return AMPState(params=params, opt_state=self.tx.init(params),
                        ref_obs_normalizer=normalization.init(self.input_dim))

    def score(self, params, x: Array) -> Array:
        """``D(x)`` ``[...]`` of normalised inputs ``[..., amp_obs_dim]``."""
        return self.mlp.apply(params, x)[..., 0]

    def normalize(self, state: AMPState, x: Array) -> Array:
        """``x`` ``[..., amp_obs_dim]`` through ``ref_obs_normalizer``."""
        return normalization.normalize(state.ref_obs_normalizer, x)

    def loss(self, params, expert_x: Array, policy_x: Array) -> tuple[Array, dict]:
        """The weighted discriminator loss on normalised inputs ``[B, D]`` and its parts (see module docstring)."""
        expert_d, policy_d = self.score(params, expert_x), self.score(params, policy_x)
        expert_loss, policy_loss = least_squares_losses(expert_d, policy_d)
        penalty = gradient_penalty(lambda x: self.score(params, x), expert_x, self.grad_pen)
        total = self.loss_coef * (0.5 * expert_loss + 0.5 * policy_loss + penalty)
        parts = {"discriminator": total, "discriminator_expert": 0.5 * expert_loss,
                 "discriminator_policy": 0.5 * policy_loss, "grad_penalty": penalty,
                 "Train/discriminator_accuracy": discriminator_accuracy(expert_d, policy_d),
                 "Amp/expert_score": jnp.mean(expert_d), "Amp/policy_score": jnp.mean(policy_d)}
        return total, parts

    def step(self, state: AMPState, expert_x: Array, policy_x: Array) -> tuple[AMPState, dict]:
        """One Adam step on raw inputs ``[B, D]`` (normalised here); returns the loss parts before the step."""
        e, p = self.normalize(state, expert_x), self.normalize(state, policy_x)
        grads, parts = jax.grad(self.loss, has_aux=True)(state.params, e, p)
        if self.axis_name:
            grads = jax.lax.pmean(grads, self.axis_name)
        updates, opt_state = self.tx.update(grads, state.opt_state, state.params)
        return state.replace(params=optax.apply_updates(state.params, updates), opt_state=opt_state), parts


# -- the extension --------------------------------------------------------------------------------------


def next_observation(rollout: Rollout, groups: Sequence[str], shapes: Mapping[str, tuple[int, ...]]) -> Array:
    """The groups after each step, flattened: ``obs[t + 1]`` (``last_obs`` for the last step) ``[T, N, D]``."""
    obs = concat_groups(rollout.transitions.obs, groups, shapes)
    last = concat_groups(rollout.last_obs, groups, shapes)
    return jnp.concatenate([obs[1:], last[None]], axis=0)


def extension(disc: Discriminator, expert: Callable[[PRNGKey, int], Array], amp_groups: Sequence[str],
              obs_shapes: Mapping[str, tuple[int, ...]], num_learning_epochs: int, num_mini_batches: int,
              style_reward_coef: float = 1.0, task_reward_lerp: float = 0.0, mimic_loss_coef: float = 0.0,
              ref_motion_groups: Sequence[str] = (), dagger_loss_coef: float = 0.0,
              teacher: Callable[[Observation], Array] | None = None) -> Extension:
    """APPO (and with a teacher ATPPO) as an :class:`Extension` named ``amp``.

    Args:
        disc: the discriminator.
        expert: ``(key, B) -> [B, amp_obs_dim]`` expert samples (:meth:`agile_jax.motion.AMPLoader.sample`).
        amp_groups: observation groups of ``ref_obs``, concatenated (the env's ``amp`` group).
        obs_shapes: the env's observation shapes.
        num_learning_epochs, num_mini_batches: discriminator passes over the rollout (PPO's numbers).
        style_reward_coef, task_reward_lerp: the style reward's scale and the task reward's share.
        mimic_loss_coef, ref_motion_groups: st_rl's mimic term and the groups of the aligned reference frame.
        dagger_loss_coef, teacher: the DAgger term and ``teacher(obs) -> actions [B, A]``.
    """
    axis = disc.axis_name
    pmean = (lambda x: jax.lax.pmean(x, axis)) if axis else (lambda x: x)

    def shape(state: AMPState, rollout: Rollout):
        # Style reward of each transition, judged on the AMP observation after the step.
        d = disc.score(state.params, disc.normalize(state, next_observation(rollout, amp_groups, obs_shapes)))
        style, task, mixed = predict_style_reward(d, rollout.rewards, style_reward_coef, task_reward_lerp)
        metrics = {"Amp/style_reward": pmean(jnp.mean(style)), "Amp/task_reward": pmean(jnp.mean(task))}
        return state, rollout._replace(rewards=mixed), metrics

    def update(state: AMPState, rollout: Rollout, returns: Array, key: PRNGKey):
        policy_x = next_observation(rollout, amp_groups, obs_shapes).reshape(-1, disc.input_dim)
        total = policy_x.shape[0]
        # Each device draws its own expert samples.
        key = jax.random.fold_in(key, jax.lax.axis_index(axis)) if axis else key
        k_norm, k_perm, k_expert = jax.random.split(key, 3)
        # The normaliser sees the rollout's AMP observations and as many expert ones, before the steps.
        seen = jnp.concatenate([policy_x, expert(k_norm, total)], axis=0)
        state = state.replace(ref_obs_normalizer=normalization.update(state.ref_obs_normalizer, seen, UNTIL, axis))
        # Epochs x minibatches of discriminator steps, each with a fresh expert draw.
        size = total // num_mini_batches
        perm = jax.random.permutation(k_perm, total)[: num_mini_batches * size].reshape(num_mini_batches, size)
        idx = jnp.tile(perm, (num_learning_epochs, 1, 1)).reshape(-1, size)
        keys = jax.random.split(k_expert, idx.shape[0])
        state, parts = jax.lax.scan(lambda s, xs: disc.step(s, expert(xs[1], size), policy_x[xs[0]]), state,
                                    (idx, keys))
        return state, {k: pmean(jnp.mean(v)) for k, v in parts.items()}

    use_mimic, use_dagger = mimic_loss_coef != 0.0, dagger_loss_coef != 0.0

    def batch_extras(state: AMPState, rollout: Rollout):
        # The aligned pair after each step, as st_rl stores it with the transition.
        return {"ref_obs": next_observation(rollout, amp_groups, obs_shapes),
                "ref_motion": next_observation(rollout, ref_motion_groups, obs_shapes)}

    def loss(state: AMPState, params, mb: Minibatch, key: PRNGKey):
        total, metrics = 0.0, {}
        if use_mimic:
            ref_obs, ref_motion = (disc.normalize(state, mb.extras[k]) for k in ("ref_obs", "ref_motion"))
            value = mimic_loss(ref_obs, ref_motion)
            total, metrics["mimic"] = total + mimic_loss_coef * value, value
        if use_dagger:
            rows = mb.forward.entropy.shape[0]  # the original (un-augmented) rows come first
            labels = teacher(jax.tree.map(lambda x: x[:rows], mb.data.obs))
            value = dagger_loss(mb.forward.mean[:rows], jax.lax.stop_gradient(labels))
            total, metrics["dagger"] = total + dagger_loss_coef * value, jax.lax.stop_gradient(value)
        return total, metrics

    return Extension("amp", init=disc.init, shape=shape, update=update,
                     batch_extras=batch_extras if use_mimic else None,
                     loss=loss if (use_mimic or use_dagger) else None)


AMP_CLASSES = ("APPO", "ATPPO")  # st_rl's adversarial classes: ATPPO is APPO's terms over TPPO


def enabled(cfg) -> bool:
    """Whether the run uses st_rl's adversarial motion priors: ``algorithm.amp_cfg.enabled`` (or the class named)."""
    return cfg.algorithm.amp_cfg.enabled or cfg.algorithm.class_name in AMP_CLASSES


def _inputs(cfg, ctx: BuildContext):
    """The ``amp`` observation groups and the loader of ``algorithm.amp_cfg.motion_files`` for them."""
    from agile_jax.motion import AMPLoader, MotionFormatError

    ac, env = cfg.algorithm.amp_cfg, ctx.env
    groups = list(cfg.runner.obs_groups.get("amp") or ["amp"])
    missing = [g for g in groups if g not in env.observation_shapes]
    if missing or groups != ["amp"] or "amp" not in env.layouts:
        raise ConfigError(f"APPO / ATPPO (algorithm.amp_cfg) need an 'amp' observation group with an amp_layout, and "
                          f"{env.name} has no 'amp' observation group (presets with one: t1_velocity_amp, "
                          "point_mass_amp); disable algorithm.amp_cfg.enabled")
    shape = tuple(env.observation_shapes["amp"])
    try:
        loader = AMPLoader(list(ac.motion_files), env.dt or env.ctrl_dt, env.layouts["amp"], env.amp_joint_names,
                           num_frames=shape[0] if len(shape) == 2 else 1)
    except MotionFormatError as err:
        raise ConfigError(f"algorithm.amp_cfg.motion_files: {err}") from None
    if ac.amp_obs_dim is not None and ac.amp_obs_dim != loader.observation_dim:
        raise ConfigError(f"algorithm.amp_cfg.amp_obs_dim={ac.amp_obs_dim} but the 'amp' group holds "
                          f"{loader.observation_dim} values; set it to {loader.observation_dim} or null")
    return groups, loader


def _teacher(cfg, ctx: BuildContext):
    """ATPPO's teacher ``obs -> actions`` from ``algorithm.amp_cfg.teacher_ac_path`` (``runner.obs_groups.teacher``)."""
    path, env = cfg.algorithm.amp_cfg.teacher_ac_path, ctx.env
    if not path:
        raise ConfigError("algorithm.amp_cfg.dagger_loss_coef needs a teacher: set algorithm.amp_cfg.teacher_ac_path "
                          "to an exported policy (policy.onnx / policy.pt)")
    if ctx.load_policy is None:
        raise ConfigError("algorithm.amp_cfg.teacher_ac_path: this build context has no policy loader")
    try:
        teacher = ctx.load_policy(path)
        groups = resolve_obs_groups(cfg.runner.obs_groups, list(env.observation_shapes), ("teacher",))["teacher"]
        apply = teacher.bind(groups, env.observation_shapes)
    except (FileNotFoundError, ValueError) as err:
        raise ConfigError(f"algorithm.amp_cfg.teacher_ac_path: {err}") from None
    if teacher.is_recurrent or teacher.action_dim != env.action_size:
        raise ConfigError(f"algorithm.amp_cfg.teacher_ac_path: '{path}' must be a feed-forward policy with "
                          f"{env.action_size} actions (it is {'recurrent' if teacher.is_recurrent else 'not'})")
    return lambda obs: apply(obs, ())[0]


def build(cfg, ctx: BuildContext, networks) -> list[Extension]:
    """st_rl's APPO / ATPPO from ``algorithm.amp_cfg``."""
    ac, ppo, shapes = cfg.algorithm.amp_cfg, ctx.ppo, ctx.env.observation_shapes
    if not 0.0 <= ac.task_reward_lerp <= 1.0 or min(ac.style_reward_coef, ac.discriminator_grad_pen,
                                                      ac.discriminator_loss_coef, ac.learning_rate) < 0:
        raise ConfigError("algorithm.amp_cfg: task_reward_lerp must lie in [0, 1] and style_reward_coef, "
                          "discriminator_grad_pen, discriminator_loss_coef and learning_rate must be >= 0")
    if networks.is_recurrent and (ac.mimic_loss_coef or ac.dagger_loss_coef):
        raise ConfigError("algorithm.amp_cfg: mimic_loss_coef and dagger_loss_coef need a feed-forward policy; set "
                          "them to 0 or use policy.class_name=ActorCritic")
    groups, loader = _inputs(cfg, ctx)
    ref_groups = ["ref_motion"] if ac.mimic_loss_coef else []
    if ref_groups and tuple(shapes.get("ref_motion", ())) != tuple(shapes["amp"]):
        raise ConfigError("algorithm.amp_cfg.mimic_loss_coef needs a 'ref_motion' observation group shaped like "
                          "'amp' (the aligned reference frame); set mimic_loss_coef=0")
    try:
        disc = Discriminator(loader.observation_dim, ac.hidden_dims, ac.activation, ac.learning_rate,
                             ac.discriminator_grad_pen, ac.discriminator_loss_coef, ctx.axis)
    except ValueError as err:
        raise ConfigError(f"algorithm.amp_cfg: {err}") from None
    teacher = _teacher(cfg, ctx) if ac.dagger_loss_coef else None
    return [extension(disc, loader.sample, groups, dict(shapes), ppo.num_learning_epochs, ppo.num_mini_batches,
                      ac.style_reward_coef, ac.task_reward_lerp, ac.mimic_loss_coef, ref_groups, ac.dagger_loss_coef,
                      teacher)]


# Before the reward normaliser, which then sees the mixed task + style reward.
METHOD = Method("amp", "algorithm.amp_cfg", enabled=enabled, build=build, stage="first", config=AMPConfig,
                class_names=AMP_CLASSES)
