"""Rough terrain: heightfield generator, heights against MuJoCo, level curriculum, and the rough T1 task."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
import pytest
from mujoco import mjx

from envs import terrain as T
from envs.core import VecEnv
from envs.mdp import curriculum
from envs.tasks.velocity import T1VelocityConfig, VelocityEnv

NUM_ENVS = 4
# A smaller grid than the default keeps the test model light; 6 columns give one random-grid column.
SMALL = T.TerrainConfig(num_rows=10, num_cols=6, tile_size=8.0, border_width=1.0, seed=3)


def _hfield_model(grid: T.HeightGrid) -> tuple[mujoco.MjModel, mujoco.MjData]:
    spec = mujoco.MjSpec()
    spec.worldbody.add_geom(name="floor", type=mujoco.mjtGeom.mjGEOM_PLANE, size=[1, 1, 1])
    T.add_to_spec(spec, grid)
    model = spec.compile()
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    return model, data


def _ray_height(model, data, xy) -> float:
    """MuJoCo C's surface height under ``xy`` (a ray cast straight down from z = 5)."""
    geomid = np.zeros(1, np.int32)
    dist = mujoco.mj_ray(model, data, np.array([xy[0], xy[1], 5.0]), np.array([0.0, 0.0, -1.0]), None, 1, -1,
                         geomid)
    assert dist >= 0, f"ray missed the terrain at {xy}"
    return 5.0 - dist


# -- generator -------------------------------------------------------------------------------------------
def test_generator_is_deterministic_and_seeded():
    a = T.generate.__wrapped__(SMALL)
    b = T.generate.__wrapped__(SMALL)
    np.testing.assert_array_equal(a.heights, b.heights)
    np.testing.assert_array_equal(a.origins, b.origins)
    c = T.generate.__wrapped__(dataclasses.replace(SMALL, seed=4))
    assert not np.array_equal(a.heights, c.heights)
    # 10 x 6 tiles of 80 cells plus a 10-cell border on each side, shared tile edges: 821 x 501 vertices.
    assert a.heights.shape == (821, 501)
    assert (a.x0, a.y0, a.step) == pytest.approx((-41.0, -25.0, 0.1))
    # Tile (i, j) is centred at ((i + 0.5) * 8 - 40, (j + 0.5) * 8 - 24).
    np.testing.assert_allclose(a.origins[2, 1, :2], [-20.0, -12.0], atol=1e-9)


def test_columns_follow_the_proportions():
    # Weights 1.0 / 0.2 -> cumulative 5/6, 1: column j is random-grid once j / n + 0.001 >= 5/6.
    assert T.column_kinds(T.TerrainConfig(num_cols=8)).tolist() == [0, 0, 0, 0, 0, 0, 0, 1]
    assert T.column_kinds(T.TerrainConfig(num_cols=6)).tolist() == [0, 0, 0, 0, 0, 1]
    assert T.column_kinds(T.TerrainConfig(num_cols=5)).tolist() == [0, 0, 0, 0, 0]


def _tile(grid: T.HeightGrid, cfg: T.TerrainConfig, i: int, j: int) -> np.ndarray:
    """The ``[n, n]`` vertices a tile owns (its far edges belong to the next tiles)."""
    n, b = int(round(cfg.tile_size / cfg.horizontal_scale)), int(round(cfg.border_width / cfg.horizontal_scale))
    return grid.heights[b + i * n: b + (i + 1) * n, b + j * n: b + (j + 1) * n]


def test_amplitude_ranges_per_level():
    cfg = T.TerrainConfig(num_rows=10, num_cols=6, seed=1)
    grid = T.generate(cfg)
    d = grid.difficulty
    assert np.all((d >= np.arange(10)[:, None] / 10) & (d < np.arange(1, 11)[:, None] / 10))
    for i in range(10):
        # Random uniform: heights {1, 2, ..., 1 + floor(9 d)} cm inside a 0.25 m flat border.
        tile = _tile(grid, cfg, i, 0)
        inner = tile[3:-3, 3:-3]
        top = 0.01 + 0.01 * np.floor(9 * d[i, 0] + 1e-9)
        assert inner.min() == pytest.approx(0.01) and inner.max() == pytest.approx(top)
        np.testing.assert_allclose(inner * 100, np.round(inner * 100), atol=1e-9)  # whole centimetres
        assert np.all(tile[:2] == 0) and np.all(tile[:, -2:] == 0)
        # Random grid: |h| <= 2 cm x difficulty rounded to 5 mm steps, a flat 2 m platform in the middle.
        grid_tile = _tile(grid, cfg, i, 5)
        amp = 0.02 * d[i, 5]
        assert np.abs(grid_tile).max() <= np.round(amp / 0.005) * 0.005 + 1e-9
        assert np.all(grid_tile[30:51, 30:51] == 0)
    # Level 0 of the rough columns is a flat 1 cm plateau; the top level reaches 9 cm.
    assert np.all(_tile(grid, cfg, 0, 0)[3:-3, 3:-3] == pytest.approx(0.01))
    assert _tile(grid, cfg, 9, 0).max() == pytest.approx(0.09)
    assert np.abs(_tile(grid, cfg, 9, 5)).max() == pytest.approx(0.02)


