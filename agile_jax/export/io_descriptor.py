"""``policy.yaml``: what goes into and comes out of an exported policy, in AGILE's IO-descriptor schema.

A deployment tool reads this file next to ``policy.onnx`` / ``policy.pt`` to rebuild the observation vector and
apply the actions without the training code: NVIDIA WBC-AGILE's sim-to-MuJoCo evaluator
(``scripts/sim2mujoco_eval.py``) and its robot deployment read the AGILE keys; ``experiments/eval.py`` reads
them plus the extra keys marked (ours). Schema (format version 2)::

    format_version: 2                        # (ours) 1 was the pre-AGILE layout, refused by readers
    producer: agile_jax                      # (ours)
    policy:
      type: MLP                              # MLP | RNN | CNN (stateless, like MLP: policy(obs) -> actions)
      hidden_shape: [S, 1, H]                # RNN only: policy.pt(obs [1, D], hidden) -> (actions [1, A], hidden)
      hidden_layout: [h, c]                  # (ours) RNN only: h rows then c rows (LSTM), S = rows * layers
      files: {onnx: policy.onnx, torchscript: policy.pt}                 # (ours)
      inputs:                                # (ours) the graph's inputs
      - {name: obs, shape: [1, D], layout: term_major, groups: [{name: policy, dim: D, start: 0, end: D}]}
                                             # a 2-D group adds shape: [C, H, W] (its columns hold
                                             # the image flattened C-major: c * H * W + h * W + w)
      outputs: [{name: actions, shape: [1, A]}]                          # (ours)
      deterministic: true                    # (ours) Gaussian mean, no sampling
      obs_normalization: baked               # (ours) baked | none: the normaliser is inside the graph
      network: {kind, obs_dim, action_dim, hidden_dims, activation, ...}  # (ours)
    observations:
      policy:                                # terms in concatenation order
      - name: base_ang_vel                   # AGILE's term name (locomotion_command, joint_pos_rel, last_action ...)
        shape: [3]                           # one frame
        dtype: torch.float32
        mdp_type: Observation
        observation_type: RootState          # RootState | Command | JointState | Action
        overloads: {history_length: 5, scale: 0.2, clip: null, flatten_history_dim: true}
        joint_names: [...]                   # joint_pos_rel / joint_vel_rel: joints in order
        joint_pos_offsets: [...]             # joint_pos_rel: value = q - offsets
        joint_vel_offsets: [...]             # joint_vel_rel: value = qd - offsets
        extras: {noise: {type: uniform, n_min: -0.2, n_max: 0.2}}      # (ours in extras) training noise
    actions:                                 # action terms, in the order of the action vector
    - name: joint_position_action
      action_type: JointAction
      mdp_type: Action
      shape: [A]
      dtype: torch.float32
      joint_names: [...]
      scale: 1.0                             # scalar or per joint; target = offset + scale * clip(a)
      offset: [...]
      clip: [[lo, hi], ...]                  # on the raw action a, per joint (or [lo, hi], or null)
    articulations:
      robot: {joint_names, default_joint_pos, default_joint_vel, default_joint_stiffness, default_joint_damping,
              ...}                           # (ours beyond these: limits, motor model, heights)
    scene: {dt: 0.02, physics_dt: 0.005, decimation: 4}    # dt = control period = physics_dt * decimation

The flat input is term-major, as AGILE's evaluator builds it: each term's ``history_length`` frames (oldest
first) together, terms in order, so its width is ``sum(prod(shape) * max(history_length, 1))``.

Environments provide the task-specific parts through an optional ``io_description()`` method returning a
dict with any of ``observations`` / ``actions`` / ``articulations`` / ``scene`` (same layout as above; other
keys are copied as they are) and ``observation_history: {group: {layout: frame_major}}`` when the env keeps
a group as ``[H, F]`` frames: the exporter then bakes the reordering into the graph (its first op) and
records the exported layout instead. Without a description, each observation group is one term, the action
vector one term, and the scene comes from ``dt`` / ``decimation`` attributes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import yaml

from agile_jax.export.spec import PolicySpec

FORMAT_VERSION = 2
TERM_MAJOR, FRAME_MAJOR = "term_major", "frame_major"


class DescriptorError(ValueError):
    """A ``policy.yaml`` that does not follow the schema (the message is one line)."""


def plain(value: Any) -> Any:
    """``value`` with arrays, tuples and NumPy scalars turned into YAML/JSON-safe Python objects."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return plain(np.asarray(value).tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value


def _lookup(env: Any, names: Sequence[str]) -> Any:
    """The first attribute of ``names`` found on ``env``, its wrapped ``env.env``, or their ``cfg``."""
    holders = [env, getattr(env, "env", None)]
    holders += [getattr(h, "cfg", None) for h in holders if h is not None]
    for holder in holders:
        for name in names:
            value = getattr(holder, name, None) if holder is not None else None
            if value is not None and not callable(value):
                return value
    return None


