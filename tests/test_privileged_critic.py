"""``env.privileged_critic``: the critic also reads the randomised model parameters and the root's external wrench
(``envs.mdp.privileged``), mirrored left-right with the rest of the critic group; the policy group is unchanged."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from envs.mdp import events, privileged
from envs.tasks.velocity import T1VelocityConfig, VelocityEnv, make_robot


@pytest.fixture(scope="module")
def robot():
    return make_robot(T1VelocityConfig())


def test_the_term_is_zero_at_the_nominal_model_and_reads_each_drawn_parameter(robot):
    cfg = events.DomainConfig()
    nominal = events.nominal_domain(robot)
    np.testing.assert_array_equal(privileged.values(robot, nominal, jnp.zeros(6), cfg), np.zeros(privileged.SIZE))
    root = robot.root_body
    friction = nominal.geom_friction.at[robot.foot_geoms[0], 0].set(0.3).at[robot.foot_geoms[1], 0].set(0.8)
    domain = nominal.replace(geom_friction=friction, body_mass=nominal.body_mass.at[root].add(2.0),
                             body_ipos=nominal.body_ipos.at[root, 0].add(0.1),
                             kp_scale=jnp.full_like(nominal.kp_scale, 1.1),
                             kd_scale=jnp.full_like(nominal.kd_scale, 1.5))
    wrench = jnp.array([5.0, 0.0, -10.0, 0.0, 0.0, 2.5])  # root_force 10 N, root_torque 5 N m
    expected = [-0.7, -0.2, 2.0, 0.1, 0.0, 0.0, 0.1, 0.5, 0.5, 0.0, -1.0, 0.0, 0.0, 0.5]
    np.testing.assert_allclose(privileged.values(robot, domain, wrench, cfg), expected, atol=1e-5)


def test_the_mirror_swaps_the_feet_and_flips_the_lateral_components():
    x = jnp.arange(1.0, 15.0)
    mirrored = np.asarray(privileged.mirror(x))
    np.testing.assert_array_equal(mirrored, [2, 1, 3, 4, -5, 6, 7, 8, 9, -10, 11, -12, 13, -14])
    np.testing.assert_array_equal(privileged.mirror(privileged.mirror(x)), x)


def test_the_env_appends_it_to_the_critic_group_only():
    plain = VelocityEnv(T1VelocityConfig())
    env = VelocityEnv(T1VelocityConfig(privileged_critic=True))
    assert env.observation_shapes["policy"] == plain.observation_shapes["policy"]
    assert env.observation_shapes["critic"] == (plain.observation_shapes["critic"][0] + privileged.SIZE,)
    state = jax.jit(env.reset)(jax.random.key(3))
    critic = np.asarray(state.obs["critic"])
    info = state.info
    expected = privileged.values(env.robot, info["domain"], info["wrench"][0], env.cfg.domain)
    np.testing.assert_allclose(critic[-privileged.SIZE:], expected, atol=1e-6)
    assert np.abs(critic[-privileged.SIZE:-6]).max() > 0.01  # the randomised model shows
    # The critic group's mirror ends with the privileged term's own.
    mirrored = np.asarray(env.mirror_obs({"critic": state.obs["critic"]})["critic"])
    np.testing.assert_array_equal(mirrored[-privileged.SIZE:], privileged.mirror(critic[-privileged.SIZE:]))
