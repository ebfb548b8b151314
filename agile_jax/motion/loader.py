"""Reference motion files and the :class:`AMPLoader` that turns them into expert AMP observations.

File format (one ``.npz`` archive, written by :func:`write_motion_file`; ``docs/motion_files.md`` has the
details). A clip is a sequence of ``F`` frames at a fixed time step::

    dt            ()       float   seconds between frames (required)
    joint_names   [J]      str     names of the joint columns (required)
    joint_pos     [F, J]   float   joint positions, rad (required)
    joint_vel     [F, J]   float   joint velocities, rad/s (optional: central differences of joint_pos)
    base_height   [F]      float   root height above the ground, m
    base_quat     [F, 4]   float   root orientation in the world, quaternion (w, x, y, z)
    base_lin_vel  [F, 3]   float   root linear velocity in the root frame, m/s
    base_ang_vel  [F, 3]   float   root angular velocity in the root frame, rad/s
    loop          ()       bool    the clip repeats (its last frame is followed by its first; default false)
    weight        ()       float   sampling weight of the clip (default 1)

Base fields are needed only when the environment's AMP observation uses them. An archive holds one clip with
the keys above, or several clips with keys ``<clip>/<field>`` (e.g. ``walk/joint_pos``).

:class:`AMPLoader` resamples every clip to the environment's control step (linear interpolation, normalised
quaternion interpolation), builds the AMP feature of each frame in the order of the environment's AMP layout
(``joint_pos``, ``joint_vel``, ``base_height``, ``projected_gravity``, ``base_lin_vel``, ``base_ang_vel``; the
joint columns picked by name), and preloads every window of ``num_frames`` consecutive frames, so that
:meth:`AMPLoader.sample` is a pure, jit-able draw of expert observations.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from agile_jax.types import Array, PRNGKey

DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
# AMP feature components -> the file field each is computed from (joint components have one column per joint).
COMPONENTS = {"joint_pos": "joint_pos", "joint_vel": "joint_pos", "base_height": "base_height",
              "projected_gravity": "base_quat", "base_lin_vel": "base_lin_vel", "base_ang_vel": "base_ang_vel"}
JOINT_COMPONENTS = ("joint_pos", "joint_vel")
FIXED_SIZES = {"base_height": 1, "projected_gravity": 3, "base_lin_vel": 3, "base_ang_vel": 3}
FRAME_FIELDS = {"joint_pos": 2, "joint_vel": 2, "base_height": 1, "base_quat": 2, "base_lin_vel": 2,
                "base_ang_vel": 2}  # field -> ndim
FIELD_WIDTHS = {"base_quat": 4, "base_lin_vel": 3, "base_ang_vel": 3}


class MotionFormatError(ValueError):
    """A motion file is missing, unreadable or malformed; the message names the file, the problem and the fix."""


class MotionClip(NamedTuple):
    """One reference clip as read from a file.

    Attributes:
        name: clip name (``<file stem>`` or ``<file stem>/<clip>``).
        dt: seconds between frames.
        joint_names: names of the joint columns.
        fields: frame fields (``joint_pos [F, J]``, ...), float64; ``joint_vel`` is always present.
        loop: whether the clip repeats.
        weight: sampling weight.
    """

    name: str
    dt: float
    joint_names: tuple[str, ...]
    fields: dict[str, np.ndarray]
    loop: bool
    weight: float


def resolve_file(name: str) -> str:
    """The path of a motion file: an existing path as given, else a set shipped in ``agile_jax/motion/data``.

    Raises:
        MotionFormatError: neither exists (the message lists the shipped sets).
    """
    if os.path.isfile(name):
        return name
    for candidate in (os.path.join(DATA_DIR, name), os.path.join(DATA_DIR, name + ".npz")):
        if os.path.isfile(candidate):
            return candidate
    shipped = sorted(f[:-4] for f in os.listdir(DATA_DIR) if f.endswith(".npz")) if os.path.isdir(DATA_DIR) else []
    raise MotionFormatError(f"motion file '{name}' not found; give a path to an .npz motion file or one of the "
                            f"shipped sets {shipped}")


def _fail(path: str, problem: str) -> MotionFormatError:
    return MotionFormatError(f"motion file '{path}': {problem} (format: docs/motion_files.md)")


def _split_clips(path: str, archive: Mapping[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """``{clip: {field: array}}``: keys ``<clip>/<field>`` grouped by clip, plain keys form one clip."""
    clips: dict[str, dict[str, np.ndarray]] = {}
    stem = os.path.splitext(os.path.basename(path))[0]
    for key, value in archive.items():
        clip, _, field = key.rpartition("/")
        clips.setdefault(f"{stem}/{clip}" if clip else stem, {})[field] = value
    return clips


def _check_clip(path: str, name: str, raw: Mapping[str, np.ndarray]) -> MotionClip:
    """Validates one clip's fields (shapes, finiteness, dt) and fills in ``joint_vel``."""
    where = f"clip '{name}'"
    for key in ("dt", "joint_names", "joint_pos"):
        if key not in raw:
            raise _fail(path, f"{where} has no '{key}' field; a clip needs dt, joint_names and joint_pos")
    dt = float(np.asarray(raw["dt"]).reshape(-1)[0]) if np.asarray(raw["dt"]).size == 1 else float("nan")
    if not np.isfinite(dt) or dt <= 0:
        raise _fail(path, f"{where}: dt must be one number > 0 (seconds between frames), got {raw['dt']!r}")
    names = tuple(str(n) for n in np.asarray(raw["joint_names"]).reshape(-1))
    fields = {}
    for key, ndim in FRAME_FIELDS.items():
        if key not in raw:
            continue
        x = np.asarray(raw[key], np.float64)
        width = len(names) if key.startswith("joint") else FIELD_WIDTHS.get(key)
        want = f"[F, {width}]" if ndim == 2 else "[F]"
        if x.ndim != ndim or (ndim == 2 and x.shape[1] != width):
            raise _fail(path, f"{where}: '{key}' has shape {list(x.shape)}, expected {want}")
        if not np.all(np.isfinite(x)):
            raise _fail(path, f"{where}: '{key}' holds NaN or inf values")
        fields[key] = x
    lengths = {k: len(v) for k, v in fields.items()}
    if len(set(lengths.values())) != 1 or lengths["joint_pos"] < 2:
        raise _fail(path, f"{where}: frame fields need one common length of at least 2 frames, got {lengths}")
    if "base_quat" in fields and np.any(np.linalg.norm(fields["base_quat"], axis=-1) < 1e-6):
        raise _fail(path, f"{where}: 'base_quat' holds zero quaternions; write unit (w, x, y, z) quaternions")
    loop = bool(np.asarray(raw.get("loop", False)).reshape(-1)[0])
    weight = float(np.asarray(raw.get("weight", 1.0)).reshape(-1)[0])
    if not weight > 0:
        raise _fail(path, f"{where}: weight must be > 0, got {weight}")
    if "joint_vel" not in fields:
        fields["joint_vel"] = _differentiate(fields["joint_pos"], dt, loop)
    return MotionClip(name=name, dt=dt, joint_names=names, fields=fields, loop=loop, weight=weight)


