"""PPO throughput on a zero-cost synthetic env, side by side with ``shared/tools/rslrl_bench/bench_rslrl.py``.

Same task, network and PPO settings as the RSL-RL anchor (AGILE's T1 PPO layout): obs ``policy`` 96 /
``critic`` 120, 23 actions, actor [256, 256, 128], critic [512, 256, 128], ELU, scalar Gaussian std,
24 steps/env, 5 epochs x 4 minibatches, adaptive KL, clipped value loss, no obs normalisation.

Measured (median and min-max of ``--repeats`` clean samples after a warm-up, each ended by
``jax.block_until_ready``):

* (a) the rollout alone (jitted ``make_rollout_fn``: 24 x (act + env step));
* (a') returns alone (timeout bootstrap, last value, GAE);
* (b) the update alone (jitted ``make_update_fn`` update on a fixed rollout batch); the headline
  ``update samples/s = N * 24 * 5 / (b)`` (epochs x whole batch, as the anchor counts it);
* (c) the whole jitted iteration (``make_trainer(...).iteration`` plus the host transfer of its outputs,
  i.e. what ``OnPolicyRunner.learn`` does per iteration);
* compile time of each jitted function (``lower().compile()``).

As in the anchor, a sample during which other processes used more than max(0.5 s, 5 % of the wall
time) of CPU (``/proc/stat`` minus our own CPU time) is kept in the JSON but left out of the medians,
and is retried (at most ``3 * repeats`` attempts).

Usage:
  python benchmarks/ppo_update.py --num-envs 4096 1024 --repeats 5 --threads 2 --out results.json
"""

from __future__ import annotations

import argparse
import os
import sys


def _limit_threads(threads: int) -> None:
    """Pins the process to ``threads`` cores (XLA sizes its CPU thread pool by the visible cores)."""
    cores = sorted(os.sched_getaffinity(0))
    if 0 < threads < len(cores):
        os.sched_setaffinity(0, cores[:threads])


def _parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--num-envs", type=int, nargs="+", default=[4096, 1024])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2, help="CPU cores to use (process affinity)")
    p.add_argument("--obs-norm", action="store_true", help="enable observation normalisation in actor and critic")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--donate", action="store_true", help="donate params/opt_state buffers to the update")
    p.add_argument("--matmul-precision", default=None, help="jax_default_matmul_precision (e.g. 'float32')")
    p.add_argument("--skip-iteration", action="store_true", help="skip (c), the whole iteration")
    p.add_argument("--out", type=str, default=None)
    return p.parse_args()


if __name__ == "__main__":
    _ARGS = _parse_args()
    _limit_threads(_ARGS.threads)

# JAX is imported after the affinity is set, so XLA's thread pool matches it.
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from synthetic_env import SyntheticConfig, SyntheticTask  # noqa: E402

from agile_jax.algorithms import gae, optim, ppo  # noqa: E402
from agile_jax.config import AlgorithmConfig, PolicyConfig, RunnerConfig, TrainConfig  # noqa: E402
from agile_jax.extensions.base import Batch, chain  # noqa: E402
from agile_jax.networks.from_config import make_networks  # noqa: E402
from agile_jax.training.ppo_trainer import make_trainer  # noqa: E402
from agile_jax.training.rollout import make_rollout_fn  # noqa: E402
from envs.core import VecEnv  # noqa: E402

CONFIG_DESCRIPTION = (
    "actor [256,256,128] critic [512,256,128] elu, obs policy=96 critic=120, 23 actions, 24 steps/env, "
    "5 epochs x 4 minibatches, adaptive KL, clipped value loss, Gaussian scalar std"
)


def make_config(obs_normalization: bool = False, seed: int = 0) -> TrainConfig:
    """The anchor's PPO configuration (RSL-RL defaults otherwise)."""
    return TrainConfig(
        env=SyntheticConfig(seed=seed),
        policy=PolicyConfig(actor_hidden_dims=[256, 256, 128], critic_hidden_dims=[512, 256, 128], activation="elu",
                            init_noise_std=1.0, noise_std_type="scalar", actor_obs_normalization=obs_normalization,
                            critic_obs_normalization=obs_normalization),
        algorithm=AlgorithmConfig(num_learning_epochs=5, num_mini_batches=4, clip_param=0.2, gamma=0.99, lam=0.95,
                                  value_loss_coef=1.0, entropy_coef=0.01, learning_rate=1e-3, max_grad_norm=1.0,
                                  use_clipped_value_loss=True, schedule="adaptive", desired_kl=0.01),
        runner=RunnerConfig(seed=seed, num_steps_per_env=24, num_devices=1,
                            obs_groups={"actor": ["policy"], "critic": ["critic"]}),
    )


# -- contention-aware timing (as the anchor) ------------------------------------------------------


