"""The one scene builder of the robots' MJX-friendly MuJoCo specs (T1 and G1 call it with their own parts).

:func:`build_scene` loads a Menagerie ``scene.xml``, clears its keyframes, stops every geom colliding, makes the
floor collide with foot colliders only (or, with a terrain config, puts the generated heightfield in its place),
then lets the robot add its foot colliders (:func:`box_corner_feet` or :func:`sphere_feet`) and its
non-colliding probe spheres (:class:`ProbeSphere`), and ends with the shared MJX edits (joint dynamics, torque
motors, solver options, visual meshes dropped) of :func:`envs.robots.robot.finish_mjx_spec`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import mujoco

from envs import terrain
from envs.robots import assets
from envs.robots.robot import ActuatorGroup, finish_mjx_spec

FeetBuilder = Callable[[mujoco.MjSpec], None]


@dataclasses.dataclass(frozen=True)
class ProbeSphere:
    """A non-colliding sphere on ``body`` that stands in for the body's contact with the floor (geometric checks)."""

    body: str
    name: str
    radius: float
    pos: tuple[float, float, float] = (0.0, 0.0, 0.0)


def box_corner_feet(bodies: Sequence[tuple[str, str]], radius: float) -> FeetBuilder:
    """Foot colliders: four radius-``radius`` spheres at the bottom corners of the first box geom of each body.

    Args:
        bodies: ``(body, prefix)`` pairs; the spheres are named ``prefix_1`` .. ``prefix_4``.
        radius: sphere radius (m); the spheres are inset by it.
    """

    def add(spec: mujoco.MjSpec) -> None:
        for body, prefix in bodies:
            box = next(g for g in spec.body(body).geoms if g.type == mujoco.mjtGeom.mjGEOM_BOX)
            assets.add_box_corner_spheres(spec, body, box.size, box.pos, radius, prefix=prefix)

    return add


def sphere_feet(bodies: Sequence[tuple[str, str]]) -> FeetBuilder:
    """Foot colliders: the sphere geoms the model already has on each body, renamed ``prefix_1``, ``prefix_2`` ...

    Args:
        bodies: ``(body, prefix)`` pairs.
    """

    def add(spec: mujoco.MjSpec) -> None:
        for body, prefix in bodies:
            spheres = [g for g in spec.body(body).geoms if g.type == mujoco.mjtGeom.mjGEOM_SPHERE]
            for i, geom in enumerate(spheres, start=1):
                geom.name = f"{prefix}_{i}"
                assets.make_foot_collider(geom)

    return add


def build_scene(robot: str, joint_order: Sequence[str], actuators: Sequence[ActuatorGroup], feet: FeetBuilder,
                probes: Sequence[ProbeSphere] = (), solver: assets.SolverOptions = assets.DEFAULT_SOLVER,
                keep_meshes: bool = False, terrain_cfg: terrain.TerrainConfig | None = None) -> mujoco.MjSpec:
    """A Menagerie robot's ``scene.xml`` turned into its MJX-friendly spec (see the module docstring).

    Args:
        robot: the Menagerie robot name (``"booster_t1"``, ``"unitree_g1"``).
        joint_order: the hinge joints in the policy's order (each gets a torque motor).
        actuators: the robot's actuator groups (armature, friction and, with Euler damping, joint damping).
        feet: adds the foot colliders to the spec (:func:`box_corner_feet`, :func:`sphere_feet`).
        probes: the non-colliding probe spheres, added after the feet in this order.
        solver: the solver options. keep_meshes: keep the visual meshes (rendering).
        terrain_cfg: the generated heightfield (:mod:`envs.terrain`) instead of the floor plane.
    """
    spec = assets.load_spec(robot, "scene")
    assets.clear_keyframes(spec)
    assets.disable_all_collisions(spec)
    assets.set_floor(spec)
    if terrain_cfg is not None:
        terrain.attach(spec, terrain_cfg)
    feet(spec)
    for p in probes:
        assets.add_probe_sphere(spec, p.body, p.name, p.radius, p.pos)
    return finish_mjx_spec(spec, joint_order, actuators, solver, keep_meshes)
