"""``experiments/export.py`` rebuilds a run's config from its saved YAML, also for a run saved before a field was
added to its env config (that field takes its default)."""

from __future__ import annotations

import yaml

from agile_jax import config as config_lib
from experiments import export
from experiments.configs import get_preset


def test_a_run_saved_before_a_new_env_field_loads_with_the_default():
    cfg = get_preset("t1_velocity_track")
    cfg.env.num_envs = 64
    saved = yaml.safe_load(config_lib.to_yaml(cfg))
    del saved["env"]["gait_clock_stand_below"]  # written before the field existed
    loaded = export.load_config(yaml.safe_dump(saved))
    assert loaded.env.gait_clock_stand_below == 0.0
    assert loaded.env.num_envs == 64 and loaded.env.reward_weights == cfg.env.reward_weights
    assert loaded.algorithm.symmetry_cfg.use_mirror_loss and loaded.runner.experiment_name == "t1_velocity_track"
    # A run with every current field is rebuilt exactly.
    assert config_lib.to_yaml(export.load_config(config_lib.to_yaml(cfg))) == config_lib.to_yaml(cfg)


def test_network_config_takes_each_network_class_settings_from_its_own_fields():
    """``network_config.json`` lists what a network class adds to ActorCritic's fields, with no list to keep up:
    nothing for the MLP pair, the cell for a recurrent policy, and a new subclass's field without further code."""
    import dataclasses

    from agile_jax.export.exporter import _network_config
    from agile_jax.networks.actor_critic import ActorCritic
    from agile_jax.networks.recurrent import ActorCriticRecurrent

    shapes = {"obs_shapes": {"policy": (4,)}, "obs_groups": {"actor": ["policy"], "critic": ["policy"]},
              "action_size": 2}

    @dataclasses.dataclass(frozen=True)
    class Widened(ActorCritic):
        widening: int = 3

    base_keys = set(_network_config(ActorCritic(**shapes)))
    recurrent = _network_config(ActorCriticRecurrent(**shapes, rnn_type="gru", rnn_hidden_dim=16))
    assert {k: recurrent[k] for k in set(recurrent) - base_keys} == {"rnn_type": "gru", "rnn_hidden_dim": 16,
                                                                   "rnn_num_layers": 1}
    widened = _network_config(Widened(**shapes))
    assert {k: widened[k] for k in set(widened) - base_keys} == {"widening": 3}
    assert widened["class_name"] == "Widened"
