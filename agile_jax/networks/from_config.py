"""The actor-critic a config asks for (``policy.class_name`` and its settings) on an env's observation groups:
PPO's (:func:`make_networks`) and distillation's student (:func:`make_student`)."""

from __future__ import annotations

from agile_jax.config_base import ConfigError
from agile_jax.networks import distributions
from agile_jax.networks.actor_critic import ActorCritic, resolve_obs_groups
from agile_jax.networks.cnn_actor_critic import make_actor_critic_cnn
from agile_jax.networks.recurrent import GATES, make_actor_critic

POLICY_CLASSES = ("ActorCritic", "ActorCriticRecurrent", "ActorCriticCNN")
# AGILE's PPO fine-tuning of a distilled recurrent student: selected with ``policy.class_name`` on the training
# command line (``student=<distillation run directory>``), built by ``distill_runner.finetune_from_run``.
FINETUNE_CLASS = "StudentFinetuneRecurrent"
FINETUNE_USAGE = (f"python experiments/train.py config=<preset> policy.class_name={FINETUNE_CLASS} "
                  "student=<distillation run directory>")
# The students of distillation (``policy.class_name`` of a DistillationConfig): class name -> recurrent.
STUDENT_CLASSES = {"StudentTrainedTeacher": False, "StudentTrainedTeacherRecurrent": True}


def distribution_fields(distribution_cfg, init_noise_std: float, noise_std_type: str, section: str) -> dict:
    """The actor's distribution fields from ``<section>.distribution_cfg`` (RSL-RL 5.x) or the older names."""
    try:
        return distributions.resolve_distribution_cfg(distribution_cfg, init_noise_std, noise_std_type)
    except ValueError as err:
        raise ConfigError(f"{section}.{err}") from None


def make_networks(cfg, env) -> ActorCritic:
    """The actor-critic of ``cfg.policy`` for ``env``'s observation groups and action size."""
    pol = cfg.policy
    if pol.class_name == FINETUNE_CLASS:
        raise ConfigError(f"policy.class_name={FINETUNE_CLASS} starts PPO from a distilled student: "
                                     f"{FINETUNE_USAGE} (in Python: distill_runner.finetune_runner)")
    if pol.class_name not in POLICY_CLASSES:
        raise ConfigError(f"unknown policy.class_name '{pol.class_name}'; available: {list(POLICY_CLASSES)}")
    groups = resolve_obs_groups(cfg.runner.obs_groups, list(env.observation_shapes))
    common = dict(
        obs_shapes=dict(env.observation_shapes), obs_groups=groups, action_size=env.action_size,
        actor_hidden_dims=tuple(pol.actor_hidden_dims), critic_hidden_dims=tuple(pol.critic_hidden_dims),
        activation=pol.activation, actor_obs_normalization=pol.actor_obs_normalization,
        critic_obs_normalization=pol.critic_obs_normalization,
        **distribution_fields(pol.distribution_cfg, pol.init_noise_std, pol.noise_std_type, "policy"),
    )
    if pol.class_name == "ActorCritic":
        return make_actor_critic(**common)
    if pol.class_name == "ActorCriticCNN":
        try:
            return make_actor_critic_cnn(pol.actor_cnn_cfg, pol.critic_cnn_cfg, cfg.algorithm.share_cnn_encoders,
                                         **common)
        except ValueError as err:
            raise ConfigError(f"policy.class_name=ActorCriticCNN: {err}") from None
    if pol.rnn_type.lower() not in GATES:
        raise ConfigError(f"unknown policy.rnn_type '{pol.rnn_type}'; available: {sorted(GATES)}")
    return make_actor_critic(pol.rnn_type.lower(), pol.rnn_hidden_dim, pol.rnn_num_layers, **common)


def make_student(cfg, env, student_groups) -> ActorCritic:
    """The student as the ``actor`` of an (unused-critic) actor-critic, so PPO fine-tuning can adopt it as is."""
    pol = cfg.policy
    if pol.class_name not in STUDENT_CLASSES:
        raise ConfigError(
            f"unknown policy.class_name '{pol.class_name}'; available: {list(STUDENT_CLASSES)}")
    common = dict(obs_shapes=dict(env.observation_shapes), action_size=env.action_size,
                  obs_groups={"actor": student_groups, "critic": student_groups},
                  actor_hidden_dims=tuple(pol.student_hidden_dims), critic_hidden_dims=(),
                  activation=pol.activation, actor_obs_normalization=pol.student_obs_normalization,
                  **distribution_fields(pol.distribution_cfg, pol.init_noise_std, pol.noise_std_type, "policy"))
    if not STUDENT_CLASSES[pol.class_name]:
        return make_actor_critic(**common)
    if pol.rnn_type.lower() not in GATES:
        raise ConfigError(f"unknown policy.rnn_type '{pol.rnn_type}'; available: {sorted(GATES)}")
    return make_actor_critic(pol.rnn_type.lower(), pol.rnn_hidden_dim, pol.rnn_num_layers, **common)
