"""How fast a policy moves in the training env at one fixed command, randomisation and pushes included.

``python experiments/train_env_velocity.py config=t1_velocity --policy <run dir | policy.onnx | policy.pt>
--command VX VY WZ [--steps 600] [--skip 100] [num_envs=128] [key=value ...]``

Every env gets the command ``(VX, VY, WZ)`` (a zero command makes every env a standing one) and the policy's
deterministic actions. The script prints the mean base velocity in the base frame (``vx``, ``vy``, m/s) and the
mean yaw rate (``wz``, rad/s) over control steps ``--skip`` to ``--steps`` of every env that has not yet ended an
episode, the same quantities as the plain-MuJoCo evaluator's walking verdict (``agile_jax/evaluation/walking.py``).
Side by side with ``experiments/eval.py`` it tells a behaviour the policy learned in the training env (for
example a forward drift at a zero command) from a gap between the training env and plain MuJoCo; the env's
switches (``env.domain_randomization=false``, ``env.pushes=false``, ...) work as in ``baseline.py``.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # XLA notes every program loaded from the cache
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from agile_jax.runtime import platform  # noqa: E402
from envs.mdp.commands import CommandConfig  # noqa: E402
from experiments.train import build_config, config_or_none  # noqa: E402

MIN_VEL_NORM = CommandConfig.min_vel_norm  # the sampler zeroes commands with a smaller norm (AGILE's)


def command_overrides(command: tuple[float, float, float]) -> list[str]:
    """Config overrides that give every env ``command``; a command the sampler would zero is refused."""
    norm = float(np.linalg.norm(command))
    if 0.0 < norm < MIN_VEL_NORM:
        raise ValueError(f"--command {' '.join(map(str, command))} has norm {norm:.3f}: the training env zeroes "
                         f"commands under {MIN_VEL_NORM}; give 0 0 0 or a command of norm >= {MIN_VEL_NORM}")
    vx, vy, wz = command
    return [f"env.lin_vel_x=[{vx},{vx}]", f"env.lin_vel_y=[{vy},{vy}]", f"env.ang_vel_z=[{wz},{wz}]",
            f"env.rel_standing_envs={1.0 if norm == 0.0 else 0.0}"]


def mean_velocity(velocity: np.ndarray, done: np.ndarray, skip: int) -> tuple[np.ndarray, int]:
    """Mean of ``velocity`` ``[T, N, 3]`` over steps ``t >= skip`` of envs whose first episode has not ended by
    step ``t`` (``done`` ``[T, N]`` marks the step an episode ends, that step excluded); also the count."""
    before_end = np.cumsum(done, axis=0) == 0
    keep = before_end[skip:]
    count = int(keep.sum())
    if count == 0:
        return np.full(3, np.nan), 0
    return velocity[skip:][keep].mean(axis=0), count


def make_rollout(env, policy, steps: int):
    """A jitted ``key -> (velocity [T, N, 3], done [T, N])`` of the policy's deterministic actions from a reset;
    velocity is ``(vx, vy)`` of the root in its own frame and the root's yaw rate."""
    import jax
    import jax.numpy as jnp

    from envs.mdp.observations import base_lin_vel

    n = env.num_envs
    act, init = policy.bind(policy.obs_groups or ("policy",), env.observation_shapes), policy.init_state(n)

    def velocity(data):
        lin = jax.vmap(base_lin_vel)(data.qpos, data.qvel)
        return jnp.concatenate([lin[:, :2], data.qvel[:, 5:6]], axis=-1)

    @jax.jit
    def run(key):
        def body(carry, _):
            s, h = carry
            mean, h = act(s.obs, h)
            s, info = env.step(s, mean)
            return (s, h), (velocity(s.data), info.done)

        state = env.reset(jax.random.split(key, n))
        return jax.lax.scan(body, (state, init), None, length=steps)[1]

    return run


def main(argv: list[str] | None = None) -> int:
    from experiments.baseline import _load_policy

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", required=True, help="a run directory, checkpoint or exported policy file")
    parser.add_argument("--command", type=float, nargs=3, required=True, metavar=("VX", "VY", "WZ"))
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--skip", type=int, default=100, help="control steps left out after the reset")
    parser.add_argument("--seed", type=int, default=0)
    args, settings = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    if not any(s.startswith("config=") for s in settings):
        parser.error("name a preset, e.g. config=t1_velocity")
    if not 0 <= args.skip < args.steps:
        parser.error(f"--skip {args.skip} must be at least 0 and below --steps {args.steps}")
    try:
        overrides = command_overrides(tuple(args.command))
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    cfg = config_or_none(build_config, settings + overrides)
    if cfg is None:
        return 2
    cfg.runner.init_at_random_ep_len = False  # every env starts from a reset
    platform.enable_compilation_cache()
    import jax

    from experiments.configs import make_env

    env = make_env(cfg)
    try:
        run = make_rollout(env, _load_policy(args.policy), args.steps)
    except ValueError as err:  # the policy reads other observations than this env gives
        print(f"error: --policy {args.policy}: {err}", file=sys.stderr)
        return 2
    velocity, done = jax.device_get(run(jax.random.key(args.seed)))
    mean, count = mean_velocity(np.asarray(velocity), np.asarray(done), args.skip)
    print(f"command ({args.command[0]:+.2f}, {args.command[1]:+.2f}, {args.command[2]:+.2f}): "
          f"vx {mean[0]:+.3f} m/s, vy {mean[1]:+.3f} m/s, wz {mean[2]:+.3f} rad/s "
          f"over {count} env-steps ({env.num_envs} envs, steps {args.skip}-{args.steps} before each env's first end)")
    return 0


if __name__ == "__main__":
    from experiments import cli

    sys.exit(cli.run(main, sys.argv[1:]))
