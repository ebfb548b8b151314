"""agile_jax's GPU benchmark suite: one command, under 8 minutes on one GPU, one JSON.

Phases, in this order (each guarded: an exception is recorded in the JSON and the next phase runs; each
has its own time budget and is skipped when the suite's budget cannot hold it):

1. ``first_iteration``: the T1 preset as ``experiments/train.py`` runs it: config, env, runner (env
   reset), then ``learn(1)`` (compile, first iteration, checkpoint).
2. ``steady/<impl>/<num_envs>``: env-steps/s of the training iteration (``Trainer.iteration`` plus the host
   transfer of its outputs, as ``OnPolicyRunner.learn`` runs it) at each env count and MJX backend present
   (``env.impl=jax``; ``warp`` when it imports). The first one continues phase 1's runner.
3. ``memory``: peak device memory after the phases at the first env count (``memory_stats()``).
4. ``env_overhead``: the env alone (``env_throughput.rows``: ``VecEnv.step`` and raw ``mjx.step``) from the
   trainer's own env states, against the trainer's iteration.
5. ``ppo_update/<precision>/<num_envs>``: ``ppo_update.bench`` (synthetic env, T1 PPO layout) traced at each
   matmul precision.
6. ``train``: phase 1's runner trains on for the time left, then ``export`` writes ONNX / TorchScript.

The trainer traces its programs at the preset's ``runner.matmul_precision``; the suite runs its own env
timings under the same precision. ``key=value`` overrides apply to every T1 config. Usage::

    python benchmarks/gpu_suite.py --out suite.json                 # full sizes, < 8 minutes on a GPU
    python benchmarks/gpu_suite.py --smoke --out /tmp/suite.json    # tiny sizes: a dry run on a CPU
    python benchmarks/gpu_suite.py --out suite.json runner.matmul_precision=default
"""

from __future__ import annotations

import time

T_PROCESS = time.time()

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import importlib  # noqa: E402
import importlib.util  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from functools import partial  # noqa: E402
from typing import Any  # noqa: E402

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for _path in (ROOT, os.path.dirname(os.path.abspath(__file__))):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import env_throughput  # noqa: E402
import jax  # noqa: E402
import ppo_update  # noqa: E402
from suite_report import Phase, Report, environment, memory_record  # noqa: E402

from agile_jax.runtime import parallel, platform  # noqa: E402
from agile_jax.training.runner import OnPolicyRunner  # noqa: E402
from experiments.configs import make_env  # noqa: E402
from experiments.train import build_config, run_directories  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Sizes:
    """Sizes and per-phase time budgets (seconds) of one suite run."""

    num_envs: tuple[int, ...]
    steady_iterations: int
    env_repeats: int
    ppo_num_envs: tuple[int, ...]
    ppo_repeats: int
    budget_s: float
    first_iteration_s: float
    steady_s: float
    env_overhead_s: float
    ppo_s: float
    train_min_s: float
    train_max_s: float
    export_s: float


FULL = Sizes(num_envs=(4096, 16384), steady_iterations=6, env_repeats=20, ppo_num_envs=(4096, 16384), ppo_repeats=5,
             budget_s=430, first_iteration_s=100, steady_s=80, env_overhead_s=60, ppo_s=20, train_min_s=30,
             train_max_s=600, export_s=45)
SMOKE = Sizes(num_envs=(16, 32), steady_iterations=2, env_repeats=3, ppo_num_envs=(64,), ppo_repeats=2,
              budget_s=1500, first_iteration_s=600, steady_s=400, env_overhead_s=300, ppo_s=120, train_min_s=5,
              train_max_s=20, export_s=200)
HARD_LIMIT_MARGIN_S = 30  # the watchdog ends the process this long after the planned budget


