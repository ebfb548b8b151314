"""The 2-D height scan (Isaac Lab's height scanner on ``height_at``): grid layout, hand-computed heights on known
terrains, yaw alignment, noise/clip, the mirror, the T1 wiring, and (slow) the CNN preset trained end to end."""

from __future__ import annotations

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from envs import terrain as terrain_lib
from envs.mdp import height_scan as hs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
YAW_90 = jnp.array([np.cos(np.pi / 4), 0.0, 0.0, np.sin(np.pi / 4)], jnp.float32)  # (w, x, y, z)
IDENTITY = jnp.array([1.0, 0.0, 0.0, 0.0], jnp.float32)


def _terrain(data: np.ndarray, x0: float, y0: float, step: float, z0: float, elevation: float) -> terrain_lib.Terrain:
    return terrain_lib.Terrain(jnp.asarray(data, jnp.float32), jnp.zeros((1, 1, 3)), x0, y0, step, z0, elevation)


# A 5 x 5 field of 0.5 m cells from (-1, -1): z = -0.1 everywhere except the vertex at the origin, z = 0.3.
BUMP = _terrain(np.pad([[1.0]], 2), -1.0, -1.0, 0.5, -0.1, 0.4)
# Terrain heights under a 3 x 3 grid at +-0.25 m around the origin (rows y = -0.25, 0, 0.25; columns x likewise),
# by hand on MuJoCo's triangles (the cell diagonal runs from (x0, y0) to (x1, y1)): e.g. (0.25, -0.25) lies in the
# cell of vertices (0, -0.5)..(0.5, 0) on its lower triangle (0, -0.5), (0.5, -0.5), (0.5, 0), all at -0.1, while
# (-0.25, -0.25) lies on the diagonal from (-0.5, -0.5) to the bump: (-0.1 + 0.3) / 2 = 0.1.
BUMP_Z = np.array([[0.1, 0.1, -0.1],
                   [0.1, 0.3, 0.1],
                   [-0.1, 0.1, 0.1]])
SMALL = hs.HeightScannerConfig(resolution=0.25, size=(0.5, 0.5), offset=0.5, noise=0.1, clip=(-1.0, 1.0))


def test_default_grid_is_isaac_labs_ray_order():
    """17 x 11 rays of 0.1 m; rows y ascending, columns x ascending: C-major order = Isaac Lab's ``grid_pattern``."""
    cfg = hs.HeightScannerConfig()
    assert hs.observation_shape(cfg) == (1, 11, 17)
    pattern = hs.grid_pattern(cfg)
    np.testing.assert_allclose(pattern[0, 0], [-0.8, -0.5], atol=1e-6)
    np.testing.assert_allclose(pattern[0, 1], [-0.7, -0.5], atol=1e-6)
    np.testing.assert_allclose(pattern[1, 0], [-0.8, -0.4], atol=1e-6)
    np.testing.assert_allclose(pattern[10, 16], [0.8, 0.5], atol=1e-6)
    torch = pytest.importorskip("torch")
    # Isaac Lab: x, y = arange(-size / 2, size / 2 + 1e-9, resolution); meshgrid(x, y, indexing="xy"), flattened.
    x = torch.arange(start=-0.8, end=0.8 + 1.0e-9, step=0.1)
    y = torch.arange(start=-0.5, end=0.5 + 1.0e-9, step=0.1)
    gx, gy = torch.meshgrid(x, y, indexing="xy")
    rays = torch.stack([gx.flatten(), gy.flatten()], -1).numpy()
    np.testing.assert_allclose(pattern.reshape(-1, 2), rays, atol=1e-6)


def test_heights_on_a_bump_by_hand():
    """Base at (0, 0, 1), yaw 0: scan = 1 - terrain z - 0.5 on the hand-computed triangle heights."""
    scan = hs.height_scan(SMALL, BUMP, jnp.array([0.0, 0.0, 1.0]), IDENTITY)
    assert scan.shape == (1, 3, 3)
    np.testing.assert_allclose(np.asarray(scan[0]), 1.0 - BUMP_Z - 0.5, atol=1e-6)
    # Yaw 90 deg: the ray at grid offset (x_i, y_j) falls at world (-y_j, x_i).
    turned = np.asarray(hs.height_scan(SMALL, BUMP, jnp.array([0.0, 0.0, 1.0]), YAW_90)[0])
    expected = np.array([[BUMP_Z[i, 2 - j] for i in range(3)] for j in range(3)])  # BUMP_Z[row of y=x_i, col of x=-y_j]
    np.testing.assert_allclose(turned, 1.0 - expected - 0.5, atol=1e-6)


