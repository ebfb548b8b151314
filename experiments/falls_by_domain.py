"""Which randomised draws a policy falls in: failure rates of the training env by domain parameter.

``python experiments/falls_by_domain.py config=t1_velocity --policy <run dir | policy.onnx | policy.pt>
[num_envs=128] [--steps 3000] [--seed 0] [--out falls.json]``

Runs the preset's training env (its randomisation, pushes, wrenches and commands, same overrides as
``train.py``) under the policy's deterministic actions, as ``experiments/baseline.py --std 0`` does, and splits the
failures by what each env drew: the startup draws that an env keeps for the whole run (foot friction, the root
body's mass and centre of mass, joint armature, PD gain scales) and the actuator delay that each episode redraws.
For each parameter it prints the failures per 10 000 env steps in each quarter of the envs sorted by that draw, so
a rate that climbs across the quarters names a draw the policy does not handle. The overall rate and the mean episode
length are those of ``baseline.py`` (the same rollout and seed).
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from agile_jax.runtime import platform  # noqa: E402
from experiments.baseline import complete_episode_lengths, parse_settings, rollout_or_exit, write_json  # noqa: E402

QUARTERS = 4


def domain_summary(robot, nominal, domain) -> dict[str, np.ndarray]:
    """Per-env scalars ``[N]`` of the startup draws, relative to the nominal model where that is what was drawn."""
    legs = robot.dof_adr[robot.action_idx]
    ankles = [robot.dof_adr[i] for i, name in enumerate(robot.joint_names) if "ankle" in name.lower()]
    mu = domain.geom_friction[:, robot.foot_geoms[:, 0], 0]
    com = domain.body_ipos[:, robot.root_body] - nominal.body_ipos[robot.root_body]
    armature = domain.dof_armature / np.maximum(nominal.dof_armature, 1e-12)
    return {
        "foot friction (lower foot)": mu.min(axis=1),
        "root body mass added (kg)": domain.body_mass[:, robot.root_body] - nominal.body_mass[robot.root_body],
        "root body CoM x offset (m)": com[:, 0],
        "root body CoM |y| offset (m)": np.abs(com[:, 1]),
        "root body CoM z offset (m)": com[:, 2],
        "armature scale, leg mean": armature[:, legs].mean(axis=1),
        "armature scale, lowest ankle": armature[:, ankles].min(axis=1),
        "kd scale, leg mean": domain.kd_scale[:, robot.action_idx].mean(axis=1),
        "kp scale, leg mean": domain.kp_scale[:, robot.action_idx].mean(axis=1),
    }


def rate_by_quarter(values: np.ndarray, failures: np.ndarray, steps: np.ndarray) -> list[dict]:
    """Failures per 10 000 env steps in each quarter of the envs, sorted by ``values`` (quartile bins)."""
    edges = np.quantile(values, np.linspace(0.0, 1.0, QUARTERS + 1))
    which = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, QUARTERS - 1)
    rows = []
    for q in range(QUARTERS):
        sel = which == q
        n_steps = float(steps[sel].sum())
        rows.append({"low": float(edges[q]), "high": float(edges[q + 1]), "envs": int(sel.sum()),
                     "failures": int(failures[sel].sum()),
                     "per_10k_steps": 1e4 * float(failures[sel].sum()) / n_steps if n_steps else None})
    return rows


def delay_rates(delay: np.ndarray, terminated: np.ndarray) -> list[dict]:
    """Failures per 10 000 env steps by the episode's actuator delay (physics steps), from ``[T, N]`` arrays."""
    rows = []
    for d in np.unique(delay):
        sel = delay == d
        rows.append({"delay": int(d), "env_steps": int(sel.sum()), "failures": int(terminated[sel].sum()),
                     "per_10k_steps": 1e4 * float(terminated[sel].sum()) / float(sel.sum())})
    return rows


def _fmt(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:5.1f}"


def report(summary: dict[str, np.ndarray], per_env_failures: np.ndarray, steps: int, delays: list[dict]) -> dict:
    """Prints and returns the per-parameter tables."""
    env_steps = np.full(per_env_failures.shape, steps)
    out = {}
    print("failures per 10 000 env steps, by quarter of the envs sorted by each draw (low -> high):")
    for name, values in summary.items():
        rows = rate_by_quarter(values, per_env_failures, env_steps)
        out[name] = rows
        print(f"  {name:30s} " + " | ".join(f"{r['low']:+.3f}..{r['high']:+.3f}: {_fmt(r['per_10k_steps'])}"
                                            for r in rows))
    out["actuator delay (physics steps)"] = delays
    print("  actuator delay (physics steps) " + " | ".join(f"{r['delay']}: {r['per_10k_steps']:.1f}" for r in delays))
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", required=True, help="a run directory, checkpoint or exported policy")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="write the tables as JSON")
    args, cfg = parse_settings(parser, argv)
    if not cfg.env.domain_randomization:
        print("error: env.domain_randomization=false draws nothing to split the falls by; drop that override",
              file=sys.stderr)
        raise SystemExit(2)
    platform.enable_compilation_cache()
    import jax
    import jax.numpy as jnp

    from envs.mdp import events
    from experiments.configs import make_env

    env = make_env(cfg)
    run = rollout_or_exit(env, args.steps, args.policy, extra=lambda s: s.info["delay"][:, 0])
    key = jax.random.PRNGKey(args.seed)
    _, _, done, terminated, length, delay_after = jax.device_get(run(jnp.float32(0.0), key))
    # The state after a step that ends an episode is the next episode's: a step's delay is the one before it.
    delay = np.concatenate([delay_after[:1], delay_after[:-1]])
    # The startup draws stay with each env for the whole run: those of the rollout's own first reset.
    domain = jax.device_get(env.reset(jax.random.split(key, env.num_envs)).info["domain"])
    robot = env.env.robot
    summary = domain_summary(robot, jax.device_get(events.nominal_domain(robot)), domain)
    whole, limit = complete_episode_lengths(done, length, env.max_episode_length), env.max_episode_length
    mean = (f"mean episode length {whole.mean():.1f} of {limit} ({whole.mean() / limit:.0%}, {whole.size} whole "
            "episodes)") if whole.size else f"mean episode length needs --steps >= {limit} (the time limit)"
    print(f"{int(terminated.sum())} failures in {terminated.size} env steps "
          f"({1e4 * terminated.sum() / terminated.size:.1f} per 10 000); {mean}")
    tables = report(summary, terminated.sum(axis=0), args.steps, delay_rates(delay, terminated))
    write_json(args.out, tables)
    return tables


if __name__ == "__main__":
    main()
