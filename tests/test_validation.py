"""Out-of-range sizes and counts are refused when the config is built: exit code 2 and one line."""

from __future__ import annotations

import pytest

from agile_jax.config import ConfigError
from experiments import train


@pytest.mark.parametrize("override, message", [
    ("num_envs=0", "env.num_envs=0 is out of range: use an integer >= 1"),
    ("num_envs=-4", "env.num_envs=-4 is out of range"),
    ("save_interval=0", "runner.save_interval=0 is out of range"),
    ("runner.num_steps_per_env=0", "runner.num_steps_per_env=0 is out of range"),
    ("algorithm.num_mini_batches=0", "algorithm.num_mini_batches=0 is out of range"),
    ("max_iterations=-5", "runner.max_iterations=-5 is out of range: use an integer >= 0"),
    ("algorithm.gamma=1.5", "algorithm.gamma=1.5 is out of range: use a number in (0, 1]"),
    ("algorithm.num_mini_batches=100000", "exceeds the 1024 samples of an iteration"),
    ("algorithm.grad_clip_mode=both", "algorithm.grad_clip_mode='both' is out of range: use 'per_network' or 'joint'"),
    ("algorithm.optimizer=lion", "algorithm.optimizer='lion' is out of range: use adam, adamw, sgd or rmsprop"),
])
def test_out_of_range_settings_are_refused(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        train.build_config(["config=point_mass", "num_envs=64", override] if "num_envs" not in override
                           else ["config=point_mass", override])


def test_the_cli_exits_2_with_one_line(capsys):
    assert train.main(["config=point_mass", "num_envs=0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: env.num_envs=0 is out of range: use an integer >= 1"]


def test_the_optimizer_rule_names_every_optimizer_there_is():
    from agile_jax.algorithms import optim
    from agile_jax.validation import RULES

    valid, _ = RULES["algorithm.optimizer"]
    assert [valid(name) for name in optim._OPTIMIZERS] == [True] * len(optim._OPTIMIZERS)
    assert not valid("lion")


def test_ppo_and_distillation_share_one_optimiser_config():
    """Both ``algorithm`` sections are :class:`OptimizerSettings` with RSL-RL's defaults: PPO clips each network's
    gradients at 1.0, distillation does not clip unless asked, and then one norm over the student."""
    import dataclasses

    from agile_jax.config import AlgorithmConfig, DistillationAlgorithmConfig, OptimizerSettings

    shared = [f.name for f in dataclasses.fields(OptimizerSettings)]
    ppo, distillation = AlgorithmConfig(), DistillationAlgorithmConfig()
    assert isinstance(ppo, OptimizerSettings) and isinstance(distillation, OptimizerSettings)
    assert shared == ["optimizer", "learning_rate", "max_grad_norm", "grad_clip_mode"]
    assert [getattr(ppo, k) for k in shared] == ["adam", 1e-3, 1.0, "per_network"]
    assert [getattr(distillation, k) for k in shared] == ["adam", 1e-3, None, "joint"]