def test_bad_config_gives_clear_errors():
    with pytest.raises(ValueError, match="unknown sub-terrain kind 'stairs'"):
        T.generate(T.TerrainConfig(sub_terrains=(T.SubTerrainConfig("stairs"),)))
    with pytest.raises(ValueError, match="max_init_level"):
        T.generate(T.TerrainConfig(num_rows=2, max_init_level=2))
    with pytest.raises(ValueError, match="multiple of horizontal_scale"):
        T.generate(T.TerrainConfig(tile_size=8.05))
    with pytest.raises(ValueError, match="max_contact_points"):
        T.validate(T.TerrainConfig(max_contact_points=0))
    # The contact cap becomes MuJoCo's max_contact_points numeric, which MJX's collision driver reads.
    spec = mujoco.MjSpec()
    T.add_to_spec(spec, T.generate(SMALL), replace=None, max_contact_points=16)
    model = spec.compile()
    assert model.numeric("max_contact_points").data.tolist() == [16.0]


# -- heights ---------------------------------------------------------------------------------------------
def test_height_at_hand_derived_cell():
    # One cell, vertices h[i, j] at (i, j): h00 = 0, h01 = 0.1, h10 = 0.2, h11 = 0.4.
    heights = np.array([[0.0, 0.1], [0.2, 0.4]])
    grid = T.HeightGrid(heights, 0.0, 0.0, 1.0, np.zeros((1, 1, 3)), np.zeros((1, 1)), np.zeros(1, np.int32))
    ter = T.to_jax(grid)
    pts = jnp.asarray([[0.5, 0.25], [0.25, 0.5], [0.0, 0.0], [1.0, 1.0], [0.5, 0.5], [3.0, -2.0]])
    # u >= v: 0.2 u + 0.2 v; u < v: 0.1 v + 0.3 u; off the field: clamped to the edge vertex (1, 0).
    expected = [0.15, 0.125, 0.0, 0.4, 0.2, 0.2]
    np.testing.assert_allclose(T.height_at(ter, pts), expected, atol=1e-6)
    model, data = _hfield_model(grid)
    for p, e in zip(np.asarray(pts)[:5], expected):
        assert _ray_height(model, data, p) == pytest.approx(e, abs=1e-6)


def test_height_at_matches_mujoco_on_the_generated_field():
    grid = T.generate(SMALL)
    model, data = _hfield_model(grid)
    ter = T.to_jax(grid)
    rng = np.random.default_rng(0)
    pts = np.concatenate([
        rng.uniform([-40.5, -24.5], [40.5, 24.5], (300, 2)),  # anywhere
        rng.uniform(-4.0, 4.0, (100, 2)) + grid.origins[9, 2, :2],  # on the roughest level
        np.array([grid.x0, grid.y0]) + 0.1 * rng.integers(0, 500, (50, 2)) + np.array([0.0, 0.05]),  # cell edges
    ])
    ours = np.asarray(T.height_at(ter, jnp.asarray(pts, jnp.float32)))
    ref = np.asarray([_ray_height(model, data, p) for p in pts])
    np.testing.assert_allclose(ours, ref, atol=2e-5)
    assert np.ptp(ref) > 0.1  # the points do sample the bumps


def test_max_height_near_is_the_window_maximum():
    grid = T.generate(SMALL)
    ter = T.to_jax(grid)
    for xy in ([0.03, -12.07], [30.0, 4.0], [-39.9, 23.0]):
        i = int(np.floor((xy[0] - grid.x0) / 0.1))
        j = int(np.floor((xy[1] - grid.y0) / 0.1))
        expected = grid.heights[i - 3: i + 5, j - 3: j + 5].max()  # +-0.3 m rounded out to whole cells
        got = float(T.max_height_near(ter, jnp.asarray(xy, jnp.float32), 0.3))
        assert got == pytest.approx(expected, abs=1e-6)


