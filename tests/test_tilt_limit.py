"""``env.tilt_limit_deg``: the trunk tilt that ends an episode as a fall (AGILE's 30 degrees), set from the command
line, written into the env's termination and refused out of range. That a resume may change it is in
``tests/test_resume_overrides.py``."""

from __future__ import annotations

import math

import jax.numpy as jnp
import pytest

from agile_jax.config import ConfigError, apply_overrides
from envs.mdp import math as mmath
from envs.mdp import terminations
from experiments.configs import get_preset
from experiments.configs.presets import _velocity_env


@pytest.mark.parametrize("roll, pitch", [(0.0, 27.0), (27.0, 0.0), (-19.0, 19.35)])
def test_a_27_degree_tilt_is_a_fall_at_25_degrees_and_not_at_30_degrees(roll, pitch):
    # (-19, 19.35): cos(tilt) = cos(roll) cos(pitch) = 0.8921, a 26.9-degree tilt from both axes together.
    quat = mmath.quat_from_euler_xyz(jnp.radians(roll), jnp.radians(pitch), jnp.float32(0.4))
    assert bool(terminations.bad_orientation(quat, math.radians(25.0)))
    assert not bool(terminations.bad_orientation(quat, math.radians(30.0)))


def test_the_setting_reaches_the_env_and_defaults_to_agiles_30_degrees():
    assert get_preset("t1_velocity").env.tilt_limit_deg == 30.0
    env = _velocity_env(apply_overrides(get_preset("t1_velocity"), ["env.tilt_limit_deg=25"]).env)
    assert env.cfg.limit_angle == pytest.approx(math.radians(25.0))
    # policy.yaml's description, which the plain-MuJoCo evaluator's fall check reads
    assert env.io_description()["terminations"]["limit_angle"] == pytest.approx(math.radians(25.0), abs=1e-6)
    assert _velocity_env(get_preset("g1_velocity").env).cfg.limit_angle == pytest.approx(math.radians(30.0))


@pytest.mark.parametrize("value", [0, -5, 200])
def test_an_angle_out_of_range_is_refused_by_name(value):
    with pytest.raises(ConfigError, match=rf"env.tilt_limit_deg={value}.* out of range: use degrees in \(0, 180\]"):
        _velocity_env(apply_overrides(get_preset("t1_velocity"), [f"env.tilt_limit_deg={value}"]).env)

