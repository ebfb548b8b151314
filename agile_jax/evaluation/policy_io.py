"""What ``policy.yaml`` says about running a policy, and the NumPy pieces that follow it.

Only the IO descriptor is read here (no env code), in AGILE's schema (:mod:`agile_jax.export.io_descriptor`):
observation terms (order, per-frame size, ``overloads`` scale / clip / history, offsets, noise), the action
mapping ``target = offset + scale * clip(a)`` and the articulation tables. The flat input is built term-major,
as AGILE's evaluator builds it; a pre-AGILE descriptor is refused with one line.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping

import numpy as np

from agile_jax.export.io_descriptor import (
    DescriptorError,
    check_format,
    frame_size,
    history_length,
    read_io_descriptor,
    term_width,
)

# AGILE's term name -> the raw value it reads (see term_values).
TERM_SOURCES = {"base_ang_vel": "base_ang_vel", "base_lin_vel": "base_lin_vel",
                "projected_gravity": "projected_gravity", "locomotion_command": "command",
                "navigation_command": "command", "joint_pos_rel": "joint_pos", "joint_pos": "joint_pos",
                "joint_vel_rel": "joint_vel", "joint_vel": "joint_vel", "last_action": "last_action",
                "gait_clock": "time"}


@dataclasses.dataclass(frozen=True)
class PolicyIO:
    """The parsed IO descriptor of a single-group, non-recurrent policy; joint arrays are ``[J]``, actions ``[A]``.

    Attributes:
        terms: observation terms of the policy group (descriptor dicts, concatenation order).
        obs_dim: policy input width ``D`` (term-major: each term's frames together).
        joint_names / default_pos / kp / kd / effort_limit / velocity_limit / saturation: articulation tables.
        action_joints: joints driven by the action vector, in order.
        action_scale / action_offset: ``target = offset + scale * clip(a)``.
        action_clip: ``(lo [A], hi [A])`` bounds of the raw action, or ``None``.
        physics_dt / decimation: physics step (s) and physics steps per policy step.
        robot: articulation name (e.g. ``booster_t1``).
        command_ranges: ``field -> (lo, hi)`` of the velocity command, if described.
        implicit_damping: the training sim integrated the PD damping implicitly.
        limit_angle / base_height: fall thresholds (rad, m).
        init_height: root height at the start of an episode (m; default pose, upright).
    """

    terms: tuple[dict, ...]
    obs_dim: int
    joint_names: tuple[str, ...]
    default_pos: np.ndarray
    kp: np.ndarray
    kd: np.ndarray
    effort_limit: np.ndarray
    velocity_limit: np.ndarray
    saturation: np.ndarray
    action_joints: tuple[str, ...]
    action_scale: np.ndarray
    action_offset: np.ndarray
    action_clip: tuple[np.ndarray, np.ndarray] | None
    physics_dt: float
    decimation: int
    robot: str
    command_ranges: dict
    implicit_damping: bool
    limit_angle: float
    base_height: float
    init_height: float

    @property
    def dt(self) -> float:
        return self.physics_dt * self.decimation

    @property
    def action_idx(self) -> np.ndarray:
        """Index of each action joint in :attr:`joint_names` ``[A]``."""
        return np.asarray([self.joint_names.index(n) for n in self.action_joints], np.int64)


def _arr(table: Mapping, key: str, n: int, default: float | None = None) -> np.ndarray:
    if table.get(key) is None:
        if default is None:
            raise DescriptorError(f"policy.yaml: articulations.robot.{key} is missing")
        return np.full(n, default)
    return np.asarray(table[key], np.float64).reshape(n)


def _per_action(value, a: int, default: float) -> np.ndarray:
    """A scalar or per-joint (possibly ``[[...]]``-nested, as AGILE writes it) value as ``[A]``."""
    arr = np.asarray(default if value is None else value, np.float64)
    return np.broadcast_to(arr.reshape(-1) if arr.size == a else arr.reshape(()), (a,)).copy()


def action_clip(clip, a: int) -> tuple[np.ndarray, np.ndarray] | None:
    """``(lo [A], hi [A])`` of an action term's raw-action ``clip`` (``[lo, hi]`` or per joint), or ``None``."""
    if clip is None:
        return None
    bounds = np.asarray(clip, np.float64)
    bounds = np.broadcast_to(bounds.reshape(-1, 2) if bounds.ndim == 2 else bounds.reshape(1, 2), (a, 2))
    return bounds[:, 0].copy(), bounds[:, 1].copy()


def _check_policy(desc: Mapping) -> str:
    """The single observation group of a non-recurrent policy; refuses anything else in one line."""
    groups = desc["policy"]["inputs"][0]["groups"]
    if len(groups) != 1 or desc["policy"].get("type", "MLP") != "MLP":
        raise DescriptorError("sim2mujoco runs single-group, non-recurrent (policy.type MLP) policies only")
    unknown = [t["name"] for t in desc["observations"][groups[0]["name"]] if t["name"] not in TERM_SOURCES]
    if unknown:
        raise DescriptorError(f"policy.yaml: observation terms {unknown} are not supported; known: "
                              f"{sorted(TERM_SOURCES)}")
    return groups[0]["name"]


def parse(desc: Mapping) -> PolicyIO:
    """Builds a :class:`PolicyIO` from a loaded ``policy.yaml``.

    Raises:
        DescriptorError: a pre-AGILE descriptor, or one that lacks what a sim-to-sim run needs (joint names,
            gains, timing ...).
    """
    check_format(desc)
    terms = tuple(desc["observations"][_check_policy(desc)])
    art = (desc.get("articulations") or {}).get("robot")
    actions = desc.get("actions") or []
    if not art or not art.get("joint_names") or len(actions) != 1 or not actions[0].get("joint_names"):
        raise DescriptorError("policy.yaml does not name its joints (articulations.robot / actions[0].joint_names);"
                              " export it with an env that provides io_description()")
    names, act = tuple(art["joint_names"]), actions[0]
    n, a = len(names), len(act["joint_names"])
    missing = [j for j in act["joint_names"] if j not in names]
    if missing:
        raise DescriptorError(f"policy.yaml: action joints {missing} are not articulation joints")
    scene, term = desc.get("scene") or {}, desc.get("terminations") or {}
    ranges = ((desc.get("commands") or {}).get("base_velocity") or {}).get("ranges") or {}
    return PolicyIO(
        terms=terms, obs_dim=sum(term_width(t) for t in terms), joint_names=names,
        default_pos=_arr(art, "default_joint_pos", n, 0.0), kp=_arr(art, "default_joint_stiffness", n),
        kd=_arr(art, "default_joint_damping", n), effort_limit=_arr(art, "effort_limit", n, np.inf),
        velocity_limit=_arr(art, "velocity_limit", n, np.inf), saturation=_arr(art, "saturation_effort", n, np.inf),
        action_joints=tuple(act["joint_names"]), action_scale=_per_action(act.get("scale"), a, 1.0),
        action_offset=_per_action(act.get("offset"), a, 0.0), action_clip=action_clip(act.get("clip"), a),
        physics_dt=float(scene["physics_dt"]), decimation=int(scene["decimation"]), robot=str(art.get("name", "")),
        command_ranges={k: tuple(v) for k, v in ranges.items()},
        implicit_damping=bool(scene.get("implicit_damping", False)),
        limit_angle=float(term.get("limit_angle", np.radians(60.0))), base_height=float(term.get("base_height", 0.3)),
        init_height=float(art.get("init_root_height", art.get("stand_height", 0.7) + 0.02)),
    )


def load_io(path: str) -> PolicyIO:
    """Reads and parses ``policy.yaml``."""
    return parse(read_io_descriptor(path))


def quat_rotate_inverse(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Rotates world vector ``v`` ``[3]`` into the frame of quaternion ``q`` ``[4]`` (w, x, y, z)."""
    w, u = q[0], -np.asarray(q[1:4])
    t = 2.0 * np.cross(u, v)
    return v + w * t + np.cross(u, t)


def term_values(qpos: np.ndarray, qvel: np.ndarray, joint_qpos: np.ndarray, joint_dof: np.ndarray,
                command: np.ndarray, last_action: np.ndarray, time: float = 0.0) -> dict[str, np.ndarray]:
    """Raw values of the known term sources from a free-floating MuJoCo state.

    Args:
        qpos / qvel: generalised state ``[nq]`` / ``[nv]`` (free joint first; its angular velocity is local).
        joint_qpos / joint_dof: addresses of the articulation joints ``[J]``.
        command: velocity command ``[3]``. last_action: previous raw action ``[A]``.
        time: seconds since the episode started (the gait clock's input).
    """
    quat = qpos[3:7]
    return {"base_ang_vel": qvel[3:6].copy(), "base_lin_vel": quat_rotate_inverse(quat, qvel[0:3]),
            "projected_gravity": quat_rotate_inverse(quat, np.array([0.0, 0.0, -1.0])),
            "command": np.asarray(command, np.float64), "joint_pos": qpos[joint_qpos],
            "joint_vel": qvel[joint_dof], "last_action": np.asarray(last_action, np.float64),
            "time": np.float64(time)}


def gait_clock(time: float, frequency: float, command: np.ndarray | None = None,
               stand_below: float = 0.0) -> np.ndarray:
    """``[sin phi, cos phi]`` with ``phi = wrap(2 pi frequency time)`` to ``[-pi, pi)`` (a ``GaitClock`` term);
    zero while ``|command| <= stand_below`` when ``stand_below > 0`` (the clock stops for standing)."""
    if stand_below > 0.0 and command is not None and np.linalg.norm(command) <= stand_below:
        return np.zeros(2)
    phi = np.mod(2.0 * np.pi * frequency * time + np.pi, 2.0 * np.pi) - np.pi
    return np.array([np.sin(phi), np.cos(phi)])


class ObservationBuilder:
    """Builds the flat policy input ``[D]`` per policy step: one history buffer per term, term-major.

    As AGILE's evaluator: each term's value is computed, offset, scaled and clipped, pushed into that term's
    ``history_length`` frames (oldest first), and the terms' frames are concatenated in order. Unlike it, an
    empty history is back-filled with the first frame (as the training env does) instead of zeros.

    Args:
        io: parsed descriptor.
        noise_scale: multiplier of every term's uniform training noise (``extras.noise``; 0 = clean).
        seed: noise seed.
    """

    def __init__(self, io: PolicyIO, noise_scale: float = 1.0, seed: int = 0):
        self.io, self.noise_scale, self.rng = io, noise_scale, np.random.default_rng(seed)
        self._idx = {n: i for i, n in enumerate(io.joint_names)}
        self.history: list[np.ndarray] | None = None

    def reset(self) -> None:
        """Empties the history (the next frame fills every slot)."""
        self.history = None

    def _term(self, term: Mapping, values: Mapping[str, np.ndarray]) -> np.ndarray:
        """One frame of ``term``: value, minus offsets, plus noise, clipped, scaled (Isaac Lab's order)."""
        source = TERM_SOURCES[term["name"]]
        x = np.asarray(values[source], np.float64)
        if source == "time":
            x = gait_clock(float(x), float(term["frequency"]), values["command"],
                           float(term.get("stand_below") or 0.0))
        if source in ("joint_pos", "joint_vel") and term.get("joint_names"):
            x = x[[self._idx[j] for j in term["joint_names"]]]
        offsets = term.get("joint_pos_offsets" if source == "joint_pos" else "joint_vel_offsets")
        if offsets is not None and term["name"].endswith("_rel"):
            x = x - np.asarray(offsets)
        noise = (term.get("extras") or {}).get("noise")
        if noise and self.noise_scale > 0:
            x = x + self.noise_scale * self.rng.uniform(noise["n_min"], noise["n_max"], x.shape)
        overloads = term.get("overloads") or {}
        if overloads.get("clip"):
            x = np.clip(x, *overloads["clip"])
        scale = overloads.get("scale")
        x = x * np.asarray(scale if scale is not None else 1.0)
        if x.size != frame_size(term):
            raise DescriptorError(f"policy.yaml: term '{term['name']}' has shape {term.get('shape')}, "
                                  f"the state gives {x.size} values")
        return x.reshape(-1)

    def __call__(self, values: Mapping[str, np.ndarray]) -> np.ndarray:
        """Pushes this step's frame of every term and returns the flat input ``[D]`` (float32)."""
        frames = [self._term(t, values) for t in self.io.terms]
        lengths = [max(history_length(t), 1) for t in self.io.terms]
        if self.history is None:
            self.history = [np.repeat(f[None], h, 0) for f, h in zip(frames, lengths)]
        else:
            self.history = [np.concatenate([buf[1:], f[None]], 0) for buf, f in zip(self.history, frames)]
        return np.concatenate([buf.reshape(-1) for buf in self.history]).astype(np.float32)


def load_policy(path: str) -> Callable[[np.ndarray], np.ndarray]:
    """``obs [D] -> actions [A]`` of an exported ``.onnx`` (onnxruntime) or ``.pt`` (TorchScript) policy.

    The file runs in the runtimes a robot runs it in, not through :func:`agile_jax.policies.load_policy` (whose
    JAX readers serve as teachers in training): the evaluation checks the export as deployed, so a fault of our
    own ONNX/TorchScript readers cannot hide a fault of the export.
    """
    if path.endswith(".pt"):
        import torch

        module = torch.jit.load(path, map_location="cpu").eval()

        def run_torch(obs: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return module(torch.from_numpy(obs[None])).numpy()[0]
        return run_torch
    import onnxruntime as ort

    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda obs: session.run(None, {name: obs[None]})[0][0]


def find_export(path: str, fmt: str = "onnx") -> tuple[str, str]:
    """``(policy file, policy.yaml)`` inside a run dir (its ``exported/``) or an exported dir."""
    for d in (os.path.join(path, "exported"), path):
        yaml_path = os.path.join(d, "policy.yaml")
        if os.path.isfile(yaml_path):
            policy = os.path.join(d, {"onnx": "policy.onnx", "torchscript": "policy.pt"}.get(fmt, fmt))
            if not os.path.isfile(policy):
                raise FileNotFoundError(f"{policy} not found next to {yaml_path}")
            return policy, yaml_path
    raise FileNotFoundError(f"no policy.yaml in {path} or {path}/exported")
