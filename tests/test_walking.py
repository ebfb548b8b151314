"""The walking recipe's pieces: the air-time term and its timers, the reward-set overrides, the walking verdict."""

import re

import jax.numpy as jnp
import numpy as np
import pytest

from agile_jax.config import ConfigError, apply_overrides
from agile_jax.evaluation import walking
from envs.mdp import rewards
from experiments.configs import get_preset
from experiments.configs.presets import _param_step, _reward_tables


def stance(contact, air, contact_time, command=(0.5, 0.0, 0.0)) -> rewards.Signals:
    """Signals with only the fields the air-time term reads set (the rest are empty placeholders)."""
    empty = {name: jnp.zeros(0) for name in rewards.Signals._fields}
    empty.update(command=jnp.asarray(command, jnp.float32), feet_contact=jnp.asarray(contact),
                 feet_air_time=jnp.asarray(air, jnp.float32), feet_contact_time=jnp.asarray(contact_time, jnp.float32))
    return rewards.Signals(**empty)


def air_reward(*args, **kwargs) -> float:
    return float(rewards.feet_air_time_positive_biped(stance(*args, **kwargs), threshold=0.4, min_command=0.1))


def test_air_time_pays_the_shorter_single_stance_time_capped():
    # Left foot down for 0.3 s, right foot up for 0.2 s: the shorter one, 0.2 s.
    assert air_reward([True, False], [0.0, 0.2], [0.3, 0.0]) == pytest.approx(0.2)
    assert air_reward([False, True], [0.25, 0.0], [0.0, 0.1]) == pytest.approx(0.1)
    # Capped at the threshold.
    assert air_reward([True, False], [0.0, 0.9], [0.7, 0.0]) == pytest.approx(0.4)
    # Double stance and flight pay nothing.
    assert air_reward([True, True], [0.0, 0.0], [0.3, 0.3]) == 0.0
    assert air_reward([False, False], [0.3, 0.3], [0.0, 0.0]) == 0.0
    # Standing commands pay nothing; a turn in place is a command to step.
    assert air_reward([True, False], [0.0, 0.2], [0.3, 0.0], command=(0.05, 0.05, 0.0)) == 0.0
    assert air_reward([True, False], [0.0, 0.2], [0.3, 0.0], command=(0.0, 0.0, 0.6)) == pytest.approx(0.2)


def test_gait_timers_count_air_and_contact_time_per_foot():
    air, touch = jnp.zeros(2), jnp.zeros(2)
    pattern = [[True, True], [True, False], [True, False], [False, True], [True, True]]
    seen = []
    for contact in pattern:
        air, touch = rewards.update_gait_timers(air, touch, jnp.asarray(contact), 0.02)
        seen.append((np.asarray(air).tolist(), np.asarray(touch).tolist()))
    np.testing.assert_allclose(seen[0], [[0.0, 0.0], [0.02, 0.02]])
    np.testing.assert_allclose(seen[2], [[0.0, 0.04], [0.06, 0.0]])
    np.testing.assert_allclose(seen[3], [[0.02, 0.0], [0.0, 0.02]])
    np.testing.assert_allclose(seen[4], [[0.0, 0.0], [0.02, 0.04]])


