"""Sim-to-MuJoCo: an exported policy in plain CPU MuJoCo (``MjData`` + ``mj_step``), driven by ``policy.yaml``.

Per policy step (``dt = physics_dt * decimation``): take the command of the schedule, build the observation
from the descriptor (:class:`~agile_jax.evaluation.policy_io.ObservationBuilder`), run the policy, turn the
action into joint targets (joints outside the action hold their default), then ``decimation`` physics steps
of explicit PD ``tau = kp (q* - q) - kd qd`` with the DC-motor torque-speed clip and an optional command
delay. When the training sim integrated the damping implicitly (``scene.implicit_damping``), the joints carry
MuJoCo damping ``kd`` and ``kd * qd`` is added back to the motor command, as in training.

The MuJoCo model comes from :mod:`envs.robots` by articulation name; joints are mapped by name.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import time
from collections.abc import Callable

if "DISPLAY" not in os.environ:
    os.environ.setdefault("MUJOCO_GL", "egl")

import mujoco  # noqa: E402
import numpy as np  # noqa: E402

from agile_jax.evaluation.commands import CommandSchedule  # noqa: E402
from agile_jax.evaluation.policy_io import ObservationBuilder, PolicyIO, term_values  # noqa: E402


@dataclasses.dataclass(frozen=True)
class StressConfig:
    """Robustness knobs: observation-noise multiplier, PD-gain multiplier, command delay (physics steps)."""

    noise_scale: float = 1.0
    pd_scale: float = 1.0
    delay: int = 0


def load_model(io: PolicyIO, keep_meshes: bool = True) -> mujoco.MjModel:
    """The project's MuJoCo model of ``io.robot`` with the descriptor's physics step (implicit damping as trained),
    built by the function that builds the training env's model (:func:`envs.robots.registry.task_robot`)."""
    from envs.robots import registry

    if io.robot not in registry.ROBOTS:
        raise ValueError(f"no MuJoCo model for articulation '{io.robot}'; known: {sorted(registry.ROBOTS)}")
    robot = registry.task_robot(io.robot, io.physics_dt, io.implicit_damping, keep_meshes=keep_meshes)
    return copy.deepcopy(robot.model)  # the builders cache theirs; runs edit damping


@dataclasses.dataclass(frozen=True)
class JointMap:
    """MuJoCo addresses of the descriptor joints ``[J]``: qpos, dof and torque actuator."""

    qpos: np.ndarray
    dof: np.ndarray
    actuator: np.ndarray


def map_joints(model: mujoco.MjModel, names: tuple[str, ...]) -> JointMap:
    """Resolves the descriptor joints by name.

    Raises:
        ValueError: a joint is missing from the model or has no actuator.
    """
    model_joints = [model.joint(j).name for j in range(model.njnt)]
    missing = [n for n in names if n not in model_joints]
    if missing:
        raise ValueError(f"policy.yaml joints {missing} are not in the MuJoCo model (model joints: {model_joints})")
    jid = [model.joint(n).id for n in names]
    act = []
    for n, j in zip(names, jid):
        hits = [a for a in range(model.nu) if model.actuator_trntype[a] == mujoco.mjtTrn.mjTRN_JOINT
                and model.actuator_trnid[a, 0] == j]
        if not hits:
            raise ValueError(f"joint '{n}' has no actuator in the MuJoCo model")
        act.append(hits[0])
    return JointMap(np.asarray(model.jnt_qposadr[jid]), np.asarray(model.jnt_dofadr[jid]), np.asarray(act))


class Actuation:
    """Joint targets from actions, delay line and DC-motor PD at physics rate (see the module docstring)."""

    def __init__(self, io: PolicyIO, model: mujoco.MjModel, joints: JointMap, stress: StressConfig):
        self.io, self.joints = io, joints
        self.kp, self.kd = io.kp * stress.pd_scale, io.kd * stress.pd_scale
        if io.implicit_damping:
            model.dof_damping[joints.dof] = self.kd
        self.line = np.repeat(io.default_pos[None], stress.delay + 1, 0)

    def targets(self, action: np.ndarray) -> np.ndarray:
        """Joint position targets ``[J]`` of a raw action ``[A]``."""
        io = self.io
        a = action if io.action_clip is None else np.clip(action, *io.action_clip)  # raw-action clip per joint
        legs = io.action_offset + io.action_scale * a
        target = io.default_pos.copy()
        target[io.action_idx] = legs
        return target

    def torque(self, target: np.ndarray, data: mujoco.MjData) -> np.ndarray:
        """Pushes ``target`` into the delay line and writes the motor command; returns the PD torque ``[J]``."""
        self.line = np.concatenate([target[None], self.line[:-1]], 0)
        q, qd = data.qpos[self.joints.qpos], data.qvel[self.joints.dof]
        tau = self.kp * (self.line[-1] - q) - self.kd * qd
        io = self.io
        upper = np.clip(io.saturation * (1.0 - qd / io.velocity_limit), 0.0, io.effort_limit)
        lower = np.clip(io.saturation * (-1.0 - qd / io.velocity_limit), -io.effort_limit, 0.0)
        tau = np.clip(tau, lower, upper)
        data.ctrl[self.joints.actuator] = tau + self.kd * qd if io.implicit_damping else tau
        return tau


