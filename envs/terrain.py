"""Rough-terrain heightfields for the locomotion tasks: a numpy generator, exact JAX heights, the MjSpec edit.

The generator follows the layout of Isaac Lab's terrain generator as AGILE's ``LESS_ROUGH_TERRAIN_CFG`` uses
it: a grid of square tiles, **rows** are difficulty levels (the curriculum walks along them) and **columns**
are sub-terrain types assigned by proportion. Two sub-terrain kinds exist:

* ``"random_uniform"``: every vertex gets a height drawn from ``{lo, lo + step, ..., hi}`` (AGILE: 1-10 cm in
  1 cm steps), with a flat border of ``border_width`` around the tile;
* ``"random_grid"``: a grid of ``grid_width`` cells of random height ``U(-h, h)`` (AGILE: h up to 2 cm) around
  a flat central platform.

Difficulty ``d`` of row ``i`` is ``(i + U(0, 1)) / num_rows``. It raises the upper bound of the random-uniform
heights from ``lo`` to ``hi`` and the grid height from its lower to its upper bound. (Isaac Lab's random-uniform
terrain ignores the difficulty; scaling it here gives the level curriculum something to climb on that kind.)

AGILE uses 20 x 16 tiles of 8 m with a 20 m border at 0.1 m resolution. The defaults here keep the 8 m tiles
(the curriculum thresholds are in tile sizes) and the 0.1 m resolution but use 10 x 8 tiles and a 3 m border,
an 861 x 701 heightfield (2.4 MB of float32) that MJX on a CPU handles: its collision only reads the few cells
under each foot sphere, whatever the size of the field.

Heights follow MuJoCo's heightfield geometry exactly: each grid cell is split along its
``(x0, y0) -> (x1, y1)`` diagonal into two planar triangles (:func:`height_at`), which is what MuJoCo C and
MJX collide with.
"""

from __future__ import annotations

import dataclasses
import functools

import jax.numpy as jnp
import mujoco
import numpy as np
from flax import struct
from jax import lax

from agile_jax.types import Array
from envs.robots import assets

SUB_TERRAIN_KINDS = ("random_uniform", "random_grid")


@dataclasses.dataclass(frozen=True)
class SubTerrainConfig:
    """One sub-terrain type of the grid (a set of columns).

    Attributes:
        kind: ``"random_uniform"`` or ``"random_grid"``.
        proportion: relative share of the columns (normalised over all sub-terrains).
        height_range: ``random_uniform``: ``(lo, hi)`` vertex heights (m), difficulty lerps the upper bound
            from ``lo`` to ``hi``; ``random_grid``: range of the cell height amplitude ``h`` lerped by difficulty.
        height_step: ``random_uniform``: spacing of the height levels (m).
        border_width: ``random_uniform``: flat (z = 0) band along the tile edges (m).
        grid_width: ``random_grid``: cell width (m).
        platform_width: ``random_grid``: flat central square (m).
    """

    kind: str
    proportion: float = 1.0
    height_range: tuple[float, float] = (0.0, 0.0)
    height_step: float = 0.01
    border_width: float = 0.25
    grid_width: float = 0.45
    platform_width: float = 2.0


LESS_ROUGH = (
    SubTerrainConfig("random_uniform", 1.0, height_range=(0.01, 0.10), height_step=0.01, border_width=0.25),
    SubTerrainConfig("random_grid", 0.2, height_range=(0.0, 0.02), grid_width=0.45, platform_width=2.0),
)