def test_walk_reward_set_and_its_overrides():
    cfg = get_preset("t1_velocity_airtime")
    table, ramps = _reward_tables(cfg.env)
    agile, agile_ramps = _reward_tables(get_preset("t1_velocity_agile").env)
    assert table["track_lin_vel_xy_exp"].params["std"] == 0.5 and agile["track_lin_vel_xy_exp"].params["std"] == 0.2
    assert table["action_rate"].weight == pytest.approx(agile["action_rate"].weight / 10)
    assert "feet_air_time" in table and "feet_air_time" not in agile
    assert ramps == {} and set(agile_ramps) == {"action_rate", "action_rate_rate"}
    assert set(table) - {"feet_air_time", "stand_still"} == set(agile)
    swing = get_preset("t1_velocity_swing")
    table, _ = _reward_tables(swing.env)
    assert set(table) - {"feet_air_time", "feet_swing", "stand_still"} == set(agile)
    assert table["feet_swing"].weight == 30.0 and table["feet_swing"].params["swing_period"] == 0.2
    assert table["termination_penalty"].weight == -10.0 and agile["termination_penalty"].weight == -100.0
    assert swing.env.gait_clock_hz == 1.5 and swing.env.only_positive_rewards and swing.algorithm.entropy_coef == 0.01
    track = get_preset("t1_velocity_track")
    table, ramps = _reward_tables(track.env)
    assert table["feet_swing"].weight == 10.0 and table["termination_penalty"].weight == -10.0 and ramps == {}
    assert table["action_rate"].weight == agile["action_rate"].weight == -0.5
    assert table["action_rate_rate"].weight == agile["action_rate_rate"].weight == -0.05
    assert table["track_ang_vel"].params["std"] == 1.0 and table["track_lin_vel_xy_exp"].params["std"] == 0.25
    assert table["track_lin_vel_xy_exp"].weight == 10.0 and agile["track_lin_vel_xy_exp"].weight == 5.0
    assert track.env.gait_clock_stand_below == 0.1 and not track.env.only_positive_rewards
    assert track.algorithm.symmetry_cfg.use_mirror_loss and track.algorithm.entropy_coef == 0.005
    over = apply_overrides(get_preset("t1_velocity_agile"), ["env.reward_weights.action_rate=-0.1",
                                                             "env.reward_params.track_ang_vel={std: 0.3}"])
    table, ramps = _reward_tables(over.env)
    assert table["action_rate"].weight == -0.1 and "action_rate" not in ramps
    assert table["track_ang_vel"].params == {"std": 0.3}
    with pytest.raises(ConfigError, match="no reward term 'feet_air'"):
        _reward_tables(apply_overrides(cfg, ["env.reward_weights.feet_air=1.0"]).env)
    with pytest.raises(ConfigError, match="unknown parameter"):
        _reward_tables(apply_overrides(cfg, ["env.reward_params.feet_air_time={sigma: 1.0}"]).env)
    with pytest.raises(ConfigError, match="reward_set='run'"):
        _reward_tables(apply_overrides(cfg, ["env.reward_set=run"]).env)


def test_stand_still_costs_the_leg_pose_error_at_a_standing_command_only():
    empty = {name: jnp.zeros(0) for name in rewards.Signals._fields}

    def cost(command):
        empty.update(command=jnp.asarray(command, jnp.float32), joint_pos=jnp.asarray([0.3, -0.5, 0.2, 1.0]),
                     default_pos=jnp.asarray([0.1, 0.0, -0.2, 0.0]))
        return float(rewards.stand_still(rewards.Signals(**empty), joints=np.asarray([0, 1, 2]), min_command=0.1))

    # |0.3 - 0.1| + |-0.5 - 0| + |0.2 + 0.2| over the three picked joints; the fourth is not a leg joint.
    assert cost((0.0, 0.0, 0.0)) == pytest.approx(1.1)
    assert cost((0.05, 0.05, 0.0)) == pytest.approx(1.1)  # |command| 0.071 <= 0.1: still a standing command
    assert cost((0.3, 0.0, 0.0)) == 0.0 and cost((0.0, 0.0, 0.6)) == 0.0


def test_stand_still_is_off_in_the_walking_sets_until_given_a_weight_or_a_ramp():
    from envs.mdp import terms
    from envs.robots import t1

    preset = get_preset("t1_velocity_airtime")
    table, ramps = _reward_tables(preset.env)
    assert table["stand_still"].weight == 0.0 and "stand_still" not in ramps
    assert "stand_still" not in terms.resolve_rewards(table, t1.JOINT_ORDER, ramps)
    assert "stand_still" not in terms.reward_weights(table, ramps, jnp.asarray(0))
    table, ramps = _reward_tables(get_preset("t1_velocity").env)  # a ramp from 0 to -5 keeps it
    assert "stand_still" in terms.resolve_rewards(table, t1.JOINT_ORDER, ramps)
    table, _ = _reward_tables(apply_overrides(preset, ["env.reward_weights.stand_still=-2.0"]).env)
    bound = terms.resolve_rewards(table, t1.JOINT_ORDER)["stand_still"]
    assert table["stand_still"].weight == -2.0
    # The policy's leg joints (12 of the T1's); the arms and head follow random targets, not the policy.
    picked = [t1.JOINT_ORDER[i] for i in bound.keywords["joints"]]
    assert picked == list(terms.select_joints(t1.JOINT_ORDER, t1.LEG_JOINTS)) and len(picked) == 12


