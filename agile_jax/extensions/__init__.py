"""AGILE's PPO enhancements, assembled from their config blocks into the trainer's hooks.

:func:`build_extensions` turns ``cfg.algorithm.{symmetry_cfg, l2c2_cfg, reward_normalization_cfg}`` and the
runner's entropy annealing into lists of loss terms, rollout-side reward shapers, a minibatch augmentation,
batch-extras builders and the entropy schedule;
the PPO update itself stays free of per-extension branches.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from agile_jax.algorithms import shaping
from agile_jax.algorithms.losses import entropy_term, make_surrogate_term, make_value_term
from agile_jax.extensions import critic_warmup, entropy, l2c2, reward_norm, symmetry, termination
from agile_jax.training.parallel import AXIS


class Extensions(NamedTuple):
    """Hooks for :func:`agile_jax.training.iteration.make_trainer`."""

    shapers: list
    terms: list
    augment: Callable | None
    batch_extras: list
    lr_hooks: list
    entropy_schedule: Callable | None = None


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


def build_extensions(cfg, env, networks, mirror_obs=None, mirror_actions=None) -> Extensions:
    """Loss terms, shapers, augmentation and batch extras for the enabled extensions.

    Shaper order follows AGILE: reward normalisation, timeout bootstrap, good/bad termination bootstrap.
    """
    alg = cfg.algorithm
    gamma = alg.gamma
    shapers, terms, augment, extras, lr_hooks = [], _ppo_terms(alg), None, [], []
    rn = alg.reward_normalization_cfg
    if rn.enabled:
        shapers.append(reward_norm.make_shaper(gamma, rn.decay, rn.epsilon, rn.return_scale_decay,
                                               rn.outlier_threshold, AXIS))
    shapers += [shaping.timeout_bootstrap(gamma), termination.make_shaper(gamma)]
    sym = alg.symmetry_cfg
    if sym.enabled:
        m_obs, m_act = find_mirror_functions(env, mirror_obs, mirror_actions)
        if sym.use_data_augmentation:
            augment = symmetry.make_augment(m_obs, m_act)
        terms.append(symmetry.make_mirror_loss_term(networks, m_obs, m_act, sym.mirror_loss_coeff,
                                                    sym.use_mirror_loss, sym.use_data_augmentation))
    if alg.l2c2_cfg.enabled:
        if getattr(networks, "is_recurrent", False):
            raise ValueError("l2c2_cfg is not available for recurrent policies; set algorithm.l2c2_cfg.enabled=false")
        terms.append(l2c2.make_l2c2_term(networks, alg.l2c2_cfg.lambda_actor, alg.l2c2_cfg.lambda_critic))
        extras.append(l2c2.pair_extras)
    if alg.critic_warmup_steps > 0 and alg.schedule == "adaptive":
        lr_hooks.append(critic_warmup.make_lr_hook(alg.critic_warmup_steps))
    schedule = entropy.make_schedule(alg.entropy_coef, cfg.runner.max_iterations, env.max_episode_length, cfg.runner)
    return Extensions(shapers=shapers, terms=terms, augment=augment, batch_extras=extras, lr_hooks=lr_hooks,
                      entropy_schedule=schedule)


def _ppo_terms(alg) -> list:
    """Surrogate, value and entropy terms; the policy terms follow the critic warm-up when it is set."""
    policy_terms = [make_surrogate_term(alg.clip_param), entropy_term]
    if alg.critic_warmup_steps > 0:
        policy_terms = [critic_warmup.scale_policy_term(t, alg.critic_warmup_steps) for t in policy_terms]
    value = make_value_term(alg.clip_param, alg.value_loss_coef, alg.use_clipped_value_loss)
    return [policy_terms[0], value, policy_terms[1]]
