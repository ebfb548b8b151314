"""Static robot description shared by the tasks: name-resolved index tables, actuator gains and mirror maps.

Everything here is plain numpy/Python, computed once on the host from joint, body and geom *names*;
nothing depends on the order in which the MJCF happens to declare things.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from collections.abc import Mapping, Sequence

import mujoco
import numpy as np

from envs.mdp.symmetry import JointMirror, joint_mirror
from envs.robots import assets


@dataclasses.dataclass(frozen=True)
class ActuatorGroup:
    """One AGILE ``DelayedDCMotor`` group: the joints it drives (regexes) and its per-joint parameters.

    Each table maps a regex to a value; the first matching regex wins.
    """

    joints: tuple[str, ...]
    stiffness: Mapping[str, float]
    damping: Mapping[str, float]
    effort_limit: Mapping[str, float]
    velocity_limit: Mapping[str, float]
    saturation_effort: float
    max_delay: int
    armature: float
    friction: float


@dataclasses.dataclass(frozen=True)
class ContactProbe:
    """A geom whose lowest point approximates a body touching the floor (see ``mdp.contacts``)."""

    geom_id: int
    kind: str  # "box" or "sphere"
    size: tuple[float, float, float]


@dataclasses.dataclass(frozen=True)
class Robot:
    """Index tables of an MJX-friendly humanoid; joint arrays are ``[J]`` in Isaac Lab (breadth-first) order.

    Attributes:
        name: robot name.
        model: the MJX-friendly ``mujoco.MjModel``.
        joint_names: all actuated hinge joints, Isaac Lab order ``[J]``.
        qpos_adr / dof_adr / actuator_id: MuJoCo addresses of each joint ``[J]``.
        action_idx: joints driven by the policy (index into ``joint_names``) ``[A]``.
        random_idx: joints moved by the random-target disturbance ``[R]``.
        default_pos: default joint positions ``[J]``.
        lower / upper: hard joint position limits ``[J]``.
        kp / kd / effort_limit / velocity_limit / saturation: actuator parameters ``[J]``.
        delay_group: actuator group of each joint ``[J]``; ``group_max_delay`` per group (physics steps).
        root_body / yaw_body / tilt_body: trunk (root), body for foot-yaw alignment, body for the tilt check.
        feet_bodies: ``[2]`` left, right foot bodies.
        foot_geoms: ``[2, K]`` floor-touching foot spheres; ``foot_radius`` their radius.
        illegal_contact_probes / undesired_contact_probes: geoms approximating trunk contacts.
        illegal_contact_bodies: bodies whose height gates the illegal-contact termination.
        wrench_body / extremity_bodies: bodies receiving random external wrenches.
        stand_height: root height at which the default pose touches the floor.
        mirror_all / mirror_action: left-right joint mirror over ``joint_names`` / the action joints.
    """

    name: str
    model: mujoco.MjModel
    joint_names: tuple[str, ...]
    qpos_adr: np.ndarray
    dof_adr: np.ndarray
    actuator_id: np.ndarray
    action_idx: np.ndarray
    random_idx: np.ndarray
    default_pos: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    kp: np.ndarray
    kd: np.ndarray
    effort_limit: np.ndarray
    velocity_limit: np.ndarray
    saturation: np.ndarray
    delay_group: np.ndarray
    group_max_delay: tuple[int, ...]
    root_body: int
    yaw_body: int
    tilt_body: int
    feet_bodies: np.ndarray
    foot_geoms: np.ndarray
    foot_radius: float
    illegal_contact_probes: tuple[ContactProbe, ...]
    undesired_contact_probes: tuple[ContactProbe, ...]
    illegal_contact_bodies: np.ndarray
    wrench_body: int
    extremity_bodies: np.ndarray
    stand_height: float
    mirror_all: JointMirror
    mirror_action: JointMirror

    @property
    def action_names(self) -> tuple[str, ...]:
        """Names of the policy-driven joints, in action order."""
        return tuple(self.joint_names[i] for i in self.action_idx)

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)

    @property
    def max_delay(self) -> int:
        return max(self.group_max_delay)

    def mirror_qpos(self, qpos: np.ndarray) -> np.ndarray:
        """Left-right (xz-plane) mirror of a generalised position ``[..., nq]`` (numpy or jax).

        Root: y -> -y and quaternion ``(w, x, y, z) -> (w, -x, y, -z)``; joints by :attr:`mirror_all`.
        """
        sign = np.ones(qpos.shape[-1], np.float32)
        sign[[1, 4, 6]] = -1.0
        return _set_last(qpos * sign, self.qpos_adr, self.mirror_all(qpos[..., self.qpos_adr]))

    def mirror_qvel(self, qvel: np.ndarray) -> np.ndarray:
        """Left-right mirror of a generalised velocity ``[..., nv]`` (root: world linear, local angular)."""
        sign = np.ones(qvel.shape[-1], np.float32)
        sign[[1, 3, 5]] = -1.0  # v_y, w_x, w_z
        return _set_last(qvel * sign, self.dof_adr, self.mirror_all(qvel[..., self.dof_adr]))


def _set_last(x, idx: np.ndarray, values):
    """``x[..., idx] = values`` for numpy or jax arrays."""
    if hasattr(x, "at"):
        return x.at[..., idx].set(values)
    x = x.copy()
    x[..., idx] = values
    return x


def select_joints(order: Sequence[str], patterns: Sequence[str], exclude: Sequence[str] = ()) -> tuple[str, ...]:
    """Joints of ``order`` matching any regex in ``patterns`` and none in ``exclude``, kept in ``order``.

    This is Isaac Lab's ``find_joints(..., preserve_order=False)``.
    """
    def hit(name: str, pats: Sequence[str]) -> bool:
        return any(re.fullmatch(p, name) for p in pats)

    return tuple(n for n in order if hit(n, patterns) and not hit(n, exclude))


def resolve_table(names: Sequence[str], table: Mapping[str, float], what: str) -> np.ndarray:
    """Per-joint values from a ``regex -> value`` table (first match wins).

    Raises:
        KeyError: a joint matches no regex.
    """
    out = []
    for name in names:
        value = next((v for pat, v in table.items() if re.fullmatch(pat, name)), None)
        if value is None:
            raise KeyError(f"{what}: no entry matches joint '{name}'")
        out.append(float(value))
    return np.asarray(out, np.float32)


def actuator_arrays(names: Sequence[str], groups: Sequence[ActuatorGroup]) -> dict[str, np.ndarray]:
    """Per-joint actuator parameters ``[J]`` from the actuator groups (each joint in exactly one group)."""
    group_of = []
    for name in names:
        owners = [g for g, grp in enumerate(groups) if any(re.fullmatch(p, name) for p in grp.joints)]
        if len(owners) != 1:
            raise ValueError(f"joint '{name}' belongs to {len(owners)} actuator groups, expected 1")
        group_of.append(owners[0])
    group_of = np.asarray(group_of, np.int32)
    fields = {"kp": "stiffness", "kd": "damping", "effort_limit": "effort_limit", "velocity_limit": "velocity_limit"}
    out = {key: np.zeros(len(names), np.float32) for key in fields}
    for g, grp in enumerate(groups):
        sel = [i for i in range(len(names)) if group_of[i] == g]
        for key, attr in fields.items():
            out[key][sel] = resolve_table([names[i] for i in sel], getattr(grp, attr), attr)
    out["saturation"] = np.asarray([groups[g].saturation_effort for g in group_of], np.float32)
    out["armature"] = np.asarray([groups[g].armature for g in group_of], np.float32)
    out["friction"] = np.asarray([groups[g].friction for g in group_of], np.float32)
    out["delay_group"] = group_of
    return out


def probe(model: mujoco.MjModel, body: str, geom_type: int, name: str | None = None) -> ContactProbe:
    """The first geom of ``body`` with ``geom_type`` (or the geom called ``name``) as a :class:`ContactProbe`."""
    if name is not None:
        gid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, name)
    else:
        bid = model.body(body).id
        gid = next(g for g in range(model.ngeom) if model.geom_bodyid[g] == bid and model.geom_type[g] == geom_type)
    kind = {int(mujoco.mjtGeom.mjGEOM_BOX): "box", int(mujoco.mjtGeom.mjGEOM_SPHERE): "sphere"}[
        int(model.geom_type[gid])
    ]
    return ContactProbe(int(gid), kind, tuple(float(s) for s in model.geom_size[gid]))


def standing_height(model: mujoco.MjModel, qpos_adr: np.ndarray, default_pos: np.ndarray, foot_geoms: np.ndarray,
                    radius: float) -> float:
    """Root height at which the default pose (upright) rests its lowest foot sphere on the floor."""
    data = mujoco.MjData(model)
    data.qpos[:] = model.qpos0
    data.qpos[2] = 0.0
    data.qpos[qpos_adr] = default_pos
    mujoco.mj_kinematics(model, data)
    lowest = float(np.min(data.geom_xpos[foot_geoms.reshape(-1), 2])) - radius
    return -lowest


def build_robot(name: str, model: mujoco.MjModel, joint_order: Sequence[str], groups: Sequence[ActuatorGroup],
                **kw) -> Robot:
    """Resolves the name-based tables of a robot against its compiled MJX model.

    Args:
        name: robot name.
        model: compiled MJX-friendly model (one torque motor per joint, named after it).
        joint_order: all hinge joints in Isaac Lab order.
        groups: actuator groups.
        **kw: ``action_joints``, ``random_joints`` (names), ``default_pos`` (regex -> value, else 0), body names
            ``root``, ``yaw``, ``tilt``, ``feet`` (2), ``wrench``, ``extremities``, ``illegal_bodies``,
            ``foot_geoms`` (2 lists), probes ``illegal_probes`` / ``undesired_probes`` (ContactProbe),
            mirror rules ``mirror`` (kwargs of :func:`joint_mirror`).
    """
    names = tuple(joint_order)
    jid = [model.joint(n).id for n in names]
    act = actuator_arrays(names, groups)
    index = {n: i for i, n in enumerate(names)}
    table = kw["default_pos"]
    default_pos = np.asarray(
        [next((v for p, v in table.items() if re.fullmatch(p, n)), 0.0) for n in names], np.float32
    )
    bodies = lambda ns: np.asarray([model.body(n).id for n in ns], np.int32)  # noqa: E731
    foot_geoms = np.asarray([[model.geom(g).id for g in side] for side in kw["foot_geoms"]], np.int32)
    foot_radius = float(model.geom_size[foot_geoms[0, 0], 0])
    qpos_adr = np.asarray([model.jnt_qposadr[j] for j in jid], np.int32)
    action_names = tuple(kw["action_joints"])
    return Robot(
        name=name, model=model, joint_names=names, qpos_adr=qpos_adr,
        dof_adr=np.asarray([model.jnt_dofadr[j] for j in jid], np.int32),
        actuator_id=np.asarray([model.actuator(n).id for n in names], np.int32),
        action_idx=np.asarray([index[n] for n in action_names], np.int32),
        random_idx=np.asarray([index[n] for n in kw["random_joints"]], np.int32),
        default_pos=default_pos,
        lower=np.asarray([model.jnt_range[j, 0] for j in jid], np.float32),
        upper=np.asarray([model.jnt_range[j, 1] for j in jid], np.float32),
        kp=act["kp"], kd=act["kd"], effort_limit=act["effort_limit"], velocity_limit=act["velocity_limit"],
        saturation=act["saturation"], delay_group=act["delay_group"],
        group_max_delay=tuple(g.max_delay for g in groups),
        root_body=model.body(kw["root"]).id, yaw_body=model.body(kw["yaw"]).id, tilt_body=model.body(kw["tilt"]).id,
        feet_bodies=bodies(kw["feet"]), foot_geoms=foot_geoms, foot_radius=foot_radius,
        illegal_contact_probes=tuple(kw["illegal_probes"]), undesired_contact_probes=tuple(kw["undesired_probes"]),
        illegal_contact_bodies=bodies(kw["illegal_bodies"]),
        wrench_body=model.body(kw["wrench"]).id, extremity_bodies=bodies(kw["extremities"]),
        stand_height=standing_height(model, qpos_adr, default_pos, foot_geoms, foot_radius),
        mirror_all=joint_mirror(names, **kw["mirror"]),
        mirror_action=joint_mirror(action_names, **kw["mirror"]),
    )


def _principal(inertia: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Principal moments ``[3]`` and frame quaternion ``[4]`` of a symmetric inertia matrix ``[3, 3]``."""
    moments, frame = np.linalg.eigh(inertia)
    if np.linalg.det(frame) < 0:
        frame[:, 0] *= -1.0
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, frame.reshape(-1))
    return moments, quat