class Suite:
    """The shared state of the phases: settings, the main runner and the steady iteration times."""

    def __init__(self, args: argparse.Namespace, sizes: Sizes, report: Report):
        self.args, self.sizes, self.report = args, sizes, report
        self.main_impl = self.config(sizes.num_envs[0]).env.impl
        self.runner: OnPolicyRunner | None = None  # phase 1's runner (with a run directory); trained in phase 6
        self.iteration_s: dict[tuple[str, int], float] = {}

    def config(self, num_envs: int, impl: str | None = None):
        """The preset's config with the overrides, ``num_envs`` (and ``env.impl``), logs under ``--log-root``."""
        extra = [f"env.num_envs={num_envs}"] + ([f"env.impl={impl}"] if impl else [])
        cfg = build_config([f"config={self.args.preset}", *self.args.overrides, *extra])
        cfg.runner.log_root = self.args.log_root
        cfg.runner.save_interval = 10**9  # checkpoints only at the end of each learn() call
        cfg.runner.progress_bar = False
        return cfg

    def main_runner(self) -> OnPolicyRunner:
        """Phase 1's runner; built here (with its run directory) when phase 1 did not leave one."""
        if self.runner is None:
            cfg = self.config(self.sizes.num_envs[0])
            self.runner = OnPolicyRunner(make_env(cfg), cfg, log_dir=run_directories(cfg)[0])
            self.runner.learn(1)
        return self.runner


def timed_iterations(runner: OnPolicyRunner, count: int, phase: Phase) -> list[float]:
    """Wall seconds of up to ``count`` iterations (fewer when the phase runs out of time), each the jitted
    iteration plus the host transfer of its outputs, as ``OnPolicyRunner.learn`` does it (without logging
    and checkpoints); the runner's state advances."""
    times: list[float] = []
    while len(times) < count and (not times or phase.left() > 2 * times[-1]):
        t0 = time.perf_counter()
        state, out = runner.trainer.iteration(runner.state)
        parallel.to_host(out)
        times.append(time.perf_counter() - t0)
        runner.state = state
    return times


# -- phases ---------------------------------------------------------------------------------------


def first_iteration(suite: Suite, phase: Phase) -> None:
    """Build, compile and first iteration of the preset, as ``experiments/train.py`` runs them."""
    res = phase.result
    t0 = time.time()
    cfg = suite.config(suite.sizes.num_envs[0])
    log_dir = run_directories(cfg)[0]
    runner = OnPolicyRunner(make_env(cfg), cfg, log_dir=log_dir)
    res.update(num_envs=runner.env.num_envs, impl=cfg.env.impl, build_s=time.time() - t0, log_dir=log_dir)
    phase.save()
    t1 = time.time()
    runner.learn(1)
    suite.runner = runner
    res.update(first_learn_s=time.time() - t1, first_iteration_s=time.time() - t0,
               since_process_start_s=time.time() - T_PROCESS)


def steady(suite: Suite, impl: str, num_envs: int, phase: Phase) -> None:
    """Steady env-steps/s of the training iteration at ``num_envs`` envs with MJX backend ``impl``."""
    res = phase.result
    if (impl, num_envs) == (suite.main_impl, suite.sizes.num_envs[0]):
        runner = suite.main_runner()
    else:
        t0 = time.time()
        cfg = suite.config(num_envs, impl)
        runner = OnPolicyRunner(make_env(cfg), cfg, log_dir=None)
        res["build_s"] = time.time() - t0
        phase.save()
        t1 = time.time()
        runner.learn(1)
        res["first_learn_s"] = time.time() - t1
    # The second iteration is timed on its own: it compiles again when the state's types change after one step.
    res["second_iteration_s"] = timed_iterations(runner, 1, phase)[0]
    phase.save()
    times = timed_iterations(runner, suite.sizes.steady_iterations, phase)
    median = statistics.median(times)
    suite.iteration_s[(impl, num_envs)] = median
    steps = runner.cfg.runner.num_steps_per_env
    res.update(num_envs=num_envs, impl=impl, num_steps_per_env=steps, iteration_s_median=median,
               env_steps_per_s=num_envs * steps / median, iteration_s_all=times)


def memory(suite: Suite, phase: Phase) -> None:
    """Peak device memory so far (the preset at the first env count) and the process's peak RSS."""
    phase.result.update(num_envs=suite.sizes.num_envs[0], **memory_record())
    device = phase.result["device"]
    if device and "peak_bytes_in_use" in device:
        phase.result["peak_gib"] = device["peak_bytes_in_use"] / 2**30
    else:
        phase.result["note"] = f"memory_stats() gives no peak on backend '{jax.default_backend()}'"


