"""The extensions of a PPO run, assembled from its config blocks (the only place that reads them).

Order is AGILE's for the rewards (reward normalisation, extra rewards, timeout bootstrap, good/bad
termination bootstrap; AMP's style reward comes first) and the losses are summed in the order surrogate, value,
entropy, mirror, estimator, L2C2.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from agile_jax.algorithms import ppo
from agile_jax.config import ConfigError
from agile_jax.extensions import (
    amp,
    critic_warmup,
    entropy,
    estimator,
    l2c2,
    reward_norm,
    rnd,
    symmetry,
    termination,
    tppo,
)
from agile_jax.extensions import teacher_student as ts
from agile_jax.extensions.base import Chain, Extension, chain
from agile_jax.networks import teacher_student
from agile_jax.networks.actor_critic import concat_groups, resolve_obs_groups
from agile_jax.parallel import AXIS


def find_mirror_functions(env, mirror_obs=None, mirror_actions=None):
    """The mirror functions given by the user, else those of the (single or batched) env."""
    single = getattr(env, "env", env)
    mirror_obs = mirror_obs or getattr(single, "mirror_obs", None)
    mirror_actions = mirror_actions or getattr(single, "mirror_actions", None)
    if mirror_obs is None or mirror_actions is None:
        raise ValueError(
            f"symmetry_cfg is enabled but {type(single).__name__} has no mirror_obs/mirror_actions; pass "
            "mirror functions to the runner or disable algorithm.symmetry_cfg.enabled"
        )
    return mirror_obs, mirror_actions


def ppo_terms(cfg, max_episode_length: int) -> list[Extension]:
    """PPO's own extensions with the entropy annealing and critic warm-up of ``cfg`` applied."""
    alg = cfg.algorithm
    schedule = entropy.make_schedule(alg.entropy_coef, cfg.runner.max_iterations, max_episode_length, cfg.runner)
    timeout, surrogate, value, ent = ppo.default_extensions(alg, schedule)
    if alg.critic_warmup_steps > 0:
        surrogate, ent = (critic_warmup.scale_loss(e, alg.critic_warmup_steps) for e in (surrogate, ent))
    return [timeout, surrogate, value, ent]


def rnd_extension(cfg, env) -> Extension:
    """RSL-RL's RND from ``algorithm.rnd_cfg`` on the ``rnd_state`` observation set (weight times the env ``dt``)."""
    rc, alg = cfg.algorithm.rnd_cfg, cfg.algorithm
    groups = resolve_obs_groups(cfg.runner.obs_groups, list(env.observation_shapes), ("rnd_state",))["rnd_state"]
    dt = getattr(getattr(env, "env", env), "dt", 1.0)
    net = rnd.RND(groups, rc.num_outputs, rc.predictor_hidden_dims, rc.target_hidden_dims, rc.activation,
                  rc.state_normalization, rc.reward_normalization, rc.weight * dt,
                  dict(rc.weight_schedule) if rc.weight_schedule else None, rc.learning_rate, AXIS)
    return rnd.extension(net, alg.num_learning_epochs, alg.num_mini_batches)


def _observation_layouts(env, groups) -> dict:
    """``group -> (name, size, ...)`` entries of the env's ``<group>_layout`` tables (where it has them)."""
    single = getattr(env, "env", env)
    return {g: getattr(single, f"{g}_layout") for g in groups if hasattr(single, f"{g}_layout")}


def _estimator_target(cfg, env, networks) -> tuple[list[str], object]:
    """The critic groups and the columns of ``algorithm.estimator_cfg.target_components`` in them."""
    groups = list(networks.obs_groups["critic"])
    try:
        index = estimator.component_index(_observation_layouts(env, groups), groups,
                                          cfg.algorithm.estimator_cfg.target_components, networks.obs_shapes)
    except ValueError as err:
        raise ConfigError(f"algorithm.estimator_cfg.target_components: {err}") from None
    return groups, index


def estimator_networks(cfg, env, networks):
    """``networks`` with st_rl's state estimator when ``algorithm.estimator_cfg`` is enabled (else unchanged)."""
    ec = cfg.algorithm.estimator_cfg
    if not ec.enabled:
        return networks
    _, index = _estimator_target(cfg, env, networks)
    try:
        return estimator.with_estimator(networks, ec.obs_components, len(index), ec.hidden_dims)
    except ValueError as err:
        raise ConfigError(f"algorithm.estimator_cfg: {err}") from None