def _differentiate(x: np.ndarray, dt: float, loop: bool) -> np.ndarray:
    """Central differences over frames (one-sided at the ends of a clip that does not loop)."""
    if loop:
        return (np.roll(x, -1, axis=0) - np.roll(x, 1, axis=0)) / (2.0 * dt)
    return np.gradient(x, dt, axis=0)


def load_clips(name: str) -> list[MotionClip]:
    """Every clip of a motion file (a path or a shipped set's name), validated.

    Raises:
        MotionFormatError: missing or unreadable file, or a malformed clip.
    """
    path = resolve_file(name)
    try:
        with np.load(path, allow_pickle=False) as archive:
            raw = {k: archive[k] for k in archive.files}
    except Exception as err:  # noqa: BLE001 (numpy raises several types for a file that is not an archive)
        raise _fail(path, f"not a readable .npz archive ({type(err).__name__})") from None
    if not raw:
        raise _fail(path, "the archive is empty")
    return [_check_clip(path, clip, fields) for clip, fields in sorted(_split_clips(path, raw).items())]


def write_motion_file(path: str, clips: Mapping[str, Mapping[str, np.ndarray]]) -> None:
    """Writes clips ``{clip: {field: array}}`` as one compressed archive (a single clip may use the name ``""``)."""
    flat = {(f"{clip}/{k}" if clip else k): np.asarray(v) for clip, fields in clips.items() for k, v in fields.items()}
    with open(path, "wb") as f:
        np.savez_compressed(f, **flat)