def episode(velocities, commands, fell=False):
    segs = [{"command": list(c), "mean_velocity": list(v)} for c, v in zip(commands, velocities)]
    return {"fell": fell, "segments": segs}


COMMANDS = [(0, 0, 0), (0.4, 0, 0), (0, 0.25, 0), (0, 0, 0.6), (-0.3, 0, 0)]
GOOD = [(0.02, 0.01, 0.0), (0.3, 0.0, 0.0), (0.0, 0.15, 0.0), (0.0, 0.0, 0.35), (-0.2, 0.0, 0.0)]


def test_walking_verdict_checks_ratios_drift_and_falls():
    good = walking.verdict([episode(GOOD, COMMANDS)] * 9 + [episode(GOOD, COMMANDS, fell=True)])
    assert good["walks"] and good["falls"] == 1
    assert good["segments"][1]["checks"][0]["ratio"] == pytest.approx(0.75)
    assert "walking: yes" in walking.describe(good)
    # Two falls, a slow forward segment (0.27 / 0.4 < 0.7), a drifting stand, a slow sidestep: each one fails.
    assert not walking.verdict([episode(GOOD, COMMANDS, fell=True)] * 2 + [episode(GOOD, COMMANDS)] * 8)["walks"]
    for k, bad in [(1, (0.27, 0, 0)), (0, (0.08, 0.07, 0)), (2, (0, 0.12, 0))]:
        velocities = list(GOOD)
        velocities[k] = bad
        result = walking.verdict([episode(velocities, COMMANDS)] * 10)
        assert not result["walks"]
        assert [ch["ok"] for ch in result["segments"][k]["checks"]] == [False]
    # Segment means average over the episodes that did not fall.
    slow = list(GOOD)
    slow[1] = (0.24, 0, 0)
    mixed = walking.verdict([episode(slow, COMMANDS), episode(GOOD, COMMANDS), episode(slow, COMMANDS, fell=True)])
    assert mixed["segments"][1]["mean_velocity"][0] == pytest.approx(0.27)


def test_only_positive_rewards_clips_all_but_the_termination_penalty():
    from envs.tasks.velocity import T1VelocityConfig, VelocityEnv

    plain = VelocityEnv(T1VelocityConfig())
    clipped = VelocityEnv(T1VelocityConfig(only_positive_rewards=True))
    terms = {"track_lin_vel_xy_exp": jnp.float32(0.05), "orientation": jnp.float32(-0.2),
             "termination_penalty": jnp.float32(-2.0)}
    assert float(plain._total_reward(terms)) == pytest.approx(-2.15)
    # legged_gym: max(0.05 - 0.2, 0) + (-2.0).
    assert float(clipped._total_reward(terms)) == pytest.approx(-2.0)
    terms["orientation"] = jnp.float32(-0.01)
    assert float(clipped._total_reward(terms)) == pytest.approx(0.04 - 2.0)
    clipping = apply_overrides(get_preset("t1_velocity_airtime"), ["env.only_positive_rewards=true"])
    assert clipping.env.only_positive_rewards


def test_gait_clock_rewards_need_the_clock():
    from experiments.configs.presets import _velocity_env

    with pytest.raises(ConfigError, match="gait-clock rewards"):
        _velocity_env(apply_overrides(get_preset("t1_velocity_swing"), ["env.gait_clock_hz=0"]).env)
    with pytest.raises(ConfigError, match="gait-clock rewards"):
        _velocity_env(apply_overrides(get_preset("t1_velocity_airtime"), ["env.gait_clock_hz=1.5"]).env)


