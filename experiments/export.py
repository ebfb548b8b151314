"""Export a trained policy: ``python experiments/export.py <run dir | checkpoint dir> [key=value ...]``.

Examples::

    python experiments/export.py logs/cartpole_balance/2026-11-22_10-00-00
    python experiments/export.py logs/point_mass/<run>/checkpoints/100 format=onnx opset=17 dynamic_batch=true
    python experiments/export.py <run> out=/tmp/policy rollout_steps=32 tol=1e-6

Writes ``policy.onnx``, ``policy.pt``, ``policy.yaml`` (IO descriptor), ``network_config.json`` and
``export_report.json`` into ``out`` (default ``<run dir>/exported``) after checking that every format
reproduces the JAX policy on random observations, the checkpoint's env observations and a short
deterministic rollout; a mismatch writes nothing and exits with status 1.

Options: ``ckpt`` (the directory, instead of the positional argument), ``out``, ``format``
(``onnx,torchscript``), ``opset`` (11), ``dynamic_batch`` (false), ``tol`` (1e-5), ``checkpoint`` (iteration;
default the newest), ``rollout_steps`` (16), ``config`` (preset whose env config class to use, when it cannot
be told from ``config.yaml``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys

import yaml

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # XLA notes every program loaded from the cache
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from agile_jax import config as config_lib  # noqa: E402
from agile_jax.runtime import platform  # noqa: E402

DEFAULTS = {"ckpt": "", "out": "", "format": "onnx,torchscript", "opset": "11", "dynamic_batch": "false", "tol": "1e-5",
            "checkpoint": "-1", "rollout_steps": "16", "config": ""}


def parse_args(argv: list[str]) -> tuple[str, dict[str, str]]:
    """``(path, options)`` from the command line; unknown keys are refused."""
    path, options = None, dict(DEFAULTS)
    for arg in argv:
        if arg in ("-h", "--help"):
            print(__doc__)
            raise SystemExit(0)
        if "=" in arg:
            key, value = arg.split("=", 1)
            if key not in DEFAULTS:
                raise config_lib.ConfigError(f"unknown option '{key}'; options: {sorted(DEFAULTS)}")
            options[key] = value
        elif path is None:
            path = arg
        else:
            raise config_lib.ConfigError(f"unexpected argument '{arg}' (one run or checkpoint directory)")
    if path is not None and options["ckpt"]:
        raise config_lib.ConfigError("give the directory either as the argument or as ckpt=..., not both")
    path = path or options["ckpt"] or None
    if path is None:
        raise config_lib.ConfigError("give the run directory (or its checkpoints/<iteration> directory)")
    return path, options


def locate(path: str) -> tuple[str, str, int | None]:
    """``(run_dir, checkpoints_dir, iteration)`` for a run, ``checkpoints`` or ``checkpoints/<it>`` directory."""
    from agile_jax.io.checkpoint import checkpoints_dir

    if not os.path.isdir(os.path.abspath(path)):
        raise config_lib.ConfigError(f"no directory '{os.path.abspath(path.rstrip('/'))}'")
    directory, iteration = checkpoints_dir(path)
    return os.path.dirname(directory), directory, iteration


def config_text(run_dir: str, checkpoints_dir: str) -> str:
    """The run's YAML config: ``config.yaml``, else the copy in a checkpoint's metadata."""
    path = os.path.join(run_dir, "config.yaml")
    if os.path.isfile(path):
        with open(path) as f:
            return f.read()
    steps = sorted((int(d) for d in os.listdir(checkpoints_dir) if d.isdigit()), reverse=True) \
        if os.path.isdir(checkpoints_dir) else []
    for step in steps:
        meta = os.path.join(checkpoints_dir, str(step), "meta", "metadata")
        if os.path.isfile(meta):
            with open(meta) as f:
                text = json.load(f).get("config")
            if text:
                return text
    raise config_lib.ConfigError(f"no config.yaml in '{run_dir}' and no config in its checkpoint metadata")


def template_for(text: str, preset: str = ""):
    """The preset config whose env config class fits the saved YAML (same field names).

    The preset name is not stored with a run, but the env config class decides the schema and every value
    comes from the YAML, so any preset with that env class rebuilds the run's config exactly. A run saved before
    a field was added to its env config lacks that field; it gets the field's default (presets with exactly the
    saved fields are preferred).
    """
    from experiments.configs import PRESETS, get_preset

    if preset:
        return get_preset(preset)
    saved = yaml.safe_load(text) or {}
    env_keys = set((saved.get("env") or {}).keys())
    experiment = (saved.get("runner") or {}).get("experiment_name")
    matches = []
    for name, make in PRESETS.items():
        cfg = make()
        fields = {f.name for f in dataclasses.fields(cfg.env)}
        if env_keys <= fields:  # a run saved before a field was added keeps that field's default
            matches.append((fields != env_keys, cfg.runner.experiment_name != experiment, name, cfg))
    if not matches:
        raise config_lib.ConfigError(f"no preset has an env config with the fields {sorted(env_keys)}; "
                                     f"pass config=<preset> (available: {sorted(PRESETS)})")
    return sorted(matches, key=lambda m: m[:3])[0][3]


def _defaults_where_missing(template, saved: dict):
    """``template`` with each field the saved YAML lacks set to its class default, not the preset's value: a run
    saved before a field existed ran with what the field's default means (recursing into nested configs)."""
    fresh = None
    for field in dataclasses.fields(template):
        value = getattr(template, field.name)
        if field.name not in saved:
            fresh = fresh or type(template)()
            setattr(template, field.name, getattr(fresh, field.name))
        elif dataclasses.is_dataclass(value) and isinstance(saved[field.name], dict):
            _defaults_where_missing(value, saved[field.name])
    return template