def estimator_extension(cfg, env, networks) -> Extension:
    """The estimator's loss (``algorithm.estimator_cfg``) on the critic's target components."""
    ec = cfg.algorithm.estimator_cfg
    if not isinstance(networks, estimator.EstimatorActorCritic):
        raise ConfigError("algorithm.estimator_cfg is enabled but the policy has no estimator; build the networks "
                          "with agile_jax.training.assemble.estimator_networks")
    groups, index = _estimator_target(cfg, env, networks)
    try:
        loss_func = estimator.make_loss_func(ec.loss_func, ec.loss_kwargs)
    except ValueError as err:
        raise ConfigError(f"algorithm.estimator_cfg: {err}") from None
    return estimator.extension(networks, groups, index, loss_func, ec.loss_coef)


def ts_networks(cfg, env, networks):
    """``networks`` as LeggedGym-Ex's teacher-student policy when ``algorithm.ts_cfg`` is enabled (else unchanged).

    The privilege encoder reads ``runner.obs_groups.privileged`` (default: the critic's groups), the history
    encoder ``runner.obs_groups.history`` (groups of the actor; default: all of them).
    """
    tc, alg = cfg.algorithm.ts_cfg, cfg.algorithm
    if not tc.enabled:
        return networks
    if tc.history_encoder_type != "MLP":
        raise ConfigError(f"algorithm.ts_cfg.history_encoder_type='{tc.history_encoder_type}' is not available; "
                          "use 'MLP'")
    if alg.estimator_cfg.enabled:
        raise ConfigError("algorithm.ts_cfg cannot be combined with algorithm.estimator_cfg (both change the actor's "
                          "input); disable one of them")
    if alg.optimizer == "adamw":  # weight decay would move the history encoder, which PPO must leave alone
        raise ConfigError("algorithm.ts_cfg trains the history encoder with its own Adam, and "
                          "algorithm.optimizer=adamw would also decay it; use algorithm.optimizer=adam")
    groups = cfg.runner.obs_groups
    privileged = list(groups.get("privileged") or networks.obs_groups["critic"])
    try:
        return teacher_student.with_teacher_student(networks, privileged, list(groups.get("history") or []),
                                                    tc.num_latent_dims, tc.privilege_encoder_hidden_dims,
                                                    tc.history_encoder_hidden_dims)
    except ValueError as err:
        raise ConfigError(f"algorithm.ts_cfg: {err}") from None


def ts_extension(cfg, networks) -> Extension:
    """The history encoder's latent matching (``algorithm.ts_cfg``) with its own optimiser."""
    tc, alg = cfg.algorithm.ts_cfg, cfg.algorithm
    if not isinstance(networks, teacher_student.TeacherStudentActorCritic):
        raise ConfigError("algorithm.ts_cfg is enabled but the policy has no history encoder; build the networks "
                          "with agile_jax.training.assemble.ts_networks")
    return ts.extension(networks, alg.num_learning_epochs, alg.num_mini_batches, tc.encoder_lr,
                        tc.num_encoder_epochs, alg.max_grad_norm, AXIS)


def _amp_inputs(cfg, env) -> tuple[list[str], object]:
    """The ``amp`` observation groups and the loader of ``algorithm.amp_cfg.motion_files`` for them."""
    from agile_jax.motion import AMPLoader, MotionFormatError

    ac, single = cfg.algorithm.amp_cfg, getattr(env, "env", env)
    groups = list(cfg.runner.obs_groups.get("amp") or ["amp"])
    missing = [g for g in groups if g not in env.observation_shapes]
    if missing or groups != ["amp"] or not hasattr(single, "amp_layout"):
        raise ConfigError(f"APPO / ATPPO (algorithm.amp_cfg) need an 'amp' observation group with an amp_layout, and "
                          f"{type(single).__name__} has no 'amp' observation group (presets with one: t1_velocity_amp, "
                          "point_mass_amp); disable algorithm.amp_cfg.enabled")
    shape = tuple(env.observation_shapes["amp"])
    dt = getattr(single, "dt", None) or single.ctrl_dt
    try:
        loader = AMPLoader(list(ac.motion_files), dt, single.amp_layout, getattr(single, "amp_joint_names", ()),
                           num_frames=shape[0] if len(shape) == 2 else 1)
    except MotionFormatError as err:
        raise ConfigError(f"algorithm.amp_cfg.motion_files: {err}") from None
    if ac.amp_obs_dim is not None and ac.amp_obs_dim != loader.observation_dim:
        raise ConfigError(f"algorithm.amp_cfg.amp_obs_dim={ac.amp_obs_dim} but the 'amp' group holds "
                          f"{loader.observation_dim} values; set it to {loader.observation_dim} or null")
    return groups, loader