def test_heights_on_a_slope_by_hand():
    """A plane z = 0.2 x - 0.1 y + 0.05 is exact on the triangles: base at (1, 2, 0.8), yaw 90 deg."""
    n, step = 41, 0.25
    xs = -5.0 + step * np.arange(n)
    plane = 0.2 * xs[:, None] - 0.1 * xs[None, :] + 0.05  # [i, j] at (x_i, y_j)
    lo, hi = plane.min(), plane.max()
    slope = _terrain((plane - lo) / (hi - lo), -5.0, -5.0, step, lo, hi - lo)
    cfg = hs.HeightScannerConfig(clip=None)
    scan = np.asarray(hs.height_scan(cfg, slope, jnp.array([1.0, 2.0, 0.8]), YAW_90)[0])
    pattern = hs.grid_pattern(cfg)
    wx, wy = 1.0 - pattern[..., 1], 2.0 + pattern[..., 0]
    np.testing.assert_allclose(scan, 0.8 - (0.2 * wx - 0.1 * wy + 0.05) - 0.5, atol=2e-5)
    # Across the heading, the scan changes with the slope along x; along it, with the slope along y.
    assert scan[0, 0] - scan[1, 0] == pytest.approx(-0.2 * 0.1, abs=1e-5)
    assert scan[0, 1] - scan[0, 0] == pytest.approx(0.1 * 0.1, abs=1e-5)


def test_flat_floor_noise_and_clip():
    flat = hs.height_scan(SMALL, None, jnp.array([3.0, -2.0, 0.7]), YAW_90)
    np.testing.assert_allclose(np.asarray(flat), 0.2, atol=1e-6)
    noisy = np.asarray(hs.height_scan(SMALL, None, jnp.array([3.0, -2.0, 0.7]), YAW_90, jax.random.key(0)))
    assert np.all(np.abs(noisy - 0.2) <= 0.1 + 1e-6) and np.std(noisy) > 0.01
    high = np.asarray(hs.height_scan(SMALL, None, jnp.array([0.0, 0.0, 5.0]), IDENTITY))
    np.testing.assert_array_equal(high, 1.0)  # 4.5 m clipped to Isaac Lab's +1


def test_mirror_is_the_scan_of_the_mirrored_world():
    """Reversing the rows equals scanning the y-mirrored terrain from the y-mirrored pose (rays on vertices)."""
    rng = np.random.default_rng(0)
    data = rng.uniform(size=(9, 9))
    cfg = hs.HeightScannerConfig(resolution=0.5, size=(1.0, 1.0), clip=None)
    world = _terrain(data, -2.0, -2.0, 0.5, 0.0, 0.3)
    mirrored_world = _terrain(data[:, ::-1], -2.0, -2.0, 0.5, 0.0, 0.3)
    scan = hs.height_scan(cfg, world, jnp.array([0.5, 0.5, 0.9]), IDENTITY)
    mirrored = hs.height_scan(cfg, mirrored_world, jnp.array([0.5, -0.5, 0.9]), IDENTITY)
    np.testing.assert_allclose(np.asarray(hs.mirror(scan)), np.asarray(mirrored), atol=1e-6)
    np.testing.assert_array_equal(np.asarray(hs.mirror(hs.mirror(scan))), np.asarray(scan))


