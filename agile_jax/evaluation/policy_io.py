"""What ``policy.yaml`` says about running a policy, and the NumPy pieces that follow it.

Only the IO descriptor is read here (no env code): observation terms (order, size, scale, noise, history
layout), the action mapping ``target = offset + scale * a`` with its clip, and the articulation tables.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping

import numpy as np

from agile_jax.export.io_descriptor import read_io_descriptor


@dataclasses.dataclass(frozen=True)
class PolicyIO:
    """The parsed IO descriptor of a single-group, non-recurrent policy; joint arrays are ``[J]``, actions ``[A]``.

    Attributes:
        terms: observation terms of the policy group (descriptor dicts, concatenation order).
        history_length / layout: frames ``H`` and ``"frame_major"`` (``[H, F]`` flattened) or ``"term_major"``.
        obs_dim: policy input width ``D``.
        joint_names / default_pos / kp / kd / effort_limit / velocity_limit / saturation: articulation tables.
        action_joints: joints driven by the action vector, in order.
        action_scale / action_offset: ``target = offset + scale * a``.
        action_clip / clip_target: clip range and whether it applies to the target (else to ``a``).
        physics_dt / decimation: physics step (s) and physics steps per policy step.
        robot: articulation name (e.g. ``booster_t1``).
        command_ranges: ``field -> (lo, hi)`` of the velocity command, if described.
        implicit_damping: the training sim integrated the PD damping implicitly.
        limit_angle / base_height: fall thresholds (rad, m).
        init_height: root height at the start of an episode (m; default pose, upright).
    """

    terms: tuple[dict, ...]
    history_length: int
    layout: str
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
    action_clip: tuple[float, float] | None
    clip_target: bool
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
            raise ValueError(f"policy.yaml: articulations.robot.{key} is missing")
        return np.full(n, default)
    return np.asarray(table[key], np.float64).reshape(n)


def parse(desc: Mapping) -> PolicyIO:
    """Builds a :class:`PolicyIO` from a loaded ``policy.yaml``.

    Raises:
        ValueError: the descriptor lacks what a sim-to-sim run needs (joint names, gains, timing ...).
    """
    groups = desc["policy"]["inputs"][0]["groups"]
    if len(groups) != 1 or desc["policy"]["network"].get("state"):
        raise ValueError("sim2mujoco runs single-group, non-recurrent policies only")
    group = groups[0]["name"]
    terms = tuple(desc["observations"][group])
    hist = (desc.get("observation_history") or {}).get(group, {})
    art = (desc.get("articulations") or {}).get("robot")
    actions = desc.get("actions") or []
    if not art or not art.get("joint_names") or len(actions) != 1 or not actions[0].get("joint_names"):
        raise ValueError("policy.yaml does not name its joints (articulations.robot / actions[0].joint_names); "
                         "export it with an env that provides io_description()")
    names, act = tuple(art["joint_names"]), actions[0]
    n, a = len(names), len(act["joint_names"])
    missing = [j for j in act["joint_names"] if j not in names]
    if missing:
        raise ValueError(f"policy.yaml: action joints {missing} are not articulation joints")
    scene, term = desc.get("scene") or {}, desc.get("terminations") or {}
    ranges = ((desc.get("commands") or {}).get("base_velocity") or {}).get("ranges") or {}
    return PolicyIO(
        terms=terms, history_length=int(hist.get("length", 1)), layout=hist.get("layout", "term_major"),
        obs_dim=int(groups[0]["dim"]), joint_names=names, default_pos=_arr(art, "default_joint_pos", n, 0.0),
        kp=_arr(art, "default_joint_stiffness", n), kd=_arr(art, "default_joint_damping", n),
        effort_limit=_arr(art, "effort_limit", n, np.inf), velocity_limit=_arr(art, "velocity_limit", n, np.inf),
        saturation=_arr(art, "saturation_effort", n, np.inf), action_joints=tuple(act["joint_names"]),
        action_scale=np.broadcast_to(np.asarray(act.get("scale", 1.0), np.float64), (a,)).copy(),
        action_offset=np.broadcast_to(np.asarray(act.get("offset", 0.0), np.float64), (a,)).copy(),
        action_clip=tuple(act["clip"]) if act.get("clip") else None, clip_target=bool(act.get("clip_target", False)),
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
                command: np.ndarray, last_action: np.ndarray) -> dict[str, np.ndarray]:
    """Raw values of the known term sources from a free-floating MuJoCo state.

    Args:
        qpos / qvel: generalised state ``[nq]`` / ``[nv]`` (free joint first; its angular velocity is local).
        joint_qpos / joint_dof: addresses of the articulation joints ``[J]``.
        command: velocity command ``[3]``. last_action: previous raw action ``[A]``.
    """
    quat = qpos[3:7]
    return {"base_ang_vel": qvel[3:6].copy(), "base_lin_vel": quat_rotate_inverse(quat, qvel[0:3]),
            "projected_gravity": quat_rotate_inverse(quat, np.array([0.0, 0.0, -1.0])),
            "velocity_commands": np.asarray(command, np.float64), "joint_pos": qpos[joint_qpos],
            "joint_vel": qvel[joint_dof], "last_action": np.asarray(last_action, np.float64)}


class ObservationBuilder:
    """Builds the flat policy input ``[D]`` per policy step from the descriptor terms and a history buffer.

    Args:
        io: parsed descriptor.
        noise_scale: multiplier of every term's uniform noise (0 = clean).
        seed: noise seed.
    """

    def __init__(self, io: PolicyIO, noise_scale: float = 1.0, seed: int = 0):
        self.io, self.noise_scale, self.rng = io, noise_scale, np.random.default_rng(seed)
        self._idx = {n: i for i, n in enumerate(io.joint_names)}
        self.history: np.ndarray | None = None

    def reset(self) -> None:
        """Empties the history (the next frame fills every slot)."""
        self.history = None

    def _term(self, term: Mapping, values: Mapping[str, np.ndarray]) -> np.ndarray:
        name = term["name"]
        source = {"joint_pos_rel": "joint_pos", "joint_vel_rel": "joint_vel", "actions": "last_action"}.get(name, name)
        if source not in values:
            raise ValueError(f"policy.yaml: observation term '{name}' is not supported by sim2mujoco")
        x = np.asarray(values[source], np.float64)
        if source in ("joint_pos", "joint_vel") and term.get("joint_names"):
            x = x[[self._idx[j] for j in term["joint_names"]]]
        if term.get("offset") is not None:
            x = x - np.asarray(term["offset"])
        noise = term.get("noise")
        if noise and self.noise_scale > 0:
            x = x + self.noise_scale * self.rng.uniform(noise["n_min"], noise["n_max"], x.shape)
        if term.get("clip"):
            x = np.clip(x, *term["clip"])
        return x * np.asarray(term.get("scale") if term.get("scale") is not None else 1.0)

    def __call__(self, values: Mapping[str, np.ndarray]) -> np.ndarray:
        """Appends this step's frame to the history and returns the flat input ``[D]`` (float32)."""
        frame = np.concatenate([self._term(t, values) for t in self.io.terms])
        h = self.io.history_length
        self.history = np.repeat(frame[None], h, 0) if self.history is None else np.concatenate(
            [self.history[1:], frame[None]], 0)
        if self.io.layout == "frame_major":
            flat = self.history.reshape(-1)
        else:
            bounds = np.cumsum([0] + [int(np.prod(t["shape"])) // h for t in self.io.terms])
            flat = np.concatenate([self.history[:, b0:b1].reshape(-1) for b0, b1 in zip(bounds[:-1], bounds[1:])])
        if flat.size != self.io.obs_dim:
            raise ValueError(f"built {flat.size} observation values, the policy reads {self.io.obs_dim}")
        return flat.astype(np.float32)


def load_policy(path: str) -> Callable[[np.ndarray], np.ndarray]:
    """``obs [D] -> actions [A]`` of an exported ``.onnx`` (onnxruntime) or ``.pt`` (TorchScript) policy."""
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