def _sample_fields(clip: MotionClip, times: np.ndarray) -> dict[str, np.ndarray]:
    """The clip's fields at ``times`` (s, any shape) by linear interpolation (normalised for quaternions)."""
    count = len(clip.fields["joint_pos"])
    idx = times / clip.dt
    i0 = np.floor(idx).astype(np.int64)
    alpha = idx - i0
    i1 = i0 + 1
    if clip.loop:
        i0, i1 = i0 % count, i1 % count
    else:
        i0, i1 = np.clip(i0, 0, count - 1), np.clip(i1, 0, count - 1)
    out = {}
    for key, x in clip.fields.items():
        a, b = x[i0], x[i1]
        w = alpha.reshape(alpha.shape + (1,) * (x.ndim - 1))
        if key == "base_quat":  # shortest arc, then renormalise
            b = np.where(np.sum(a * b, -1, keepdims=True) < 0, -b, b)
            q = (1 - w) * a + w * b
            out[key] = q / np.linalg.norm(q, axis=-1, keepdims=True)
        else:
            out[key] = (1 - w) * a + w * b
    return out


def _projected_gravity(q: np.ndarray) -> np.ndarray:
    """World gravity direction ``[0, 0, -1]`` in the frame of unit quaternions ``q`` ``[..., 4]`` (w, x, y, z)."""
    w, u = q[..., :1], -q[..., 1:]  # the conjugate rotates world vectors into the body frame
    g = np.broadcast_to(np.array([0.0, 0.0, -1.0]), u.shape)
    t = 2.0 * np.cross(u, g)
    return g + w * t + np.cross(u, t)


def features(fields: Mapping[str, np.ndarray], layout: Sequence[tuple[str, int]],
             joint_index: np.ndarray) -> np.ndarray:
    """AMP features ``[..., D]`` of sampled fields in ``layout`` order (joint columns ``joint_index``)."""
    parts = []
    for name, _ in layout:
        if name in JOINT_COMPONENTS:
            parts.append(fields[name][..., joint_index])
        elif name == "base_height":
            parts.append(fields["base_height"][..., None])
        elif name == "projected_gravity":
            parts.append(_projected_gravity(fields["base_quat"]))
        else:
            parts.append(fields[name])
    return np.concatenate(parts, axis=-1)


def _window_times(clip: MotionClip, step: float, num_frames: int) -> np.ndarray:
    """Times ``[M, num_frames]`` of every window of ``num_frames`` frames ``step`` apart that fits in the clip."""
    count = len(clip.fields["joint_pos"])
    span = (num_frames - 1) * step
    if clip.loop:
        period = count * clip.dt
        starts = np.arange(int(np.floor(period / step + 1e-9))) * step
        return (starts[:, None] + np.arange(num_frames) * step) % period
    duration = (count - 1) * clip.dt
    starts = np.arange(int(np.floor((duration - span) / step + 1e-9)) + 1) * step if duration + 1e-9 >= span else []
    return np.asarray(starts, np.float64).reshape(-1, 1) + np.arange(num_frames) * step


