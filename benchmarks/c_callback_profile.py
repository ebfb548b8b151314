"""Where one ``env.impl=c`` physics step spends its time on the host, piece by piece (T1, flat ground).

Times the host side of the callback (:func:`envs.mujoco_c.callback._host_step`) on a batch of reset states with
their randomised models, then its parts: the batched ``mujoco.batch`` step alone, the bounding-box update that
follows a changed inertial frame, the flattening and copies, and, for comparison, ``mujoco.rollout`` of one step
on the nominal model and a ``jax.pure_callback`` that only hands the state over and back.

    python benchmarks/c_callback_profile.py --batch 256 --threads 2
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import mujoco  # noqa: E402
import numpy as np  # noqa: E402
from mujoco import rollout as mj_rollout  # noqa: E402

from envs.core import VecEnv  # noqa: E402
from envs.mujoco_c import callback, host  # noqa: E402
from envs.mujoco_c.data import STATE_FIELDS  # noqa: E402
from envs.tasks import velocity  # noqa: E402


def _ms(fn, repeats: int) -> float:
    """Mean milliseconds per call of ``fn`` after one warm-up call."""
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats * 1e3


def _batch(num_envs: int):
    """The env, its reset states' model fields and physics state as NumPy rows, and the callback's shape table."""
    env = velocity.VelocityEnv(dataclasses.replace(velocity.T1VelocityConfig(), impl="c"))
    state = jax.jit(VecEnv(env, num_envs).reset)(jax.random.split(jax.random.PRNGKey(0), num_envs))
    models = jax.jit(jax.vmap(env.physics_model))(state.info["domain"])
    fields = {k: np.array(getattr(models, k), np.float32) for k in host.MODEL_FIELDS}
    physics = {k: np.array(getattr(state.data, k), np.float32) for k in STATE_FIELDS + ("ctrl", "xfrc_applied")}
    d0 = mujoco.MjData(env.robot.model)
    tails = {k: tuple(np.shape(getattr(env.robot.model, k))) for k in host.MODEL_FIELDS}
    tails.update({k: tuple(np.shape(getattr(d0, k))) for k in physics})
    return env, fields, physics, tails


def _handover_ms(physics: dict, repeats: int) -> float:
    """Milliseconds per ``jax.pure_callback`` that returns its state operands unchanged (inside one jitted loop)."""
    shapes = {k: jax.ShapeDtypeStruct(physics[k].shape, jnp.float32) for k in STATE_FIELDS}

    @jax.jit
    def loop(s):
        def body(_, s):
            return {**s, **jax.pure_callback(lambda s: {k: s[k] for k in STATE_FIELDS}, shapes, s)}
        return jax.lax.fori_loop(0, repeats, body, s)

    s = {k: jnp.asarray(v) for k, v in physics.items()}
    jax.block_until_ready(loop(s))
    start = time.perf_counter()
    jax.block_until_ready(loop(s))
    return (time.perf_counter() - start) / repeats * 1e3


def profile(num_envs: int, threads: int, repeats: int) -> dict[str, float]:
    """``piece -> ms`` per physics step of ``num_envs`` envs."""
    env, fields, physics, tails = _batch(num_envs)
    stepper = host.HostStepper(env.robot.model, threads)
    out = {"host step (unchanged models)": _ms(lambda: callback._host_step(stepper, tails, True, fields, physics),
                                               repeats)}

    def after_a_reset():  # one env's inertial frame moves, as after a reset with a new domain
        fields["body_ipos"][0, 1, 0] += 1e-6
        callback._host_step(stepper, tails, True, fields, physics)

    out["host step (one env's model changed)"] = _ms(after_a_reset, repeats)
    _, rows = callback._flatten({**fields, **physics}, tails)
    slot = stepper._checkout(num_envs)
    out["  mujoco.batch step alone"] = _ms(slot.batch.step, repeats)
    out["  bounding boxes of the moved frames"] = _ms(
        lambda: host.moved_boxes(slot.batch.model, rows["body_ipos"], rows["body_iquat"]), repeats)
    out["  flatten, write state, read state and kinematics"] = _ms(
        lambda: (callback._flatten({**fields, **physics}, tails),
                 [view.__setitem__(Ellipsis, rows[k]) for k, view in slot.state.items()],
                 [view.astype(np.float32) for view in (*slot.state.values(), *slot.derived.values())]), repeats)
    model, spec = env.robot.model, mujoco.mjtState.mjSTATE_FULLPHYSICS
    initial = np.zeros((num_envs, mujoco.mj_stateSize(model, spec)))
    d = mujoco.MjData(model)
    for i in range(num_envs):
        d.qpos[:], d.qvel[:] = rows["qpos"][i], rows["qvel"][i]
        mujoco.mj_getState(model, d, initial[i], spec)
    pool, datas = mj_rollout.Rollout(nthread=threads if threads > 1 else 0), [mujoco.MjData(model)
                                                                                 for _ in range(threads)]
    out["mujoco.rollout, one step, nominal model"] = _ms(
        lambda: pool.rollout(model, datas, initial, rows["ctrl"][:, None]), repeats)
    out["pure_callback hand-over alone"] = _handover_ms(physics, repeats)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=40)
    args = parser.parse_args()
    for piece, ms in profile(args.batch, args.threads, args.repeats).items():
        print(f"{piece:50s} {ms:8.3f} ms")


if __name__ == "__main__":
    main()