@dataclasses.dataclass(frozen=True)
class TerrainConfig:
    """The tile grid and its curriculum (AGILE's ``LESS_ROUGH_TERRAIN_CFG`` scaled down, see the module docstring).

    Attributes:
        num_rows: difficulty levels (tiles along x).
        num_cols: tiles along y, split between the sub-terrain types by proportion.
        tile_size: side of a square tile (m).
        horizontal_scale: heightfield grid spacing (m).
        vertical_scale: heights are rounded to multiples of this (m).
        border_width: flat (z = 0) margin around the tile grid (m).
        base_thickness: depth of the heightfield's solid base below its lowest point (m).
        origin_window: a tile's spawn origin is its centre at the highest point within this half-width (m).
        max_init_level: episodes start on a level in ``[0, max_init_level]``.
        max_contact_points: MJX only: keep at most this many (deepest) contacts per step (MuJoCo's
            ``max_contact_points`` numeric). A foot sphere on the heightfield yields up to 4 contacts (32 for
            8 spheres, against 8 on a plane), which roughly doubles the constraint rows; ``None`` keeps all.
        sub_terrains: the sub-terrain types.
        seed: generator seed (the terrain is a deterministic function of this config).
    """

    num_rows: int = 10
    num_cols: int = 8
    tile_size: float = 8.0
    horizontal_scale: float = 0.1
    vertical_scale: float = 0.005
    border_width: float = 3.0
    base_thickness: float = 1.0
    origin_window: float = 1.0
    max_init_level: int = 1
    max_contact_points: int | None = None
    sub_terrains: tuple[SubTerrainConfig, ...] = LESS_ROUGH
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class HeightGrid:
    """A generated terrain on the host (numpy).

    Attributes:
        heights: vertex heights ``[nx, ny]`` (m), index ``[i, j]`` at ``(x0 + i * step, y0 + j * step)``.
        x0 / y0: world position of vertex ``[0, 0]``; step: grid spacing (m).
        origins: tile spawn origins ``[num_rows, num_cols, 3]`` (centre xy, highest z near the centre).
        difficulty: ``[num_rows, num_cols]`` difficulty of each tile in ``[0, 1]``.
        kinds: ``[num_cols]`` index into ``cfg.sub_terrains`` of each column.
    """

    heights: np.ndarray
    x0: float
    y0: float
    step: float
    origins: np.ndarray
    difficulty: np.ndarray
    kinds: np.ndarray


@struct.dataclass
class Terrain:
    """The heightfield as MuJoCo stores it, for pure JAX height queries (closed over by the task).

    World height of vertex ``[i, j]`` is ``z0 + elevation * data[i, j]`` with ``data`` in ``[0, 1]`` (float32,
    MuJoCo's ``hfield_data`` transposed to x-major).

    Attributes:
        data: normalised vertex heights ``[nx, ny]``.
        origins: tile spawn origins ``[num_rows, num_cols, 3]``.
        x0 / y0 / step / z0 / elevation: static geometry (see :class:`HeightGrid`).
    """

    data: Array
    origins: Array
    x0: float = struct.field(pytree_node=False)
    y0: float = struct.field(pytree_node=False)
    step: float = struct.field(pytree_node=False)
    z0: float = struct.field(pytree_node=False)
    elevation: float = struct.field(pytree_node=False)

    @property
    def num_levels(self) -> int:
        return int(self.origins.shape[0])

    @property
    def num_cols(self) -> int:
        return int(self.origins.shape[1])