# -- curriculum ------------------------------------------------------------------------------------------
# AGILE's T1 values: up after 4 episodes farther than 4 m, down after 10 episodes shorter than 2 m.
@pytest.mark.parametrize("before, distance, after", [
    ((3, 3, 0), 4.01, (4, 0, 0)),  # the 4th success moves up and clears the counts
    ((3, 2, 5), 4.01, (3, 3, 5)),  # a success below the count: counted only
    ((3, 3, 0), 4.0, (3, 3, 0)),  # exactly 4 m is no success (and no failure)
    ((3, 0, 9), 1.99, (2, 0, 0)),  # the 10th failure moves down
    ((3, 1, 8), 1.99, (3, 1, 9)),
    ((3, 0, 9), 2.0, (3, 0, 9)),  # exactly 2 m is no failure
    ((3, 3, 9), 4.5, (4, 0, 0)),  # a move clears the failures too
    ((0, 2, 9), 0.0, (0, 0, 0)),  # clamped at the bottom, counts cleared
])
def test_terrain_level_rule(before, distance, after):
    counters = curriculum.LevelCounters(*(jnp.int32(v) for v in before))
    new = curriculum.terrain_level_update(jax.random.PRNGKey(0), counters, jnp.float32(distance), 10)
    assert tuple(int(v) for v in new) == after


def test_terrain_level_past_the_top_wraps_to_a_random_level():
    keys = jax.random.split(jax.random.PRNGKey(1), 400)
    top = curriculum.LevelCounters(jnp.int32(9), jnp.int32(3), jnp.int32(0))
    new = jax.vmap(lambda k: curriculum.terrain_level_update(k, top, jnp.float32(4.5), 10))(keys)
    assert set(np.asarray(new.level).tolist()) == set(range(10))
    assert np.all(np.asarray(new.successes) == 0)


def test_travelled_distance_sums_straight_segments():
    # Finished segments 1.5 m, current segment from (1, 1) to (4, 5): 5 m.
    got = curriculum.travelled_distance(jnp.float32(1.5), jnp.asarray([1.0, 1.0]), jnp.asarray([4.0, 5.0]))
    assert float(got) == pytest.approx(6.5)
    info = {"travelled": jnp.float32(1.5), "segment_start": jnp.asarray([1.0, 1.0])}
    closed = VelocityEnv._close_command_segment(info, jnp.asarray([4.0, 5.0]), jnp.asarray(True))
    assert float(closed["travelled"]) == pytest.approx(6.5) and closed["segment_start"].tolist() == [4.0, 5.0]
    kept = VelocityEnv._close_command_segment(info, jnp.asarray([4.0, 5.0]), jnp.asarray(False))
    assert float(kept["travelled"]) == pytest.approx(1.5) and kept["segment_start"].tolist() == [1.0, 1.0]


# -- the rough T1 task -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def rough():
    """The rough T1 env (DR on), its batch and the jitted batched reset / step shared by the tests below."""
    env = VelocityEnv(T1VelocityConfig(terrain=SMALL))
    venv = VecEnv(env, NUM_ENVS)
    return env, venv, jax.jit(venv.reset), jax.jit(venv.step)


@pytest.fixture(scope="module")
def probe(rough):
    """Jitted ground-relative feet contact, base-height reward and terminations of a single ``mjx.Data``."""
    env = rough[0]
    state = env.reset(jax.random.PRNGKey(0))
    r, zeros = env.robot, jnp.zeros(env.action_size)

    @jax.jit
    def fn(data):
        ground = env._ground(data)
        joints = jnp.zeros(r.num_joints)
        sig = env._signals(data, state.info, zeros, joints, joints, jnp.asarray(False), ground)
        return sig.feet_contact, env._reward_fns["base_height"](sig), env._terminations(data, ground), ground.base

    return fn


def _pose(env, xy, z, quat=(1.0, 0.0, 0.0, 0.0)):
    r = env.robot
    d = mujoco.MjData(r.model)
    d.qpos[0:3] = (xy[0], xy[1], z)
    d.qpos[3:7] = quat
    d.qpos[r.qpos_adr] = r.default_pos
    mujoco.mj_forward(r.model, d)
    return d


