"""Export with a parity gate: artefacts are written only if they reproduce the JAX policy.

:func:`export_policy` builds every requested format into a temporary directory next to ``out_dir``, runs the
JAX policy (``make_inference_fn``, deterministic, float32-exact on the CPU whatever the training device),
onnxruntime and TorchScript on the same random and real observations, and moves the files into ``out_dir``
only when every max-abs difference is within ``tol``; otherwise it raises :class:`ExportParityError` and
``out_dir`` is left untouched. Recurrent policies are compared step by step over each observation set taken as
a sequence with periodic resets (:mod:`agile_jax.export.sequence`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np

from agile_jax.export import io_descriptor, onnx, sequence, torchscript
from agile_jax.export.spec import PolicySpec, policy_spec
from agile_jax.networks.actor_critic import ActorCritic, concat_groups, deployed_policy, make_inference_fn
from agile_jax.runtime import precision
from agile_jax.types import Observation, Params

FILES = {"onnx": "policy.onnx", "torchscript": "policy.pt"}
WRITERS = {
    "onnx": lambda spec, path, opt: onnx.export_onnx(spec, path, opt["opset"], opt["dynamic_batch"]),
    "torchscript": lambda spec, path, opt: torchscript.export_torchscript(spec, path),
}
RUNNERS = {"onnx": onnx.run_onnx, "torchscript": torchscript.run_torchscript}
REPORT_FILE = "export_report.json"


class ExportParityError(RuntimeError):
    """An exported artefact does not reproduce the JAX policy; nothing was written.

    Attributes:
        report: the parity report (same layout as :func:`export_policy` returns).
    """

    def __init__(self, message: str, report: dict):
        super().__init__(message)
        self.report = report


def _check_formats(formats: Sequence[str]) -> tuple[str, ...]:
    formats = tuple(formats)
    unknown = [f for f in formats if f not in FILES]
    if unknown or not formats:
        raise ValueError(f"unknown export formats {unknown}; choose from {sorted(FILES)}")
    return formats


def _rows(obs: Observation, groups: Sequence[str], shapes: Mapping, max_rows: int) -> dict[str, np.ndarray]:
    """The ``groups`` of ``obs`` with all leading axes merged into one row axis ``[M, ...]`` (M <= max_rows)."""
    out = {g: np.asarray(obs[g], np.float32).reshape(-1, *shapes[g]) for g in groups}
    count = {len(v) for v in out.values()}
    if len(count) != 1:
        raise ValueError(f"observation groups have different numbers of rows: { {g: len(v) for g, v in out.items()} }")
    n = count.pop()
    if n > max_rows:  # evenly spaced subsample keeps the check fast for static-batch graphs
        idx = np.linspace(0, n - 1, max_rows).round().astype(int)
        out = {g: v[idx] for g, v in out.items()}
    return out


def observation_sets(networks: ActorCritic, spec: PolicySpec, observations: Any, num_random: int, seed: int,
                     max_rows: int) -> dict[str, dict[str, np.ndarray]]:
    """Named observation sets ``name -> {group: [M, ...]}``: ``random`` plus the given real ones.

    Random observations are drawn so that the normalised input is standard normal (plain standard normal
    without a normaliser). ``observations`` is one observation dict or a mapping of named dicts.
    """
    groups, shapes = spec.obs_groups, networks.obs_shapes
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((num_random, spec.obs_dim)).astype(np.float32)
    flat = spec.obs_mean + spec.obs_denominator * z if spec.normalized else z
    starts = np.cumsum((0,) + spec.obs_group_dims)
    sets = {"random": {g: flat[:, s:s + d].reshape(-1, *shapes[g])
                       for g, s, d in zip(groups, starts, spec.obs_group_dims)}}
    if observations is not None:
        named = {"observations": observations} if groups[0] in observations else dict(observations)
        for name, obs in named.items():
            sets[name] = _rows(obs, groups, shapes, max_rows)
    return sets


def _write(spec: PolicySpec, directory: str, formats: tuple[str, ...], options: dict) -> dict[str, str]:
    """Writes each format into ``directory``; returns ``format -> path``."""
    return {fmt: WRITERS[fmt](spec, os.path.join(directory, FILES[fmt]), options) for fmt in formats}


def _references(networks: ActorCritic, params: Params, normalizers: Mapping, sets: Mapping) -> tuple[dict, dict]:
    """JAX actions per set, and per set the episode starts of a recurrent policy's step-by-step check."""
    if networks.is_recurrent:
        starts = {name: sequence.episode_starts(len(next(iter(obs.values())))) for name, obs in sets.items()}
        return {name: sequence.jax_actions(networks, params, normalizers, obs, starts[name])
                for name, obs in sets.items()}, starts
    policy = jax.jit(make_inference_fn(networks)(params, normalizers, deterministic=True))
    return {name: np.asarray(policy(obs)) for name, obs in sets.items()}, {}