def reset_state(model: mujoco.MjModel, data: mujoco.MjData, io: PolicyIO, joints: JointMap) -> None:
    """Upright default pose at ``io.init_height`` (as the training env spawns it), at rest."""
    mujoco.mj_resetData(model, data)
    data.qpos[0:7] = [0.0, 0.0, io.init_height, 1.0, 0.0, 0.0, 0.0]
    data.qpos[joints.qpos] = io.default_pos
    mujoco.mj_forward(model, data)


def fallen(data: mujoco.MjData, io: PolicyIO) -> bool:
    """Root below ``io.base_height`` or tilted more than ``io.limit_angle``."""
    gz = -(1.0 - 2.0 * (data.qpos[4] ** 2 + data.qpos[5] ** 2))  # projected gravity z
    return bool(data.qpos[2] < io.base_height or np.arccos(np.clip(-gz, -1.0, 1.0)) > io.limit_angle)


def _record(data: mujoco.MjData, joints: JointMap) -> dict[str, np.ndarray]:
    quat = data.qpos[3:7].copy()
    vals = term_values(data.qpos, data.qvel, joints.qpos, joints.dof, np.zeros(3), np.zeros(0))
    return {"joint_pos": data.qpos[joints.qpos].copy(), "joint_vel": data.qvel[joints.dof].copy(),
            "root_pos": data.qpos[0:3].copy(), "root_quat": quat, "root_lin_vel_b": vals["base_lin_vel"],
            "root_ang_vel_b": vals["base_ang_vel"]}


def run_episode(policy: Callable[[np.ndarray], np.ndarray], io: PolicyIO, model: mujoco.MjModel,
                schedule: CommandSchedule, duration: float, stress: StressConfig = StressConfig(), seed: int = 0,
                on_step: Callable[[mujoco.MjData, int], None] | None = None) -> dict[str, np.ndarray]:
    """One episode; stops early when the robot falls.

    Args:
        policy: ``obs [D] -> action [A]``.
        io: parsed ``policy.yaml``.
        model: MuJoCo model (its joint damping is set here when ``io.implicit_damping``).
        schedule: command source. duration: episode length (s).
        stress: noise / gain / delay knobs. seed: observation-noise seed.
        on_step: called after every policy step with ``(data, step)`` (viewer sync, video frames).

    Returns:
        The trajectory (layout in :mod:`agile_jax.evaluation.metrics`), plus ``fell``, ``wall_time`` (s) and
        ``sim_wall_time`` (s, without ``on_step``).
    """
    joints = map_joints(model, io.joint_names)
    act = Actuation(io, model, joints, stress)
    data = mujoco.MjData(model)
    reset_state(model, data, io, joints)
    obs_builder = ObservationBuilder(io, stress.noise_scale, seed)
    last = np.zeros(len(io.action_joints))
    steps, rows, fell, hook_time = int(round(duration / io.dt)), [], False, 0.0
    start = time.perf_counter()
    for k in range(steps):
        cmd = schedule.at(k * io.dt)
        obs = obs_builder(term_values(data.qpos, data.qvel, joints.qpos, joints.dof, cmd, last, k * io.dt))
        action = np.asarray(policy(obs), np.float64).reshape(-1)
        target = act.targets(action)
        for _ in range(io.decimation):
            tau = act.torque(target, data)
            mujoco.mj_step(model, data)
        last = action
        rows.append({**_record(data, joints), "time": (k + 1) * io.dt, "command": cmd, "action": action,
                     "joint_target": target, "torque": tau})
        if on_step is not None:
            t_hook = time.perf_counter()
            on_step(data, k)
            hook_time += time.perf_counter() - t_hook
        if fallen(data, io):
            fell = True
            break
    traj = {key: np.asarray([r[key] for r in rows], np.float32) for key in rows[0]}
    traj["time"] = traj["time"].astype(np.float64)
    traj.update(dt=np.float64(io.dt), fell=np.bool_(fell), wall_time=np.float64(time.perf_counter() - start),
                sim_wall_time=np.float64(time.perf_counter() - start - hook_time), target_steps=np.int64(steps))
    return traj