def test_t1_rough_cnn_preset_wiring():
    """The preset's env has the [1, 11, 17] group (measured on its terrain), mirrors it, describes it, and its
    CNN actor-critic has RSL-RL CNNModel's parameter count for the same configuration."""
    from agile_jax.networks.cnn_actor_critic import ActorCriticCNN
    from agile_jax.networks.from_config import make_networks
    from experiments.configs import get_preset, make_env

    cfg = get_preset("t1_velocity_rough_cnn")
    cfg.env.num_envs = 2
    env = make_env(cfg)
    single = env.env
    assert env.observation_shapes["height_scan"] == (1, 11, 17) and single.terrain is not None
    # The env's scan is the module's on its terrain, at the root pose (noise off for the comparison).
    qpos = np.asarray(single.make_data().qpos).copy()
    qpos[0:7] = [1.3, -0.7, 0.75, np.cos(0.3), 0.0, 0.0, np.sin(0.3)]
    data = single.make_data().replace(qpos=jnp.asarray(qpos))
    clean = hs.height_scan(single.cfg.height_scanner, single.terrain, jnp.asarray(qpos[0:3]), jnp.asarray(qpos[3:7]))
    noisy = single._with_height_scan({}, jax.random.key(0), data)["height_scan"]
    assert single.cfg.obs_noise and 0 < np.max(np.abs(np.asarray(noisy - clean))) <= 0.1 + 1e-6
    obs = {"policy": jnp.zeros((5, 45)), "critic": jnp.zeros(70), "height_scan": clean}
    np.testing.assert_array_equal(np.asarray(single.mirror_obs(obs)["height_scan"]), np.asarray(clean[:, ::-1]))
    term = single.io_description()["observations"]["height_scan"][0]
    assert term["shape"] == [1, 11, 17] and term["sensor"]["size"] == [1.6, 1.0]
    networks = make_networks(cfg, env)
    assert isinstance(networks, ActorCriticCNN) and networks.latent_dim("actor") == 225 + 32 * 2 * 4
    rsl_models = pytest.importorskip("rsl_rl.models")
    torch = pytest.importorskip("torch")
    from tensordict import TensorDict

    shapes = env.observation_shapes
    obs = TensorDict({"policy": torch.zeros(1, 225), "critic": torch.zeros(1, 70),
                      "height_scan": torch.zeros(1, *shapes["height_scan"])}, batch_size=[1])
    groups = dict(networks.obs_groups)
    actor = rsl_models.CNNModel(obs, groups, "actor", 12, hidden_dims=cfg.policy.actor_hidden_dims,
                                distribution_cfg={"class_name": "GaussianDistribution"},
                                cnn_cfg=cfg.policy.actor_cnn_cfg)
    critic = rsl_models.CNNModel(obs, groups, "critic", 1, hidden_dims=cfg.policy.critic_hidden_dims,
                                 cnn_cfg=cfg.policy.actor_cnn_cfg)
    params = jax.eval_shape(networks.init, jax.random.key(0))
    assert sum(x.size for x in jax.tree.leaves(params.actor)) == sum(p.numel() for p in actor.parameters())
    assert sum(x.size for x in jax.tree.leaves(params.critic)) == sum(p.numel() for p in critic.parameters())


@pytest.mark.slow
@pytest.mark.long  # a T1 training command line: many minutes of MJX compilation on a CPU
def test_t1_rough_cnn_trains_end_to_end_and_exports(tmp_path):
    """``train.py config=t1_velocity_rough_cnn num_envs=16 runner.max_iterations=2`` (minutes: MJX on the CPU)."""
    import yaml

    cmd = [sys.executable, os.path.join(ROOT, "experiments", "train.py"), "config=t1_velocity_rough_cnn",
           "num_envs=16", "runner.max_iterations=2", f"runner.log_root={tmp_path}", "runner.progress_bar=false"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=3600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    (run,) = os.listdir(tmp_path / "t1_velocity_rough_cnn")
    exported = tmp_path / "t1_velocity_rough_cnn" / run / "exported"
    desc = yaml.safe_load((exported / "policy.yaml").read_text())
    assert desc["policy"]["type"] == "CNN"
    assert desc["policy"]["inputs"][0]["groups"][1] == {"name": "height_scan", "dim": 187, "start": 225, "end": 412,
                                                        "shape": [1, 11, 17]}
    report = yaml.safe_load((exported / "export_report.json").read_text())
    assert report["passed"] and max(max(v.values()) for v in report["max_abs_error"].values()) < 1e-5
    assert os.path.isdir(tmp_path / "t1_velocity_rough_cnn" / run / "checkpoints" / "2")
    # The terrain level is logged as Isaac Lab does; 2 iterations are too few for any env to move (4 successes
    # or 10 failures), so the mean stays within the initial levels [0, 1].
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "t1_velocity_rough_cnn" / run))
    acc.Reload()
    levels = [e.value for e in acc.Scalars("Curriculum/terrain_levels")]
    assert levels and all(0.0 <= v <= 1.0 for v in levels)
