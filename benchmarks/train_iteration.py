"""Seconds per training iteration of a preset with each physics implementation, timed round-robin in one process.

Each variant (``jax``; ``c`` at each ``--threads`` count) builds its runner from the preset with ``num_envs`` and
``env.impl`` overridden, runs one iteration to compile, then the variants take turns for ``--rounds`` rounds of
``--iterations`` iterations each, so that a shared machine's slow phases fall on all of them alike. Reports the
median seconds per iteration (rollout + PPO update, the one jitted program), env steps/s and the speed-up over
the first variant; ``--split`` runs collection and learning as two programs and reports both. Run:

    python benchmarks/train_iteration.py --config t1_velocity --num-envs 256 --impl jax c --threads 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax
import numpy as np

from agile_jax.config import apply_overrides
from agile_jax.training.runner import OnPolicyRunner
from experiments.configs import get_preset, make_env


def _runner(args, impl: str, threads: int | None) -> OnPolicyRunner:
    """A runner of ``args.config`` with ``impl`` (MuJoCo C batches built with ``threads`` threads)."""
    if threads:
        os.environ["AGILE_JAX_C_THREADS"] = str(threads)  # read when the env builds its MuJoCo C batches
    overrides = [f"num_envs={args.num_envs}", f"env.impl={impl}", f"seed={args.seed}"] + args.overrides
    if args.split:
        overrides.append("runner.fused_iteration=false")
    cfg = apply_overrides(get_preset(args.config), overrides)
    return OnPolicyRunner(make_env(cfg), cfg)


def _iterate(runner: OnPolicyRunner, count: int) -> list[dict]:
    """``count`` iterations; their timings (s)."""
    out = []
    for _ in range(count):
        runner.state, _, timing = runner._run_iteration()
        out.append(timing)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="t1_velocity")
    parser.add_argument("--num-envs", type=int, default=256)
    parser.add_argument("--impl", nargs="+", default=["jax", "c"])
    parser.add_argument("--threads", type=int, nargs="+", default=None, help="impl=c: thread counts to time")
    parser.add_argument("--iterations", type=int, default=3, help="iterations per variant per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--split", action="store_true", help="time collection and learning separately")
    parser.add_argument("--out", default=None, help="write the results as JSON")
    parser.add_argument("overrides", nargs="*", help="more key=value overrides of the preset")
    args = parser.parse_args()
    variants = []
    for impl in args.impl:
        variants += [(f"c{t}", "c", t) for t in args.threads] if impl == "c" and args.threads else [(impl, impl, None)]
    print(f"jax {jax.__version__} backend={jax.default_backend()} cores={os.cpu_count()} config={args.config} "
          f"num_envs={args.num_envs}")
    runners, compile_s, timings = {}, {}, {}
    for label, impl, threads in variants:
        runners[label] = _runner(args, impl, threads)
        t0 = time.perf_counter()
        _iterate(runners[label], 1)
        compile_s[label] = time.perf_counter() - t0
        timings[label] = []
    for _ in range(args.rounds):
        for label in runners:
            timings[label] += _iterate(runners[label], args.iterations)
    samples = args.num_envs * runners[variants[0][0]].cfg.runner.num_steps_per_env
    base = float(np.median([t["iteration"] for t in timings[variants[0][0]]]))
    results = []
    print(f"{'impl':6} {'s/iteration':>12} {'env steps/s':>12} {'speed-up':>9} {'collect s':>10} {'learn s':>8} "
          f"{'compile s':>10}")
    for label in runners:
        med = {k: float(np.median([t[k] for t in timings[label]])) for k in timings[label][0]}
        res = {"impl": label, "s_per_iteration": med["iteration"], "env_steps_per_s": samples / med["iteration"],
               "speedup": base / med["iteration"], "compile_s": compile_s[label], **med}
        results.append(res)
        print(f"{label:6} {med['iteration']:12.3f} {res['env_steps_per_s']:12.0f} {res['speedup']:9.2f} "
              f"{med.get('collection', float('nan')):10.3f} {med.get('learning', float('nan')):8.3f} "
              f"{compile_s[label]:10.1f}", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
