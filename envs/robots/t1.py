"""Booster T1: AGILE's joint tables (``booster_t1.py``, ``T1_DELAYED_DC_CFG``) and the MJX-friendly model.

The model is Menagerie's ``booster_t1/scene.xml`` edited at load time: every original geom stops colliding,
four r = 1 cm spheres at the bottom corners of each foot box collide with the floor only, each hinge gets
a torque motor (the PD runs in JAX), joints get AGILE's armature and friction, and the solver is set for MJX.
On rough terrain a generated heightfield takes the place of the floor plane.
"""

from __future__ import annotations

import functools

import mujoco

from envs import terrain
from envs.mdp.symmetry import T1_MIRROR
from envs.robots import assets, scene
from envs.robots.robot import ActuatorGroup, Robot, build_robot, probe, select_joints

# Isaac Lab joint order of AGILE's T1 asset (breadth-first over the kinematic tree).
JOINT_ORDER = (
    "AAHead_yaw", "Left_Shoulder_Pitch", "Right_Shoulder_Pitch", "Waist", "Head_pitch",
    "Left_Shoulder_Roll", "Right_Shoulder_Roll", "Left_Hip_Pitch", "Right_Hip_Pitch",
    "Left_Elbow_Pitch", "Right_Elbow_Pitch", "Left_Hip_Roll", "Right_Hip_Roll",
    "Left_Elbow_Yaw", "Right_Elbow_Yaw", "Left_Hip_Yaw", "Right_Hip_Yaw",
    "Left_Knee_Pitch", "Right_Knee_Pitch", "Left_Ankle_Pitch", "Right_Ankle_Pitch",
    "Left_Ankle_Roll", "Right_Ankle_Roll",
)
LEG_JOINTS = (".*Hip.*", ".*Knee.*", ".*Ankle.*")
WAIST_JOINTS = ("Waist",)
DEFAULT_POS = {
    "Left_Shoulder_Roll": -1.3, "Right_Shoulder_Roll": 1.3,
    "Left_Hip_Pitch": -0.2, "Right_Hip_Pitch": -0.2,
    "Left_Knee_Pitch": 0.4, "Right_Knee_Pitch": 0.4,
    "Left_Ankle_Pitch": -0.2, "Right_Ankle_Pitch": -0.2,
    "Left_Elbow_Yaw": -0.3, "Right_Elbow_Yaw": 0.3,
}
DEFAULT_TRUNK_HEIGHT = 0.65
ACTUATORS = (
    ActuatorGroup(
        joints=(".*",),
        stiffness={".*Head.*": 20.0, ".*Shoulder.*": 20.0, ".*Elbow.*": 20.0, ".*Waist.*": 100.0,
                   ".*Hip.*": 100.0, ".*Knee.*": 100.0, ".*Ankle.*": 20.0},
        damping={".*Head.*": 0.2, ".*Shoulder.*": 0.5, ".*Elbow.*": 0.5, ".*Waist.*": 2.5,
                 ".*Hip.*": 2.5, ".*Knee.*": 2.5, ".*Ankle.*": 1.0},
        effort_limit={".*Head.*": 7.0, ".*Shoulder.*": 18.0, ".*Elbow.*": 18.0, "Waist": 30.0,
                      ".*Hip_Pitch": 45.0, ".*Hip_Roll": 30.0, ".*Hip_Yaw": 30.0, ".*Knee_Pitch": 60.0,
                      ".*Ankle_Pitch": 24.0, ".*Ankle_Roll": 15.0},
        velocity_limit={".*Head.*": 30.0, ".*Shoulder.*": 30.0, ".*Elbow.*": 30.0, ".*Waist.*": 32.0,
                        ".*Hip.*": 32.0, ".*Knee.*": 20.0, ".*Ankle.*": 32.0},
        saturation_effort=130.0,
        max_delay=8,
        armature=0.02,
        friction=0.01,
    ),
)
FOOT_SPHERE_RADIUS = 0.01
WAIST_PROBE_RADIUS = 0.07


FEET = scene.box_corner_feet([(f"{side}_foot_link", f"{side}_foot") for side in ("left", "right")], FOOT_SPHERE_RADIUS)
# The Waist has no collision primitive in the Menagerie model; a non-colliding probe stands in for it.
PROBES = (scene.ProbeSphere("Waist", "waist_probe", WAIST_PROBE_RADIUS),)


def make_spec(solver: assets.SolverOptions = assets.DEFAULT_SOLVER, keep_meshes: bool = False,
              terrain_cfg: terrain.TerrainConfig | None = None) -> mujoco.MjSpec:
    """Menagerie's T1 scene turned into the MJX-friendly variant (see the module docstring).

    With ``terrain_cfg`` the floor plane is replaced by the generated heightfield (:mod:`envs.terrain`).
    """
    return scene.build_scene("booster_t1", JOINT_ORDER, ACTUATORS, FEET, PROBES, solver, keep_meshes, terrain_cfg)


@functools.lru_cache(maxsize=4)
def t1_robot(solver: assets.SolverOptions = assets.DEFAULT_SOLVER, keep_meshes: bool = False,
             terrain_cfg: terrain.TerrainConfig | None = None) -> Robot:
    """The T1 :class:`Robot` with AGILE's tables, resolved by name against the MJX-friendly model."""
    model = make_spec(solver, keep_meshes, terrain_cfg).compile()
    legs = select_joints(JOINT_ORDER, LEG_JOINTS)
    return build_robot(
        "booster_t1", model, JOINT_ORDER, ACTUATORS,
        action_joints=legs,
        random_joints=select_joints(JOINT_ORDER, (".*",), exclude=LEG_JOINTS + WAIST_JOINTS),
        default_pos=DEFAULT_POS,
        root="Trunk", yaw="Waist", tilt="Trunk",
        feet=("left_foot_link", "right_foot_link"),
        foot_geoms=[[f"{s}_foot_{i}" for i in range(1, 5)] for s in ("left", "right")],
        illegal_probes=(probe(model, "Trunk", mujoco.mjtGeom.mjGEOM_BOX), probe(model, "Waist", 0, "waist_probe")),
        undesired_probes=(probe(model, "Trunk", mujoco.mjtGeom.mjGEOM_BOX),),
        illegal_bodies=("Trunk", "Waist"),
        wrench="Trunk", extremities=("left_hand_link", "right_hand_link", "left_foot_link", "right_foot_link"),
        mirror=T1_MIRROR,
    )
