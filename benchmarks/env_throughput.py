"""Control steps per second of the velocity env next to raw batched ``mjx.step`` on the same model.

For each physics implementation (``jax``, ``c``: MuJoCo C through the host callback, and ``warp`` when
``warp-lang`` is installed) and batch size it times, from the same batch of states (50 steps of noisy actions
with auto-reset, so every row meets the same contacts), the rows of :func:`rows` (``env``, ``env_reset``,
``step``, ``raw``, and for ``c`` also ``native``) round-robin, and reports control steps/s (batch / median wall
time per call), the time relative to ``raw`` and the compile time of the first call. Run:

    python benchmarks/env_throughput.py --batch 64 256 1024 --impl jax c --threads 1 2 --out results.json

``--threads 1 2`` runs ``c`` once per thread count (labelled ``c1``, ``c2``; ``$AGILE_JAX_C_THREADS`` per env).

``--solver-iterations 4 10`` times the task with each cap on the Newton solver's iterations (the task default:
``envs.robots.assets.SolverOptions.iterations``) in one round-robin, as ``--terrain flat rough`` does the grounds.

``--terrain rough`` runs the task on the default rough terrain (``envs.terrain.TerrainConfig()``, a heightfield
instead of the floor plane); ``--terrain flat rough`` times both in one round-robin per batch size;
``--max-contact-points 16`` caps MJX's contacts on the rough terrain (``TerrainConfig.max_contact_points``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time

import jax
import mujoco
import numpy as np
from mujoco import rollout as mj_rollout

from envs.core import VecEnv
from envs.robots.assets import SolverOptions
from envs.tasks.velocity import G1VelocityConfig, T1VelocityConfig, VelocityEnv
from envs.terrain import TerrainConfig


def _compile(fn, *args) -> float:
    """Seconds of the first call (trace + compile + run) of ``fn(*args)``."""
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - t0


def _interleaved_median(calls: dict, repeats: int) -> dict[str, float]:
    """Median wall time per call of each ``name -> (fn, args)``, timed round-robin from the same inputs.

    Every row starts from the *same* batch of states (see :func:`warm_states`), so the physics solver meets
    the same contacts in each row (MJX's solver stops once converged: a standing robot is cheaper to simulate
    than a falling one). Round-robin timing spreads this shared VM's slow phases over all rows alike.
    """
    for fn, args in calls.values():  # the first calls after compiling pay for buffer allocation
        jax.block_until_ready(fn(*args))
    times = {name: [] for name in calls}
    for _ in range(repeats):
        for name, (fn, args) in calls.items():
            t0 = time.perf_counter()
            jax.block_until_ready(fn(*args))
            times[name].append(time.perf_counter() - t0)
    return {name: float(np.median(t)) for name, t in times.items()}


def warm_states(env: VelocityEnv, batch: int, steps: int = 50):
    """A realistic batch: ``steps`` control steps of noisy actions from reset, with time limit and auto-reset.

    Returns the batched env state and the actions every row is timed with.
    """
    venv = VecEnv(env, batch, init_at_random_ep_len=True)
    state = jax.jit(venv.reset)(jax.random.split(jax.random.PRNGKey(0), batch))
    actions = 0.3 * jax.random.normal(jax.random.PRNGKey(1), (batch, env.action_size))

    @jax.jit
    def advance(s):
        return jax.lax.fori_loop(0, steps, lambda i, s: venv.step(s, actions)[0], s)

    return jax.block_until_ready(advance(state)), actions


def rows(env: VelocityEnv, state, actions) -> dict:
    """The timed functions, ``name -> (jitted fn, args)``:

    * ``env``: ``VecEnv.step`` (task step, time limit, episode statistics, auto-reset) on the states as they are;
    * ``env_reset``: the same with env 0 on the last step of its time limit, so the reset branch surely runs
      (as it does on nearly every step of a large batch in training);
    * ``step``: ``vmap(env.step)`` without ``VecEnv``;
    * ``raw``: ``decimation`` physics steps of the env's implementation (``mjx.step``, or MuJoCo C through the
      callback) on the env's own per-env model (DR included), controls held at the state's last ``ctrl``;
    * ``native`` (``impl="c"``): MuJoCo C's own rate, ``mujoco.rollout`` open loop from the same states on the
      nominal model with as many threads, no JAX (the ceiling of ``raw``).
    """
    venv = VecEnv(env, actions.shape[0])
    env_step = jax.jit(lambda s, a: venv.step(s, a))
    last = state.replace(step_count=state.step_count.at[0].set(env.max_episode_length - 1))

    def physics(d, domain):
        model = env.physics_model(domain)
        d, _ = jax.lax.scan(lambda c, _: (env._physics_step(model, c), None), d, None, length=env.cfg.decimation)
        return d

    calls = {
        "env": (env_step, (state, actions)),
        "env_reset": (env_step, (last, actions)),
        "step": (jax.jit(jax.vmap(env.step)), (state, actions)),
        "raw": (jax.jit(jax.vmap(physics)), (state.data, state.info["domain"])),
    }
    if env.cfg.impl == "c":
        calls["native"] = _native_rollout(env, state.data)
    return calls


def _native_rollout(env: VelocityEnv, data) -> tuple:
    """``(fn, args)``: ``decimation`` open-loop MuJoCo C steps of every state through ``mujoco.rollout``."""
    from envs.mujoco_c import default_threads

    model, n = env.robot.model, data.qpos.shape[0]
    spec = mujoco.mjtState.mjSTATE_FULLPHYSICS
    states = np.zeros((n, mujoco.mj_stateSize(model, spec)))
    d = mujoco.MjData(model)
    for i in range(n):
        d.qpos[:], d.qvel[:] = np.asarray(data.qpos[i]), np.asarray(data.qvel[i])
        mujoco.mj_getState(model, d, states[i], spec)
    control = np.repeat(np.asarray(data.ctrl, np.float64)[:, None], env.cfg.decimation, axis=1)
    nthread = default_threads()
    pool = mj_rollout.Rollout(nthread=nthread if nthread > 1 else 0)
    datas = [mujoco.MjData(model) for _ in range(max(nthread, 1))]
    return (lambda: pool.rollout(model, datas, states, control), ())


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--robot", choices=("t1", "g1"), default="t1")
    parser.add_argument("--batch", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--impl", nargs="+", default=["jax", "c", "warp"])
    parser.add_argument("--threads", type=int, nargs="+", default=None,
                        help="impl=c: thread counts to time (default: $AGILE_JAX_C_THREADS or all CPUs)")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--no-dr", action="store_true", help="nominal model (always used with impl=warp)")
    parser.add_argument("--what", nargs="+", default=["env", "env_reset", "step", "raw", "native"], help="rows to run")
    parser.add_argument("--terrain", nargs="+", choices=("flat", "rough"), default=["flat"],
                        help="ground: the floor plane and/or the default rough heightfield (timed round-robin)")
    parser.add_argument("--solver-iterations", type=int, nargs="+", default=[SolverOptions().iterations],
                        help="caps on the Newton solver's iterations to time (round-robin, like --terrain)")
    parser.add_argument("--max-contact-points", type=int, default=None, help="MJX contact cap on rough terrain")
    parser.add_argument("--out", default=None, help="write the results as JSON")
    return parser


def _variants(impls: list[str], threads: list[int] | None) -> list[tuple[str, str, int | None]]:
    """``(label, impl, threads)`` per timed variant: ``c`` once per thread count when ``threads`` is given."""
    out = []
    for impl in impls:
        if impl == "c" and threads:
            out += [(f"c{t}", "c", t) for t in threads]
        else:
            out.append((impl, impl, None))
    return out


def main() -> None:
    args = _parser().parse_args()
    base = T1VelocityConfig() if args.robot == "t1" else G1VelocityConfig()
    results = []
    print(f"jax {jax.__version__} backend={jax.default_backend()} cores={os.cpu_count()}")
    print(f"{'ground':6} {'iters':>5} {'impl':5} {'batch':>6} {'what':9} {'ctrl steps/s':>13} {'vs raw':>7} "
          f"{'compile s':>10} {'resets':>7}")
    for label, impl, threads in _variants(args.impl, args.threads):
        domain = dataclasses.replace(base.domain, randomize=not args.no_dr and impl != "warp")
        envs = {}
        for ground in args.terrain:
            terrain = TerrainConfig(max_contact_points=args.max_contact_points) if ground == "rough" else None
            if threads:
                os.environ["AGILE_JAX_C_THREADS"] = str(threads)  # read when the env builds its MuJoCo C batches
            for iters in args.solver_iterations:
                solver = dataclasses.replace(base.solver, iterations=iters)
                try:
                    envs[(ground, iters)] = VelocityEnv(dataclasses.replace(base, impl=impl, domain=domain,
                                                                            terrain=terrain, solver=solver))
                except (RuntimeError, ImportError, ValueError) as err:
                    print(f"{ground:6} {iters:5d} {label:5} skipped: {err}")
        for batch in args.batch:
            # Every variant's rows go into one round-robin, so the variants share the machine's slow phases alike.
            calls, compile_s = {}, {}
            for (ground, iters), env in envs.items():
                try:
                    state, actions = warm_states(env, batch)
                    mine = {(ground, iters, k): v for k, v in rows(env, state, actions).items() if k in args.what}
                    compile_s.update({k: _compile(fn, *a) for k, (fn, a) in mine.items()})
                    calls.update(mine)
                except Exception as err:  # noqa: BLE001 - report and go on with the other implementations
                    print(f"{ground:6} {iters:5d} {label:5} {batch:6d} failed: {type(err).__name__}: {str(err)[:200]}")
            per_call = _interleaved_median(calls, args.repeats)
            for (ground, iters, what) in calls:
                t, raw = per_call[(ground, iters, what)], per_call.get((ground, iters, "raw"))
                res = {"terrain": ground, "solver_iterations": iters, "impl": impl, "threads": threads,
                       "batch": batch, "what": what, "dr": domain.randomize,
                       "compile_s": compile_s[(ground, iters, what)], "ctrl_steps_per_s": batch / t,
                       "physics_steps_per_s": batch * envs[(ground, iters)].cfg.decimation / t,
                       "time_vs_raw": t / raw if raw else None}
                if what.startswith("env"):
                    fn, a = calls[(ground, iters, what)]
                    res["envs_reset"] = int(jax.device_get(fn(*a)[1].done.sum()))
                results.append(res)
                ratio = f"{res['time_vs_raw']:7.2f}" if res["time_vs_raw"] else " " * 7
                resets = f"{res['envs_reset']:7d}" if "envs_reset" in res else ""
                print(f"{ground:6} {iters:5d} {label:5} {batch:6d} {what:9} {res['ctrl_steps_per_s']:13.0f} {ratio} "
                      f"{res['compile_s']:10.1f} {resets}", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