def env_overhead(suite: Suite, phase: Phase) -> None:
    """The env alone (``VecEnv.step``, raw ``mjx.step``) from the trainer's env states, timed round-robin
    with the trainer's whole iteration from its current state."""
    runner = suite.main_runner()
    venv, n = runner.env, runner.env.num_envs
    actions = 0.3 * jax.random.normal(jax.random.key(1), (n, venv.env.action_size))
    calls = {k: v for k, v in env_throughput.rows(venv.env, runner.state.env_state, actions).items()
             if k in ("env", "raw")}
    compile_s = {k: env_throughput._compile(fn, *a) for k, (fn, a) in calls.items()}
    phase.result.update(num_envs=n, compile_s=compile_s)
    phase.save()
    calls["iteration"] = (runner.trainer.iteration, (runner.state,))  # compiled already (steady phase)
    t = env_throughput._interleaved_median(calls, suite.sizes.env_repeats)
    steps = runner.cfg.runner.num_steps_per_env
    phase.result.update(
        env_step_s=t["env"], raw_step_s=t["raw"], iteration_s=t["iteration"], env_ctrl_steps_per_s=n / t["env"],
        raw_ctrl_steps_per_s=n / t["raw"], trainer_env_steps_per_s=n * steps / t["iteration"],
        env_vs_raw=t["env"] / t["raw"], trainer_vs_env=t["iteration"] / (steps * t["env"]),
        env_share_of_iteration=steps * t["env"] / t["iteration"])


def _median(out: dict, name: str) -> float:
    """``ppo_update.bench``'s median of ``name`` over clean samples, or over all when none was clean."""
    clean = out[f"{name}_median"]
    return clean if math.isfinite(clean) else statistics.median(w for w, _ in out[f"{name}_all_(wall,clean)"])


def ppo(suite: Suite, precision: str, num_envs: int, phase: Phase) -> None:
    """``ppo_update.bench`` (rollout, returns, update; no whole iteration) traced at ``precision``."""
    with jax.default_matmul_precision(precision):
        out = ppo_update.bench(num_envs, suite.sizes.ppo_repeats, obs_norm=False, seed=0, donate=False,
                               skip_iteration=True)
    cfg = ppo_update.make_config()
    steps, epochs = cfg.runner.num_steps_per_env, cfg.algorithm.num_learning_epochs
    update, rollout = _median(out, "update_s"), _median(out, "rollout_s")
    phase.result.update(precision=precision, num_envs=num_envs, update_s_median=update,
                        update_samples_per_s=num_envs * steps * epochs / update, rollout_s_median=rollout,
                        rollout_env_steps_per_s=num_envs * steps / rollout,
                        compute_returns_s_median=_median(out, "compute_returns_s"), compile_s=out["compile_s"],
                        clean_samples=out["clean_samples"]["cycle"], samples=len(out["update_s_all_(wall,clean)"]),
                        final_learning_rate=out["final_learning_rate"])


def train(suite: Suite, phase: Phase) -> None:
    """Phase 1's runner trains on, in up to three ``learn`` calls (a checkpoint each), until the time is spent."""
    runner, res = suite.main_runner(), phase.result
    key = (suite.main_impl, runner.env.num_envs)
    per_it = suite.iteration_s.get(key) or statistics.median(timed_iterations(runner, 2, phase))
    start, t0 = runner.current_learning_iteration, time.time()
    chunk = max(1, int(0.3 * phase.left() / per_it))
    while phase.left() > (chunk + 2) * per_it:
        runner.learn(chunk)
        done = runner.current_learning_iteration
        res.update(iterations=done - start, learn_s=time.time() - t0, total_iterations=done,
                   env_steps=done * runner.cfg.runner.num_steps_per_env * runner.env.num_envs,
                   mean_return=runner.episodes.mean_return, mean_length=runner.episodes.mean_length)
        phase.save()
    res.update(log_dir=runner.log_dir, per_iteration_estimate_s=per_it)


def export(suite: Suite, phase: Phase) -> None:
    """Closes the runner and exports its policy (ONNX; TorchScript when torch imports) after the parity gate."""
    runner = suite.main_runner()
    runner.close()
    formats = ("onnx", "torchscript") if importlib.util.find_spec("torch") else ("onnx",)
    report = runner.export(formats=formats)
    phase.result.update(formats=list(formats), out_dir=os.path.join(runner.log_dir, "exported"),
                        passed=report.get("passed"), max_abs_error=report.get("max_abs_error"),
                        iteration=runner.current_learning_iteration)


# -- driver ---------------------------------------------------------------------------------------


def warp_available() -> tuple[bool, str]:
    """Whether MuJoCo Warp imports, and its version or the import error."""
    try:
        warp = importlib.import_module("warp")
    except Exception as err:  # noqa: BLE001 - any import failure means no Warp backend
        return False, f"{type(err).__name__}: {err}"
    return True, getattr(warp, "__version__", "unknown")