def _sys_busy_s() -> float:
    """Busy CPU seconds of the whole machine (all cores) from ``/proc/stat``."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return (sum(v[:8]) - idle) / os.sysconf("SC_CLK_TCK")


class Probe:
    """Wall time of a block and the CPU time other processes used meanwhile."""

    def __enter__(self) -> Probe:
        self.w, self.p, self.s = time.perf_counter(), time.process_time(), _sys_busy_s()
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self.w
        own = time.process_time() - self.p
        self.other = max(0.0, (_sys_busy_s() - self.s) - own)
        self.own_util = own / self.wall

    @property
    def clean(self) -> bool:
        return self.other <= max(0.5, 0.05 * self.wall)


def _summary(samples: list[tuple[float, bool]]) -> dict[str, float]:
    clean = [w for w, ok in samples if ok]
    if not clean:
        return {"median": float("nan"), "min": float("nan"), "max": float("nan")}
    return {"median": statistics.median(clean), "min": min(clean), "max": max(clean)}


def _compile(fn: Callable, *args) -> tuple[Callable, float]:
    """AOT-compiles the jitted ``fn`` for ``args``; returns the executable and the compile seconds."""
    jitted = fn if hasattr(fn, "lower") else fn.__wrapped__  # precision.with_precision wraps the jitted one
    t0 = time.perf_counter()
    compiled = jitted.lower(*args).compile()
    return compiled, time.perf_counter() - t0


# -- the benchmark ---------------------------------------------------------------------------------


class Pieces:
    """The jitted rollout, returns and update of one env batch, built like the trainer builds them."""

    def __init__(self, cfg: TrainConfig, num_envs: int, donate: bool):
        alg, run = cfg.algorithm, cfg.runner
        self.env = VecEnv(SyntheticTask(cfg.env), num_envs)
        self.networks = make_networks(cfg, self.env)
        self.tx = optim.make_optimizer(alg.learning_rate, alg.max_grad_norm, alg.grad_clip_mode, alg.optimizer)
        rollout = make_rollout_fn(self.env, self.networks, run.num_steps_per_env)
        self.env_ids = jnp.arange(num_envs)
        self.rollout = jax.jit(rollout)
        self.returns = jax.jit(self._returns_fn(alg))
        self.extensions = chain(ppo.default_extensions(alg))
        update = ppo.make_update_fn(alg, self.networks, self.tx, self.extensions)
        self.update = jax.jit(update, donate_argnums=(0,) if donate else ())

    def _returns_fn(self, alg: AlgorithmConfig) -> Callable:
        networks = self.networks

        def returns(params, normalizers, env_state, tr) -> tuple[jax.Array, jax.Array]:
            last_values = networks.value(params, normalizers, env_state.obs)
            rewards = gae.bootstrap_timeouts(tr.rewards, tr.values, tr.time_outs, alg.gamma)
            return gae.compute_gae(rewards, tr.values, tr.dones, last_values, alg.gamma, alg.lam)

        return returns


def make_batch(tr, advantages: jax.Array, returns: jax.Array) -> Batch:
    """The update's batch from the rollout (assembled outside jit, so no buffer is copied)."""
    return Batch(obs=tr.obs, actions=tr.actions, old_log_probs=tr.log_probs, old_values=tr.values,
                 advantages=advantages, returns=returns, old_mean=tr.action_mean, old_std=tr.action_std,
                 dones=tr.dones, hidden=tr.hidden)


