"""Unitree G1 (29 DoF, no hands): AGILE's tables (``unitree_g1.py``, ``G1_29DOF_DELAYED_DC_MOTOR``) and MJX model.

The model is Menagerie's ``unitree_g1/scene.xml`` edited at load time: only the four r = 5 mm spheres under
each foot collide (with the floor only), each hinge gets a torque motor, joints get AGILE's armature, and
the solver is set for MJX. Non-colliding probe spheres on the pelvis and torso (sized like the primitives
of Menagerie's ``g1_mjx.xml``) stand in for trunk-floor contacts.
"""

from __future__ import annotations

import functools

import mujoco

from envs import terrain
from envs.mdp.symmetry import G1_MIRROR
from envs.robots import assets, scene
from envs.robots.robot import ActuatorGroup, Robot, build_robot, probe, select_joints

# Isaac Lab joint order of the 29-DoF G1 (breadth-first over the kinematic tree).
JOINT_ORDER = (
    "left_hip_pitch_joint", "right_hip_pitch_joint", "waist_yaw_joint",
    "left_hip_roll_joint", "right_hip_roll_joint", "waist_roll_joint",
    "left_hip_yaw_joint", "right_hip_yaw_joint", "waist_pitch_joint",
    "left_knee_joint", "right_knee_joint", "left_shoulder_pitch_joint", "right_shoulder_pitch_joint",
    "left_ankle_pitch_joint", "right_ankle_pitch_joint", "left_shoulder_roll_joint", "right_shoulder_roll_joint",
    "left_ankle_roll_joint", "right_ankle_roll_joint", "left_shoulder_yaw_joint", "right_shoulder_yaw_joint",
    "left_elbow_joint", "right_elbow_joint", "left_wrist_roll_joint", "right_wrist_roll_joint",
    "left_wrist_pitch_joint", "right_wrist_pitch_joint", "left_wrist_yaw_joint", "right_wrist_yaw_joint",
)
LEG_JOINTS = (".*_hip_.*_joint", ".*_knee_joint", ".*_ankle_.*_joint")
WAIST_JOINTS = ("waist_.*_joint",)
CONTROLLED_JOINTS = LEG_JOINTS + ("waist_roll_joint", "waist_pitch_joint")
DEFAULT_POS = {".*_hip_pitch_joint": -0.10, ".*_knee_joint": 0.30, ".*_ankle_pitch_joint": -0.20}
DEFAULT_PELVIS_HEIGHT = 0.72
# AGILE's G1 config sets no joint friction; a small non-zero nominal keeps MJX's friction-loss rows, which the
# joint-friction randomisation needs.
NOMINAL_FRICTION = 0.005
ACTUATORS = (
    ActuatorGroup(
        joints=(".*_hip_yaw_joint", ".*_hip_roll_joint", ".*_hip_pitch_joint", ".*_knee_joint"),
        stiffness={".*_hip_.*": 100.0, ".*_knee_joint": 200.0}, damping={".*_hip_.*": 2.5, ".*_knee_joint": 5.0},
        effort_limit={".*_hip_.*": 88.0, ".*_knee_joint": 139.0},
        velocity_limit={".*_hip_.*": 32.0, ".*_knee_joint": 20.0},
        saturation_effort=180.0, max_delay=4, armature=0.02, friction=NOMINAL_FRICTION,
    ),
    ActuatorGroup(
        joints=(".*_ankle_.*_joint",),
        stiffness={".*": 20.0}, damping={".*_ankle_pitch_joint": 0.2, ".*_ankle_roll_joint": 0.1},
        effort_limit={".*": 50.0}, velocity_limit={".*": 37.0},
        saturation_effort=80.0, max_delay=4, armature=0.02, friction=NOMINAL_FRICTION,
    ),
    ActuatorGroup(
        joints=WAIST_JOINTS,
        stiffness={".*": 300.0}, damping={".*": 5.0},
        effort_limit={"waist_yaw_joint": 88.0, ".*": 50.0}, velocity_limit={"waist_yaw_joint": 32.0, ".*": 37.0},
        saturation_effort=120.0, max_delay=4, armature=0.02, friction=NOMINAL_FRICTION,
    ),
    ActuatorGroup(
        joints=(".*_shoulder_.*_joint", ".*_elbow_joint", ".*_wrist_.*_joint"),
        stiffness={".*_shoulder_pitch_joint": 90.0, ".*_shoulder_roll_joint": 60.0, ".*_shoulder_yaw_joint": 20.0,
                   ".*_elbow_joint": 60.0, ".*_wrist_.*_joint": 4.0},
        damping={".*_shoulder_pitch_joint": 2.0, ".*_shoulder_roll_joint": 1.0, ".*_shoulder_yaw_joint": 0.4,
                 ".*_elbow_joint": 1.0, ".*_wrist_.*_joint": 0.2},
        effort_limit={".*_wrist_pitch_joint": 5.0, ".*_wrist_yaw_joint": 5.0, ".*": 25.0},
        velocity_limit={".*_wrist_pitch_joint": 22.0, ".*_wrist_yaw_joint": 22.0, ".*": 37.0},
        saturation_effort=40.0, max_delay=0, armature=0.02, friction=NOMINAL_FRICTION,
    ),
)


