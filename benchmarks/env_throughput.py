"""Control steps per second of the velocity env next to raw batched ``mjx.step`` on the same model.

For each MJX implementation (``jax``, and ``warp`` when ``warp-lang`` is installed) and batch size it reports

* ``env``: ``VecEnv.step`` of the velocity task (PD + delay + 4 physics steps + terms + auto-reset);
* ``step``: ``vmap(env.step)`` alone (no time limit / auto-reset);
* ``raw``: ``vmap(lax.scan(mjx.step))`` over the same number of physics steps with fixed controls;

as control steps/s (batch x calls / wall time) and the compile time of the first call. Run:

    python benchmarks/env_throughput.py --batch 64 256 1024 --impl jax warp --out results.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time

import jax
import jax.numpy as jnp
from mujoco import mjx

from envs.core import VecEnv
from envs.mdp import events
from envs.tasks.velocity import G1VelocityConfig, T1VelocityConfig, VelocityEnv


def _timed(fn, carry, *extra, repeats: int) -> tuple[float, float]:
    """Compile time of the first call and mean wall time of ``repeats`` chained calls ``carry = fn(carry, *extra)``."""
    t0 = time.perf_counter()
    carry = jax.block_until_ready(fn(carry, *extra))
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(repeats):
        carry = fn(carry, *extra)
    jax.block_until_ready(carry)
    return compile_s, (time.perf_counter() - t0) / repeats


def bench_env(env: VelocityEnv, batch: int, repeats: int) -> dict:
    """``VecEnv.step`` throughput (random actions fixed per run)."""
    venv = VecEnv(env, batch)
    state = jax.jit(venv.reset)(jax.random.split(jax.random.PRNGKey(0), batch))
    actions = 0.3 * jax.random.normal(jax.random.PRNGKey(1), (batch, env.action_size))
    step = jax.jit(lambda s, a: venv.step(s, a)[0])
    compile_s, per_call = _timed(step, state, actions, repeats=repeats)
    return {"compile_s": compile_s, "ctrl_steps_per_s": batch / per_call}


def bench_step(env: VelocityEnv, batch: int, repeats: int) -> dict:
    """``vmap(env.step)`` without ``VecEnv``'s time limit and auto-reset."""
    state = jax.jit(jax.vmap(env.reset))(jax.random.split(jax.random.PRNGKey(0), batch))
    actions = 0.3 * jax.random.normal(jax.random.PRNGKey(1), (batch, env.action_size))
    compile_s, per_call = _timed(jax.jit(jax.vmap(env.step)), state, actions, repeats=repeats)
    return {"compile_s": compile_s, "ctrl_steps_per_s": batch / per_call}


def bench_raw(env: VelocityEnv, batch: int, repeats: int) -> dict:
    """Raw batched ``mjx.step``: ``decimation`` physics steps per call, the same model (nominal or per-env DR)."""
    robot, decimation = env.robot, env.cfg.decimation

    def init(_):
        d = env.make_data()
        qpos = jnp.asarray(d.qpos).at[2].set(robot.stand_height).at[robot.qpos_adr].set(jnp.asarray(robot.default_pos))
        return d.replace(qpos=qpos)

    data = jax.jit(jax.vmap(init))(jnp.arange(batch))
    doms = jax.tree.map(lambda x: jnp.broadcast_to(x, (batch,) + x.shape), events.nominal_domain(robot))

    def physics(d, dom):
        model = events.apply_domain(env.mjx_model, dom) if env.cfg.domain.randomize else env.mjx_model
        d, _ = jax.lax.scan(lambda c, _: (mjx.step(model, c), None), d, None, length=decimation)
        return d

    compile_s, per_call = _timed(jax.jit(jax.vmap(physics)), data, doms, repeats=repeats)
    return {"compile_s": compile_s, "ctrl_steps_per_s": batch / per_call,
            "physics_steps_per_s": batch * decimation / per_call}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--robot", choices=("t1", "g1"), default="t1")
    parser.add_argument("--batch", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--impl", nargs="+", default=["jax", "warp"])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--no-dr", action="store_true", help="nominal model (always used with impl=warp)")
    parser.add_argument("--what", nargs="+", default=["env", "step", "raw"], help="rows to run")
    parser.add_argument("--out", default=None, help="write the results as JSON")
    args = parser.parse_args()
    base = T1VelocityConfig() if args.robot == "t1" else G1VelocityConfig()
    results = []
    print(f"jax {jax.__version__} backend={jax.default_backend()} cores={os.cpu_count()}")
    print(f"{'impl':5} {'batch':>6} {'what':4} {'ctrl steps/s':>13} {'compile s':>10}")
    for impl in args.impl:
        domain = dataclasses.replace(base.domain, randomize=not args.no_dr and impl == "jax")
        try:
            env = VelocityEnv(dataclasses.replace(base, impl=impl, domain=domain))
        except (RuntimeError, ImportError, ValueError) as err:
            print(f"{impl:5} skipped: {err}")
            continue
        for batch in args.batch:
            for what, fn in (("env", bench_env), ("step", bench_step), ("raw", bench_raw)):
                if what not in args.what:
                    continue
                try:
                    res = fn(env, batch, args.repeats)
                except Exception as err:  # noqa: BLE001 - report and go on with the other rows
                    print(f"{impl:5} {batch:6d} {what:4} failed: {type(err).__name__}: {str(err)[:200]}")
                    continue
                res.update(impl=impl, batch=batch, what=what, dr=domain.randomize)
                results.append(res)
                print(f"{impl:5} {batch:6d} {what:4} {res['ctrl_steps_per_s']:13.0f} {res['compile_s']:10.1f}",
                      flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
