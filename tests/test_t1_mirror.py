"""T1 left-right mirror maps: AGILE's rules, involution, symmetric fixed point, dynamics equivariance."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from envs.mdp import events, observations, symmetry
from envs.robots.robot import symmetric_inertials
from tests.test_t1_env import NUM_ENVS, reset_batch, t1_setup


def test_mirror_maps_follow_agile_t1_rule():
    env, *_ = t1_setup()
    r = env.robot
    # Action order (Isaac Lab): pairs swap, Roll/Yaw joints flip sign.
    np.testing.assert_array_equal(r.mirror_action.perm, [1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10])
    np.testing.assert_array_equal(np.flatnonzero(r.mirror_action.sign < 0), [2, 3, 4, 5, 10, 11])
    # All 23 joints: AGILE's negated set (yaw/roll joints, Waist, AAHead_yaw).
    np.testing.assert_array_equal(np.flatnonzero(r.mirror_all.sign < 0), [0, 3, 5, 6, 11, 12, 13, 14, 15, 16, 21, 22])
    for i, name in enumerate(r.joint_names):
        partner = r.joint_names[r.mirror_all.perm[i]]
        assert partner == name.replace("Left", "#").replace("Right", "Left").replace("#", "Right")
    # a_mirror[i] = sign[i] * a[perm[i]], on a one-hot action.
    a = np.zeros(12, np.float32)
    a[2] = 1.0  # Left_Hip_Roll
    np.testing.assert_array_equal(env.mirror_actions(jnp.asarray(a)), -np.eye(12)[3])


def test_mirror_is_an_involution_on_actions_and_observations():
    env, *_ = t1_setup()
    key = jax.random.PRNGKey(0)
    obs = {"policy": jax.random.normal(key, (3, 5, 45)), "critic": jax.random.normal(key, (3, 70))}
    twice = env.mirror_obs(env.mirror_obs(obs))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=0), obs, twice)
    a = jax.random.normal(key, (7, 12))
    np.testing.assert_array_equal(env.mirror_actions(env.mirror_actions(a)), a)
    # History is mirrored frame by frame.
    frames = env.mirror_obs(obs)["policy"]
    for h in range(5):
        np.testing.assert_array_equal(frames[:, h], env.mirror_obs({"policy": obs["policy"][:, h]})["policy"])
    # Vector terms follow AGILE's OBS_TO_MIRROR rules (first frame terms of the policy group).
    x = jnp.arange(1.0, 10.0)
    m = env.mirror_obs({"policy": jnp.concatenate([x, jnp.zeros(36)])})["policy"]
    np.testing.assert_array_equal(m[:9], [-1, 2, -3, 4, -5, 6, 7, -8, -9])


def test_symmetric_state_is_a_fixed_point():
    """A left-right symmetric (non-trivial) posture and motion observes the same as its mirror."""
    env, *_ = t1_setup()
    r = env.robot
    key1, key2, key3 = jax.random.split(jax.random.PRNGKey(3), 3)
    sym = lambda x, m: 0.5 * (x + m(x))  # noqa: E731
    q = jnp.asarray(r.default_pos) + sym(0.3 * jax.random.normal(key1, (23,)), r.mirror_all)
    qd = sym(jax.random.normal(key2, (23,)), r.mirror_all)
    qpos = jnp.asarray(env._data0.qpos).at[2].set(0.66).at[r.qpos_adr].set(q)
    qpos = qpos.at[3:7].set(jnp.asarray([np.cos(0.1), 0.0, np.sin(0.1), 0.0]))  # pitched forward
    qvel = jnp.zeros(r.model.nv).at[0].set(0.3).at[4].set(0.2).at[r.dof_adr].set(qd)
    data = env._data0.replace(qpos=qpos, qvel=qvel)
    last_action = sym(jax.random.normal(key3, (12,)), r.mirror_action)
    info = {"command": jnp.asarray([0.4, 0.0, 0.0]), "last_action": last_action}
    frame = observations.assemble(env._term_values(data, info), env.policy_layout, None)
    obs = {"policy": jnp.stack([frame] * 5), "critic": env._critic_obs(data, info)}
    assert float(jnp.max(jnp.abs(frame[9:33]))) > 1e-2  # the state is not trivially zero
    mirrored = env.mirror_obs(obs)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), mirrored, obs)
    np.testing.assert_allclose(r.mirror_qpos(qpos), qpos, atol=1e-7)
    np.testing.assert_allclose(r.mirror_qvel(qvel), qvel, atol=1e-7)


def _symmetric_quiet_state(state):
    """DR off with an exactly symmetric model, no pushes/wrenches/arm motion; env 1 mirrors env 0."""
    env, *_ = t1_setup()
    r = env.robot
    domain = events.nominal_domain(r).replace(**{k: jnp.asarray(v) for k, v in symmetric_inertials(r).items()})
    batch = lambda x: jnp.broadcast_to(x, (NUM_ENVS,) + x.shape)  # noqa: E731
    info = dict(state.info)
    never = jnp.full(NUM_ENVS, 1e9, jnp.float32)  # not weakly typed: the jitted step must not retrace
    command = info["command"].at[1].set(symmetry.VELOCITY_COMMANDS(info["command"][0]))
    info.update(domain=jax.tree.map(batch, domain), push_time=never, wrench_time=never, command_time=never,
                command=command, delay=batch(info["delay"][0]), motion=info["motion"]._replace(time_to_resample=never))
    # Env 0 starts at rest, upright (yawed) on the default pose; the robot then takes ~1 s to topple.
    qpos = state.data.qpos.at[0, 3:7].set(jnp.asarray([np.cos(0.3), 0.0, 0.0, np.sin(0.3)]))
    qpos = qpos.at[0, 2].set(r.stand_height).at[0, r.qpos_adr].set(jnp.asarray(r.default_pos))
    qvel = state.data.qvel.at[0].set(0.0)
    qpos = qpos.at[1].set(r.mirror_qpos(qpos[0]))
    qvel = qvel.at[1].set(r.mirror_qvel(qvel[0]))
    return state.replace(data=state.data.replace(qpos=qpos, qvel=qvel), info=info)


def test_dynamics_are_mirror_equivariant():
    """From a mirrored state with mirrored actions, the trajectory is the mirror of the original (DR off)."""
    env, _, _, step = t1_setup()
    r = env.robot
    state = _symmetric_quiet_state(reset_batch(5))
    errors = []
    for t in range(50):
        a0 = 0.1 * jax.random.normal(jax.random.PRNGKey(1000 + t), (12,))
        actions = jnp.stack([a0, env.mirror_actions(a0), a0, a0])
        state, info = step(state, actions)
        assert not bool(info.done[0]) and not bool(info.done[1])
        errors.append(float(jnp.max(jnp.abs(r.mirror_qpos(state.data.qpos[0]) - state.data.qpos[1]))))
        critic = env.mirror_obs({"critic": state.obs["critic"][0]})["critic"]
        assert float(jnp.max(jnp.abs(critic - state.obs["critic"][1]))) < 1e-3
    assert max(errors) < 1e-4, errors
    # The symmetric model itself is a fixed point of the mirror (lateral CoM of unpaired bodies is zero).
    inert = symmetric_inertials(r)
    assert abs(float(inert["body_ipos"][r.root_body, 1])) == 0.0
    assert symmetry.T1_MIRROR["neg_tokens"] == ("Roll", "Yaw", "Waist", "yaw")