def plan(suite: Suite, impls: list[str], precisions: list[str]) -> list[tuple[str, float, Any]]:
    """``(name, budget_s, fn)`` of the measuring phases, in priority order (before train and export)."""
    s, first, rest = suite.sizes, suite.sizes.num_envs[0], suite.sizes.num_envs[1:]
    main, others = suite.main_impl, [i for i in impls if i != suite.main_impl]
    phases = [("first_iteration", s.first_iteration_s, partial(first_iteration, suite)),
              (f"steady/{main}/{first}", s.steady_s, partial(steady, suite, main, first)),
              ("memory", 5.0, partial(memory, suite))]
    phases += [(f"steady/{main}/{n}", s.steady_s, partial(steady, suite, main, n)) for n in rest]
    phases.append(("env_overhead", s.env_overhead_s, partial(env_overhead, suite)))
    phases += [(f"ppo_update/{p}/{n}", s.ppo_s, partial(ppo, suite, p, n)) for p in precisions for n in s.ppo_num_envs]
    phases += [(f"steady/{i}/{n}", s.steady_s, partial(steady, suite, i, n)) for i in others for n in s.num_envs]
    return phases


def run(suite: Suite, impls: list[str], precisions: list[str]) -> None:
    """All phases under the preset's matmul precision; train gets what the others leave."""
    report, s = suite.report, suite.sizes
    reserve = s.train_min_s + s.export_s
    precision = suite.config(s.num_envs[0]).runner.matmul_precision
    with jax.default_matmul_precision(precision):
        for name, budget, fn in plan(suite, impls, precisions):
            report.run_phase(name, fn, budget, reserve_s=reserve)
        train_s = min(report.left() - s.export_s, s.train_max_s)
        report.run_phase("train", partial(train, suite), train_s, reserve_s=s.export_s, min_s=s.train_min_s)
        report.run_phase("export", partial(export, suite), s.export_s, min_s=-HARD_LIMIT_MARGIN_S)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="gpu_suite.json", help="the JSON file (rewritten after every phase)")
    p.add_argument("--smoke", action="store_true", help="tiny env counts and iterations: a dry run on a CPU")
    p.add_argument("--budget-s", type=float, default=None, help="planned total seconds (full: 430, smoke: 1500)")
    p.add_argument("--preset", default="t1_velocity")
    p.add_argument("--impl", nargs="+", default=["jax", "warp"], help="MJX backends (warp only when it imports)")
    p.add_argument("--precisions", nargs="+", default=["highest", "default"], help="matmul precisions of ppo_update")
    p.add_argument("--log-root", default=os.path.join(tempfile.gettempdir(), "agile_jax_suite"),
                   help="run directory root of the trained policy (checkpoints, TensorBoard, export)")
    p.add_argument("overrides", nargs="*", help="key=value overrides of every T1 config")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = SMOKE if args.smoke else FULL
    if args.budget_s:
        sizes = dataclasses.replace(sizes, budget_s=args.budget_s)
    report = Report(args.out, sizes.budget_s, sizes.budget_s + HARD_LIMIT_MARGIN_S, start=T_PROCESS)
    report.start_watchdog()
    report.set("environment", environment(ROOT))
    cache = platform.enable_compilation_cache()  # as experiments/train.py does
    report.set("compilation_cache", {"dir": cache, "entries_before": len(os.listdir(cache))})
    has_warp, warp_info = warp_available()
    impls = [i for i in args.impl if i != "warp" or has_warp]
    suite = Suite(args, sizes, report)
    report.set("settings", {"smoke": args.smoke, "preset": args.preset, "overrides": args.overrides,
                            "impls": impls, "warp": warp_info, "precisions": args.precisions,
                            "matmul_precision": suite.config(sizes.num_envs[0]).runner.matmul_precision,
                            "sizes": dataclasses.asdict(sizes), "log_root": args.log_root})
    print(f"[suite] jax {jax.__version__} on {jax.devices()}; impls {impls}; budget {sizes.budget_s:.0f} s", flush=True)
    run(suite, impls, args.precisions)
    bad = [n for n, p in report.data["phases"].items() if p["status"] not in ("ok", "skipped")]
    report.set("status", "done" + (f" with errors in {bad}" if bad else ""))
    print(f"[suite] {report.data['status']} in {report.elapsed():.0f} s; wrote {args.out}", flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
