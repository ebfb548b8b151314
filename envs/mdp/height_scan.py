"""Isaac Lab's ``height_scan`` observation as a 2-D grid ``[1, ny, nx]`` measured on the terrain with ``height_at``.

The sensor is Isaac Lab's rough-locomotion ``height_scanner`` (the one AGILE's symmetry registry mirrors as the
``height_scan`` term): a ``RayCasterCfg`` on the base with ``ray_alignment="yaw"`` and
``GridPatternCfg(resolution=0.1, size=(1.6, 1.0))``, i.e. ``nx = 1 + round(1.6 / 0.1) = 17`` rays along the
heading (x) by ``ny = 1 + round(1.0 / 0.1) = 11`` across it (y). Its rays fall vertically, so a ray at grid
offset ``(x_i, y_j)`` hits the terrain at ``height_at(p_xy + R(yaw) (x_i, y_j))``, and the observation
(``mdp.height_scan``, ``offset=0.5``, ``Unoise(-0.1, 0.1)``, ``clip=(-1, 1)``) is::

    scan[0, j, i] = clip(p_z - height_at(p_xy + R(yaw) (x_i, y_j)) - offset + noise, -1, 1)

with ``p`` the base (root) position. Isaac Lab orders the rays by ``meshgrid(x, y, indexing="xy")``: the
flat ray index is ``j * nx + i``, so the grid's rows are ``y`` (ascending, from the right of the robot to its
left) and its columns ``x`` (ascending, back to front), and the C-major flattening of ``[1, ny, nx]`` is Isaac
Lab's ray order. The left-right mirror reverses the rows (AGILE's ``mirror_height_scan_left_right``: a
``(ny, nx)`` view flipped along ``y``). On the flat floor the terrain height is 0.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from agile_jax.types import Array, PRNGKey
from envs import terrain as terrain_lib


@dataclasses.dataclass(frozen=True)
class HeightScannerConfig:
    """Isaac Lab's ``height_scanner`` + ``height_scan`` term (the rough velocity tasks' values by default).

    Attributes:
        resolution: grid spacing (m); size: ``(length along x, width along y)`` of the grid (m).
        offset: subtracted from ``base height - terrain height`` (``mdp.height_scan``'s ``offset``).
        noise: uniform noise ``U(-noise, noise)`` added when the task corrupts its observations.
        clip: ``(lo, hi)`` applied after the noise (``None``: no clip).
    """

    resolution: float = 0.1
    size: tuple[float, float] = (1.6, 1.0)
    offset: float = 0.5
    noise: float = 0.1
    clip: tuple[float, float] | None = (-1.0, 1.0)

    def __post_init__(self):
        if self.resolution <= 0 or min(self.size) < 0:
            raise ValueError(f"height scanner needs a positive resolution and sizes >= 0, got {self.resolution}, "
                             f"{self.size}")


def grid_shape(cfg: HeightScannerConfig) -> tuple[int, int]:
    """``(ny, nx)``: rays across (y) and along (x) the heading (AGILE's ``get_height_scan_shape``, swapped)."""
    nx = 1 + int(np.round(cfg.size[0] / cfg.resolution))
    ny = 1 + int(np.round(cfg.size[1] / cfg.resolution))
    return ny, nx


def observation_shape(cfg: HeightScannerConfig) -> tuple[int, int, int]:
    """``(1, ny, nx)``: one channel, the observation group's shape."""
    return (1, *grid_shape(cfg))


def grid_pattern(cfg: HeightScannerConfig) -> np.ndarray:
    """Ray offsets ``[ny, nx, 2]`` in the yaw frame: ``[j, i] = (x_i, y_j)``, ``x_i = -size_x / 2 + i res``."""
    ny, nx = grid_shape(cfg)
    x = -cfg.size[0] / 2 + cfg.resolution * np.arange(nx)
    y = -cfg.size[1] / 2 + cfg.resolution * np.arange(ny)
    gx, gy = np.meshgrid(x, y, indexing="xy")
    return np.stack([gx, gy], -1).astype(np.float32)


def yaw_of(quat: Array) -> Array:
    """Heading angle of a MuJoCo quaternion ``(w, x, y, z)`` ``[..., 4]`` (Isaac Lab's ``yaw_quat``)."""
    w, x, y, z = quat[..., 0], quat[..., 1], quat[..., 2], quat[..., 3]
    return jnp.arctan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))


def ray_points(pattern: np.ndarray, pos: Array, quat: Array) -> Array:
    """World xy ``[ny, nx, 2]`` where the rays of ``pattern`` fall, for a base at ``pos`` ``[3]`` / ``quat`` ``[4]``."""
    yaw = yaw_of(quat)
    c, s = jnp.cos(yaw), jnp.sin(yaw)
    px, py = pattern[..., 0], pattern[..., 1]
    return jnp.stack([pos[0] + c * px - s * py, pos[1] + s * px + c * py], -1)


def height_scan(cfg: HeightScannerConfig, terrain: terrain_lib.Terrain | None, pos: Array, quat: Array,
                key: PRNGKey | None = None) -> Array:
    """The observation ``[1, ny, nx]`` of a base at ``pos`` / ``quat`` (``terrain None``: the flat floor z = 0).

    Args:
        cfg: the scanner.
        terrain: the heightfield (``height_at`` gives the ray hits) or ``None``.
        pos, quat: root position ``[3]`` and MuJoCo quaternion ``[4]``.
        key: noise key (``None``: no noise).
    """
    points = ray_points(grid_pattern(cfg), pos, quat)
    ground = terrain_lib.height_at(terrain, points) if terrain is not None else jnp.zeros(points.shape[:-1])
    scan = pos[2] - ground - cfg.offset
    # Isaac Lab's order: noise, then clip.
    if key is not None and cfg.noise:
        scan = scan + jax.random.uniform(key, scan.shape, jnp.float32, -cfg.noise, cfg.noise)
    if cfg.clip is not None:
        scan = jnp.clip(scan, *cfg.clip)
    return scan[None].astype(jnp.float32)


def mirror(scan: Array) -> Array:
    """Left-right mirror of scans ``[..., 1, ny, nx]``: the rows (``y``) reversed."""
    return jnp.flip(scan, axis=-2)


def io_term(cfg: HeightScannerConfig, noisy: bool) -> dict:
    """The ``height_scan`` term of ``policy.yaml`` (AGILE's IO-descriptor schema plus the sensor's geometry)."""
    noise = {"type": "uniform", "n_min": -cfg.noise, "n_max": cfg.noise} if noisy and cfg.noise else None
    return {"name": "height_scan", "shape": list(observation_shape(cfg)), "dtype": "torch.float32",
            "mdp_type": "Observation", "observation_type": "HeightScan",
            "overloads": {"clip": list(cfg.clip) if cfg.clip else None, "scale": None, "history_length": 0,
                          "flatten_history_dim": True},
            "sensor": {"type": "RayCaster", "ray_alignment": "yaw", "pattern": "GridPatternCfg",
                       "resolution": cfg.resolution, "size": list(cfg.size), "offset": cfg.offset,
                       "layout": "[1, ny, nx]: rows y ascending, columns x ascending (Isaac Lab's ray order)"},
            "extras": {"noise": noise}}
