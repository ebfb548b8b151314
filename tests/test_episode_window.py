"""The device-side window of the last 100 finished episodes against RSL-RL's host deques."""

from __future__ import annotations

import collections

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agile_jax.runtime import episodes


def test_push_by_hand():
    window = episodes.init_window(size=3)
    done = np.array([[0, 1], [1, 1]], bool)  # [T=2, N=2]: episodes end at (0,1), (1,0), (1,1)
    ret = np.array([[9.0, 1.0], [2.0, 3.0]], np.float32)
    length = np.array([[9, 10], [20, 30]], np.float32)
    window = episodes.push(window, jnp.asarray(done), jnp.asarray(ret), jnp.asarray(length))
    np.testing.assert_array_equal(window.returns, [1.0, 2.0, 3.0])  # time order, then env order
    assert int(window.count) == 3
    done2 = np.array([[1, 0]], bool)
    window = episodes.push(window, jnp.asarray(done2), jnp.asarray([[7.0, 8.0]]), jnp.asarray([[70.0, 80.0]]))
    np.testing.assert_array_equal(window.returns, [2.0, 3.0, 7.0])  # the oldest falls out
    np.testing.assert_array_equal(window.lengths, [20.0, 30.0, 70.0])
    assert [float(x) for x in episodes.means(window)] == [4.0, 40.0]


def test_empty_window_means_are_nan():
    assert all(np.isnan(float(x)) for x in episodes.means(episodes.init_window()))


@pytest.mark.parametrize("done_rate", [0.002, 0.05, 0.6])
def test_matches_rsl_rl_deques_over_many_rollouts(done_rate):
    rng = np.random.default_rng(0)
    rew_buffer, len_buffer = collections.deque(maxlen=100), collections.deque(maxlen=100)
    window = episodes.init_window()
    push = jax.jit(episodes.push)
    for _ in range(12):
        done = rng.random((8, 32)) < done_rate
        ret = rng.normal(size=(8, 32)).astype(np.float32)
        length = rng.integers(1, 1000, size=(8, 32)).astype(np.float32)
        window = push(window, done, ret, length)
        # RSL-RL's runner: for each step, the finished envs in env order.
        for t in range(8):
            rew_buffer.extend(ret[t][done[t]].tolist())
            len_buffer.extend(length[t][done[t]].tolist())
        assert int(window.count) == len(rew_buffer)
        mean_return, mean_length = (float(x) for x in episodes.means(window))
        if rew_buffer:
            assert mean_return == pytest.approx(np.mean(rew_buffer), rel=1e-5, abs=1e-6)
            assert mean_length == pytest.approx(np.mean(len_buffer), rel=1e-6)
            np.testing.assert_array_equal(window.lengths[100 - len(len_buffer):], np.asarray(len_buffer, np.float32))
