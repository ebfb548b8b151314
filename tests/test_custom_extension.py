"""A method defined entirely in this file trains through the library without any library change.

The made-up method ("action_budget") has every kind of hook: its own state, a reward it adds to the rollout
(``shape``), a loss on the actor mean, a coefficient schedule and a post-GAE statistic (``update``).
"""

import jax
import jax.numpy as jnp
import pytest
from flax import struct

from agile_jax.extensions.base import Extension
from agile_jax.training.runner import OnPolicyRunner
from tests.helpers import leaves_equal, point_mass_config, point_mass_env


@struct.dataclass
class BudgetState:
    coef: jax.Array  # loss coefficient, halved every iteration by the schedule
    mean_return: jax.Array  # EMA of the GAE returns (a statistic the update keeps)


def action_budget(coef: float = 1.0) -> Extension:
    """Penalises large actor means; adds a constant +0.5 reward per step."""

    def init(key, spec):
        return BudgetState(coef=jnp.float32(coef), mean_return=jnp.float32(0.0))

    def shape(state, rollout):
        return state, rollout._replace(rewards=rollout.rewards + 0.5), {"Train/bonus": jnp.float32(0.5)}

    def loss(state, params, mb, key):
        penalty = jnp.mean(jnp.square(mb.forward.mean))
        return state.coef * penalty, {"budget": penalty}

    def schedule(state, stats):
        return state.replace(coef=state.coef * 0.5)

    def update(state, rollout, returns, key):
        new = 0.9 * state.mean_return + 0.1 * jnp.mean(returns)
        return state.replace(mean_return=new), {"Train/budget_coef": state.coef}

    return Extension("action_budget", init=init, shape=shape, loss=loss, schedule=schedule, update=update)


def test_made_up_extension_trains_and_keeps_its_state():
    cfg = point_mass_config()
    runner = OnPolicyRunner(point_mass_env(cfg), cfg, extensions=[action_budget(1.0)])
    runner.learn(3)
    state = runner.state.extensions["action_budget"]
    assert float(state.coef) == 0.125  # three schedules: 1 -> 0.5 -> 0.25 -> 0.125
    assert float(state.mean_return) > 0.0  # the +0.5 reward reaches the returns
    out = jax.device_get(runner.trainer.iteration(runner.state)[1])
    # The loss term is the squared actor mean of the minibatches: near that of the rollout's policy means (the
    # update moves them; measured 0.079 against 0.062), far from that of the sampled actions (std 1: about 1).
    means = runner.trainer.collect(runner.state).transitions.action_mean
    assert float(out.metrics["budget"]) == pytest.approx(float(jnp.mean(jnp.square(means))), rel=0.5)
    assert float(out.metrics["budget"]) > 0.0 and float(out.metrics["Train/bonus"]) == 0.5
    assert float(out.metrics["Train/budget_coef"]) == 0.0625
    # the PPO terms are still there, and a run without the method differs
    assert {"surrogate", "value", "entropy"} <= set(out.metrics)
    plain = OnPolicyRunner(point_mass_env(cfg), cfg)
    plain.learn(3)
    assert "action_budget" not in plain.state.extensions
    assert not leaves_equal(plain.state.params, runner.state.params)
