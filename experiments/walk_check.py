"""The whole walking check of an exported policy: every scenario, plain and under the stress knobs, in one command.

Usage::

    python experiments/walk_check.py <run dir | exported dir> [--scenarios walk_all forward_turn ...]
        [--stress plain stressed] [--episodes 10] [--jobs 1] [--json out.json] [--zero-actions]

Each scenario of ``experiments/scenarios/`` (or those named; a name or a YAML path) runs ``--episodes`` plain-MuJoCo
episodes through :func:`agile_jax.evaluation.run.evaluate`, once as trained (``plain``) and once with PD gains x 0.9
and one step of action delay (``stressed``: ``pd_scale=0.9 delay=1``, the criterion's second half). One line per
check: the verdict, the falls, and each segment's ratio of the command (drift in m/s for a standing segment; a
``*`` marks a miss). ``--zero-actions`` checks the default pose held by the PD instead of the policy: the baseline
that no scenario with a moving segment should pass. The exit code is 0 when every check walks, 1 when one does
not, 2 for bad input.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

SCENARIO_DIR = os.path.join(ROOT, "experiments", "scenarios")
STRESS = {"plain": {}, "stressed": {"pd_scale": 0.9, "delay": 1}}


def scenario_path(name: str) -> str:
    """A scenario's YAML: a path as given, or a name in ``experiments/scenarios/``."""
    path = name if name.endswith((".yaml", ".yml")) else os.path.join(SCENARIO_DIR, f"{name}.yaml")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no scenario '{name}'; known: {', '.join(all_scenarios())} (or pass a YAML path)")
    return path


def all_scenarios() -> list[str]:
    return sorted(f[:-5] for f in os.listdir(SCENARIO_DIR) if f.endswith(".yaml"))


def segment_summary(verdict: dict) -> str:
    """``drift 0.03 / x 0.87 / x 0.75 yaw 0.62 / ...``: each segment's checks, ``*`` after a miss."""
    short = {"lin_vel_x": "x", "lin_vel_y": "y", "ang_vel_z": "yaw", "drift": "drift"}
    parts = []
    for row in verdict["segments"]:
        checks = [f"{short[c['component']]} {c.get('ratio', c.get('drift')):.2f}{'' if c['ok'] else '*'}"
                  for c in row["checks"]]
        parts.append(" ".join(checks))
    return " / ".join(parts)


def run_check(path: str, scenario: str, stress: str, episodes: int, zero_actions: bool = False) -> dict:
    """One scenario under one stress setting: the walking verdict of ``episodes`` plain-MuJoCo episodes."""
    from agile_jax.evaluation.run import EvalConfig, evaluate

    with tempfile.TemporaryDirectory() as out:
        cfg = EvalConfig(path=path, scenario=scenario_path(scenario), episodes=episodes, video=False, viewer=False,
                         out=out, zero_actions=zero_actions, **STRESS[stress])
        verdict = evaluate(cfg)["walking"]
    return {"scenario": scenario, "stress": stress, **verdict}


def format_line(check: dict) -> str:
    walks = "walks" if check["walks"] else "FAILS"
    return (f"{check['scenario']:<18} {check['stress']:<9} {walks}  {check['falls']}/{check['episodes']} fell  "
            f"{segment_summary(check)}")


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("policy", help="a run directory (its exported/) or an exported directory")
    parser.add_argument("--scenarios", nargs="+", default=None, help="names or YAML paths (default: every one)")
    parser.add_argument("--stress", nargs="+", choices=sorted(STRESS), default=["plain", "stressed"])
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=1, help="checks run at once, one process each")
    parser.add_argument("--json", default=None, help="also write every verdict to this JSON file")
    parser.add_argument("--zero-actions", action="store_true", help="every action 0: the baseline to beat")
    args = parser.parse_args(argv)
    if args.episodes < 1 or args.jobs < 1:
        raise ValueError("--episodes and --jobs take an integer >= 1")
    args.scenarios = args.scenarios or all_scenarios()
    for name in args.scenarios:
        scenario_path(name)  # an unknown scenario fails before anything runs
    return args


def main(argv: list[str]) -> int:
    args = parse(argv)
    jobs = [(args.policy, scenario, stress, args.episodes, args.zero_actions)
            for scenario in args.scenarios for stress in args.stress]
    checks = []
    with concurrent.futures.ProcessPoolExecutor(args.jobs) as pool:  # starts no process until a job is sent
        run_all = pool.map if args.jobs > 1 else map  # --jobs 1: one after another in this process
        for check in run_all(run_check, *zip(*jobs)):  # in order, each line as soon as its check is done
            print(format_line(check), flush=True)
            checks.append(check)
    passed = sum(c["walks"] for c in checks)
    print(f"walking check: {passed} of {len(checks)} pass")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"policy": args.policy, "checks": checks}, f, indent=1)
    return 0 if passed == len(checks) else 1


if __name__ == "__main__":
    from experiments import cli

    sys.exit(cli.run(main, sys.argv[1:]))