def load_config(text: str, preset: str = ""):
    """The run's :class:`TrainConfig` rebuilt from its YAML."""
    try:
        template = _defaults_where_missing(template_for(text, preset), yaml.safe_load(text) or {})
        return config_lib.from_yaml(text, template)
    except config_lib.ConfigError:
        raise
    except Exception as err:  # OmegaConf: a key or type the current schema does not know
        raise config_lib.ConfigError(f"the saved config does not fit the current schema ({err}); "
                                     "was it written by another version of agile_jax?") from None


def export_run(path: str, options: dict[str, str]) -> dict:
    """Restores the run's checkpoint and exports it (see the module docstring); returns the report."""
    from agile_jax.export import export_runner
    from agile_jax.training.runner import OnPolicyRunner
    from experiments.configs import make_env

    run_dir, checkpoints_dir, iteration = locate(path)
    cfg = load_config(config_text(run_dir, checkpoints_dir), options["config"])
    iteration = iteration if iteration is not None else int(options["checkpoint"])
    runner = OnPolicyRunner(make_env(cfg), cfg)
    meta = runner.load(checkpoints_dir, None if iteration < 0 else iteration)
    out = options["out"] or os.path.join(run_dir, "exported")
    print(f"[agile_jax] exporting {type(cfg.env).__name__} policy, iteration {meta['iteration']}, to {out}")
    return export_runner(
        runner, out, rollout_steps=int(options["rollout_steps"]),
        formats=tuple(f.strip() for f in options["format"].split(",") if f.strip()), opset=int(options["opset"]),
        dynamic_batch=options["dynamic_batch"].lower() in ("1", "true", "yes"), tol=float(options["tol"]),
        metadata={"iteration": int(meta["iteration"]), "run_dir": run_dir},
    )


def print_report(report: dict) -> None:
    """One line per format and observation set."""
    for fmt, per_set in report["max_abs_error"].items():
        cells = ", ".join(f"{name} ({report['rows'][name]} rows) {err:.2e}" for name, err in per_set.items())
        print(f"  {fmt:<12} max |action - JAX|: {cells}")
    print(f"  tol {report['tol']:g}: {'passed' if report['passed'] else 'FAILED'}")


def main(argv: list[str]) -> int:
    try:
        path, options = parse_args(argv)
    except config_lib.ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    platform.enable_compilation_cache()
    from agile_jax.export import ExportParityError
    from agile_jax.io.checkpoint import CheckpointError

    try:
        report = export_run(path, options)
    except (config_lib.ConfigError, CheckpointError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except ExportParityError as err:
        print_report(err.report)
        print(f"error: {err}", file=sys.stderr)
        return 1
    print_report(report)
    print(f"[agile_jax] wrote {', '.join(sorted(report['files'].values()))}, policy.yaml, network_config.json and "
          f"export_report.json to {report['out_dir']}")
    return 0


if __name__ == "__main__":
    from experiments import cli

    sys.exit(cli.run(main, sys.argv[1:]))
