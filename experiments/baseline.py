"""What a policy scores: episode length, return and reward terms of zero, Gaussian random or a trained policy's actions.

``python experiments/baseline.py config=t1_velocity [num_envs=64] [--steps 150] [--std 0 0.3 1.0] [--audit]
[--policy <run dir | policy.onnx | policy.pt>]``

Runs the preset's env (same overrides as ``train.py``) for ``--steps`` control steps per action noise level
``std`` (actions ``std * N(0, 1)``, so ``std=0`` holds the default pose) and prints, per level, the mean
reward per step, how many episodes ended (and how many by a failure), their mean length, and the mean
per-step value of each reward term. With ``--steps`` of at least the time limit it also prints the *mean episode
length*: the mean over every episode that started early enough to be seen whole (``complete_episode_lengths``),
which, unlike the mean of the episodes that happened to end, does not favour the short ones; two time limits of
steps give it a few hundred episodes. It is the reference line for a learning curve: ``Train/mean_episode_length``
of a policy that learns must rise above these numbers.

``--policy`` adds the deterministic actions of a trained policy (a run directory or checkpoint of ``train.py``,
or its exported ONNX / TorchScript file) to the noise, so the same numbers describe that policy in the training
env; with the env's switches (``env.pushes=false``, ``env.wrenches=false``, ``env.random_arm_motion=false``,
``env.domain_randomization=false``, ``env.obs_noise=false``) they show which disturbance ends its episodes.
With ``--audit`` the policy's actions take the place of the zero actions.

``--audit`` prints, for every reward term, its mean per-step contribution (weight x dt included) in three
regimes: a *standing* robot (zero actions, the first ``AUDIT_WINDOW`` control steps after a reset, still
upright), a *falling* robot (zero actions, the ``AUDIT_WINDOW`` steps that end in a failure termination) and a
*random* policy (actions ``N(0, 1)``, the preset's initial noise, every step).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # XLA notes every program loaded from the cache
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from agile_jax.runtime import platform  # noqa: E402
from experiments.train import build_config, config_or_none  # noqa: E402


def make_rollout(env, steps: int, policy=None, extra=None):
    """A jitted ``(std, key) -> per-step outputs`` of ``steps`` control steps of actions ``std * N(0, 1)`` on a
    :class:`envs.core.VecEnv`, from a fresh reset (``std`` is traced, so every level shares one compile).

    ``policy``: an optional :class:`agile_jax.policies.LoadedPolicy` whose deterministic actions the noise is
    added to (its recurrent state restarts with each episode). ``extra``: an optional ``state -> pytree`` whose
    value after each step joins the outputs as a sixth item.
    """
    import jax
    import jax.numpy as jnp

    n = env.num_envs
    if policy is None:
        act, init = (lambda obs, h: (jnp.zeros((n, env.action_size)), h)), ()
    else:
        act, init = policy.bind(policy.obs_groups or ("policy",), env.observation_shapes), policy.init_state(n)

    def restart(h, done):
        return jax.tree.map(lambda x, x0: jnp.where(done.reshape((n,) + (1,) * (x.ndim - 1)), x0, x), h, init)

    @jax.jit
    def run(std, key):
        state = env.reset(jax.random.split(key, n))

        def body(carry, k):
            s, h = carry
            mean, h = act(s.obs, h)
            s, info = env.step(s, mean + std * jax.random.normal(k, (n, env.action_size)))
            out = (info.reward, s.reward_terms, info.done, info.terminated, info.episode_length)
            return (s, restart(h, info.done)), out + ((extra(s),) if extra else ())

        return jax.lax.scan(body, (state, init), jax.random.split(jax.random.fold_in(key, 1), steps))[1]

    return run


def complete_episode_lengths(done: np.ndarray, length: np.ndarray, limit: int) -> np.ndarray:
    """Lengths of the episodes that started early enough to end inside the ``[T, N]`` window.

    An episode that starts at step ``s`` ends by ``s + limit - 1`` (the time limit), so every episode starting
    at ``s <= T - limit`` is seen whole, whatever its length: their mean is not biased towards the short ones
    the way the mean of the episodes that happened to end inside the window is. Empty when ``T < limit``.
    """
    steps = done.shape[0]
    out = []
    for n in range(done.shape[1]):
        start = 0
        for t in np.flatnonzero(done[:, n]):
            if start + limit <= steps:
                out.append(length[t, n])
            start = t + 1
    return np.asarray(out, np.int64)


def random_action_stats(run, std: float, seed: int = 0, limit: int | None = None) -> dict:
    """Statistics of one :func:`make_rollout` run at noise level ``std`` (``limit``: the episode time limit)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    reward, terms, done, terminated, length = jax.device_get(run(jnp.float32(std), jax.random.PRNGKey(seed)))
    ended = length[done]
    whole = complete_episode_lengths(done, length, limit) if limit else np.zeros(0, np.int64)
    return {
        "std": std,
        "reward_per_step": float(np.mean(reward)),
        "episodes_ended": int(done.sum()),
        "episodes_failed": int(terminated.sum()),
        "mean_length_of_ended": float(ended.mean()) if ended.size else None,
        "whole_episodes": int(whole.size),
        "mean_episode_length": float(whole.mean()) if whole.size else None,
        "time_limit": limit,
        "reward_terms_per_step": {k: float(np.mean(v)) for k, v in sorted(terms.items())},
    }


AUDIT_WINDOW = 10


