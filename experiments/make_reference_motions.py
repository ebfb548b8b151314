"""Writes the reference motion sets shipped in ``agile_jax/motion/data``.

Run ``python experiments/make_reference_motions.py [out_dir]``.

No motion-capture set of the Booster T1 installs offline, so the T1 set is a scripted gait made consistent by the
robot's own kinematics:

* joint targets: each leg swings with phase ``phi`` (the right leg half a period later); the hip pitch moves the
  thigh from back to front during the swing (``-0.2 + A cos phi``), the knee flexes in mid-swing
  (``0.4 + K max(0, sin phi)``), the ankle pitch keeps the sole parallel to the trunk (``-(hip + knee)``), roll
  and yaw joints stay at zero;
* the trunk stays upright; its height and velocity follow from forward kinematics of the MJX-friendly T1 model:
  the lower foot is the stance foot, fixed on the ground, so the trunk moves at minus that foot's velocity
  relative to the trunk, and stands as high as that foot is deep (plus the sole offset of the default pose).

Clips (stride period 0.8 s, 50 frames per second, looping): ``stand`` (the default pose), ``step`` (stepping in
place), ``walk_slow`` / ``walk`` (hip amplitudes 0.1 / 0.2 rad) and ``walk_back`` (``walk_slow`` played
backwards). The point-mass set is one period of a counter-clockwise circle of radius 1 m at 1 m/s
(:func:`envs.tasks.point_mass_amp.circle_clip`).
"""

from __future__ import annotations

import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from agile_jax.motion.loader import DATA_DIR, write_motion_file  # noqa: E402

DT = 0.02  # 50 Hz, the T1 control step
PERIOD = 0.8  # stride period (s)
# clip -> (hip pitch amplitude, knee lift, played backwards)
T1_CLIPS = {"step": (0.0, 0.35, False), "walk_slow": (0.1, 0.35, False), "walk": (0.2, 0.45, False),
            "walk_back": (0.1, 0.35, True)}


def leg_angles(phase: np.ndarray, hip_amplitude: float, knee_lift: float) -> dict[str, np.ndarray]:
    """Pitch joints of one leg at gait ``phase`` (rad; swing for ``phase`` in ``[0, pi)``)."""
    hip = -0.2 + hip_amplitude * np.cos(phase)
    knee = 0.4 + knee_lift * np.maximum(0.0, np.sin(phase))
    return {"Hip_Pitch": hip, "Knee_Pitch": knee, "Ankle_Pitch": -(hip + knee)}


def _feet_in_trunk(joint_pos: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    """Foot positions relative to the (upright) trunk ``[F, 2, 3]`` by forward kinematics of the T1 model."""
    import mujoco

    from envs.robots.t1 import t1_robot

    model = t1_robot().model
    data = mujoco.MjData(model)
    adr = [model.joint(n).qposadr[0] for n in names]
    feet = [model.body(f"{side}_foot_link").id for side in ("left", "right")]
    trunk = model.body("Trunk").id
    out = np.zeros((len(joint_pos), 2, 3))
    for i, q in enumerate(joint_pos):
        data.qpos[:] = 0.0
        data.qpos[3] = 1.0
        data.qpos[adr] = q
        mujoco.mj_kinematics(model, data)
        out[i] = data.xpos[feet] - data.xpos[trunk]
    return out


def _stance_foot(phase: np.ndarray) -> np.ndarray:
    """Index of the foot carrying the robot: left (0) for a left-leg phase in ``[pi, 2 pi)``, else right (1)."""
    return np.where(np.mod(phase, 2.0 * np.pi) >= np.pi, 0, 1)


def t1_clip(names: tuple[str, ...], hip_amplitude: float, knee_lift: float, backwards: bool = False,
            still: bool = False) -> dict[str, np.ndarray]:
    """One looping T1 clip (fields of :mod:`agile_jax.motion.loader`) of the scripted gait."""
    from envs.robots.t1 import t1_robot

    count = int(round(PERIOD / DT))
    t = np.arange(count) * DT
    phase = 2.0 * np.pi * (t[::-1] if backwards else t) / PERIOD
    joint_pos = np.zeros((count, len(names)))
    for side, offset in (("Left", 0.0), ("Right", np.pi)):
        angles = leg_angles(phase + offset, 0.0 if still else hip_amplitude, 0.0 if still else knee_lift)
        for joint, value in angles.items():
            joint_pos[:, names.index(f"{side}_{joint}")] = value
    feet = _feet_in_trunk(joint_pos, names)
    default_depth = _feet_in_trunk(_default(names)[None], names)[0, 0, 2]
    sole = t1_robot().stand_height + default_depth  # trunk height minus foot depth in the default pose
    rows = np.arange(count)
    # The stance foot rests on the ground: the trunk moves against it. Velocities between frames use the foot in
    # stance over that interval (its mid-phase), and a frame's velocity is the mean of its two intervals.
    step = np.sign(phase[1] - phase[0]) * np.pi / count
    foot = _stance_foot(phase + step)
    ahead = np.roll(feet, -1, axis=0)
    between = -(ahead[rows, foot] - feet[rows, foot]) / DT
    lin_vel = 0.5 * (between + np.roll(between, 1, axis=0))
    height = sole - feet[rows, _stance_foot(phase), 2]
    joint_vel = (np.roll(joint_pos, -1, axis=0) - np.roll(joint_pos, 1, axis=0)) / (2.0 * DT)
    return {"dt": np.float64(DT), "joint_names": np.array(names), "joint_pos": joint_pos, "joint_vel": joint_vel,
            "base_height": height, "base_quat": np.tile([1.0, 0.0, 0.0, 0.0], (count, 1)),
            "base_lin_vel": lin_vel, "base_ang_vel": np.zeros((count, 3)), "loop": np.bool_(True)}


def _default(names: tuple[str, ...]) -> np.ndarray:
    from envs.robots.t1 import DEFAULT_POS

    return np.asarray([DEFAULT_POS.get(n, 0.0) for n in names])


def t1_gait_clips() -> dict[str, dict[str, np.ndarray]]:
    """Every clip of the T1 set (see the module docstring)."""
    from envs.robots.robot import select_joints
    from envs.robots.t1 import JOINT_ORDER, LEG_JOINTS

    names = select_joints(JOINT_ORDER, LEG_JOINTS)
    clips = {"stand": t1_clip(names, 0.0, 0.0, still=True)}
    clips.update({name: t1_clip(names, *spec) for name, spec in T1_CLIPS.items()})
    return clips


def main(out_dir: str = DATA_DIR) -> list[str]:
    """Writes ``t1_gait.npz`` and ``point_mass_circle.npz`` into ``out_dir``; returns their paths."""
    from envs.tasks.point_mass_amp import circle_clip

    os.makedirs(out_dir, exist_ok=True)
    paths = [os.path.join(out_dir, "t1_gait.npz"), os.path.join(out_dir, "point_mass_circle.npz")]
    write_motion_file(paths[0], t1_gait_clips())
    write_motion_file(paths[1], {"": circle_clip()})
    return paths


if __name__ == "__main__":
    for path in main(*sys.argv[1:2]):
        print(f"wrote {path} ({os.path.getsize(path)} bytes)")
