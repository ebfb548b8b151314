"""Per-iteration episode extras (``Episode_Reward``, ``Episode_Termination``, ``Curriculum``) by hand, over two
shards combined with the collectives the trainer uses."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from agile_jax.training import iteration
from envs.core import StepInfo


def _infos(done, sums, fell, levels):
    """A ``[shards, T, N]`` StepInfo with only the fields the extras read."""
    zeros = jnp.zeros_like(jnp.asarray(done, jnp.float32))
    return StepInfo(reward=zeros, terminated=zeros, time_out=zeros, done=jnp.asarray(done, bool),
                    episode_return=zeros, episode_length=zeros, episode_sums={"alive": jnp.asarray(sums)},
                    termination_terms={"fall": jnp.asarray(fell, bool)}, bad_termination_sigma=zeros,
                    good_termination_sigma=zeros, curriculum={"terrain_levels": jnp.asarray(levels, jnp.float32)})


def test_extras_combine_shards_by_hand():
    # Two shards, T = 2 steps, N = 2 envs each. Episodes end at shard 0 (t0, env1) and shard 1 (t1, env0),
    # (t1, env1); two of them by a fall.
    done = [[[0, 1], [0, 0]], [[0, 0], [1, 1]]]
    sums = [[[5.0, 2.0], [9.0, 9.0]], [[9.0, 9.0], [4.0, 6.0]]]
    fell = [[[0, 1], [0, 0]], [[0, 0], [1, 0]]]
    levels = [[[9.0, 9.0], [0.0, 3.0]], [[9.0, 9.0], [1.0, 4.0]]]  # only the last step counts
    out = jax.vmap(lambda i: iteration._episode_extras(i, "d"), axis_name="d")(_infos(done, sums, fell, levels))
    assert float(out["episode_count"][0]) == 3.0
    assert float(out["Episode_Reward/alive"][0]) == pytest.approx((2.0 + 4.0 + 6.0) / 3)
    assert float(out["Episode_Termination/fall"][0]) == pytest.approx(2 / 3)
    assert float(out["Curriculum/terrain_levels"][0]) == pytest.approx((0.0 + 3.0 + 1.0 + 4.0) / 4)
    assert float(out["Curriculum/terrain_levels"][1]) == float(out["Curriculum/terrain_levels"][0])  # replicated