def _amp_teacher(cfg, env):
    """ATPPO's teacher ``obs -> actions`` from ``algorithm.amp_cfg.teacher_ac_path`` (``runner.obs_groups.teacher``)."""
    from agile_jax.training.teacher import load_teacher

    path = cfg.algorithm.amp_cfg.teacher_ac_path
    if not path:
        raise ConfigError("algorithm.amp_cfg.dagger_loss_coef needs a teacher: set algorithm.amp_cfg.teacher_ac_path "
                          "to an exported policy (policy.onnx / policy.pt)")
    try:
        teacher = load_teacher(path)
        groups = resolve_obs_groups(cfg.runner.obs_groups, list(env.observation_shapes), ("teacher",))["teacher"]
        apply = teacher.bind(groups, env.observation_shapes)
    except (FileNotFoundError, ValueError) as err:
        raise ConfigError(f"algorithm.amp_cfg.teacher_ac_path: {err}") from None
    if teacher.is_recurrent or teacher.action_dim != env.action_size:
        raise ConfigError(f"algorithm.amp_cfg.teacher_ac_path: '{path}' must be a feed-forward policy with "
                          f"{env.action_size} actions (it is {'recurrent' if teacher.is_recurrent else 'not'})")
    return lambda obs: apply(obs, ())[0]


def amp_extension(cfg, env, networks) -> Extension:
    """st_rl's APPO / ATPPO from ``algorithm.amp_cfg`` (see :mod:`agile_jax.extensions.amp`)."""
    ac, alg = cfg.algorithm.amp_cfg, cfg.algorithm
    if not 0.0 <= ac.task_reward_lerp <= 1.0 or min(ac.style_reward_coef, ac.discriminator_grad_pen,
                                                      ac.discriminator_loss_coef, ac.learning_rate) < 0:
        raise ConfigError("algorithm.amp_cfg: task_reward_lerp must lie in [0, 1] and style_reward_coef, "
                          "discriminator_grad_pen, discriminator_loss_coef and learning_rate must be >= 0")
    if networks.is_recurrent and (ac.mimic_loss_coef or ac.dagger_loss_coef):
        raise ConfigError("algorithm.amp_cfg: mimic_loss_coef and dagger_loss_coef need a feed-forward policy; set "
                          "them to 0 or use policy.class_name=ActorCritic")
    groups, loader = _amp_inputs(cfg, env)
    ref_groups = ["ref_motion"] if ac.mimic_loss_coef else []
    if ref_groups and tuple(env.observation_shapes.get("ref_motion", ())) != tuple(env.observation_shapes["amp"]):
        raise ConfigError("algorithm.amp_cfg.mimic_loss_coef needs a 'ref_motion' observation group shaped like "
                          "'amp' (the aligned reference frame); set mimic_loss_coef=0")
    try:
        disc = amp.Discriminator(loader.observation_dim, ac.hidden_dims, ac.activation, ac.learning_rate,
                                 ac.discriminator_grad_pen, ac.discriminator_loss_coef, AXIS)
    except ValueError as err:
        raise ConfigError(f"algorithm.amp_cfg: {err}") from None
    teacher = _amp_teacher(cfg, env) if ac.dagger_loss_coef else None
    return amp.extension(disc, loader.sample, groups, dict(env.observation_shapes), alg.num_learning_epochs,
                         alg.num_mini_batches, ac.style_reward_coef, ac.task_reward_lerp, ac.mimic_loss_coef,
                         ref_groups, ac.dagger_loss_coef, teacher)


TPPO_CLASSES = ("TPPO", "EstimatorTPPO", "ATPPO")
AMP_CLASSES = ("APPO", "ATPPO")  # st_rl's adversarial classes: ATPPO is APPO's terms over TPPO


def amp_enabled(cfg) -> bool:
    """Whether the run uses st_rl's adversarial motion priors: ``algorithm.amp_cfg.enabled`` (or the class named)."""
    return cfg.algorithm.amp_cfg.enabled or cfg.algorithm.class_name in AMP_CLASSES


# The class names a PPO run accepts in ``algorithm.class_name`` (st_rl's and LeggedGym-Ex's names), each with the
# config block that makes it: the name alone switches on TPPO's and AMP's extensions; the others need their block.
PPO_CLASSES = {"PPO": None, "EstimatorPPO": "estimator_cfg", "TPPO": None, "EstimatorTPPO": "estimator_cfg",
               "APPO": None, "ATPPO": None, "PPO_TS": "ts_cfg"}


def check_algorithm_class(cfg) -> None:
    """One line for an unknown ``algorithm.class_name`` or one whose config block is off."""
    name = cfg.algorithm.class_name
    if name not in PPO_CLASSES:
        raise ConfigError(f"unknown algorithm.class_name '{name}'; available: {list(PPO_CLASSES)} (distillation: "
                          "experiments/distill.py)")
    block = PPO_CLASSES[name]
    if block and not getattr(getattr(cfg.algorithm, block, None), "enabled", False):
        raise ConfigError(f"algorithm.class_name={name} needs algorithm.{block}.enabled=true (and its settings)")