def _compare(paths: Mapping[str, str], sets: Mapping, networks: ActorCritic, reference: Mapping,
             starts: Mapping) -> dict:
    """``format -> set -> max-abs(exported - JAX)``, each format run from its saved file (recurrent: step by step)."""
    errors: dict[str, dict[str, float]] = {}
    for fmt, path in paths.items():
        errors[fmt] = {}
        for name, obs in sets.items():
            flat = np.asarray(concat_groups(obs, networks.obs_groups["actor"], networks.obs_shapes))
            actions = sequence.SEQUENCE_RUNNERS[fmt](path, flat, starts[name]) if starts else RUNNERS[fmt](path, flat)
            errors[fmt][name] = float(np.max(np.abs(actions - reference[name])))
    return errors


def _network_config(networks: ActorCritic) -> dict:
    return io_descriptor.plain({
        **networks.own_settings, "class_name": type(networks).__name__, "obs_shapes": dict(networks.obs_shapes),
        "obs_groups": dict(networks.obs_groups),
        "action_size": networks.action_size, "actor_hidden_dims": networks.actor_hidden_dims,
        "critic_hidden_dims": networks.critic_hidden_dims, "activation": networks.activation,
        "noise_std_type": networks.noise_std_type, "actor_obs_normalization": networks.actor_obs_normalization,
        "distribution_cfg": {"class_name": networks.distribution_class, "init_std": networks.init_noise_std,
                             "std_type": networks.noise_std_type, "std_range": list(networks.std_range)},
        "critic_obs_normalization": networks.critic_obs_normalization,
    })


def _publish(tmp: str, out_dir: str) -> list[str]:
    """Moves every file of ``tmp`` into ``out_dir`` (same file system: atomic renames)."""
    os.makedirs(out_dir, exist_ok=True)
    names = sorted(os.listdir(tmp))
    for name in names:
        os.replace(os.path.join(tmp, name), os.path.join(out_dir, name))
    return names


def _reordered(sets: Mapping, order: np.ndarray | None, networks: ActorCritic) -> Mapping:
    """Observation sets whose groups, flattened and concatenated, give the graph input ``env_flat[order]``."""
    if order is None:
        return sets
    groups, shapes = networks.obs_groups["actor"], networks.obs_shapes
    dims = [int(np.prod(shapes[g])) for g in groups]
    starts = np.cumsum([0] + dims)
    out = {}
    for name, obs in sets.items():
        # order is block-diagonal over groups: permute each group's flat rows within the group.
        out[name] = {g: obs[g].reshape(len(obs[g]), -1)[:, order[s:s + d] - s].reshape(obs[g].shape)
                     for g, s, d in zip(groups, starts, dims)}
    return out


