"""Left-right symmetry: minibatch augmentation and the mirror loss (RSL-RL / AGILE ``symmetry_cfg``).

The mirror functions come from the environment (``env.mirror_obs(obs_dict) -> obs_dict`` acting on every
observation group, ``env.mirror_actions(actions) -> actions``) or from the user; both must be pure and
act on the last axis so any leading batch axes pass through. :func:`extension` bundles both parts.

* Augmentation (``Batch -> Batch``): the minibatch becomes ``[original; mirrored]``; old log-probs,
  old values, advantages and returns are repeated, so a mirrored action is scored against the old
  log-prob of its original. Entropy and the KL of the learning-rate rule use the original half (the
  PPO update takes them from the first ``B`` rows).
* Mirror loss: ``MSE(mean(mirror(obs)), mirror(stop_gradient(mean(obs))))``, added with
  ``mirror_loss_coeff`` when ``use_mirror_loss``, otherwise computed for logging only.

Distillation (``DistillationAlgorithmConfig.symmetry_cfg``) uses the same mirror loss, as a per-step term of its
replay (:func:`distillation_terms`; AGILE's distillation has no augmentation).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp

from agile_jax.config_base import ConfigError
from agile_jax.extensions.base import Batch, Extension, Minibatch
from agile_jax.extensions.method import BuildContext, EnvSpec, Method
from agile_jax.types import Array, Observation


@dataclass
class SymmetryConfig:
    """AGILE/RSL-RL ``symmetry_cfg``; the mirror functions come from the env (``mirror_obs`` / ``mirror_actions``)."""

    enabled: bool = False
    use_data_augmentation: bool = True
    use_mirror_loss: bool = False
    mirror_loss_coeff: float = 0.0


MirrorObs = Callable[[Observation], Observation]
MirrorActions = Callable[[Array], Array]


def _cat(a, b):
    return jax.tree.map(lambda x, y: jnp.concatenate([x, y], axis=0), a, b)


def _repeat(x):
    return jnp.concatenate([x, x], axis=0)


def make_augment(mirror_obs: MirrorObs, mirror_actions: MirrorActions) -> Callable[[Batch], Batch]:
    """``Batch [B] -> Batch [2B]`` with the mirrored copies after the originals (``extras`` untouched)."""

    def augment(batch: Batch) -> Batch:
        return batch._replace(
            obs=_cat(batch.obs, mirror_obs(batch.obs)),
            actions=_cat(batch.actions, mirror_actions(batch.actions)),
            old_log_probs=_repeat(batch.old_log_probs),
            old_values=_repeat(batch.old_values),
            advantages=_repeat(batch.advantages),
            returns=_repeat(batch.returns),
            old_mean=_repeat(batch.old_mean),
            old_std=_repeat(batch.old_std),
            dones=_repeat(batch.dones),
        )

    return augment


def mirror_loss(mean_on_mirrored: Array, mean_on_original: Array, mirror_actions: MirrorActions) -> Array:
    """``MSE(mean(mirror(obs)), mirror(mean(obs)))`` with the target held fixed (stop-gradient)."""
    target = jax.lax.stop_gradient(mirror_actions(mean_on_original))
    return jnp.mean(jnp.square(mean_on_mirrored - target))


def make_mirror_loss(networks, mirror_obs: MirrorObs, mirror_actions: MirrorActions, coeff: float,
                     use_mirror_loss: bool, augmented: bool):
    """The mirror loss ``(state, params, minibatch, key) -> (loss, metrics)``, logged as ``mirror``.

    It contributes ``coeff * loss`` only when ``use_mirror_loss``.

    Args:
        networks: the actor-critic (used for an extra forward pass when the batch is not augmented).
        mirror_obs, mirror_actions: the mirror functions.
        coeff: ``mirror_loss_coeff``.
        use_mirror_loss: add the loss to the objective (otherwise it is only logged, detached).
        augmented: the batch the loss sees is ``[original; mirrored]`` (augmentation on), so the means of
            the forward pass are reused.
    """

    def loss_fn(state, params, mb: Minibatch, key):
        forward = mb.forward
        if augmented:
            half = forward.mean.shape[0] // 2
            mean_orig, mean_mirr = forward.mean[:half], forward.mean[half:]
        else:
            mean_orig = forward.mean
            mean_mirr = networks.actor_mean(params, mb.normalizers, mirror_obs(mb.data.obs))
        loss = mirror_loss(mean_mirr, mean_orig, mirror_actions)
        weighted = coeff * loss if use_mirror_loss else 0.0 * jax.lax.stop_gradient(loss)
        return weighted, {"mirror": jax.lax.stop_gradient(loss)}

    return loss_fn


def extension(networks, mirror_obs: MirrorObs, mirror_actions: MirrorActions, mirror_loss_coeff: float = 0.0,
              use_mirror_loss: bool = False, use_data_augmentation: bool = True) -> Extension:
    """Symmetry (``symmetry_cfg``): the minibatch augmentation and the mirror loss as one extension."""
    augment = make_augment(mirror_obs, mirror_actions) if use_data_augmentation else None
    loss = make_mirror_loss(networks, mirror_obs, mirror_actions, mirror_loss_coeff, use_mirror_loss,
                            use_data_augmentation)
    return Extension("symmetry", augment=augment, loss=loss)


def mirror_functions(spec: EnvSpec) -> tuple[MirrorObs, MirrorActions]:
    """The mirror functions of ``spec`` (the user's, else the env's); a ValueError when it has none."""
    if spec.mirror_obs is None or spec.mirror_actions is None:
        raise ValueError(
            f"symmetry_cfg is enabled but {spec.name} has no mirror_obs/mirror_actions; pass "
            "mirror functions to the runner or disable algorithm.symmetry_cfg.enabled"
        )
    return spec.mirror_obs, spec.mirror_actions


def build(cfg, ctx: BuildContext, networks) -> list[Extension]:
    """Symmetry from ``algorithm.symmetry_cfg`` with the context's mirror functions."""
    sym = cfg.algorithm.symmetry_cfg
    if networks.is_recurrent:
        raise ConfigError("symmetry_cfg is not available for recurrent policies (as in RSL-RL); set "
                          "algorithm.symmetry_cfg.enabled=false")
    m_obs, m_act = mirror_functions(ctx.env)
    return [extension(networks, m_obs, m_act, sym.mirror_loss_coeff, sym.use_mirror_loss, sym.use_data_augmentation)]