def test_one_run_recipe_hands_over_from_stepping_to_tracking_by_weight_ramps():
    from envs.mdp import terms

    cfg = get_preset("t1_velocity")
    table, ramps = _reward_tables(cfg.env)
    assert cfg.env.gait_clock_hz == 1.5 and cfg.env.gait_clock_stand_below == 0.0 and cfg.env.only_positive_rewards
    assert table["feet_swing"].params["min_command"] == 0.0 and table["termination_penalty"].weight == -10.0
    assert table["track_lin_vel_xy_exp"].weight == 10.0 and table["track_lin_vel_xy_exp"].params["std"] == 0.25
    assert table["track_ang_vel"].params["std"] == 1.0
    assert cfg.algorithm.symmetry_cfg.use_mirror_loss and cfg.algorithm.entropy_coef == 0.005
    assert cfg.policy.init_noise_std == 0.3
    # Weights before the ramp, halfway through it (control step 30 000) and after it: linear, 30 -> 10 etc.; the
    # linear tracking weight steps from 10 to 15 and the yaw-rate weight from 5 to 10 after control step 60 000
    # (iteration 2500).
    # The stand-still cost, off (weight 0) until then, turns on at -5.
    expected = {0: (30.0, -0.05, -0.005, 10.0, 5.0, 0.0), 24_000: (30.0, -0.05, -0.005, 10.0, 5.0, 0.0),
                30_000: (20.0, -0.275, -0.0275, 10.0, 5.0, 0.0), 36_000: (10.0, -0.5, -0.05, 10.0, 5.0, 0.0),
                60_000: (10.0, -0.5, -0.05, 10.0, 5.0, 0.0), 60_001: (10.0, -0.5, -0.05, 15.0, 10.0, -5.0),
                90_000: (10.0, -0.5, -0.05, 15.0, 10.0, -5.0)}
    assert table["stand_still"].weight == 0.0 and terms.is_live("stand_still", table["stand_still"], ramps)
    for step, weights in expected.items():
        w = terms.reward_weights(table, ramps, jnp.asarray(step))
        names = ("feet_swing", "action_rate", "action_rate_rate", "track_lin_vel_xy_exp", "track_ang_vel",
                 "stand_still")
        np.testing.assert_allclose([w[name] for name in names], weights, rtol=1e-6)
    # At the same step the yaw-rate width narrows from 1.0 to 0.5: 0.3 rad/s short of the command pays
    # exp(-0.09) before and exp(-0.36) after.
    steps = terms.resolve_param_steps(table, {name: _param_step(name, step, table)
                                              for name, step in cfg.env.reward_param_steps.items()}, ())
    fns = terms.resolve_rewards({"track_ang_vel": table["track_ang_vel"]}, ())
    sig = yaw_signals(0.6, 0.3)
    for step, expected_value in ((59_999, np.exp(-0.09)), (60_000, np.exp(-0.36))):
        value = terms.stepped_rewards(fns, steps, jnp.asarray(step))["track_ang_vel"](sig)
        assert float(value) == pytest.approx(expected_value, rel=1e-6)
    g1 = get_preset("g1_velocity").env
    assert g1.reward_param_steps == {} and "stand_still" not in g1.reward_ramps  # the G1's recipe as measured


@pytest.mark.parametrize("ramp, message", [
    ("env.reward_ramps.feet_swim={start_step: 0, num_steps: 10, weight: 1.0}", "no reward term 'feet_swim'"),
    ("env.reward_ramps.base_height={start_step: 0, weight: 1.0}", "exactly start_step, num_steps and weight"),
    ("env.reward_ramps.feet_swing={start_step: 0, num_steps: 0, weight: 1.0}", "num_steps > 0"),
    ("env.reward_ramps.feet_swing={start_step: a, num_steps: 5, weight: 1.0}", "as numbers"),
    ("env.reward_ramps.stand_still={start_step: 0, num_steps: 5, weight: 0.0}", "the ramp's too"),
])
def test_reward_ramp_overrides_are_checked(ramp, message):
    with pytest.raises(ConfigError, match=message):
        _reward_tables(apply_overrides(get_preset("t1_velocity"), [ramp]).env)