def env_description(env: Any) -> dict:
    """``env.io_description()`` (or that of the wrapped single env) as a plain dict; ``{}`` if absent."""
    for holder in (env, getattr(env, "env", None)):
        fn = getattr(holder, "io_description", None)
        if callable(fn):
            return plain(dict(fn()))
    return {}


def _scene(env: Any) -> dict:
    """Generic scene timing from ``dt`` / ``decimation`` style attributes."""
    scene = {"dt": _lookup(env, ("dt", "control_dt")), "physics_dt": _lookup(env, ("physics_dt", "sim_dt", "timestep")),
             "decimation": _lookup(env, ("decimation", "n_substeps"))}
    return {k: plain(v) for k, v in scene.items() if v is not None}


def history_length(term: Mapping) -> int:
    """Frames of a term (``overloads.history_length``; 0 = no history)."""
    return int((term.get("overloads") or {}).get("history_length") or 0)


def frame_size(term: Mapping) -> int:
    """Values of one frame of a term (``prod(shape)``)."""
    return int(np.prod(term.get("shape", [1])))


def term_width(term: Mapping) -> int:
    """Values a term contributes to the flat input: ``frame_size * max(history_length, 1)``."""
    return frame_size(term) * max(history_length(term), 1)


def _check_terms(group: str, terms: Sequence[Mapping], dim: int) -> None:
    """Refuses observation terms whose sizes do not add up to the group width."""
    total = sum(term_width(t) for t in terms)
    if total != dim:
        raise ValueError(f"io_description: observation terms of group '{group}' add up to {total} values, "
                         f"but the policy reads {dim} from it ({[t.get('name') for t in terms]})")


def term_major_index(terms: Sequence[Mapping]) -> np.ndarray:
    """``P [D]`` with ``term_major = frame_major[P]`` for a group kept as ``[H, F]`` frames.

    Raises:
        ValueError: the terms do not share one history length (a frame-major group needs it).
    """
    lengths = {max(history_length(t), 1) for t in terms}
    if len(lengths) != 1:
        raise ValueError(f"io_description: a frame-major group needs one history length, got {sorted(lengths)}")
    frames, sizes = lengths.pop(), [frame_size(t) for t in terms]
    width, starts = sum(sizes), np.cumsum([0] + sizes[:-1])
    # Term i, frame f, value k sits at f * width + start_i + k of the env's flat [H, F] group.
    return np.concatenate([(np.arange(frames)[:, None] * width + s + np.arange(n)[None]).reshape(-1)
                           for s, n in zip(starts, sizes)]).astype(np.int64)


def input_order(spec: PolicySpec, from_env: Mapping) -> np.ndarray | None:
    """``P [D]``: the exported input is ``env_flat[P]`` (``None`` when it is the env's own layout).

    Groups the env marks ``frame_major`` in ``observation_history`` are reordered term-major; others stay.
    """
    history = from_env.get("observation_history") or {}
    env_obs = from_env.get("observations") or {}
    parts, start, moved = [], 0, False
    for group, dim in zip(spec.obs_groups, spec.obs_group_dims):
        index = np.arange(dim)
        if (history.get(group) or {}).get("layout") == FRAME_MAJOR and env_obs.get(group):
            _check_terms(group, env_obs[group], dim)
            index, moved = term_major_index(env_obs[group]), True
        parts.append(start + index)
        start += dim
    return np.concatenate(parts).astype(np.int64) if moved else None


def action_joint_names(description: Mapping) -> list[str] | None:
    """Joint names in action order, if every action term names its joints."""
    terms = description.get("actions") or []
    if not terms or any(not t.get("joint_names") for t in terms):
        return None
    return [name for t in terms for name in t["joint_names"]]


def _group_terms(group: str, dim: int) -> list[dict]:
    """The generic description of an undescribed group: one term, no history, no scaling."""
    return [{"name": group, "shape": [dim], "dtype": "torch.float32", "mdp_type": "Observation",
             "overloads": {"history_length": 0, "scale": None, "clip": None, "flatten_history_dim": True}}]


def _actions(spec: PolicySpec, from_env: Mapping, joint_names: Sequence[str] | None) -> list[dict]:
    """The env's action terms (else one joint-action term over the action vector) with ``joint_names`` set."""
    actions = from_env.get("actions") or [
        {"name": "joint_position_action", "action_type": "JointAction", "mdp_type": "Action",
         "shape": [spec.action_dim], "dtype": "torch.float32", "joint_names": None, "scale": 1.0,
         "offset": [0.0] * spec.action_dim, "clip": None}]
    if joint_names is not None:
        if len(joint_names) != spec.action_dim:
            raise ValueError(f"{len(joint_names)} joint names given for {spec.action_dim} actions")
        actions = [{**actions[0], "joint_names": list(joint_names)}] if len(actions) == 1 else actions
    return actions


