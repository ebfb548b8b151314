"""The MuJoCo model of a velocity task, built in one place for the training env (every ``impl``) and for the
plain-MuJoCo evaluator (``agile_jax.evaluation.sim2mujoco``), so that both simulate the same model."""

from __future__ import annotations

import dataclasses

from envs import terrain
from envs.robots import assets, g1, t1
from envs.robots.robot import Robot

# Robot names: the task's short name and the articulation name ``policy.yaml`` carries.
ROBOTS = {"t1": t1.t1_robot, "booster_t1": t1.t1_robot, "g1": g1.g1_robot, "unitree_g1": g1.g1_robot}


def task_robot(name: str, physics_dt: float, implicit_damping: bool,
               solver: assets.SolverOptions = assets.DEFAULT_SOLVER, terrain_cfg: terrain.TerrainConfig | None = None,
               keep_meshes: bool = False) -> Robot:
    """The :class:`Robot` (tables and MJX-friendly ``MjModel``) of robot ``name`` as a task simulates it.

    Args:
        name: a key of :data:`ROBOTS`.
        physics_dt: physics step (s), MuJoCo's ``timestep``.
        implicit_damping: PD damping as joint damping, integrated implicitly (Euler damping on).
        solver: the other solver options. terrain_cfg: rough terrain instead of the floor plane.
        keep_meshes: keep the visual meshes (rendering).

    Raises:
        ValueError: ``name`` is not a known robot.
    """
    if name not in ROBOTS:
        raise ValueError(f"unknown robot '{name}', expected one of {sorted(ROBOTS)}")
    solver = dataclasses.replace(solver, timestep=physics_dt, eulerdamp=implicit_damping)
    return ROBOTS[name](solver, keep_meshes=keep_meshes, terrain_cfg=terrain_cfg)