class AMPLoader:
    """Expert AMP observations from reference motion files (see the module docstring).

    Args:
        motion_files: paths of motion files, or names of sets shipped in ``agile_jax/motion/data``.
        time_between_frames: the environment's control step (s); clips are resampled to it.
        layout: ``(component, size)`` entries of one AMP frame, in the environment's order.
        joint_names: the joints of the joint components, in the environment's order.
        num_frames: consecutive frames per observation (the leading axis of the env's AMP group).

    Attributes:
        clips: the clips read.
        windows: every window ``[M, num_frames, D]`` (float32).
        probs: sampling probability of each window ``[M]`` (clip weight shared over its windows).
        observation_dim: ``num_frames * D``, st_rl's ``amp_obs_dim``.

    Raises:
        MotionFormatError: a file is missing or malformed, lacks a joint or field the layout needs, or no clip is
            long enough for one window.
    """

    def __init__(self, motion_files: Sequence[str], time_between_frames: float, layout: Sequence[tuple[str, int]],
                 joint_names: Sequence[str] = (), num_frames: int = 2):
        if not motion_files:
            raise MotionFormatError("no motion files given; set algorithm.amp_cfg.motion_files to .npz motion files")
        self.layout, self.num_frames = tuple((str(n), int(s)) for n, s in layout), int(num_frames)
        self.joint_names = tuple(joint_names)
        _check_layout(self.layout, self.joint_names)
        self.clips = [clip for name in motion_files for clip in load_clips(name)]
        windows, probs = [], []
        for clip in self.clips:
            w = self._clip_windows(clip, float(time_between_frames))
            windows.append(w)
            probs.append(np.full(len(w), clip.weight / max(len(w), 1)))
        self.windows = np.concatenate(windows).astype(np.float32)
        if len(self.windows) == 0:
            raise MotionFormatError(f"no clip of {list(motion_files)} is long enough for {self.num_frames} frames "
                                    f"{time_between_frames} s apart")
        p = np.concatenate(probs)
        self.probs = (p / p.sum()).astype(np.float32)
        self.observation_dim = int(np.prod(self.windows.shape[1:]))
        # Device copies, made once: a jitted caller receives them as arguments rather than as program literals.
        self._device = (jnp.asarray(self.windows.reshape(len(self.windows), -1)), jnp.asarray(self.probs))

    def _clip_windows(self, clip: MotionClip, step: float) -> np.ndarray:
        """The clip's windows ``[M, num_frames, D]`` at the control step."""
        missing = [n for n in self.joint_names if n not in clip.joint_names]
        if missing:
            raise MotionFormatError(f"motion clip '{clip.name}' has no joint {missing[:4]}; its joints are "
                                    f"{list(clip.joint_names)[:6]}...; record the environment's joints by name")
        for name, _ in self.layout:
            if COMPONENTS[name] not in clip.fields:
                raise MotionFormatError(f"motion clip '{clip.name}' has no '{COMPONENTS[name]}' field, which the "
                                        f"AMP observation's '{name}' needs")
        index = np.asarray([clip.joint_names.index(n) for n in self.joint_names], np.int64)
        times = _window_times(clip, step, self.num_frames)
        return features(_sample_fields(clip, times), self.layout, index)

    def sample(self, key: PRNGKey, batch_size: int) -> Array:
        """``batch_size`` expert observations ``[B, num_frames * D]`` drawn by clip weight (pure, jit-able)."""
        windows, probs = self._device
        return windows[jax.random.choice(key, len(self.windows), (batch_size,), p=probs)]


def _check_layout(layout: Sequence[tuple[str, int]], joint_names: Sequence[str]) -> None:
    """Known components with the sizes they must have."""
    for name, size in layout:
        if name not in COMPONENTS:
            raise ValueError(f"unknown AMP component '{name}', expected one of {sorted(COMPONENTS)}")
        want = len(joint_names) if name in JOINT_COMPONENTS else FIXED_SIZES[name]
        if size != want:
            raise ValueError(f"AMP component '{name}' has size {size}, expected {want}")
