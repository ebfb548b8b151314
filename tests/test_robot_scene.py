"""The shared scene builder (``envs.robots.scene.build_scene``) compiles the same T1 and G1 models as the two
per-robot builders it replaced: the fingerprints below were recorded with those builders (MuJoCo 3.17.0, before
the change) and the refactored models matched them byte for byte (``mj_saveModel``). Compiling a spec takes
well under a second; nothing here builds an MJX program."""

from __future__ import annotations

import dataclasses
import hashlib

import mujoco
import numpy as np
import pytest

from envs import terrain
from envs.robots import assets, g1, scene, t1

FIELDS = ("geom_size", "geom_pos", "body_mass", "geom_friction", "jnt_range", "dof_damping", "dof_armature",
          "dof_frictionloss", "geom_contype", "geom_conaffinity", "geom_priority", "geom_condim", "actuator_gear",
          "hfield_data", "opt.timestep", "opt.disableflags", "opt.integrator")
VARIANTS = {
    "flat": {},
    "rough": {"terrain_cfg": terrain.TerrainConfig()},
    "meshes": {"keep_meshes": True},
    "solver": {"solver": dataclasses.replace(assets.DEFAULT_SOLVER, timestep=0.002, eulerdamp=False,
                                             integrator="implicitfast", cone="elliptic")},
}
# (nq, nv, nbody, ngeom, nu, sha256 of FIELDS' bytes and the names, first 16 hex digits)
EXPECTED = {
    ("t1", "flat"): (30, 29, 25, 22, 23, "cdc3a95131a062bd"),
    ("t1", "rough"): (30, 29, 25, 22, 23, "f17a4845afcbdbf0"),
    ("t1", "meshes"): (30, 29, 25, 46, 23, "26efa430c1087c24"),
    ("t1", "solver"): (30, 29, 25, 22, 23, "e6133a22e4a9820f"),
    ("g1", "flat"): (36, 35, 31, 16, 29, "4fefd60aa7897e4f"),
    ("g1", "rough"): (36, 35, 31, 16, 29, "afe3b15ba4748416"),
    ("g1", "meshes"): (36, 35, 31, 75, 29, "d4bf9917efa65a99"),
    ("g1", "solver"): (36, 35, 31, 16, 29, "df85c50ca6154ade"),
}
MODULES = {"t1": t1, "g1": g1}


def fingerprint(model: mujoco.MjModel) -> tuple:
    digest = hashlib.sha256()
    for name in FIELDS:
        value = model
        for part in name.split("."):
            value = getattr(value, part)
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(np.asarray(value)).tobytes())
    digest.update(bytes(model.names))
    return (model.nq, model.nv, model.nbody, model.ngeom, model.nu, digest.hexdigest()[:16])


@pytest.mark.parametrize("robot,variant", sorted(EXPECTED))
def test_scene_builder_compiles_the_recorded_model(robot, variant):
    model = MODULES[robot].make_spec(**VARIANTS[variant]).compile()
    assert fingerprint(model) == EXPECTED[(robot, variant)], f"MuJoCo {mujoco.__version__}"


def test_robots_call_the_shared_builder():
    """Both robots' specs come from ``build_scene`` with their own parts (feet, probes): same model either way."""
    direct = scene.build_scene("booster_t1", t1.JOINT_ORDER, t1.ACTUATORS, t1.FEET, t1.PROBES).compile()
    assert fingerprint(direct) == EXPECTED[("t1", "flat")]
    direct = scene.build_scene("unitree_g1", g1.JOINT_ORDER, g1.ACTUATORS, g1.FEET, g1.PROBES).compile()
    assert fingerprint(direct) == EXPECTED[("g1", "flat")]
