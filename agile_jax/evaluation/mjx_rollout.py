"""Trajectories of the MJX :class:`~envs.tasks.velocity.VelocityEnv` in the layout of :mod:`.metrics`.

For sim-to-sim comparisons: run the same policy and command schedule in the training simulator, then feed
both trajectories to :func:`agile_jax.evaluation.metrics.episode_metrics`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from agile_jax.evaluation.commands import CommandSchedule
from agile_jax.evaluation.policy_io import quat_rotate_inverse


def clean_env(robot: str, obs_noise: bool = False):
    """The MJX velocity env of ``robot`` (``booster_t1``/``t1`` or ``unitree_g1``/``g1``) as sim2mujoco runs it.

    No domain randomisation, pushes, wrenches, reset perturbations or random arm motion (arms hold their
    default pose); observation noise only with ``obs_noise``.
    """
    from envs.tasks import velocity

    bases = {"booster_t1": velocity.T1VelocityConfig, "t1": velocity.T1VelocityConfig,
             "unitree_g1": velocity.G1VelocityConfig, "g1": velocity.G1VelocityConfig}
    cfg = bases[robot]()
    dom = dataclasses.replace(cfg.domain, randomize=False, push=False, wrench=False, reset_xy=0.0, reset_yaw=0.0,
                              reset_roll_pitch=0.0, reset_lin_vel=0.0, reset_ang_vel=0.0, reset_joint_scale=(1.0, 1.0))
    return velocity.VelocityEnv(dataclasses.replace(cfg, domain=dom, obs_noise=obs_noise, random_arm_motion=False))


def _row(env, state, command: np.ndarray, action: np.ndarray) -> dict[str, np.ndarray]:
    r = env.robot
    qpos, qvel = np.asarray(state.data.qpos), np.asarray(state.data.qvel)
    return {"joint_pos": qpos[r.qpos_adr], "joint_vel": qvel[r.dof_adr], "root_pos": qpos[0:3],
            "root_quat": qpos[3:7], "root_lin_vel_b": quat_rotate_inverse(qpos[3:7], qvel[0:3]),
            "root_ang_vel_b": qvel[3:6], "command": command, "action": action}


def rollout(env, policy: Callable[[np.ndarray], np.ndarray], schedule: CommandSchedule, duration: float,
            seed: int = 0, delay: int = 0) -> dict[str, np.ndarray]:
    """One single-env episode of ``env`` (a ``VelocityEnv``) with commands written from ``schedule``.

    Args:
        env: the single (unbatched) env; configure it without randomisation for a clean comparison.
        policy: ``flat policy obs [D] -> action [A]``: the exported policy's input, ``obs['policy']`` in AGILE's
            term-major history layout.
        schedule: command source. duration: episode length (s). seed: reset key.
        delay: actuator command delay (physics steps) of every joint (replaces the env's random one).

    Returns:
        The trajectory (joint arrays in ``env.robot.joint_names`` order) plus ``dt``, ``fell``, ``wall_time``.
    """
    from envs.mdp.observations import term_major

    reset, step = jax.jit(env.reset), jax.jit(env.step)
    state = reset(jax.random.key(seed))
    rows, fell, start = [], False, time.perf_counter()
    for k in range(int(round(duration / env.ctrl_dt))):
        cmd = schedule.at(k * env.ctrl_dt).astype(np.float32)
        info = {**state.info, "command": jnp.asarray(cmd), "command_time": jnp.asarray(1e9, jnp.float32)}
        if k == 0:  # the first observation was built with the sampled command: rebuild it once
            info["history"] = info["history"].at[..., 6:9].set(jnp.asarray(cmd))
            info["delay"] = jnp.full_like(info["delay"], delay)
        state = state.replace(info=info, obs={**state.obs, "policy": info["history"]})
        action = np.asarray(policy(np.asarray(term_major(state.obs["policy"], env.policy_layout), np.float32)),
                            np.float32)
        state = step(state, jnp.asarray(action))
        rows.append({**_row(env, state, cmd, action), "time": (k + 1) * env.ctrl_dt})
        if bool(state.terminated):
            fell = True
            break
    traj = {key: np.asarray([r[key] for r in rows], np.float32) for key in rows[0]}
    traj["time"] = traj["time"].astype(np.float64)
    traj.update(dt=np.float64(env.ctrl_dt), fell=np.bool_(fell), wall_time=np.float64(time.perf_counter() - start),
                target_steps=np.int64(round(duration / env.ctrl_dt)))
    return traj