def symmetric_inertials(robot: Robot) -> dict[str, np.ndarray]:
    """Mass properties of an exactly left-right symmetric copy of the robot (left side copied to the right).

    Body pairs come from the joint mirror (a body and the body of its joint's mirror partner); unpaired bodies
    get the symmetric part of their inertia and a zero lateral CoM. The constraint scales ``*_invweight0`` are
    recomputed for the symmetric masses.

    Returns:
        ``body_mass``, ``body_inertia``, ``body_ipos``, ``body_iquat``, ``body_invweight0``, ``dof_invweight0``.
    """
    m = copy.deepcopy(robot.model)
    reflect = np.diag([1.0, -1.0, 1.0])
    body_of = {n: int(m.jnt_bodyid[m.joint(n).id]) for n in robot.joint_names}
    names = robot.joint_names
    partner = {body_of[n]: body_of[names[robot.mirror_all.perm[i]]] for i, n in enumerate(names)}
    for b in range(1, m.nbody):
        rot = np.zeros(9)
        mujoco.mju_quat2Mat(rot, m.body_iquat[b])
        rot = rot.reshape(3, 3)
        inertia = rot @ np.diag(m.body_inertia[b]) @ rot.T
        p = partner.get(b, b)
        if p == b:
            m.body_ipos[b, 1] = 0.0
            m.body_inertia[b], m.body_iquat[b] = _principal(0.5 * (inertia + reflect @ inertia @ reflect))
        elif b < p:
            m.body_mass[p] = m.body_mass[b]
            m.body_ipos[p] = m.body_ipos[b] * np.array([1.0, -1.0, 1.0])
            m.body_inertia[p], m.body_iquat[p] = _principal(reflect @ inertia @ reflect)
    mujoco.mj_setConst(m, mujoco.MjData(m))
    fields = ("body_mass", "body_inertia", "body_ipos", "body_iquat", "body_invweight0", "dof_invweight0")
    return {f: np.asarray(getattr(m, f), np.float32) for f in fields}


def finish_mjx_spec(spec: mujoco.MjSpec, joint_order: Sequence[str], groups: Sequence[ActuatorGroup],
                    solver, keep_meshes: bool) -> mujoco.MjSpec:
    """Shared last edits of an MJX-friendly robot spec: joint dynamics, torque motors, solver, meshes.

    With implicit damping (Euler damping on) the PD damping ``kd`` lives in the joints; see ``mdp.actuators``.
    """
    act = actuator_arrays(joint_order, groups)
    damping = dict(zip(joint_order, act["kd"].tolist())) if solver.eulerdamp else None
    assets.set_joint_dynamics(spec, dict(zip(joint_order, act["armature"].tolist())),
                              dict(zip(joint_order, act["friction"].tolist())), damping)
    assets.set_torque_motors(spec, joint_order)
    assets.set_solver(spec, solver)
    if not keep_meshes:
        assets.drop_visual_meshes(spec)
    return spec
