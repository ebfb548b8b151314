"""The extensions of a PPO run, assembled from its config blocks (the only place that reads them).

Order is AGILE's for the rewards (reward normalisation, extra rewards, timeout bootstrap, good/bad
termination bootstrap) and the losses are summed in the order surrogate, value, entropy, mirror, estimator, L2C2.
"""

from __future__ import annotations

from collections.abc import Sequence

from agile_jax.algorithms import ppo
from agile_jax.config import ConfigError
from agile_jax.extensions import critic_warmup, entropy, estimator, l2c2, reward_norm, rnd, symmetry, termination
from agile_jax.extensions.base import Chain, Extension, chain
from agile_jax.networks.actor_critic import resolve_obs_groups
from agile_jax.training.parallel import AXIS


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


def build_extensions(cfg, env, networks, mirror_obs=None, mirror_actions=None,
                     extra: Sequence[Extension] = ()) -> Chain:
    """Every extension the config enables, plus ``extra`` ones (user methods), as one :class:`Chain`.

    ``extra`` extensions come after the reward normalisation and before the timeout bootstrap in the chain,
    so their ``shape`` adds rewards as RSL-RL adds RND's (before bootstrapping); their losses are summed
    before PPO's.
    """
    alg = cfg.algorithm
    timeout, *policy = ppo_terms(cfg, env.max_episode_length)
    rn = alg.reward_normalization_cfg
    first = [reward_norm.extension(alg.gamma, rn.decay, rn.epsilon, rn.return_scale_decay, rn.outlier_threshold,
                                   AXIS)] if rn.enabled else []
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
    if alg.l2c2_cfg.enabled:
        rest.append(l2c2.extension(networks, alg.l2c2_cfg.lambda_actor, alg.l2c2_cfg.lambda_critic))
    if alg.critic_warmup_steps > 0 and alg.schedule == "adaptive":
        rest.append(critic_warmup.extension(alg.critic_warmup_steps))
    return chain(first, list(extra), [timeout], rest)
