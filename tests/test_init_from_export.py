"""``runner.init_from=<exported policy>``: a fine-tuning stage starts from a shipped policy's actor (the export holds
no critic or std, so those start fresh), read back exactly from ``policy.onnx`` whatever its input order."""

from __future__ import annotations

import os

import jax
import numpy as np
import pytest

pytest.importorskip("onnx")

from agile_jax.config import ConfigError  # noqa: E402
from agile_jax.export import export_policy  # noqa: E402
from agile_jax.networks.actor_critic import ActorCritic  # noqa: E402
from agile_jax.policies.exported_weights import read_exported_mlp  # noqa: E402
from agile_jax.policies.load import from_onnx  # noqa: E402
from agile_jax.training.runner import OnPolicyRunner  # noqa: E402
from tests.helpers import leaves_equal, point_mass_config, point_mass_env  # noqa: E402

SHIPPED_T1 = os.path.join(os.path.dirname(__file__), "..", "policies", "t1_velocity")


def _config(**policy):
    cfg = point_mass_config(num_envs=4, steps=8)
    cfg.policy.actor_obs_normalization = cfg.policy.critic_obs_normalization = False
    cfg.policy.init_noise_std = 0.4
    for key, value in policy.items():
        setattr(cfg.policy, key, value)
    return cfg


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A 3-iteration point-mass run (no normalisers) and its export."""
    cfg = _config()
    runner = OnPolicyRunner(point_mass_env(cfg), cfg)
    runner.learn(3)
    out = str(tmp_path_factory.mktemp("export") / "exported")
    export_policy(runner.networks, runner.state.params, runner.state.normalizers, out, env=runner.env,
                  formats=("onnx",))
    return out, jax.device_get(runner.state.params)


def _start(path: str, cfg=None) -> OnPolicyRunner:
    cfg = cfg or _config()
    cfg.runner.init_from = path
    return OnPolicyRunner(point_mass_env(cfg), cfg)


def test_the_actor_comes_from_the_export_and_the_critic_and_std_start_fresh(source):
    out, trained = source
    fresh = jax.device_get(OnPolicyRunner(point_mass_env(_config()), _config()).state.params)
    for path in (out, os.path.join(out, "policy.onnx")):  # the directory or the file
        params = jax.device_get(_start(path).state.params)
        assert leaves_equal(params.actor["mlp"], trained.actor["mlp"])
        np.testing.assert_array_equal(params.actor["std"], np.full(2, 0.4, np.float32))
        assert leaves_equal(params.critic, fresh.critic)
        assert not leaves_equal(params.critic, trained.critic)


def test_a_term_major_export_is_read_back_in_the_env_layout():
    """The shipped T1 policy's ONNX reorders AGILE's term-major input; the weights read back act on the env's own
    frame-major history exactly as the ONNX graph does on it."""
    exported = read_exported_mlp(os.path.join(SHIPPED_T1, "policy.onnx"))
    assert exported.network["input_reordered"] and exported.network["obs_group_dims"] == [235]
    net = ActorCritic({"policy": (5, 47)}, {"actor": ["policy"], "critic": ["policy"]}, 12, (256, 256, 128),
                      (32,), "elu")
    params = net.init(jax.random.key(0))
    params = params.replace(actor={**params.actor, "mlp": exported.flax_params()})
    obs = {"policy": jax.random.normal(jax.random.key(1), (16, 5, 47))}
    ours = np.asarray(net.actor_mean(params, {}, obs))
    onnx_actions, _ = from_onnx(os.path.join(SHIPPED_T1, "policy.onnx")).bind(["policy"], {"policy": (5, 47)})(
        obs, ())
    np.testing.assert_allclose(ours, np.asarray(onnx_actions), atol=1e-5)
    assert np.abs(ours).max() > 0.1  # real actions, not a zero network


def test_an_export_the_config_does_not_describe_is_refused_in_one_line(source, tmp_path):
    out, _ = source
    with pytest.raises(ConfigError, match=r"set policy.actor_hidden_dims=\[32, 32\]"):
        _start(out, _config(actor_hidden_dims=[16, 16]))
    with pytest.raises(ConfigError, match="set policy.activation=elu"):
        _start(out, _config(activation="tanh"))
    with pytest.raises(ConfigError, match="set policy.actor_obs_normalization=false"):
        _start(out, _config(actor_obs_normalization=True))
    garbage = tmp_path / "policy.onnx"
    garbage.write_bytes(b"not a model")
    with pytest.raises(ConfigError, match="is not an ONNX model.*runner.init_from=<run>"):
        _start(str(garbage))
    with pytest.raises(ConfigError, match="does not exist"):
        _start(str(tmp_path / "missing.onnx"))


def test_an_export_with_a_normaliser_is_refused(tmp_path):
    cfg = point_mass_config(num_envs=4, steps=8)  # actor and critic normalisers
    runner = OnPolicyRunner(point_mass_env(cfg), cfg)
    out = str(tmp_path / "normalised")
    export_policy(runner.networks, runner.state.params, runner.state.normalizers, out, env=runner.env,
                  formats=("onnx",))
    with pytest.raises(ConfigError, match="normaliser baked in"):
        _start(out, cfg)