def test_rough_model_collides_feet_with_the_heightfield_only(rough):
    m = rough[0].robot.model
    colliding = [m.geom(i).name for i in range(m.ngeom) if m.geom_contype[i] or m.geom_conaffinity[i]]
    assert sorted(colliding) == sorted(["terrain"] + [f"{s}_foot_{i}" for s in ("left", "right") for i in range(1, 5)])
    assert m.nhfield == 1 and m.geom("terrain").type == mujoco.mjtGeom.mjGEOM_HFIELD
    assert all(m.geom_contype[i] == 0 for i in range(m.ngeom) if m.geom(i).name != "terrain"
               and not m.geom(i).name.startswith(("left_foot_", "right_foot_")))


def test_reset_spawns_above_the_local_terrain(rough):
    env, _, reset, _ = rough
    state = reset(jax.random.split(jax.random.PRNGKey(5), NUM_ENVS))
    grid, r = T.generate(SMALL), env.robot
    model, data = _hfield_model(grid)
    levels, cols = np.asarray(state.info["terrain_level"]), np.asarray(state.info["terrain_col"])
    assert np.all((levels >= 0) & (levels <= SMALL.max_init_level)) and np.all((cols >= 0) & (cols < 6))
    for n in range(NUM_ENVS):
        q = np.asarray(state.data.qpos[n])
        origin = grid.origins[levels[n], cols[n]]
        assert np.all(np.abs(q[0:2] - origin[0:2]) <= 2.5 + 1e-5)  # reset_xy around the tile origin
        ground = float(T.max_height_near(env.terrain, jnp.asarray(q[0:2]), 0.3))
        assert q[2] == pytest.approx(ground + r.stand_height + env.cfg.init_height_offset, abs=1e-5)
        # Every foot sphere starts above the terrain under it.
        d = mujoco.MjData(r.model)
        d.qpos[:] = q
        mujoco.mj_kinematics(r.model, d)
        for g in r.foot_geoms.reshape(-1):
            bottom = d.geom_xpos[g, 2] - r.foot_radius
            assert bottom > _ray_height(model, data, d.geom_xpos[g, :2])


def test_standing_feet_touch_the_terrain_and_base_height_is_relative(rough, probe):
    env = rough[0]
    r = env.robot
    # Level 0 of a random-uniform column is a flat plateau at 1 cm: the default pose rests on it at
    # root height 0.01 + stand_height, its feet in contact there and not 2 cm higher.
    xy = T.generate(SMALL).origins[0, 1, :2]
    feet, _, terms, base = probe(mjx.put_data(r.model, _pose(env, xy, 0.01 + r.stand_height)))
    assert np.asarray(feet).tolist() == [True, True] and float(base) == pytest.approx(0.01, abs=1e-6)
    assert not any(bool(v) for v in terms.values())
    feet, *_ = probe(mjx.put_data(r.model, _pose(env, xy, 0.03 + r.stand_height)))
    assert np.asarray(feet).tolist() == [False, False]
    # On the roughest level: contact where the lowest sphere of a foot meets the terrain under it.
    xy = T.generate(SMALL).origins[9, 0, :2] + np.array([0.37, -0.61])
    d = _pose(env, xy, r.stand_height)
    gap = [min(d.geom_xpos[g, 2] - r.foot_radius - float(T.height_at(env.terrain, jnp.asarray(d.geom_xpos[g, :2])))
               for g in side) for side in r.foot_geoms]
    lift = min(gap)
    feet, *_ = probe(mjx.put_data(r.model, _pose(env, xy, r.stand_height - lift)))
    assert np.asarray(feet).tolist() == [bool(g - lift <= env.cfg.contact_margin) for g in gap]
    assert bool(feet[int(np.argmin(gap))])
    # base_height: exp(-(z - mean ground - 0.65)^2 / 0.1^2), maximal at 0.65 m above the scanned terrain.
    _, _, _, mean = probe(mjx.put_data(r.model, _pose(env, xy, 1.0)))
    mean = float(mean)
    assert 0.01 <= mean <= 0.09
    for dz, expected in ((0.0, 1.0), (0.05, np.exp(-0.25)), (-0.1, np.exp(-1.0))):
        _, reward, terms, _ = probe(mjx.put_data(r.model, _pose(env, xy, mean + 0.65 + dz)))
        assert float(reward) == pytest.approx(expected, rel=1e-4)
    # illegal_base_height: below 0.35 m above the terrain mean.
    _, _, terms, _ = probe(mjx.put_data(r.model, _pose(env, xy, mean + 0.34)))
    assert bool(terms["illegal_base_height"])
    _, _, terms, _ = probe(mjx.put_data(r.model, _pose(env, xy, mean + 0.36)))
    assert not bool(terms["illegal_base_height"])


