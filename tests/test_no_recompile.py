"""The jitted iteration compiles once: the initial train state has the same input types as later ones."""

from __future__ import annotations

from agile_jax.training.runner import OnPolicyRunner
from tests.helpers import point_mass_config, point_mass_env


def test_iteration_does_not_recompile_after_the_first():
    cfg = point_mass_config()
    runner = OnPolicyRunner(point_mass_env(cfg), cfg)
    program = runner.trainer.iteration.__wrapped__  # the jitted program under the precision wrapper
    runner.learn(1)
    compiled = program._cache_size()
    runner.learn(3)
    assert program._cache_size() == compiled