# -- generation (numpy) ----------------------------------------------------------------------------------
def validate(cfg: TerrainConfig) -> None:
    """Raises ``ValueError`` with the offending field when the config cannot produce a terrain."""
    if cfg.num_rows < 1 or cfg.num_cols < 1:
        raise ValueError(f"terrain needs at least one row and column, got {cfg.num_rows} x {cfg.num_cols}")
    if cfg.horizontal_scale <= 0 or cfg.vertical_scale <= 0 or cfg.tile_size <= 0:
        raise ValueError("terrain tile_size, horizontal_scale and vertical_scale must be positive")
    if abs(cfg.tile_size / cfg.horizontal_scale - round(cfg.tile_size / cfg.horizontal_scale)) > 1e-6:
        raise ValueError(f"tile_size {cfg.tile_size} is not a multiple of horizontal_scale {cfg.horizontal_scale}")
    if not 0 <= cfg.max_init_level < cfg.num_rows:
        raise ValueError(f"max_init_level {cfg.max_init_level} must be in [0, num_rows - 1 = {cfg.num_rows - 1}]")
    if cfg.max_contact_points is not None and cfg.max_contact_points < 1:
        raise ValueError(f"max_contact_points must be positive or None, got {cfg.max_contact_points}")
    if not cfg.sub_terrains:
        raise ValueError("terrain has no sub_terrains")
    for sub in cfg.sub_terrains:
        if sub.kind not in SUB_TERRAIN_KINDS:
            raise ValueError(f"unknown sub-terrain kind '{sub.kind}', expected one of {SUB_TERRAIN_KINDS}")
        if sub.proportion < 0 or sub.height_range[0] > sub.height_range[1]:
            raise ValueError(f"sub-terrain '{sub.kind}': proportion must be >= 0 and height_range ordered")
        if sub.kind == "random_uniform" and sub.height_step <= 0:
            raise ValueError("sub-terrain 'random_uniform': height_step must be positive")
        if sub.kind == "random_grid" and sub.grid_width <= 0:
            raise ValueError("sub-terrain 'random_grid': grid_width must be positive")
    if sum(s.proportion for s in cfg.sub_terrains) <= 0:
        raise ValueError("sub-terrain proportions sum to zero")


def column_kinds(cfg: TerrainConfig) -> np.ndarray:
    """Sub-terrain index of each column ``[num_cols]``: column ``j`` takes the first type whose cumulative
    proportion exceeds ``j / num_cols + 0.001`` (Isaac Lab's curriculum assignment)."""
    p = np.asarray([s.proportion for s in cfg.sub_terrains], np.float64)
    cum = np.cumsum(p / p.sum())
    return np.asarray([int(np.argmax(j / cfg.num_cols + 0.001 < cum)) for j in range(cfg.num_cols)], np.int32)


def _random_uniform(rng: np.random.Generator, sub: SubTerrainConfig, difficulty: float, n: int, step: float):
    """Vertex heights ``[n + 1, n + 1]`` of a random-uniform tile."""
    lo, hi = sub.height_range
    top = lo + difficulty * (hi - lo)
    levels = lo + sub.height_step * np.arange(int(np.floor((top - lo) / sub.height_step + 1e-9)) + 1)
    h = rng.choice(levels, size=(n + 1, n + 1))
    local = np.arange(n + 1) * step
    inside = (local >= sub.border_width - 1e-9) & (local <= n * step - sub.border_width + 1e-9)
    return h * (inside[:, None] & inside[None, :])


def _random_grid(rng: np.random.Generator, sub: SubTerrainConfig, difficulty: float, n: int, step: float):
    """Vertex heights ``[n + 1, n + 1]`` of a random-grid tile (cells of ``U(-h, h)``, flat centre)."""
    amp = sub.height_range[0] + difficulty * (sub.height_range[1] - sub.height_range[0])
    local = np.arange(n + 1) * step
    cell = np.minimum(np.floor(local / sub.grid_width + 1e-9).astype(int), int(np.ceil(n * step / sub.grid_width)) - 1)
    cells = rng.uniform(-amp, amp, size=(cell.max() + 1,) * 2)
    h = cells[cell[:, None], cell[None, :]]
    centre = np.abs(local - n * step / 2) <= sub.platform_width / 2 + 1e-9
    return np.where(centre[:, None] & centre[None, :], 0.0, h)


_GENERATORS = {"random_uniform": _random_uniform, "random_grid": _random_grid}


