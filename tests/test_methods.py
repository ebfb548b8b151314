"""The method records: METHODS in chain order, the chain built from them around PPO's terms, the env read once into
an EnvSpec, and the resume check's per-method keys taken from the records."""

from __future__ import annotations

from agile_jax.extensions import METHODS, Extension, Method, env_spec
from agile_jax.networks.from_config import make_networks
from agile_jax.training import resume
from agile_jax.training.ppo_trainer import build_chain, build_context, build_networks
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
    ctx = build_context(env)
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