def steps_in_episode(done: np.ndarray) -> np.ndarray:
    """``[T, N]`` index of each step within its episode (0 at the first step after a reset)."""
    out = np.zeros(done.shape, np.int64)
    for t in range(1, done.shape[0]):
        out[t] = np.where(done[t - 1], 0, out[t - 1] + 1)
    return out


def steps_before_failure(terminated: np.ndarray, window: int) -> np.ndarray:
    """``[T, N]`` mask of the ``window`` steps that end at a failure termination (that step included)."""
    mask = np.zeros(terminated.shape, bool)
    for t, n in zip(*np.nonzero(terminated)):
        mask[max(t - window + 1, 0):t + 1, n] = True
    return mask


def term_audit(run, seed: int = 0, window: int = AUDIT_WINDOW) -> dict[str, dict[str, float]]:
    """Per-term mean per-step contribution: ``{regime: {term: value}}`` (regimes: standing, falling, random)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    _, terms, done, terminated, _ = jax.device_get(run(jnp.float32(0.0), jax.random.PRNGKey(seed)))
    first_episode = np.cumsum(done, axis=0) - done == 0
    masks = {"standing": first_episode & (steps_in_episode(done) < window),
             "falling": steps_before_failure(terminated, window)}
    audit = {regime: {k: float(v[m].mean()) if m.any() else float("nan") for k, v in sorted(terms.items())}
             for regime, m in masks.items()}
    _, random_terms, *_ = jax.device_get(run(jnp.float32(1.0), jax.random.PRNGKey(seed)))
    audit["random"] = {k: float(np.mean(v)) for k, v in sorted(random_terms.items())}
    return audit


def print_audit(audit: dict[str, dict[str, float]]) -> None:
    """The audit as a Markdown table, terms sorted by their magnitude under the random policy."""
    regimes = list(audit)
    print("| term | " + " | ".join(f"{r} (per step)" for r in regimes) + " |")
    print("| --- |" + " --- |" * len(regimes))
    for term in sorted(audit["random"], key=lambda k: -abs(audit["random"][k])):
        print(f"| {term} | " + " | ".join(f"{audit[r][term]:+.2e}" for r in regimes) + " |")
    print("| **sum** | " + " | ".join(f"{sum(audit[r].values()):+.3f}" for r in regimes) + " |")


def _rounded(x: float | None) -> float | None:
    return x if x is None else round(x, 1)


def _whole_episode_line(res: dict) -> str:
    """The unbiased mean episode length, or how many steps it needs (``--steps`` of at least the time limit)."""
    if not res["whole_episodes"]:
        return f"; mean episode length needs --steps >= {res['time_limit']} (the time limit)"
    return (f"; mean episode length {res['mean_episode_length']:.1f} of {res['time_limit']} "
            f"({res['mean_episode_length'] / res['time_limit']:.0%}, {res['whole_episodes']} whole episodes)")


def _load_policy(path: str):
    """The :class:`LoadedPolicy` of ``path``, or exit 2 with the reason in one line."""
    from agile_jax.policies.load import load_policy

    try:
        return load_policy(path)
    except (ValueError, FileNotFoundError, OSError) as err:
        print(f"error: --policy {path}: {err}", file=sys.stderr)
        raise SystemExit(2) from None


def write_json(path: str | None, value) -> None:
    """``value`` as indented JSON at ``path`` (``--out``); nothing when no path was given."""
    if path:
        with open(path, "w") as f:
            json.dump(value, f, indent=2)


def parse_settings(parser: argparse.ArgumentParser, argv: list[str] | None):
    """The script's flags and the preset's config from ``key=value`` settings (exit 2 in one line on a bad one),
    with episode lengths counted from a real start (no random initial episode lengths)."""
    args, settings = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    if not any(s.startswith("config=") for s in settings):
        parser.error("name a preset, e.g. config=t1_velocity")
    cfg = config_or_none(build_config, settings)
    if cfg is None:
        raise SystemExit(2)
    cfg.runner.init_at_random_ep_len = False
    return args, cfg


def rollout_or_exit(env, steps: int, policy_path: str | None, extra=None):
    """:func:`make_rollout` of the policy at ``policy_path`` (or zero actions); exit 2 with the reason in one line."""
    try:
        return make_rollout(env, steps, None if policy_path is None else _load_policy(policy_path), extra)
    except ValueError as err:  # the policy reads other observations than this env gives
        print(f"error: --policy {policy_path}: {err}", file=sys.stderr)
        raise SystemExit(2) from None


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--std", type=float, nargs="+", default=[0.0, 0.3, 1.0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="write the statistics as JSON")
    parser.add_argument("--audit", action="store_true", help="per-term contributions: standing, falling, random")
    parser.add_argument("--policy", default=None, help="a trained policy whose actions the noise is added to")
    args, cfg = parse_settings(parser, argv)
    platform.enable_compilation_cache()
    from experiments.configs import make_env

    env = make_env(cfg)
    run = rollout_or_exit(env, args.steps, args.policy)
    if args.audit:
        audit = term_audit(run, args.seed)
        print_audit(audit)
        write_json(args.out, audit)
        return [audit]
    results = []
    for std in args.std:
        res = random_action_stats(run, std, args.seed, env.max_episode_length)
        results.append(res)
        print(f"std {std:4.2f}: reward/step {res['reward_per_step']:+.4f}, episodes ended {res['episodes_ended']} "
              f"({res['episodes_failed']} failures), mean length {_rounded(res['mean_length_of_ended'])}"
              + _whole_episode_line(res))
    write_json(args.out, results)
    return results


if __name__ == "__main__":
    main()