def _policy(spec: PolicySpec, files: Mapping[str, str] | None, dynamic_batch: bool, layout: str) -> dict:
    """The ``policy`` section: AGILE's ``type`` (and ``hidden_shape``) plus the graph's inputs and outputs."""
    batch = "batch" if dynamic_batch else 1
    starts = np.cumsum((0,) + tuple(spec.obs_group_dims))
    groups = [{"name": g, "dim": int(d), "start": int(s), "end": int(s + d)}
              for g, d, s in zip(spec.obs_groups, spec.obs_group_dims, starts)]
    images = {e.group: list(e.shape) for e in spec.encoders}  # 2-D groups: [C, H, W], flattened C-major
    for group in groups:
        group.update({"shape": images[group["name"]]} if group["name"] in images else {})
    states = [{"name": s.name, "shape": [s.shape[0], batch, *s.shape[2:]]} for s in spec.state]
    kind = {"type": "RNN", "hidden_shape": list(spec.hidden_shape),
            "hidden_layout": [s.name for s in spec.state]} if spec.state else {"type": "CNN" if images else "MLP"}
    return {**kind, "files": dict(files or {}),
            "inputs": [{"name": "obs", "shape": [batch, spec.obs_dim], "layout": layout, "groups": groups}]
            + [{**s, "name": f"{s['name']}_in"} for s in states],
            "outputs": [{"name": "actions", "shape": [batch, spec.action_dim]}]
            + [{**s, "name": f"{s['name']}_out"} for s in states],
            "deterministic": True, "obs_normalization": "baked" if spec.normalized else "none",
            "network": spec.describe()}


def describe(spec: PolicySpec, env: Any = None, joint_names: Sequence[str] | None = None,
             files: Mapping[str, str] | None = None, dynamic_batch: bool = False) -> dict:
    """The IO description (schema in the module docstring) of an exported ``spec``.

    Args:
        spec: the exported policy (its ``input_index`` says whether the graph reorders its input).
        env: optional env; its ``io_description()`` and timing attributes are used when present.
        joint_names: joint names in action order (overrides the env's).
        files: ``format -> file name`` of the exported artefacts.
        dynamic_batch: whether the graph has a symbolic batch dimension.
    """
    from_env = env_description(env) if env is not None else {}
    env_obs = from_env.get("observations") or {}
    observations = {}
    for group, dim in zip(spec.obs_groups, spec.obs_group_dims):
        terms = env_obs.get(group) or _group_terms(group, dim)
        _check_terms(group, terms, dim)
        observations[group] = terms
    out = {
        "format_version": FORMAT_VERSION, "producer": "agile_jax",
        "policy": _policy(spec, files, dynamic_batch, TERM_MAJOR),
        "observations": observations, "actions": _actions(spec, from_env, joint_names),
        "articulations": from_env.get("articulations") or {},
        "scene": {**_scene(env), **(from_env.get("scene") or {})} if env is not None else {},
    }
    out.update({k: v for k, v in from_env.items() if k not in out and k != "observation_history"})
    return plain(out)


def check_format(desc: Mapping, path: str = "policy.yaml") -> None:
    """Refuses, in one line, a descriptor in the pre-AGILE layout (format version 1) or without terms.

    Raises:
        DescriptorError: the file cannot be read as this schema.
    """
    if not isinstance(desc, Mapping) or not isinstance(desc.get("observations"), Mapping):
        raise DescriptorError(f"{path} has no 'observations' section; it is not an IO descriptor")
    old = [t.get("name") for terms in desc["observations"].values() for t in terms or []
           if "overloads" not in t or "offset" in t or "history_length" in t]
    if int(desc.get("format_version", FORMAT_VERSION)) < FORMAT_VERSION or old:
        raise DescriptorError(
            f"{path} uses the pre-AGILE descriptor layout (format_version {desc.get('format_version')}: terms "
            f"without 'overloads', history shapes, 'offset'); re-export the run with experiments/export.py")


def write_io_descriptor(path: str, description: Mapping) -> str:
    """Writes ``description`` as YAML (keys in schema order) and returns the path."""
    with open(path, "w") as f:
        yaml.safe_dump(plain(description), f, sort_keys=False, default_flow_style=None, width=120)
    return path


def read_io_descriptor(path: str) -> dict:
    """Reads a ``policy.yaml``."""
    with open(path) as f:
        return yaml.safe_load(f)
