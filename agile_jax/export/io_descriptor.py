"""``policy.yaml``: what goes into and comes out of an exported policy (AGILE / Isaac Lab IO descriptor).

A deployment tool (sim-to-sim, a robot controller) reads this file next to ``policy.onnx`` / ``policy.pt``
to rebuild the observation vector and apply the actions without the training code. Schema (version 1)::

    format_version: 1
    producer: agile_jax
    policy:                        # the exported graph
      files: {onnx: policy.onnx, torchscript: policy.pt}
      inputs:
      - name: obs
        shape: [1, D]              # or [batch, D] for a dynamic batch
        groups:                    # env observation groups concatenated into obs, in order
        - {name: policy, dim: 45, start: 0, end: 45}
      outputs:
      - {name: actions, shape: [1, A]}
      deterministic: true          # Gaussian mean, no sampling
      obs_normalization: baked     # baked | none: the normaliser is inside the graph
      network: {kind, obs_dim, action_dim, hidden_dims, activation, ...}
    observations:                  # per group of policy.inputs[0].groups, terms in concatenation order
      policy:
      - name: base_ang_vel         # term name
        shape: [3]                 # shape inside the group (history included, e.g. [5, 3] or [15])
        scale: 0.25                # optional: multiplier applied before concatenation
        clip: null                 # optional: [lo, hi]
        history_length: 0          # optional: frames stacked (0 = none), oldest first
        joint_names: [...]         # optional: joint order of joint-space terms
    actions:                       # action terms, in the order of the action vector
    - name: joint_pos
      action_type: JointPositionAction
      shape: [A]
      joint_names: [...]           # null when unknown
      scale: 0.5                   # scalar or per joint; target = offset + scale * action
      offset: [...]                # usually the default pose
      clip: null
    articulations:
      robot: {joint_names, default_joint_pos, default_joint_vel, default_joint_stiffness,
              default_joint_damping, effort_limit, ...}
    scene: {dt: 0.02, physics_dt: 0.005, decimation: 4}    # dt = control period = physics_dt * decimation

Environments provide the task-specific parts through an optional ``io_description()`` method returning a
dict with any of ``observations`` / ``actions`` / ``articulations`` / ``scene`` (same layout as above;
other keys are copied as they are). Without it, the generic fallback describes each observation group as
one term, the action vector as one term, and the scene from ``dt`` / ``decimation`` attributes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import yaml

from agile_jax.export.spec import PolicySpec

FORMAT_VERSION = 1


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


def _check_terms(group: str, terms: Sequence[Mapping], dim: int) -> None:
    """Refuses observation terms whose sizes do not add up to the group width."""
    total = sum(int(np.prod(t.get("shape", [0]))) for t in terms)
    if total != dim:
        raise ValueError(f"io_description: observation terms of group '{group}' add up to {total} values, "
                         f"but the policy reads {dim} from it ({[t.get('name') for t in terms]})")


def action_joint_names(description: Mapping) -> list[str] | None:
    """Joint names in action order, if every action term names its joints."""
    terms = description.get("actions") or []
    if not terms or any(not t.get("joint_names") for t in terms):
        return None
    return [name for t in terms for name in t["joint_names"]]


def describe(spec: PolicySpec, env: Any = None, joint_names: Sequence[str] | None = None,
             files: Mapping[str, str] | None = None, dynamic_batch: bool = False) -> dict:
    """The IO description (schema in the module docstring) of an exported ``spec``.

    Args:
        spec: the exported policy.
        env: optional env; its ``io_description()`` and timing attributes are used when present.
        joint_names: joint names in action order (overrides the env's).
        files: ``format -> file name`` of the exported artefacts.
        dynamic_batch: whether the graph has a symbolic batch dimension.
    """
    from_env = env_description(env) if env is not None else {}
    batch = "batch" if dynamic_batch else 1
    starts = np.cumsum((0,) + tuple(spec.obs_group_dims))
    groups = [{"name": g, "dim": int(d), "start": int(s), "end": int(s + d)}
              for g, d, s in zip(spec.obs_groups, spec.obs_group_dims, starts)]
    # Observation terms: the env's, else one term per group.
    env_obs = from_env.get("observations") or {}
    observations = {}
    for g in groups:
        terms = env_obs.get(g["name"]) or [{"name": g["name"], "shape": [g["dim"]]}]
        _check_terms(g["name"], terms, g["dim"])
        observations[g["name"]] = terms
    # Action terms: the env's, else one term covering the action vector.
    actions = from_env.get("actions") or [{"name": "actions", "shape": [spec.action_dim], "joint_names": None}]
    if joint_names is not None:
        if len(joint_names) != spec.action_dim:
            raise ValueError(f"{len(joint_names)} joint names given for {spec.action_dim} actions")
        actions = [{**actions[0], "joint_names": list(joint_names)}] if len(actions) == 1 else actions
    out = {
        "format_version": FORMAT_VERSION, "producer": "agile_jax",
        "policy": {"files": dict(files or {}),
                   "inputs": [{"name": "obs", "shape": [batch, spec.obs_dim], "groups": groups}]
                   + [{"name": f"{s.name}_in", "shape": [s.shape[0], batch, *s.shape[2:]]} for s in spec.state],
                   "outputs": [{"name": "actions", "shape": [batch, spec.action_dim]}]
                   + [{"name": f"{s.name}_out", "shape": [s.shape[0], batch, *s.shape[2:]]} for s in spec.state],
                   "deterministic": True, "obs_normalization": "baked" if spec.normalized else "none",
                   "network": spec.describe()},
        "observations": observations, "actions": actions,
        "articulations": from_env.get("articulations") or {},
        "scene": {**_scene(env), **(from_env.get("scene") or {})} if env is not None else {},
    }
    out.update({k: v for k, v in from_env.items() if k not in out})
    return plain(out)


def write_io_descriptor(path: str, description: Mapping) -> str:
    """Writes ``description`` as YAML (keys in schema order) and returns the path."""
    with open(path, "w") as f:
        yaml.safe_dump(plain(description), f, sort_keys=False, default_flow_style=None, width=120)
    return path


def read_io_descriptor(path: str) -> dict:
    """Reads a ``policy.yaml``."""
    with open(path) as f:
        return yaml.safe_load(f)