def tppo_enabled(cfg) -> bool:
    """Whether the run is st_rl's TPPO: a teacher in ``algorithm.tppo_cfg.teacher_policy`` (or the class named)."""
    alg = cfg.algorithm
    return bool(alg.tppo_cfg.teacher_policy) or alg.class_name in TPPO_CLASSES


def _tppo_teacher(cfg, env, networks) -> tppo.TeacherPolicy:
    """The teacher of ``algorithm.tppo_cfg`` read with ``load_teacher``, on the critic's (or actor's) groups."""
    from agile_jax.training.teacher import load_teacher
    from agile_jax.training.teacher_latents import onnx_estimator_latent

    tc = cfg.algorithm.tppo_cfg
    which = "critic" if tc.label_action_with_critic_obs else "actor"
    groups, shapes = list(networks.obs_groups[which]), env.observation_shapes
    teacher = load_teacher(tc.teacher_policy)
    width = sum(int(np.prod(shapes[g])) for g in groups)
    # A CNN checkpoint's input width depends on the image sizes (obs_dim -1): its bind checks the groups.
    if (teacher.obs_dim >= 0 and width != teacher.obs_dim) or teacher.action_dim != env.action_size:
        raise ValueError(f"the teacher '{tc.teacher_policy}' maps {teacher.obs_dim} observations to "
                         f"{teacher.action_dim} actions, but the {which} groups {groups} give {width} and the env "
                         f"takes {env.action_size}; set label_action_with_critic_obs to the observations it was "
                         "trained on")
    latents = {}
    for student, component in dict(tc.distill_latent_obs_component_mapping or {}).items():
        latent, encoded = onnx_estimator_latent(tc.teacher_policy)
        if component not in encoded:
            raise ValueError(f"distill_latent_obs_component_mapping: the teacher encodes {list(encoded)}, not "
                             f"'{component}'")
        latents[student] = lambda obs, f=latent: f(concat_groups(obs, groups, shapes))
    return tppo.TeacherPolicy(act=teacher.bind(groups, shapes), init_state=teacher.init_state,
                              action_std=teacher.action_std, latents=latents)


def tppo_extension(cfg, env, networks) -> Extension:
    """st_rl's TPPO from ``algorithm.tppo_cfg`` (see :mod:`agile_jax.extensions.tppo`)."""
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
        teacher = _tppo_teacher(cfg, env, networks)
        return tppo.extension(networks, teacher, tc, cfg.runner.num_steps_per_env, AXIS)
    except (FileNotFoundError, ValueError) as err:
        raise ConfigError(f"algorithm.tppo_cfg: {err}") from None


def build_extensions(cfg, env, networks, mirror_obs=None, mirror_actions=None,
                     extra: Sequence[Extension] = ()) -> Chain:
    """Every extension the config enables, plus ``extra`` ones (user methods), as one :class:`Chain`.

    ``extra`` extensions come after the reward normalisation and before the timeout bootstrap in the chain,
    so their ``shape`` adds rewards as RSL-RL adds RND's (before bootstrapping); their losses are summed
    before PPO's.
    """
    check_algorithm_class(cfg)
    alg = cfg.algorithm
    timeout, *policy = ppo_terms(cfg, env.max_episode_length)
    if tppo_enabled(cfg) and not alg.tppo_cfg.using_ppo:  # TPPO as DAgger: no surrogate, value or entropy term
        policy = []
    rn = alg.reward_normalization_cfg
    first = [reward_norm.extension(alg.gamma, rn.decay, rn.epsilon, rn.return_scale_decay, rn.outlier_threshold,
                                   AXIS)] if rn.enabled else []
    if amp_enabled(cfg):  # before the normaliser, which then sees the mixed task + style reward
        first.insert(0, amp_extension(cfg, env, networks))
    if alg.rnd_cfg.enabled:
        first.append(rnd_extension(cfg, env))
    rest = [termination.extension(alg.gamma), *policy]
    sym = alg.symmetry_cfg
    if sym.enabled:
        m_obs, m_act = find_mirror_functions(env, mirror_obs, mirror_actions)
        rest.append(symmetry.extension(networks, m_obs, m_act, sym.mirror_loss_coeff, sym.use_mirror_loss,
                                       sym.use_data_augmentation))
    if alg.estimator_cfg.enabled:
        rest.append(estimator_extension(cfg, env, networks))
    if alg.ts_cfg.enabled:
        rest.append(ts_extension(cfg, networks))
    if alg.l2c2_cfg.enabled:
        rest.append(l2c2.extension(networks, alg.l2c2_cfg.lambda_actor, alg.l2c2_cfg.lambda_critic))
    if tppo_enabled(cfg):
        rest.append(tppo_extension(cfg, env, networks))
    if alg.critic_warmup_steps > 0 and alg.schedule == "adaptive":
        rest.append(critic_warmup.extension(alg.critic_warmup_steps))
    return chain(first, list(extra), [timeout], rest)