def export_policy(networks: ActorCritic, params: Params, normalizers: Mapping, out_dir: str, env: Any = None,
                  formats: Sequence[str] = ("onnx", "torchscript"), tol: float = 1e-5, dynamic_batch: bool = False,
                  opset: int = onnx.DEFAULT_OPSET, observations: Any = None, num_random: int = 64, seed: int = 0,
                  joint_names: Sequence[str] | None = None, metadata: Mapping | None = None,
                  max_rows: int = 2048) -> dict:
    """Exports the deterministic actor and checks it against JAX before writing anything.

    Writes ``policy.onnx`` / ``policy.pt`` (as requested), ``policy.yaml`` (IO descriptor),
    ``network_config.json`` and ``export_report.json`` into ``out_dir``.

    Args:
        networks, params, normalizers: the trained actor-critic.
        out_dir: destination directory (created).
        env: optional env for the IO descriptor (``io_description()``, ``dt`` ...).
        formats: subset of ``("onnx", "torchscript")``.
        tol: largest accepted max-abs action difference to JAX.
        dynamic_batch: ONNX with a symbolic batch dimension instead of batch 1.
        opset: ONNX opset (default 11).
        observations: real observations, one dict of groups ``[..., *shape]`` or ``{set name: dict}``.
        num_random: number of random observations checked (set ``random``).
        seed: seed of the random observations.
        joint_names: joint names in action order (else taken from ``env.io_description()``).
        metadata: extra entries for the ONNX metadata and the report.
        max_rows: per set, at most this many (evenly spaced) rows are compared.

    Returns:
        The report: ``max_abs_error[format][set]``, ``rows[set]``, ``files``, ``tol``, ``passed`` ...

    Raises:
        ExportParityError: some format differs from JAX by more than ``tol`` (``out_dir`` untouched).
    """
    formats = _check_formats(formats)
    networks, params = deployed_policy(networks, params)  # a teacher-student policy exports its student
    env_desc = io_descriptor.env_description(env) if env is not None else {}
    joint_names = list(joint_names) if joint_names is not None else io_descriptor.action_joint_names(env_desc)
    meta = {**({"joint_names": joint_names} if joint_names else {}), **dict(metadata or {})}
    spec = policy_spec(networks, params, normalizers, meta)
    sets = observation_sets(networks, spec, observations, num_random, seed, max_rows)
    # The reference is float32-exact whatever precision training used (TF32 on GPUs would move it by ~1e-3).
    with precision.exact():
        reference, starts = _references(networks, jax.device_get(params), jax.device_get(normalizers), sets)
    parent = os.path.dirname(os.path.abspath(out_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".export-", dir=parent)
    try:
        # The graphs read the descriptor's input layout (AGILE's term-major history), so feed them that.
        order = io_descriptor.input_order(spec, env_desc)
        graph = spec if order is None else dataclasses.replace(spec, input_index=np.argsort(order))
        paths = _write(graph, tmp, formats, {"opset": opset, "dynamic_batch": dynamic_batch})
        errors = _compare(paths, _reordered(sets, order, networks), networks, reference, starts)
        report = _report(graph, errors, sets, reference, formats, tol, opset, dynamic_batch, meta, out_dir)
        report["ir_version"] = onnx.ir_version(paths["onnx"]) if "onnx" in paths else None
        if not report["passed"]:
            raise ExportParityError(_failure_message(report, out_dir), report)
        desc = io_descriptor.describe(graph, env, joint_names, {f: FILES[f] for f in formats}, dynamic_batch)
        io_descriptor.write_io_descriptor(os.path.join(tmp, "policy.yaml"), desc)
        _dump_json(os.path.join(tmp, "network_config.json"), _network_config(networks))
        _dump_json(os.path.join(tmp, REPORT_FILE), report)
        _publish(tmp, out_dir)
        return report
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _report(spec, errors, sets, reference, formats, tol, opset, dynamic_batch, meta, out_dir) -> dict:
    passed = all(err <= tol for per_set in errors.values() for err in per_set.values())
    return io_descriptor.plain({
        "passed": passed, "tol": tol, "out_dir": os.path.abspath(out_dir), "files": {f: FILES[f] for f in formats},
        "opset": opset if "onnx" in formats else None, "dynamic_batch": dynamic_batch,
        "obs_dim": spec.obs_dim, "action_dim": spec.action_dim, "network": spec.describe(),
        "rows": {name: int(len(next(iter(obs.values())))) for name, obs in sets.items()},
        "max_abs_error": errors,
        "max_abs_action": {name: float(np.max(np.abs(ref))) for name, ref in reference.items()},
        "metadata": meta,
    })


def _failure_message(report: dict, out_dir: str) -> str:
    bad = [f"{fmt} on '{name}': {err:.3g}" for fmt, per_set in report["max_abs_error"].items()
           for name, err in per_set.items() if err > report["tol"]]
    return (f"refusing to export: the exported policy differs from the JAX policy by more than tol={report['tol']:g} "
            f"({'; '.join(bad)}); nothing was written to '{out_dir}'")


def _dump_json(path: str, data: Any) -> None:
    with open(path, "w") as f:
        json.dump(data, f, indent=2)
