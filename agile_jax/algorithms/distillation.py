"""DAgger-style distillation as a pure update (RSL-RL 5.5's ``Distillation``).

The student acts (sampled) and the teacher labels (deterministic) during the rollout; the update replays
the stored rollout step by step with the student's deterministic output:

* every epoch restarts from the student state the rollout started from (RSL-RL's ``last_hidden_states``:
  the state at the end of the previous update's replay, which is also where the rollout started);
* the per-step behaviour losses are *summed* over windows of ``gradient_length`` consecutive steps, counted
  globally over ``num_learning_epochs * T`` steps (a window may span two epochs), and each window takes one
  optimiser step, so the parameters change in the middle of the replay (truncated BPTT: the state enters a
  window without gradient); steps after the last full window are replayed but never backpropagated;
* after each step the state of envs that finished is zeroed;
* the state after the last replayed step is where the next rollout starts.

Feed-forward students run the same schedule with an empty state. Extra per-step terms (AGILE's mirror loss)
are ``(params, normalizers, obs_t, mean_t) -> (loss, metrics)`` added to each step's loss.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from agile_jax.networks.recurrent import reset_state
from agile_jax.types import Array, Observation

StepTerm = Callable[..., tuple[Array, dict]]


class DistillBatch(NamedTuple):
    """A stored distillation rollout, time-major.

    Attributes:
        obs: observation groups the student acted on, ``[T, N, ...]``.
        teacher_actions: the teacher's deterministic actions ``[T, N, A]``.
        dones: episode ended at step ``t`` ``[T, N]``.
        hidden: the student's state at the start of the rollout (leaves ``[N, ...]``; empty for MLPs).
    """

    obs: Observation
    teacher_actions: Array
    dones: Array
    hidden: Any


def mse_loss(pred: Array, target: Array) -> Array:
    """``torch.nn.functional.mse_loss``: mean of squared errors over every element."""
    return jnp.mean(jnp.square(pred - target))


def huber_loss(pred: Array, target: Array, delta: float = 1.0) -> Array:
    """``torch.nn.functional.huber_loss`` (delta 1): ``0.5 e^2`` if ``|e| < delta`` else ``delta (|e| - delta/2)``."""
    err = jnp.abs(pred - target)
    return jnp.mean(jnp.where(err < delta, 0.5 * jnp.square(err), delta * (err - 0.5 * delta)))


LOSSES: dict[str, Callable[[Array, Array], Array]] = {"mse": mse_loss, "huber": huber_loss}


def behavior_loss(loss_type: str) -> Callable[[Array, Array], Array]:
    """The behaviour loss by RSL-RL name (``mse`` or ``huber``)."""
    if loss_type not in LOSSES:
        raise ValueError(f"Unknown loss type: {loss_type}. Supported types are: {list(LOSSES)}")
    return LOSSES[loss_type]


def replay_windows(total_steps: int, gradient_length: int) -> tuple[int, int]:
    """``(full windows, leftover steps)`` of a replay; warns like RSL-RL when steps are never backpropagated."""
    windows, rest = divmod(total_steps, gradient_length)
    if rest:
        warnings.warn(f"num_learning_epochs * num_steps_per_env = {total_steps} is not divisible by gradient_length "
                      f"({gradient_length}): the last {rest} of {total_steps} steps per update are replayed but never "
                      f"backpropagated. Consider a gradient_length that divides {total_steps}.", stacklevel=3)
    return windows, rest


def make_update_fn(cfg, networks, tx: optax.GradientTransformation, num_steps: int,
                   step_terms: Sequence[StepTerm] = (), axis_name: str | None = None):
    """Builds the distillation update.

    Args:
        cfg: a ``DistillationAlgorithmConfig`` (``num_learning_epochs``, ``gradient_length``, ``loss_type``).
        networks: the student (an ``ActorCritic`` / ``ActorCriticRecurrent``; its ``actor`` is the student).
        tx: optimiser (``max_grad_norm`` clipping inside, if any).
        num_steps: rollout length T.
        step_terms: extra per-step loss terms ``(params, normalizers, obs, mean) -> (loss, metrics)`` (AGILE's
            mirror loss, :func:`agile_jax.extensions.symmetry.distillation_terms`).
        axis_name: data-parallel axis; gradients and metrics are averaged over it.

    Returns:
        ``update(params, opt_state, normalizers, batch) -> (params, opt_state, hidden, metrics)``; ``hidden`` is
        the student state after the replay (where the next rollout starts); ``metrics["behavior"]`` is the
        mean step loss over all ``num_learning_epochs * T`` replayed steps.
    """
    loss_fn = behavior_loss(cfg.loss_type)
    total = cfg.num_learning_epochs * num_steps
    windows, _ = replay_windows(total, cfg.gradient_length)

    def pmean(x):
        return jax.lax.pmean(x, axis_name) if axis_name else x

    def replay(params, normalizers, batch: DistillBatch, hidden, steps: Array):
        """Replays global steps ``steps``; returns the final state and the per-step losses and metrics."""

        def body(h, k):
            t = k % num_steps
            # Each epoch starts again from the state the rollout started from.
            h = jax.tree.map(lambda start, cur: jnp.where(t == 0, start, cur), batch.hidden, h)
            obs = jax.tree.map(lambda x: x[t], batch.obs)
            mean, h = networks.actor_step(params, normalizers, obs, h)
            behavior = loss_fn(mean, batch.teacher_actions[t])
            loss, metrics = behavior, {"behavior": behavior}
            for term in step_terms:
                extra, m = term(params, normalizers, obs, mean)
                loss, metrics = loss + extra, {**metrics, **m}
            # Finished envs start their next episode from a zero state.
            return reset_state(h, batch.dones[t]), (loss, metrics)

        return jax.lax.scan(body, hidden, steps)

    def window_loss(params, normalizers, batch, hidden, steps):
        hidden, (losses, metrics) = replay(params, normalizers, batch, jax.lax.stop_gradient(hidden), steps)
        return jnp.sum(losses), (hidden, metrics)

    grad_fn = jax.value_and_grad(window_loss, has_aux=True)

    def update(params, opt_state, normalizers, batch: DistillBatch):
        steps = jnp.arange(total)

        def window(carry, window_steps):
            params, opt_state, hidden = carry
            # One optimiser step on the summed losses of this window.
            (_, (hidden, metrics)), grads = grad_fn(params, normalizers, batch, hidden, window_steps)
            updates, opt_state = tx.update(pmean(grads), opt_state, params)
            return (optax.apply_updates(params, updates), opt_state, jax.lax.stop_gradient(hidden)), metrics

        full = steps[: windows * cfg.gradient_length].reshape(windows, cfg.gradient_length)
        (params, opt_state, hidden), metrics = jax.lax.scan(window, (params, opt_state, batch.hidden), full)
        # Leftover steps: replayed (they count in the mean and move the state) but never backpropagated.
        hidden, (_, rest_metrics) = replay(params, normalizers, batch, hidden, steps[windows * cfg.gradient_length:])
        per_step = jax.tree.map(lambda w, r: jnp.concatenate([w.reshape(-1), r]), metrics, rest_metrics)
        return params, opt_state, hidden, pmean(jax.tree.map(jnp.mean, per_step))

    return update