def bench(num_envs: int, repeats: int, obs_norm: bool, seed: int, donate: bool, skip_iteration: bool) -> dict:
    """Times (a), (a'), (b) and (c) for one env count."""
    cfg = make_config(obs_norm, seed)
    pieces = Pieces(cfg, num_envs, donate)
    key = jax.random.key(seed)
    k_params, k_env, key = jax.random.split(key, 3)
    params = pieces.networks.init(k_params)
    normalizers = pieces.networks.init_normalizers()
    carry = ppo.SGDCarry(params, pieces.tx.init(params), jnp.zeros((), jnp.int32))
    ext_states = pieces.extensions.init(key, None)
    env_state = jax.jit(pieces.env.reset)(jax.random.split(k_env, num_envs))
    compile_s: dict[str, float] = {}

    # Compile, then one warm-up cycle.
    rollout, compile_s["rollout"] = _compile(pieces.rollout, params, normalizers, env_state, key, pieces.env_ids)
    env_state, tr, _ = jax.block_until_ready(rollout(params, normalizers, env_state, key, pieces.env_ids))
    returns, compile_s["returns"] = _compile(pieces.returns, params, normalizers, env_state, tr)
    batch = make_batch(tr, *jax.block_until_ready(returns(params, normalizers, env_state, tr)))
    update, compile_s["update"] = _compile(pieces.update, carry, normalizers, ext_states, batch, key)
    carry, metrics = jax.block_until_ready(update(carry, normalizers, ext_states, batch, key))
    params = carry.params

    # (a), (a'), (b): rollout -> returns -> update cycles (the update is timed on the cycle's fixed batch).
    t_roll, t_ret, t_upd, other_cpu, util_upd = [], [], [], [], []
    attempts = clean_cycles = 0
    while clean_cycles < repeats and attempts < 3 * repeats:
        attempts += 1
        key, k_roll, k_upd = jax.random.split(key, 3)
        with Probe() as pa:
            env_state, tr, _ = jax.block_until_ready(rollout(params, normalizers, env_state, k_roll, pieces.env_ids))
        with Probe() as pr:
            batch = make_batch(tr, *jax.block_until_ready(returns(params, normalizers, env_state, tr)))
        with Probe() as pu:
            carry, metrics = jax.block_until_ready(update(carry, normalizers, ext_states, batch, k_upd))
            params = carry.params
        ok = pa.clean and pr.clean and pu.clean
        clean_cycles += ok
        t_roll.append((pa.wall, ok))
        t_ret.append((pr.wall, ok))
        t_upd.append((pu.wall, ok))
        util_upd.append(pu.own_util)
        other_cpu.append(pa.other + pr.other + pu.other)
    del tr, batch

    # (c): the trainer's whole jitted iteration, with the host transfer the runner does after it.
    t_iter: list[tuple[float, bool]] = []
    if not skip_iteration:
        trainer = make_trainer(cfg, pieces.env, pieces.networks)
        state = trainer.init(jax.random.key(seed))
        iteration, compile_s["iteration"] = _compile(trainer.iteration, state)
        state, out = iteration(state)
        jax.device_get(out)
        attempts = clean_iters = 0
        while clean_iters < repeats and attempts < 3 * repeats:
            attempts += 1
            with Probe() as pi:
                state, out = iteration(state)
                jax.block_until_ready(state)
                jax.device_get(out)
            clean_iters += pi.clean
            t_iter.append((pi.wall, pi.clean))
            other_cpu.append(pi.other)

    steps, epochs = cfg.runner.num_steps_per_env, cfg.algorithm.num_learning_epochs
    roll, ret, upd, it = _summary(t_roll), _summary(t_ret), _summary(t_upd), _summary(t_iter)
    return {
        "num_envs": num_envs,
        "num_steps_per_env": steps,
        "obs_normalization": obs_norm,
        "repeats": repeats,
        "rollout_s": roll,
        "compute_returns_s": ret,
        "update_s": upd,
        "iteration_s": it,
        "rollout_s_median": roll["median"],
        "compute_returns_s_median": ret["median"],
        "update_s_median": upd["median"],
        "iteration_s_median": it["median"],
        "compile_s": compile_s,
        "clean_samples": {"cycle": sum(ok for _, ok in t_upd), "iteration": sum(ok for _, ok in t_iter)},
        "rollout_s_all_(wall,clean)": t_roll,
        "compute_returns_s_all_(wall,clean)": t_ret,
        "update_s_all_(wall,clean)": t_upd,
        "iteration_s_all_(wall,clean)": t_iter,
        "other_process_cpu_s_per_measurement": other_cpu,
        "own_cpu_utilization_during_update": util_upd,
        "update_samples_per_s": num_envs * steps * epochs / upd["median"],
        "rollout_env_steps_per_s": num_envs * steps / roll["median"],
        "iteration_env_steps_per_s": num_envs * steps / it["median"],
        "final_learning_rate": float(metrics["learning_rate"]),
    }


def _fmt(s: dict[str, float]) -> str:
    return f"{s['median']:.3f}s ({s['min']:.3f}-{s['max']:.3f})"


def main(args: argparse.Namespace) -> None:
    if args.matmul_precision:
        jax.config.update("jax_default_matmul_precision", args.matmul_precision)
    meta: dict[str, Any] = {
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "threads": len(os.sched_getaffinity(0)),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "donate": args.donate,
        "matmul_precision": args.matmul_precision,
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "config": CONFIG_DESCRIPTION,
    }
    results = []
    for n in args.num_envs:
        r = bench(n, args.repeats, args.obs_norm, args.seed, args.donate, args.skip_iteration)
        results.append(r)
        print(
            f"num_envs={n:5d} rollout={_fmt(r['rollout_s'])} returns={r['compute_returns_s_median'] * 1e3:.1f}ms "
            f"update={_fmt(r['update_s'])} iteration={_fmt(r['iteration_s'])} "
            f"update_samples/s={r['update_samples_per_s']:.0f} iter_env_steps/s={r['iteration_env_steps_per_s']:.0f} "
            f"compile_s={ {k: round(v, 1) for k, v in r['compile_s'].items()} } clean={r['clean_samples']} "
            f"max_other_cpu_s={max(r['other_process_cpu_s_per_measurement']):.2f}",
            flush=True,
        )
    headline = next((r for r in results if r["num_envs"] == 4096), results[0])
    print(f"update: {headline['update_samples_per_s']:.0f} samples/s", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"meta": meta, "results": results}, f, indent=1)


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


if __name__ == "__main__":
    main(_ARGS)