FEET = scene.sphere_feet([(f"{side}_ankle_roll_link", f"{side}_foot") for side in ("left", "right")])
# Sized like the pelvis and torso primitives of Menagerie's g1_mjx.xml.
PROBES = (
    scene.ProbeSphere("pelvis", "pelvis_probe", 0.07, (0.0, 0.0, -0.08)),
    scene.ProbeSphere("torso_link", "torso_probe_low", 0.09, (0.01, 0.0, 0.08)),
    scene.ProbeSphere("torso_link", "torso_probe_high", 0.09, (0.01, 0.0, 0.2)),
)


def make_spec(solver: assets.SolverOptions = assets.DEFAULT_SOLVER, keep_meshes: bool = False,
              terrain_cfg: terrain.TerrainConfig | None = None) -> mujoco.MjSpec:
    """Menagerie's G1 scene turned into the MJX-friendly variant (see the module docstring).

    With ``terrain_cfg`` the floor plane is replaced by the generated heightfield (:mod:`envs.terrain`).
    """
    return scene.build_scene("unitree_g1", JOINT_ORDER, ACTUATORS, FEET, PROBES, solver, keep_meshes, terrain_cfg)


@functools.lru_cache(maxsize=4)
def g1_robot(solver: assets.SolverOptions = assets.DEFAULT_SOLVER, keep_meshes: bool = False,
             terrain_cfg: terrain.TerrainConfig | None = None) -> Robot:
    """The G1 :class:`Robot` with AGILE's tables, resolved by name against the MJX-friendly model."""
    model = make_spec(solver, keep_meshes, terrain_cfg).compile()
    sphere = mujoco.mjtGeom.mjGEOM_SPHERE
    trunk_probes = tuple(probe(model, "", sphere, n) for n in ("pelvis_probe", "torso_probe_low", "torso_probe_high"))
    return build_robot(
        "unitree_g1", model, JOINT_ORDER, ACTUATORS,
        action_joints=select_joints(JOINT_ORDER, CONTROLLED_JOINTS),
        random_joints=select_joints(JOINT_ORDER, (".*",), exclude=LEG_JOINTS + WAIST_JOINTS),
        default_pos=DEFAULT_POS,
        root="pelvis", yaw="pelvis", tilt="pelvis",
        feet=("left_ankle_roll_link", "right_ankle_roll_link"),
        foot_geoms=[[f"{s}_foot_{i}" for i in range(1, 5)] for s in ("left", "right")],
        illegal_probes=trunk_probes, undesired_probes=(), illegal_bodies=("pelvis", "torso_link"),
        wrench="pelvis",
        extremities=("left_wrist_yaw_link", "right_wrist_yaw_link", "left_ankle_roll_link", "right_ankle_roll_link"),
        mirror=G1_MIRROR,
    )
