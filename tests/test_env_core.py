"""``envs.core.VecEnv``: time limit, termination bookkeeping and persistent info across auto-resets."""

import jax
import jax.numpy as jnp
import numpy as np

from envs.core import EnvState, TerminationSpec, VecEnv


class Counter:
    """Terminates ("fell", bad, sigma 2) when its per-episode counter reaches 3; also counts globally."""

    observation_shapes = {"policy": (1,)}
    action_size = 1
    max_episode_length = 5
    reward_names = ("one",)
    termination_names = ("fell", "time_out")
    termination_specs = {"fell": TerminationSpec("bad", 2.0)}
    persistent_info = ("global_steps",)

    def __init__(self, fall_at: int = 3):
        self.fall_at = fall_at

    def reset(self, key):
        zero = jnp.zeros((), jnp.float32)
        return EnvState(data={"n": jnp.zeros((), jnp.int32)}, obs={"policy": jnp.zeros(1)}, reward=zero,
                        terminated=jnp.zeros((), bool), time_out=jnp.zeros((), bool), reward_terms={"one": zero},
                        termination_terms={"fell": jnp.zeros((), bool)},
                        info={"rng": key, "global_steps": jnp.zeros((), jnp.int32)})

    def step(self, state, action):
        n = state.data["n"] + 1
        fell = n >= self.fall_at
        return state.replace(data={"n": n}, obs={"policy": n[None].astype(jnp.float32)}, reward=jnp.float32(1.0),
                             terminated=fell, time_out=jnp.zeros((), bool), reward_terms={"one": jnp.float32(1.0)},
                             termination_terms={"fell": fell},
                             info={"rng": jax.random.fold_in(state.info["rng"], 0),
                                   "global_steps": state.info["global_steps"] + 1})


def _run(env, steps):
    state = env.reset(jax.random.split(jax.random.key(0), env.num_envs))
    step = jax.jit(env.step)
    infos = []
    for _ in range(steps):
        state, info = step(state, jnp.zeros((env.num_envs, 1)))
        infos.append(jax.device_get(info))
    return state, infos


def test_termination_sigma_episode_stats_and_persistent_counter():
    env = VecEnv(Counter(fall_at=3), 2)
    state, infos = _run(env, 7)
    done = np.array([i.done[0] for i in infos])
    np.testing.assert_array_equal(done, [0, 0, 1, 0, 0, 1, 0])  # falls every 3 steps, episodes restart
    assert infos[2].bad_termination_sigma[0] == 2.0 and infos[1].bad_termination_sigma[0] == 0.0
    assert infos[2].episode_return[0] == 3.0 and infos[2].episode_length[0] == 3
    assert infos[2].episode_sums["one"][0] == 3.0
    assert int(state.step_count[0]) == 1  # one step into the third episode
    assert int(state.info["global_steps"][0]) == 7  # kept across both auto-resets


def test_time_limit_wins_over_a_failure_on_the_same_step():
    env = VecEnv(Counter(fall_at=5), 1)  # falls exactly when the 5-step limit is hit
    _, infos = _run(env, 5)
    last = infos[-1]
    assert bool(last.time_out[0]) and not bool(last.terminated[0])
    assert not bool(last.termination_terms["fell"][0]) and bool(last.termination_terms["time_out"][0])
    assert last.bad_termination_sigma[0] == 0.0  # a timed-out env is never shaped as a bad termination


def test_only_finished_envs_restart_and_steps_without_a_finish_skip_the_reset():
    # Episodes out of phase: only env 2 reaches the time limit (5) on the first step.
    env = VecEnv(Counter(fall_at=100), 3)
    state = env.reset(jax.random.split(jax.random.key(1), 3))
    state = state.replace(step_count=jnp.array([0, 2, 4], jnp.int32))
    step = jax.jit(env.step)
    state, info = step(state, jnp.zeros((3, 1)))
    np.testing.assert_array_equal(info.done, [False, False, True])
    np.testing.assert_array_equal(info.time_out, [False, False, True])
    np.testing.assert_array_equal(state.step_count, [1, 3, 0])
    np.testing.assert_array_equal(state.data["n"], [1, 1, 0])  # env 2 restarted from the task's reset
    np.testing.assert_array_equal(state.obs["policy"][:, 0], [1.0, 1.0, 0.0])
    np.testing.assert_array_equal(state.episode_return, [1.0, 1.0, 0.0])
    np.testing.assert_array_equal(state.info["global_steps"], [1, 1, 1])  # persistent through the reset
    np.testing.assert_array_equal(state.time_out, [False, False, True])  # the step's flags stay visible
    # Next step: nobody finishes, every env just advances.
    state, info = step(state, jnp.zeros((3, 1)))
    assert not np.asarray(info.done).any()
    np.testing.assert_array_equal(state.step_count, [2, 4, 1])
    np.testing.assert_array_equal(state.data["n"], [2, 2, 1])
    np.testing.assert_array_equal(state.episode_return, [2.0, 2.0, 1.0])


class Levels(Counter):
    """A :class:`Counter` with a per-env level that ``carry_over`` raises by the finished episode's length."""

    def reset(self, key):
        state = super().reset(key)
        return state.replace(info={**state.info, "level": jnp.zeros((), jnp.int32)})

    def step(self, state, action):
        nxt = super().step(state, action)
        return nxt.replace(info={**nxt.info, "level": state.info["level"]})

    def carry_over(self, finished, fresh):
        return fresh.replace(info={**fresh.info, "level": finished.info["level"] + finished.data["n"]})


def test_carry_over_maps_the_finished_episode_into_the_fresh_state_of_finished_envs_only():
    env = VecEnv(Levels(fall_at=100), 3)
    state = env.reset(jax.random.split(jax.random.key(2), 3))
    np.testing.assert_array_equal(state.info["level"], [0, 0, 0])  # the first reset has no finished episode
    state = state.replace(step_count=jnp.array([0, 3, 4], jnp.int32))  # env 2 hits the 5-step limit first
    step = jax.jit(env.step)
    state, info = step(state, jnp.zeros((3, 1)))
    np.testing.assert_array_equal(info.done, [False, False, True])
    np.testing.assert_array_equal(state.info["level"], [0, 0, 1])  # its episode ran n = 1 task step
    np.testing.assert_array_equal(state.data["n"], [1, 1, 0])  # and it restarted from the task's reset
    state, info = step(state, jnp.zeros((3, 1)))  # env 1 finishes after 2 task steps
    np.testing.assert_array_equal(info.done, [False, True, False])
    np.testing.assert_array_equal(state.info["level"], [0, 2, 1])
    np.testing.assert_array_equal(state.info["global_steps"], [2, 2, 2])  # persistent info is unaffected