@functools.lru_cache(maxsize=4)
def generate(cfg: TerrainConfig) -> HeightGrid:
    """Builds the tile grid (a deterministic function of ``cfg``, cached; arrays read-only), centred on the world
    origin.

    Raises:
        ValueError: invalid config (see :func:`validate`).
    """
    validate(cfg)
    rng = np.random.default_rng(cfg.seed)
    step = cfg.horizontal_scale
    n = int(round(cfg.tile_size / step))
    b = int(round(cfg.border_width / step))
    heights = np.zeros((2 * b + cfg.num_rows * n + 1, 2 * b + cfg.num_cols * n + 1))
    kinds = column_kinds(cfg)
    difficulty = np.zeros((cfg.num_rows, cfg.num_cols))
    for j in range(cfg.num_cols):
        for i in range(cfg.num_rows):
            sub = cfg.sub_terrains[kinds[j]]
            difficulty[i, j] = (i + rng.uniform()) / cfg.num_rows
            tile = _GENERATORS[sub.kind](rng, sub, difficulty[i, j], n, step)
            heights[b + i * n: b + (i + 1) * n + 1, b + j * n: b + (j + 1) * n + 1] = tile
    heights = np.round(heights / cfg.vertical_scale) * cfg.vertical_scale
    x0 = -cfg.num_rows * n * step / 2 - b * step
    y0 = -cfg.num_cols * n * step / 2 - b * step
    # Spawn origins: tile centres at the highest vertex within origin_window of the centre.
    w = int(round(cfg.origin_window / step))
    origins = np.zeros((cfg.num_rows, cfg.num_cols, 3))
    for i in range(cfg.num_rows):
        for j in range(cfg.num_cols):
            ci, cj = b + i * n + n // 2, b + j * n + n // 2
            origins[i, j] = (x0 + ci * step, y0 + cj * step, heights[ci - w: ci + w + 1, cj - w: cj + w + 1].max())
    for a in (heights, origins, difficulty, kinds):
        a.setflags(write=False)
    return HeightGrid(heights, float(x0), float(y0), float(step), origins, difficulty, kinds)


# -- MuJoCo ------------------------------------------------------------------------------------------------
def _mujoco_geometry(grid: HeightGrid) -> tuple[np.ndarray, float, float]:
    """MuJoCo's normalised data ``[nx, ny]`` (float32 in ``[0, 1]``), base height z0 and elevation."""
    lo, hi = float(grid.heights.min()), float(grid.heights.max())
    elevation = max(hi - lo, 1e-3)  # MuJoCo needs a positive elevation even for a flat field
    data = ((grid.heights - lo) / elevation).astype(np.float32)
    return data, lo, elevation


def attach(spec: mujoco.MjSpec, cfg: TerrainConfig) -> None:
    """Replaces the spec's floor plane by the terrain of ``cfg`` (see :func:`add_to_spec`)."""
    add_to_spec(spec, generate(cfg), base_thickness=cfg.base_thickness, max_contact_points=cfg.max_contact_points)


def add_to_spec(spec: mujoco.MjSpec, grid: HeightGrid, name: str = "terrain", replace: str | None = "floor",
                friction: float = 1.0, base_thickness: float = 1.0, max_contact_points: int | None = None) -> None:
    """Adds the heightfield asset and a world geom for it, deleting the floor geom ``replace`` if present.

    The geom collides like the floor plane it replaces (:func:`envs.robots.assets.set_floor`): with the foot
    colliders only. ``max_contact_points`` adds MJX's contact cap (see :class:`TerrainConfig`).
    """
    if replace is not None and spec.geom(replace) is not None:
        spec.delete(spec.geom(replace))
    data, z0, elevation = _mujoco_geometry(grid)
    nx, ny = data.shape
    sx, sy = (nx - 1) * grid.step / 2, (ny - 1) * grid.step / 2
    # MuJoCo's elevation data is row-major with rows along y.
    spec.add_hfield(name=name, nrow=ny, ncol=nx, size=[sx, sy, elevation, base_thickness],
                    userdata=data.T.reshape(-1).tolist())
    geom = spec.worldbody.add_geom(name=name, type=mujoco.mjtGeom.mjGEOM_HFIELD, hfieldname=name,
                                   pos=[grid.x0 + sx, grid.y0 + sy, z0])
    geom.contype = assets.FLOOR_CONTYPE
    geom.conaffinity = assets.FOOT_CONTYPE
    geom.condim = 3
    geom.priority = 0
    geom.friction = [friction, 0.005, 0.0001]
    if max_contact_points is not None:
        spec.add_numeric(name="max_contact_points", data=[float(max_contact_points)])


