"""The method records: METHODS in chain order, the chain built from them around PPO's terms, the env read once into
an EnvSpec, and the resume check's per-method keys taken from the records."""

from __future__ import annotations

import dataclasses
import types

import pytest

from agile_jax import config
from agile_jax.extensions import METHODS, Extension, Method, env_spec
from agile_jax.networks.from_config import make_networks
from agile_jax.training import resume
from agile_jax.training.ppo_trainer import (
    PPO_CLASSES,
    build_chain,
    build_context,
    build_networks,
    check_algorithm_class,
)
from tests.helpers import point_mass_config, point_mass_env


def test_methods_are_listed_in_chain_order():
    assert [m.key for m in METHODS] == ["amp", "reward_norm", "rnd", "symmetry", "estimator", "ts", "l2c2", "tppo",
                                        "critic_warmup"]
    assert all(isinstance(m, Method) for m in METHODS)
    assert [m.key for m in METHODS if m.stage == "first"] == ["amp", "reward_norm", "rnd"]
    assert [m.key for m in METHODS if m.networks is not None] == ["estimator", "ts"]


def test_chain_order_first_stage_extra_bootstraps_policy_terms_rest():
    cfg = point_mass_config(critic_warmup_steps=2, schedule="adaptive")
    alg = cfg.algorithm
    for block in (alg.reward_normalization_cfg, alg.rnd_cfg, alg.symmetry_cfg, alg.estimator_cfg, alg.l2c2_cfg):
        block.enabled = True
    alg.estimator_cfg.target_components = ["vel"]
    env = point_mass_env(cfg)
    ctx = build_context(env, cfg)
    networks = build_networks(cfg, ctx, make_networks(cfg, env))
    assert networks.estimate_size == 2
    chain = build_chain(cfg, ctx, networks, extra=[Extension("mine")])
    assert chain.names == ("reward_normalization", "rnd", "mine", "timeout_bootstrap", "termination_bootstrap",
                           "surrogate", "value", "entropy", "symmetry", "estimator", "l2c2", "critic_warmup")


def test_env_spec_reads_the_env_once():
    cfg = point_mass_config()
    env = point_mass_env(cfg)
    spec = env_spec(env)
    assert spec.name == "PointMass" and spec.action_size == env.action_size
    assert dict(spec.observation_shapes) == dict(env.observation_shapes)
    assert spec.max_episode_length == env.max_episode_length and spec.dt == env.env.dt
    assert spec.mirror_obs == env.env.mirror_obs and spec.mirror_actions == env.env.mirror_actions
    mine = env_spec(env, mirror_obs=abs, mirror_actions=abs)
    assert mine.mirror_obs is abs and mine.mirror_actions is abs


def test_resume_refuses_every_record_key():
    keys = [k for m in METHODS for k in m.fixed_on_resume]
    assert "algorithm.rnd_cfg.enabled" in keys and "algorithm.ts_cfg.num_latent_dims" in keys
    assert set(keys) <= set(resume.FIXED)


def test_algorithm_config_has_one_field_per_record_block():
    """Every record's block is a field of ``AlgorithmConfig`` with the record's default; PPO's settings stay."""
    algorithm = config.AlgorithmConfig()
    for method in METHODS:
        if method.config is not None:
            expected = method.config() if dataclasses.is_dataclass(method.config) else method.default
            assert getattr(algorithm, method.field_name) == expected, method.key
    assert (algorithm.rnd_cfg.learning_rate, algorithm.critic_warmup_steps, algorithm.clip_param) == (1e-3, 0, 0.2)


def test_a_new_record_adds_its_block_to_the_command_line():
    """A method declared outside the library joins the algorithm section through its record alone: the key merges,
    a typo gets a did-you-mean naming it, and the section's YAML round-trips it."""

    @dataclasses.dataclass
    class ToyConfig:
        enabled: bool = False
        strength: float = 0.5

    toy = Method("toy", "algorithm.toy_cfg", enabled=lambda cfg: cfg.algorithm.toy_cfg.enabled,
                 build=lambda cfg, ctx, networks: [], config=ToyConfig, class_names=("ToyPPO",))
    algorithm = config.algorithm_config_for((*METHODS, toy))(clip_param=0.1)  # the "algorithm" section
    merged = config.apply_overrides(algorithm, ["toy_cfg.strength=2.5", "toy_cfg.enabled=true"])
    assert merged.toy_cfg == ToyConfig(enabled=True, strength=2.5) and merged.clip_param == 0.1
    assert toy.enabled(types.SimpleNamespace(algorithm=merged))
    assert not toy.enabled(types.SimpleNamespace(algorithm=algorithm))
    with pytest.raises(config.ConfigError, match=r"did you mean 'toy_cfg.strength'"):
        config.apply_overrides(algorithm, ["toy_cfg.strenght=1"])
    assert config.from_yaml(config.to_yaml(merged), algorithm).toy_cfg.strength == 2.5
    assert "toy_cfg" not in {f.name for f in dataclasses.fields(config.AlgorithmConfig)}


def test_class_names_come_from_the_records():
    named = {name for method in METHODS for name in method.class_names}
    assert set(PPO_CLASSES) == {"PPO"} | named == {"PPO", "EstimatorPPO", "TPPO", "EstimatorTPPO", "APPO", "ATPPO",
                                                     "PPO_TS"}
    cfg = point_mass_config()
    cfg.algorithm.class_name = "PPO_TS"  # names teacher-student while its block is off
    with pytest.raises(config.ConfigError, match=r"^algorithm.class_name=PPO_TS needs algorithm.ts_cfg.enabled=true"):
        check_algorithm_class(cfg)
    cfg.algorithm.ts_cfg.enabled = True
    check_algorithm_class(cfg)