@pytest.mark.slow  # an MJX rough-terrain rollout (about 80 s); CI runs it
def test_random_rollout_is_finite_and_levels_follow_the_curriculum(rough):
    env, venv, reset, step = rough
    state = reset(jax.random.split(jax.random.PRNGKey(7), NUM_ENVS))
    done = 0
    for t in range(100):
        a = jax.random.normal(jax.random.PRNGKey(1000 + t), (NUM_ENVS, env.action_size))
        state, info = step(state, a)
        done += int(np.sum(info.done))
        assert np.all(np.isfinite(state.data.qpos)) and np.all(np.isfinite(state.data.qvel))
        assert all(np.all(np.isfinite(g)) for g in state.obs.values())
        assert all(np.all(np.isfinite(v)) for v in state.reward_terms.values())
    assert done > 0
    levels = np.asarray(state.info["terrain_level"])
    assert np.all((levels >= 0) & (levels < SMALL.num_rows))
    # Every env on the last step of its time limit, 5 m (envs 0, 2, 3) or 0 m (env 1) from its segment start.
    # Env 0 has 3 successes (the 4th moves it up), env 1 9 failures (the 10th moves it down), env 2 none (a
    # success is counted, no move), env 3 sits on the top level with 3 successes (wraps to a random level).
    assert np.all(np.asarray(state.info["curriculum_successes"]) >= 0)
    grid = T.generate(SMALL)
    level = jnp.asarray([2, 2, 2, SMALL.num_rows - 1], jnp.int32)
    col = jnp.asarray([0, 1, 5, 2], jnp.int32)
    origin = jnp.asarray(grid.origins, jnp.float32)[level, col]
    offset = jnp.asarray([[5.0, 0.0], [0.0, 0.0], [3.0, 4.0], [0.0, 5.0]])
    cmd = jnp.zeros((NUM_ENVS, 3))
    qpos = state.data.qpos.at[:, 0:2].set(origin[:, 0:2] + offset).at[:, 2].set(origin[:, 2] + 0.75)
    qpos = qpos.at[:, 3:7].set(jnp.asarray([1.0, 0.0, 0.0, 0.0])).at[:, 7:].set(env.robot.model.qpos0[7:])
    info = {**state.info, "terrain_level": level, "terrain_col": col, "command": cmd,
            "command_time": jnp.full((NUM_ENVS,), 100.0), "segment_start": origin[:, 0:2],
            "travelled": jnp.zeros(NUM_ENVS), "curriculum_successes": jnp.asarray([3, 0, 0, 3], jnp.int32),
            "curriculum_failures": jnp.asarray([0, 9, 0, 0], jnp.int32)}
    state = state.replace(data=state.data.replace(qpos=qpos, qvel=jnp.zeros_like(state.data.qvel)), info=info,
                          step_count=jnp.full((NUM_ENVS,), env.max_episode_length - 1, jnp.int32))
    state, info = step(state, jnp.zeros((NUM_ENVS, env.action_size)))
    assert np.all(np.asarray(info.time_out))
    new_level, new_col = np.asarray(state.info["terrain_level"]), np.asarray(state.info["terrain_col"])
    assert new_level[:3].tolist() == [3, 1, 2] and 0 <= new_level[3] < SMALL.num_rows
    assert new_col.tolist() == [0, 1, 5, 2]
    assert np.asarray(info.curriculum["terrain_levels"]).tolist() == new_level.tolist()  # after the resets
    assert np.asarray(state.info["curriculum_successes"]).tolist() == [0, 0, 1, 0]
    assert np.asarray(state.info["curriculum_failures"]).tolist() == [0, 0, 0, 0]
    # The fresh episodes measure from their new spawn.
    assert np.allclose(np.asarray(state.info["segment_start"]), np.asarray(state.data.qpos[:, 0:2]))
    assert np.all(np.asarray(state.info["travelled"]) == 0.0)