def to_jax(grid: HeightGrid) -> Terrain:
    """The :class:`Terrain` of a generated grid, with exactly the data MuJoCo gets from :func:`add_to_spec`."""
    data, z0, elevation = _mujoco_geometry(grid)
    return Terrain(jnp.asarray(data), jnp.asarray(grid.origins, jnp.float32), grid.x0, grid.y0, grid.step, z0,
                   elevation)


# -- heights (JAX) -----------------------------------------------------------------------------------------
def height_at(terrain: Terrain, xy: Array) -> Array:
    """Terrain height under points ``xy`` ``[..., 2]`` -> ``[...]`` on MuJoCo's triangulated heightfield.

    Inside cell ``(i, j)`` with fractions ``(u, v)``, the surface is the plane through ``h00, h10, h11`` when
    ``u >= v`` and through ``h00, h01, h11`` otherwise (MuJoCo's prisms). Points off the field are clamped to
    its edge.
    """
    nx, ny = terrain.data.shape
    gx = jnp.clip((xy[..., 0] - terrain.x0) / terrain.step, 0.0, nx - 1.0)
    gy = jnp.clip((xy[..., 1] - terrain.y0) / terrain.step, 0.0, ny - 1.0)
    i = jnp.clip(jnp.floor(gx), 0, nx - 2).astype(jnp.int32)
    j = jnp.clip(jnp.floor(gy), 0, ny - 2).astype(jnp.int32)
    u, v = gx - i, gy - j
    d = terrain.data
    h00, h10, h01, h11 = d[i, j], d[i + 1, j], d[i, j + 1], d[i + 1, j + 1]
    lower = h00 + u * (h10 - h00) + v * (h11 - h10)  # u >= v
    upper = h00 + v * (h01 - h00) + u * (h11 - h01)  # u < v
    return terrain.z0 + terrain.elevation * jnp.where(u >= v, lower, upper)


def max_height_near(terrain: Terrain, xy: Array, half_width: float) -> Array:
    """Highest vertex within the square of half-width ``half_width`` (m) around ``xy`` ``[2]`` -> scalar.

    The surface is piecewise planar, so this is the highest terrain point over the square (rounded out to
    whole cells).
    """
    nx, ny = terrain.data.shape
    w = int(np.ceil(half_width / terrain.step)) + 1
    i = jnp.clip(jnp.floor((xy[0] - terrain.x0) / terrain.step).astype(jnp.int32) - w + 1, 0, nx - 2 * w)
    j = jnp.clip(jnp.floor((xy[1] - terrain.y0) / terrain.step).astype(jnp.int32) - w + 1, 0, ny - 2 * w)
    window = lax.dynamic_slice(terrain.data, (i, j), (2 * w, 2 * w))
    return terrain.z0 + terrain.elevation * jnp.max(window)


def scan_offsets(half_width: float, points: int) -> np.ndarray:
    """A ``points x points`` grid of xy offsets ``[points**2, 2]`` spanning ``[-half_width, half_width]^2``."""
    t = np.linspace(-half_width, half_width, points) if points > 1 else np.zeros(1)
    return np.stack(np.meshgrid(t, t, indexing="ij"), -1).reshape(-1, 2).astype(np.float32)


def mean_height_around(terrain: Terrain, xy: Array, offsets: np.ndarray) -> Array:
    """Mean terrain height over the scan points ``xy + offsets`` (``[2]`` + ``[K, 2]``) -> scalar.

    A stand-in for the mean of Isaac Lab's height-scanner rays under the base.
    """
    return jnp.mean(height_at(terrain, xy[None, :] + jnp.asarray(offsets)))

