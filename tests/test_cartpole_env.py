"""Behaviour of the MJX cartpole task under :class:`envs.core.VecEnv`.

MJX programs take seconds to compile on a CPU, so every env batch is built and jitted once per
module, and the 1000-step random rollouts are recorded once and checked by several tests.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from envs.core import EnvState, VecEnv
from envs.tasks.cartpole import CartpoleBalance, CartpoleConfig

NUM_ENVS = 8
ROLLOUT_STEPS = 1000
NOISE = CartpoleConfig().reset_noise_scale


class Batch(NamedTuple):
    """A jitted env batch: the task and its ``VecEnv.reset`` / ``VecEnv.step``."""

    env: CartpoleBalance
    reset: Callable
    step: Callable


class Rollout(NamedTuple):
    """A recorded random-action rollout, time-major ``[T, N, ...]`` numpy arrays."""

    obs: np.ndarray
    reward: np.ndarray
    terminated: np.ndarray
    time_out: np.ndarray
    done: np.ndarray
    step_count: np.ndarray
    state_episode_return: np.ndarray
    episode_return: np.ndarray
    episode_length: np.ndarray
    reward_terms: dict[str, np.ndarray]
    episode_sums: dict[str, np.ndarray]


def _make_batch(env: CartpoleBalance) -> Batch:
    """Wraps ``env`` in a :class:`VecEnv` of ``NUM_ENVS`` envs and jits its reset and step."""
    venv = VecEnv(env, NUM_ENVS)
    return Batch(env, jax.jit(venv.reset), jax.jit(venv.step))


def _keys(seed: int) -> jax.Array:
    """``[NUM_ENVS]`` reset keys."""
    return jax.random.split(jax.random.PRNGKey(seed), NUM_ENVS)


def _random_actions(seed: int, steps: int) -> np.ndarray:
    """Uniform actions in ``[-1, 1]``, ``[steps, NUM_ENVS, 1]`` float32."""
    return np.random.default_rng(seed).uniform(-1.0, 1.0, (steps, NUM_ENVS, 1)).astype(np.float32)


def _record(batch: Batch, seed: int) -> Rollout:
    """Runs ``ROLLOUT_STEPS`` random-action steps and stacks what every step returned."""
    state = batch.reset(_keys(seed))
    rows = []
    for action in _random_actions(seed, ROLLOUT_STEPS):
        state, info = batch.step(state, jnp.asarray(action))
        rows.append(jax.device_get((state, info)))
    states = [s for s, _ in rows]
    infos = [i for _, i in rows]
    stack = lambda xs: np.stack(xs)
    return Rollout(
        obs=stack([s.obs["policy"] for s in states]),
        reward=stack([i.reward for i in infos]),
        terminated=stack([i.terminated for i in infos]),
        time_out=stack([i.time_out for i in infos]),
        done=stack([i.done for i in infos]),
        step_count=stack([s.step_count for s in states]),
        state_episode_return=stack([s.episode_return for s in states]),
        episode_return=stack([i.episode_return for i in infos]),
        episode_length=stack([i.episode_length for i in infos]),
        reward_terms={k: stack([s.reward_terms[k] for s in states]) for k in batch.env.reward_names},
        episode_sums={k: stack([i.episode_sums[k] for i in infos]) for k in batch.env.reward_names},
    )


def _assert_reset_like(obs: np.ndarray) -> None:
    """``obs`` ``[..., 5]`` lies in the set a balance reset can produce (noise ``NOISE``)."""
    x, cos, sin, x_dot, theta_dot = np.moveaxis(obs, -1, 0)
    bound = NOISE + 1e-6
    assert np.all(np.abs(x) <= bound)
    assert np.all(cos >= np.cos(bound))
    assert np.all(np.abs(sin) <= np.sin(bound))
    assert np.all(np.abs(x_dot) <= bound)
    assert np.all(np.abs(theta_dot) <= bound)


def _with_joints(state: EnvState, qpos: np.ndarray, qvel: np.ndarray) -> EnvState:
    """``state`` with its joint positions / velocities ``[N, 2]`` overwritten."""
    data = state.data.replace(qpos=jnp.asarray(qpos, jnp.float32), qvel=jnp.asarray(qvel, jnp.float32))
    return state.replace(data=data)


# -- fixtures: one compile per env batch ----------------------------------------------------------
@pytest.fixture(scope="module")
def balance() -> Batch:
    return _make_batch(CartpoleBalance())


@pytest.fixture(scope="module")
def endless() -> Batch:
    """Balance task whose limits are never reached, so only the time limit ends episodes."""
    return _make_batch(CartpoleBalance(CartpoleConfig(cart_limit=1e6, pole_angle_limit=1e6)))


@pytest.fixture(scope="module")
def balance_rollout(balance: Batch) -> Rollout:
    return _record(balance, seed=1)


@pytest.fixture(scope="module")
def endless_rollout(endless: Batch) -> Rollout:
    return _record(endless, seed=2)


# -- metadata -------------------------------------------------------------------------------------
def test_metadata() -> None:
    env = CartpoleBalance()
    assert env.observation_shapes == {"policy": (5,), "critic": (5,)}
    assert env.action_size == 1
    assert env.dt == pytest.approx(0.02)
    assert env.max_episode_length == 500
    assert set(env.reward_names) == {"upright", "centered", "small_control", "small_velocity"}
    assert "time_out" in env.termination_names
    assert {k: s.type for k, s in env.termination_specs.items()} == {
        "cart_out_of_bounds": "neutral",
        "pole_fell": "neutral",
        "time_out": "time_out",
    }
    assert env.mj_model.opt.integrator == 0  # Euler
    assert env.mj_model.opt.timestep == pytest.approx(0.01)
    assert np.all(env.mj_model.geom_contype == 0) and np.all(env.mj_model.geom_conaffinity == 0)


def test_reset_state(balance: Batch) -> None:
    state = balance.reset(_keys(0))
    for group, shape in balance.env.observation_shapes.items():
        assert state.obs[group].shape == (NUM_ENVS, *shape)
        assert state.obs[group].dtype == jnp.float32
    assert state.reward.dtype == jnp.float32
    _assert_reset_like(np.asarray(state.obs["policy"]))
    assert not np.any(state.terminated) and not np.any(state.time_out)
    assert np.all(state.step_count == 0)
    assert state.info["last_action"].shape == (NUM_ENVS, 1)


# -- determinism ----------------------------------------------------------------------------------
def _trajectory(batch: Batch, seed: int, steps: int = 30) -> list:
    """States and step infos of a short random-action run, as numpy pytrees."""
    state = batch.reset(_keys(seed))
    out = [jax.device_get(state)]
    for action in _random_actions(0, steps):
        state, info = batch.step(state, jnp.asarray(action))
        out.append(jax.device_get((state, info)))
    return out


def test_same_keys_give_identical_trajectories(balance: Batch) -> None:
    first, second = _trajectory(balance, seed=3), _trajectory(balance, seed=3)
    for a, b in zip(jax.tree.leaves(first), jax.tree.leaves(second), strict=True):
        np.testing.assert_array_equal(a, b)


def test_different_keys_give_different_trajectories(balance: Batch) -> None:
    first, second = _trajectory(balance, seed=3), _trajectory(balance, seed=4)
    assert not np.array_equal(first[0].obs["policy"], second[0].obs["policy"])
    assert not np.array_equal(first[-1][0].obs["policy"], second[-1][0].obs["policy"])
    # Envs within one batch differ too.
    obs0 = first[0].obs["policy"]
    assert len({tuple(row) for row in obs0.tolist()}) == NUM_ENVS


# -- long random rollouts -------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["balance_rollout", "endless_rollout"])
def test_random_rollout_is_finite_and_flags_are_exclusive(name: str, request: pytest.FixtureRequest) -> None:
    rollout: Rollout = request.getfixturevalue(name)
    assert np.all(np.isfinite(rollout.obs)) and np.all(np.isfinite(rollout.reward))
    assert not np.any(rollout.terminated & rollout.time_out)
    np.testing.assert_array_equal(rollout.done, rollout.terminated | rollout.time_out)


def test_time_out_fires_exactly_at_max_episode_length(endless: Batch, endless_rollout: Rollout) -> None:
    limit = endless.env.max_episode_length
    expected = np.zeros(ROLLOUT_STEPS, bool)
    expected[limit - 1 :: limit] = True  # info of step t reports episode length t + 1
    np.testing.assert_array_equal(endless_rollout.time_out, np.repeat(expected[:, None], NUM_ENVS, axis=1))
    assert not np.any(endless_rollout.terminated)
    assert np.all(endless_rollout.episode_length[expected] == limit)
    # The random pole really left the balance region, so only the huge limits kept it going.
    assert np.max(1.0 - endless_rollout.obs[..., 1]) > 1.0


@pytest.mark.parametrize("name", ["balance_rollout", "endless_rollout"])
def test_auto_reset_restores_start_state(name: str, request: pytest.FixtureRequest) -> None:
    rollout: Rollout = request.getfixturevalue(name)
    done = rollout.done
    assert np.any(done)
    np.testing.assert_array_equal(rollout.step_count[done], 0)
    np.testing.assert_array_equal(rollout.state_episode_return[done], 0.0)
    _assert_reset_like(rollout.obs[done])
    # Running envs count up by one.
    running = ~done[1:]
    np.testing.assert_array_equal(rollout.step_count[1:][running], rollout.step_count[:-1][running] + 1)


def test_random_policy_fails_often(balance_rollout: Rollout) -> None:
    assert balance_rollout.terminated.sum() >= NUM_ENVS * 5
    assert not np.any(balance_rollout.time_out)


@pytest.mark.parametrize("name", ["balance_rollout", "endless_rollout"])
def test_episode_sums_match_reward_terms(name: str, request: pytest.FixtureRequest) -> None:
    rollout: Rollout = request.getfixturevalue(name)
    running = {k: np.zeros(NUM_ENVS) for k in rollout.reward_terms}
    total, length = np.zeros(NUM_ENVS), np.zeros(NUM_ENVS, int)
    checked = 0
    for t in range(ROLLOUT_STEPS):
        # Accumulate this step's terms in float64.
        for k in running:
            running[k] += rollout.reward_terms[k][t]
        total += rollout.reward[t]
        length += 1
        np.testing.assert_allclose(total, sum(running.values()), rtol=1e-5)
        # Compare and restart the envs whose episode ended here.
        done = rollout.done[t]
        for k in running:
            np.testing.assert_allclose(rollout.episode_sums[k][t][done], running[k][done], rtol=1e-4, atol=1e-4)
            running[k][done] = 0.0
        np.testing.assert_allclose(rollout.episode_return[t][done], total[done], rtol=1e-4, atol=1e-4)
        np.testing.assert_array_equal(rollout.episode_length[t][done], length[done])
        total[done], length[done] = 0.0, 0
        checked += done.sum()
    assert checked > 0


# -- terminations in constructed states -----------------------------------------------------------
def test_terminations_fire_in_constructed_states(balance: Batch) -> None:
    state = balance.reset(_keys(5))
    qpos, qvel = np.zeros((NUM_ENVS, 2)), np.zeros((NUM_ENVS, 2))
    qpos[0, 0], qpos[1, 0] = 3.0, -2.6  # cart beyond the 2.4 m limit
    qpos[2, 1], qpos[3, 1] = 1.0, -0.9  # pole beyond the 0.8 rad limit
    qpos[4, 0], qpos[5, 1] = 2.0, 0.5  # inside both limits
    state, info = balance.step(_with_joints(state, qpos, qvel), jnp.zeros((NUM_ENVS, 1)))
    out_of_bounds = np.array([1, 1, 0, 0, 0, 0, 0, 0], bool)
    fell = np.array([0, 0, 1, 1, 0, 0, 0, 0], bool)
    np.testing.assert_array_equal(info.termination_terms["cart_out_of_bounds"], out_of_bounds)
    np.testing.assert_array_equal(info.termination_terms["pole_fell"], fell)
    np.testing.assert_array_equal(info.terminated, out_of_bounds | fell)
    assert not np.any(info.time_out) and not np.any(info.termination_terms["time_out"])
    np.testing.assert_array_equal(state.step_count, np.where(out_of_bounds | fell, 0, 1))


def test_upright_start_does_not_terminate(balance: Batch) -> None:
    state = balance.reset(_keys(6))
    for _ in range(5):
        state, info = balance.step(state, jnp.zeros((NUM_ENVS, 1)))
        assert not np.any(info.done)


# -- reward values --------------------------------------------------------------------------------
def test_reward_is_maximal_upright_and_lower_when_tilted(balance: Batch) -> None:
    state = balance.reset(_keys(7))
    qpos, qvel = np.zeros((NUM_ENVS, 2)), np.zeros((NUM_ENVS, 2))
    action = np.zeros((NUM_ENVS, 1), np.float32)
    qpos[1, 1] = 0.5  # tilted
    qpos[2, 0] = 1.0  # off-centre
    action[3] = 0.5  # some effort
    action[4] = 3.0  # clipped to full effort
    qvel[5, 1] = 5.0  # spinning pole
    qpos[6, 1] = -0.75  # tilted the other way, close to the limit
    state, _ = balance.step(_with_joints(state, qpos, qvel), jnp.asarray(action))
    obs = np.asarray(state.obs["policy"], np.float64)
    terms = {k: np.asarray(v, np.float64) for k, v in state.reward_terms.items()}
    reward = np.asarray(state.reward, np.float64)
    # The reward is the sum of its terms, each the weighted formula on the new state.
    np.testing.assert_allclose(reward, sum(terms.values()), rtol=1e-6)
    clipped = np.clip(action[:, 0], -1.0, 1.0)
    np.testing.assert_allclose(terms["upright"], 0.6 * (obs[:, 1] + 1.0) / 2.0, rtol=1e-5)
    np.testing.assert_allclose(terms["centered"], 0.2 * np.exp(-obs[:, 0] ** 2), rtol=1e-5)
    np.testing.assert_allclose(terms["small_control"], 0.1 * (1.0 - clipped**2), atol=1e-7)
    np.testing.assert_allclose(terms["small_velocity"], 0.1 * np.exp(-((obs[:, 4] / 5.0) ** 2)), rtol=1e-5)
    np.testing.assert_allclose(state.info["last_action"][:, 0], clipped)
    # Hand-derived values: still, centred and upright earns exactly 1.
    assert reward[0] == pytest.approx(1.0, abs=1e-6)
    assert reward[7] == pytest.approx(1.0, abs=1e-6)
    assert reward[1] == pytest.approx(0.6 * (np.cos(0.5) + 1) / 2 + 0.4, abs=5e-3)  # 0.9633
    assert reward[2] == pytest.approx(0.8 + 0.2 * np.exp(-1.0), abs=1e-3)  # 0.8736
    assert reward[3] == pytest.approx(1.0 - 0.1 * 0.25, abs=1e-3)  # 0.975
    assert reward[4] == pytest.approx(0.9, abs=1e-3)
    assert reward[5] == pytest.approx(0.9 + 0.1 * np.exp(-1.0), abs=2e-3)  # 0.9368
    assert reward[6] == pytest.approx(0.6 * (np.cos(0.75) + 1) / 2 + 0.4, abs=5e-3)  # 0.9195
    assert np.all(reward[1:7] < reward[0])
    assert not np.any(state.terminated)


# -- swing-up ----------------------------------------------------------------------------------------
def test_swing_up_runs_without_angle_termination() -> None:
    batch = _make_batch(CartpoleBalance(swing_up=True))
    state = batch.reset(_keys(8))
    assert np.all(np.asarray(state.obs["policy"])[:, 1] < np.cos(np.pi - NOISE - 1e-6))  # hanging down
    # Hanging down earns almost nothing for being upright, yet does not end the episode.
    state, info = batch.step(state, jnp.zeros((NUM_ENVS, 1)))
    assert np.all(np.asarray(state.reward_terms["upright"]) < 0.01)
    assert not np.any(info.done)
    for action in _random_actions(9, 100):
        state, info = batch.step(state, jnp.asarray(action))
        assert not np.any(info.termination_terms["pole_fell"])
        assert np.all(np.isfinite(np.asarray(state.obs["policy"])))