METHOD = Method("symmetry", "algorithm.symmetry_cfg", enabled=lambda cfg: cfg.algorithm.symmetry_cfg.enabled,
                build=build, fixed_on_resume=("algorithm.symmetry_cfg.enabled",), config=SymmetryConfig)


def distillation_term(networks, mirror_obs: MirrorObs, mirror_actions: MirrorActions, coeff: float):
    """The mirror loss as a step term of the distillation replay, ``(params, normalizers, obs, mean) ->
    (coeff * loss, {"mirror": loss})`` with ``mean`` the student's action mean on ``obs``."""

    def term(params, normalizers, obs: Observation, mean: Array):
        loss = mirror_loss(networks.actor_mean(params, normalizers, mirror_obs(obs)), mean, mirror_actions)
        return coeff * loss, {"mirror": loss}

    return term


def distillation_terms(cfg, spec: EnvSpec, student) -> tuple[list, list[str]]:
    """Distillation's step terms from ``algorithm.symmetry_cfg`` (AGILE's mirror loss; only for feed-forward
    students, whose state has no mirror image) and notices for the log."""
    sym = cfg.algorithm.symmetry_cfg
    if not (sym.enabled and sym.use_mirror_loss):
        return [], []
    if student.is_recurrent:
        return [], ["symmetry_cfg.use_mirror_loss is off for recurrent students (a hidden state has no mirror image)"]
    m_obs, m_act = mirror_functions(spec)
    return [distillation_term(student, m_obs, m_act, sym.mirror_loss_coeff)], []
