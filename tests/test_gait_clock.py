"""The gait clock: phase, observation and its mirror, Playground's swing profile, the feet_phase reward and the
evaluator's clock term."""

import jax.numpy as jnp
import numpy as np
import pytest

from agile_jax.evaluation.policy_io import gait_clock
from envs.mdp import gait, rewards


def test_phase_wraps_and_the_observation_matches_the_evaluator():
    f = 1.5
    for t in (0.0, 0.1, 1 / 3, 0.5, 2.0, 29.98):
        phi = float(gait.phase(jnp.asarray(t), f))
        assert -np.pi - 1e-6 <= phi < np.pi + 1e-6  # float32 pi
        assert np.cos(phi) == pytest.approx(np.cos(2 * np.pi * f * t), abs=1e-5)
        np.testing.assert_allclose(gait.clock_observation(jnp.asarray(t), f), gait_clock(t, f), atol=1e-5)
    # Half a period later the phase is the other foot's: the mirror of the clock.
    a, b = gait.clock_observation(jnp.asarray(0.2), f), gait.clock_observation(jnp.asarray(0.2 + 1 / (2 * f)), f)
    np.testing.assert_allclose(gait.mirror_clock(a), b, atol=1e-5)


def test_swing_profile_alternates_feet():
    h = 0.08
    # x = (phi + pi) / 2 pi: left at x = 0.5 (phi = 0) is at its peak while the right foot (x = 0) is down.
    np.testing.assert_allclose(gait.swing_targets(jnp.asarray(0.0), h), [h, 0.0], atol=1e-6)
    np.testing.assert_allclose(gait.swing_targets(jnp.asarray(-np.pi), h), [0.0, h], atol=1e-6)
    # Quarter cycle: the cubic Bezier at its midpoint, 0.5 h, on both feet (one rising, one falling).
    np.testing.assert_allclose(gait.swing_targets(jnp.asarray(-np.pi / 2), h), [0.5 * h, 0.5 * h], atol=1e-6)


def signals(feet_height, phase, command=(0.4, 0.0, 0.0), contact=(True, True)):
    empty = {name: jnp.zeros(0) for name in rewards.Signals._fields}
    empty.update(command=jnp.asarray(command, jnp.float32), feet_height=jnp.asarray(feet_height, jnp.float32),
                 gait_phase=jnp.asarray(phase, jnp.float32), feet_contact=jnp.asarray(contact))
    return rewards.Signals(**empty)


def test_feet_phase_reward_follows_the_clock_and_ignores_standing():
    def reward(*args, **kwargs):
        return float(rewards.feet_phase(signals(*args, **kwargs), swing_height=0.08, min_command=0.1))

    assert reward([0.08, 0.0], 0.0) == pytest.approx(1.0)
    # Both feet down at the left foot's peak: exp(-0.08^2 / 0.01).
    assert reward([0.0, 0.0], 0.0) == pytest.approx(np.exp(-0.0064 / 0.01), rel=1e-5)
    # The wrong foot up costs twice that error.
    assert reward([0.0, 0.08], 0.0) == pytest.approx(np.exp(-0.0128 / 0.01), rel=1e-5)
    assert reward([0.08, 0.0], 0.0, command=(0.0, 0.05, 0.0)) == 0.0


def test_feet_swing_pays_a_lifted_foot_inside_its_window_only():
    def reward(phase, contact, command=(0.4, 0.0, 0.0)):
        sig = signals([0.0, 0.0], phase, command=command, contact=contact)
        return float(rewards.feet_swing(sig, swing_period=0.2, min_command=0.1))

    # phi = 0: the left foot is at x = 0.5, the middle of its window; the right foot at x = 0, touchdown.
    assert reward(0.0, (False, True)) == 1.0
    assert reward(0.0, (True, False)) == 0.0  # the right foot is lifted outside its window
    assert reward(0.0, (True, True)) == 0.0
    # The window is x in (0.4, 0.6): phi = 2 pi (x - 0.5); x = 0.45 is inside, x = 0.35 is not.
    assert reward(2 * np.pi * -0.05, (False, True)) == 1.0
    assert reward(2 * np.pi * -0.15, (False, True)) == 0.0
    # phi = -pi: the right foot is in the middle of its window.
    assert reward(-np.pi, (False, False)) == 1.0
    # Standing (|command| <= 0.1) is never paid.
    assert reward(0.0, (False, True), command=(0.0, 0.0, 0.05)) == 0.0


def test_feet_swing_with_min_command_zero_still_pays_nothing_at_a_zero_command():
    """The one-run presets set ``min_command`` 0: the gate is a strict ``|command| > 0``, so a zero command is not
    paid, and the smallest non-zero training command (the sampler zeroes norms under 0.1) is."""
    def reward(command):
        sig = signals([0.0, 0.0], 0.0, command=command, contact=(False, True))
        return float(rewards.feet_swing(sig, swing_period=0.2, min_command=0.0))

    assert reward((0.0, 0.0, 0.0)) == 0.0
    assert reward((0.1, 0.0, 0.0)) == 1.0
    assert reward((0.0, 0.0, 0.05)) == 1.0  # below the 0.1 gate, paid only with min_command 0


def test_clock_stops_at_a_standing_command_in_the_env_and_the_evaluator():
    """With ``stand_below`` the clock observation is zero for a command of norm at most that (Booster Gym's
    stopped clock) and the running clock otherwise; the evaluator's term computes the same from ``policy.yaml``."""
    clock = gait.GaitClockConfig(frequency=1.5, stand_below=0.1)
    t = jnp.asarray(0.2)
    running = np.array([np.sin(2 * np.pi * 0.3), np.cos(2 * np.pi * 0.3)])
    for command, expected in (([0.0, 0.0, 0.0], np.zeros(2)), ([0.05, 0.0, 0.08], np.zeros(2)),
                              ([0.3, 0.0, 0.0], running), ([0.0, 0.0, -0.6], running)):
        np.testing.assert_allclose(gait.gated_clock_observation(t, jnp.asarray(command), clock), expected, atol=1e-5)
        np.testing.assert_allclose(gait_clock(0.2, 1.5, np.asarray(command), 0.1), expected, atol=1e-6)
    # stand_below = 0 (the default): the clock always runs, as exports without the field expect.
    np.testing.assert_allclose(gait.gated_clock_observation(t, jnp.zeros(3), gait.GaitClockConfig(1.5)), running,
                               atol=1e-5)
    np.testing.assert_allclose(gait_clock(0.2, 1.5, np.zeros(3)), running, atol=1e-6)
    # Batched commands [N, 3] gate row by row.
    batch = gait.gated_clock_observation(jnp.full((2,), 0.2), jnp.asarray([[0.0, 0, 0], [0.4, 0, 0]]), clock)
    np.testing.assert_allclose(batch, np.stack([np.zeros(2), running]), atol=1e-5)


def test_policy_yaml_states_where_the_clock_stops():
    from envs.tasks.velocity import T1VelocityConfig, VelocityEnv

    env = VelocityEnv(T1VelocityConfig(gait_clock=gait.GaitClockConfig(frequency=1.5, stand_below=0.1)))
    (term,) = [t for t in env.io_description()["observations"]["policy"] if t["name"] == "gait_clock"]
    assert term["frequency"] == 1.5 and term["stand_below"] == 0.1