def yaw_signals(command_wz: float, wz: float) -> rewards.Signals:
    empty = {name: jnp.zeros(0) for name in rewards.Signals._fields}
    empty.update(command=jnp.asarray([0.0, 0.0, command_wz]), ang_vel_b=jnp.asarray([0.0, 0.0, wz]))
    return rewards.Signals(**empty)


def test_a_parameter_step_switches_the_term_at_its_control_step():
    from envs.mdp import terms

    table = {"track_ang_vel": terms.RewardTerm("track_ang_vel_z_exp", 5.0, {"std": 1.0})}
    steps = terms.resolve_param_steps(table, {"track_ang_vel": terms.ParamStep(100, {"std": 0.5})}, ())
    fns = terms.resolve_rewards(table, ())
    sig = yaw_signals(0.5, 0.25)  # 0.25 rad/s short of the command
    for step, expected in ((0, np.exp(-0.0625)), (99, np.exp(-0.0625)), (100, np.exp(-0.25)), (10**6, np.exp(-0.25))):
        value = terms.stepped_rewards(fns, steps, jnp.asarray(step))["track_ang_vel"](sig)
        assert float(value) == pytest.approx(expected, rel=1e-6)
    per_env = jnp.asarray([99, 100])  # one step count per env: each env switches on its own count
    values = terms.stepped_rewards(fns, steps, per_env)["track_ang_vel"](sig)
    np.testing.assert_allclose(values, [np.exp(-0.0625), np.exp(-0.25)], rtol=1e-6)


def test_a_parameter_step_override_reaches_the_task_config():
    from experiments.configs.presets import _velocity_env

    cfg = apply_overrides(get_preset("t1_velocity"), ["env.num_envs=4", "env.reward_param_steps.track_lin_vel_xy_exp="
                                                      "{start_step: 1000, params: {std: 0.2}}"])
    step = _velocity_env(cfg.env).cfg.param_steps["track_lin_vel_xy_exp"]
    assert (step.start_step, dict(step.params)) == (1000, {"std": 0.2})


@pytest.mark.parametrize("step, message", [
    ("env.reward_param_steps.feet_swim={start_step: 0, params: {std: 0.5}}", "no reward term 'feet_swim'"),
    ("env.reward_param_steps.track_lin_vel_xy_exp={start_step: 0}", "exactly start_step"),
    ("env.reward_param_steps.track_lin_vel_xy_exp={start_step: -1, params: {std: 0.5}}", "an integer >= 0"),
    ("env.reward_param_steps.track_lin_vel_xy_exp={start_step: 0, params: {sigma: 0.5}}",
     "unknown parameter(s) ['sigma']"),
])
def test_parameter_step_overrides_are_checked(step, message):
    from experiments.configs.presets import _velocity_env

    with pytest.raises(ConfigError, match=re.escape(message)):
        _velocity_env(apply_overrides(get_preset("t1_velocity"), ["env.num_envs=4", step]).env)


def test_a_reward_ramp_override_replaces_the_preset_ramp_of_that_term():
    cfg = apply_overrides(get_preset("t1_velocity_agile"),
                          ["env.reward_ramps.action_rate={start_step: 100, num_steps: 50, weight: -1.0}"])
    _, ramps = _reward_tables(cfg.env)
    assert (ramps["action_rate"].start_step, ramps["action_rate"].num_steps) == (100, 50)
    assert ramps["action_rate"].terminal_weight == -1.0 and ramps["action_rate_rate"].start_step == 60_000


def test_the_readme_command_picks_its_cpu_defaults_unless_given(capsys):
    from experiments import train

    base = get_preset("t1_velocity")
    assert train.cpu_defaults("t1_velocity", base, []) == ["num_envs=256", "runner.max_iterations=2700"]
    assert "no accelerator: t1_velocity uses its CPU defaults num_envs=256" in capsys.readouterr().out
    assert train.cpu_defaults("t1_velocity", base, ["env.num_envs=64"]) == ["runner.max_iterations=2700"]
    assert train.cpu_defaults("t1_velocity_agile", get_preset("t1_velocity_agile"), []) == []
