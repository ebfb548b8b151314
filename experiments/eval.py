"""Evaluates an exported policy in CPU MuJoCo (sim-to-sim) and writes npz, metrics.json, report.html and mp4s.

Usage::

    python experiments/eval.py <run dir | exported dir> [scenario=experiments/scenarios/forward_turn.yaml]
        [random_commands=true seed=0] [episodes=1] [duration_s=10] [noise_scale=1.0] [pd_scale=1.0] [delay=0]
        [video=true] [viewer=true] [shadows=false] [format=onnx] [compare_mjx=false] [zero_actions=false] [out=DIR]

Without a scenario (or with ``random_commands=true``) commands are random (seeded). With ``DISPLAY`` set and
``viewer=true`` the passive MuJoCo viewer opens; otherwise an mp4 per episode is rendered (``video=false``
turns it off). ``zero_actions=true`` runs the same scenario with every action 0 (the default pose held by the
PD): the baseline a policy has to beat.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # XLA notes every program loaded from the cache

from agile_jax.evaluation import walking
from agile_jax.evaluation.run import EvalConfig, evaluate
from agile_jax.export.io_descriptor import DescriptorError


def _value(field: dataclasses.Field, text: str):
    kind = str(field.type)
    if text.lower() in ("none", "null"):
        return None
    if "bool" in kind:
        if text.lower() not in ("true", "false", "1", "0"):
            raise SystemExit(f"{field.name} expects true/false, got '{text}'")
        return text.lower() in ("true", "1")
    if "int" in kind:
        return int(text)
    if "float" in kind:
        return float(text)
    return text


def parse_args(argv: list[str]) -> EvalConfig:
    """``<path> key=value ...`` -> :class:`EvalConfig` (``random_commands=true`` drops the scenario)."""
    fields = {f.name: f for f in dataclasses.fields(EvalConfig)}
    values, random_commands = {}, False
    for arg in argv:
        if arg in ("-h", "--help"):
            print(__doc__)
            raise SystemExit(0)
        if "=" not in arg:
            values["path"] = arg
            continue
        key, text = arg.split("=", 1)
        if key == "random_commands":
            random_commands = text.lower() in ("true", "1")
        elif key in fields:
            values[key] = _value(fields[key], text)
        else:
            raise SystemExit(f"unknown option '{key}'; known: {sorted(fields)} and random_commands")
    if not values.get("path"):
        raise SystemExit(__doc__)
    if random_commands:
        values["scenario"] = None
    return EvalConfig(**values)


def _fail(message: str) -> None:
    """One line on stderr and exit code 2 (bad input, not a crash)."""
    print(message, file=sys.stderr)
    raise SystemExit(2)


def main(argv: list[str] | None = None) -> dict:
    cfg = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        result = evaluate(cfg)
    except FileNotFoundError as err:
        _fail(f"error: {err} (pass a run directory of experiments/train.py, or the 'exported' "
              "directory written by experiments/export.py)")
    except DescriptorError as err:
        _fail(f"error: {err}")
    print(json.dumps({"out": result["out"], **result["summary"],
                      "real_time_factor": [e["real_time_factor"] for e in result["episodes"]],
                      "sim_real_time_factor": [e["sim_real_time_factor"] for e in result["episodes"]]}, indent=2))
    print(walking.describe(result["walking"]))
    return result


if __name__ == "__main__":
    from experiments import cli

    sys.exit(cli.run(lambda argv: main(argv) and 0, sys.argv[1:]))
