"""MuJoCo C (``impl="c"``) against MJX-JAX on the T1 task, and the C backend's own guarantees.

Both engines start from the same reset (same keys), get the same actions and run until every env times out and
auto-resets, with domain randomisation, pushes and wrenches on, on the floor plane and on the rough heightfield. As in
``test_warp_backend.py`` the solver runs to convergence (100 iterations; the task's cap is 10): cut short, each
engine stops at a different point and trajectories differ after touchdown. Converged, what remains is float32 (MJX)
against float64 (MuJoCo C) rounding, amplified by the stiff foot contacts, and one discrete effect: a foot sphere
exactly at the floor (distance 0 in float32) touches in MJX and not in MuJoCo C, which changes a joint velocity by
up to ~1 m/s from then on (seen once in 240 env steps here, not in the steps below). The tolerances are about 10x
the largest differences measured over these 13 steps.

The backend's own checks: one callback step equals ``mujoco.mj_step`` on a per-env ``MjModel`` with the env's
randomised fields (bit for bit after the float32 cast); trajectories are identical at 1 and 2 threads and
across env instances; a state taken to the host and back continues exactly (the solver warm start is part of
it, and it matters); every field ``apply_domain`` randomises reaches MuJoCo C; ``auto`` and the GPU refusal.
"""

from __future__ import annotations

import dataclasses

import jax
import mujoco
import numpy as np
import pytest

from agile_jax.config import ConfigError, apply_overrides
from envs import mjx_impl, mujoco_c
from envs.core import VecEnv
from envs.mdp import events
from envs.mujoco_c.bounds import moved_boxes
from envs.robots import assets
from envs.tasks import velocity
from envs.terrain import TerrainConfig
from experiments.configs import get_preset

NUM_ENVS = 4
EPISODE_STEPS = 10  # 0.2 s at 50 Hz: every env times out on step 10 and auto-resets
NUM_STEPS = EPISODE_STEPS + 3
TOL = {"flat": {"qpos": 1e-3, "qvel": 5e-2, "obs": 5e-3, "reward": 5e-3},
       "rough": {"qpos": 1e-3, "qvel": 5e-2, "obs": 5e-3, "reward": 5e-3}}
# Heightfield contacts of MJX-JAX and MuJoCo C differ: over the same 13 steps the rough run reached
# max |c - jax| of 6.0e-2 in qpos, 4.25 in qvel, 0.77 in the observations and 7.7e-2 in the reward, so impl=c is
# not yet the same MDP on rough terrain (strict: this xfail fails once the two agree). The engines' heightfield
# colliders differ: MJX keeps at most 4 contacts per sphere-heightfield pair where MuJoCo C found up to 6, and for a
# 3 cm sphere rolling on a random 20 x 20 heightfield the two found different numbers of penetrating contacts in
# the same state in 15 of 298 steps (single resting contacts match to 1e-4 in position, depth and normal).
ROUGH_GAP = pytest.mark.xfail(strict=True, reason="MJX and MuJoCo C heightfield contacts differ (qvel 4.25 / 13 steps)")


def _task(impl: str, ground: str) -> velocity.T1VelocityConfig:
    converged = assets.SolverOptions(iterations=100, ls_iterations=50)
    terrain = TerrainConfig() if ground == "rough" else None
    return dataclasses.replace(velocity.T1VelocityConfig(), impl=impl, solver=converged, terrain=terrain,
                               episode_length_s=EPISODE_STEPS * 0.02)


class _Compiled:
    """One env of ``impl`` on ``ground`` batched over :data:`NUM_ENVS`, with its jitted reset and step."""

    def __init__(self, impl: str, ground: str):
        self.env = velocity.VelocityEnv(_task(impl, ground))
        self.venv = VecEnv(self.env, NUM_ENVS)
        self.reset = jax.jit(self.venv.reset)
        self.step = jax.jit(self.venv.step)

    def run(self, state=None, steps: int = NUM_STEPS, first: int = 0) -> list:
        """States after each step (the reset first when ``state`` is ``None``) of the fixed random actions."""
        if state is None:
            state = self.reset(jax.random.split(jax.random.PRNGKey(0), NUM_ENVS))
        states, self.dones = [state], []
        for t in range(first, first + steps):
            action = 0.5 * jax.random.normal(jax.random.PRNGKey(100 + t), (NUM_ENVS, self.venv.action_size))
            state, info = self.step(state, action)
            states.append(state)
            self.dones.append(np.asarray(info.done))
        return states


@pytest.fixture(scope="module")
def compiled():
    """``compiled(impl, ground)``: built and jitted once per module."""
    cache = {}

    def get(impl: str, ground: str) -> _Compiled:
        if (impl, ground) not in cache:
            cache[impl, ground] = _Compiled(impl, ground)
        return cache[impl, ground]

    return get


def _max_diffs(a, b) -> dict[str, float]:
    return {"qpos": float(np.max(np.abs(a.data.qpos - b.data.qpos))),
            "qvel": float(np.max(np.abs(a.data.qvel - b.data.qvel))),
            "obs": max(float(np.max(np.abs(a.obs[k] - b.obs[k]))) for k in a.obs),
            "reward": float(np.max(np.abs(a.reward - b.reward)))}


@pytest.mark.parametrize("ground", ["flat", pytest.param("rough", marks=[ROUGH_GAP, pytest.mark.slow])])
def test_c_follows_jax_through_resets(compiled, ground):
    """Same keys, same actions: qpos, qvel, observations and rewards agree over 13 steps with an auto-reset."""
    c_run, j_run = compiled("c", ground), compiled("jax", ground)
    cs, js = c_run.run(), j_run.run()
    assert type(cs[0].data).__name__ == "CData"
    np.testing.assert_array_equal(cs[0].data.qpos, js[0].data.qpos)  # the same reset states
    worst = {k: 0.0 for k in TOL[ground]}
    np.testing.assert_array_equal(np.stack(c_run.dones), np.stack(j_run.dones))
    for c, j in zip(cs[1:], js[1:]):
        worst = {k: max(worst[k], v) for k, v in _max_diffs(c, j).items()}
    assert bool(np.all(c_run.dones[EPISODE_STEPS - 1]))  # every env auto-reset on the last step of its limit
    assert float(np.max(np.abs(np.stack([s.data.qvel for s in cs[1:EPISODE_STEPS]])))) > 1.0  # it moved
    for k, tol in TOL[ground].items():
        assert worst[k] < tol, f"{ground} {k}: max |c - jax| = {worst[k]:.2e} over {NUM_STEPS} steps (tol {tol})"


def _mj_step_reference(env, mx, data) -> np.ndarray:
    """``mujoco.mj_step`` of one env on an ``MjModel`` copy holding its randomised fields; new qvel ``[nv]``."""
    m = env.robot.model.__copy__()
    for name in mujoco_c.MODEL_FIELDS:
        getattr(m, name)[...] = np.asarray(getattr(mx, name), np.float64)
    m.bvh_aabb[...] = moved_boxes(env.robot.model, m.body_ipos[None], m.body_iquat[None])[0]
    d = mujoco.MjData(m)
    for name in ("qpos", "qvel", "qacc_warmstart", "ctrl", "xfrc_applied"):
        getattr(d, name)[...] = np.asarray(getattr(data, name), np.float64)
    mujoco.mj_step(m, d)
    return d.qvel.astype(np.float32)


def test_callback_step_is_mj_step_on_each_env_model(compiled):
    """The batched callback equals a per-env ``mj_step`` whose model carries that env's randomised fields."""
    c = compiled("c", "flat")
    state = c.run(steps=3)[-1]  # in contact, randomised domains
    rng = np.random.default_rng(0)
    data = state.data.replace(ctrl=rng.normal(size=state.data.ctrl.shape).astype(np.float32),
                              xfrc_applied=rng.normal(size=state.data.xfrc_applied.shape).astype(np.float32))
    models = jax.vmap(c.env.physics_model)(state.info["domain"])
    out = jax.jit(jax.vmap(c.env._physics_step))(models, data)
    for i in range(NUM_ENVS):
        one = jax.tree.map(lambda x, i=i: x[i], (models, data))
        np.testing.assert_array_equal(np.asarray(out.qvel[i]), _mj_step_reference(c.env, *one))
    masses = np.asarray(state.info["domain"].body_mass)
    assert np.ptp(masses[:, 1]) > 0  # the envs really have different models


def test_thread_count_and_instances_do_not_change_results(compiled, monkeypatch):
    """A run is a function of its seed: bit-identical at 1 and 2 threads and in a fresh env instance."""
    base = compiled("c", "flat").run(steps=6)[-1]
    monkeypatch.setenv(mujoco_c.host.THREADS_ENV, "1")
    other = _Compiled("c", "flat")
    assert other.env._physics_step is not compiled("c", "flat").env._physics_step
    again = other.run(steps=6)[-1]
    for a, b in zip(jax.tree.leaves(base), jax.tree.leaves(again)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_resume_from_host_copy_is_exact_and_warm_start_is_irrelevant_when_newton_converges(compiled):
    """3 + 3 steps through a host copy of the state equal 6 steps. The state carries MuJoCo's warm start, yet with
    the T1's converged Newton solver (tolerance 1e-8) a zero warm start gives the same bits: once the active
    constraint set is found, a Newton step solves the same factorised system from any start. A model whose solve
    is cut short by its iteration limit would depend on it, which is why it stays part of the state."""
    c = compiled("c", "flat")
    straight = c.run(steps=6)
    host = jax.device_get(straight[3])  # what a checkpoint stores
    resumed = c.run(jax.device_put(host), steps=3, first=3)[-1]
    for a, b in zip(jax.tree.leaves(straight[-1]), jax.tree.leaves(resumed)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    cold = jax.device_put(host)
    cold = cold.replace(data=cold.data.replace(qacc_warmstart=np.zeros_like(host.data.qacc_warmstart)))
    cold_end = c.run(cold, steps=3, first=3)[-1]
    np.testing.assert_array_equal(np.asarray(cold_end.data.qvel), np.asarray(straight[-1].data.qvel))
    assert np.any(np.asarray(host.data.qacc_warmstart) != 0)  # a warm start was carried and then dropped


def test_every_randomised_field_reaches_mujoco_c():
    """``apply_domain`` changes no model field that the C backend does not write into its simulations."""
    env = velocity.VelocityEnv(dataclasses.replace(velocity.T1VelocityConfig(), impl="jax"))
    domain = events.sample_domain(jax.random.PRNGKey(0), env.robot, env.cfg.domain)
    nominal = env.mjx_model
    randomised = env.physics_model(domain)
    changed = {f.name for f in dataclasses.fields(nominal)
               if not isinstance(getattr(nominal, f.name), (int, float, str, type(None), tuple))
               and hasattr(getattr(nominal, f.name), "shape")
               and not np.array_equal(np.asarray(getattr(nominal, f.name)), np.asarray(getattr(randomised, f.name)))}
    assert changed and changed <= set(mujoco_c.MODEL_FIELDS), changed - set(mujoco_c.MODEL_FIELDS)


def test_auto_picks_c_on_cpu_and_c_is_refused_on_an_accelerator(monkeypatch):
    assert mjx_impl.resolve_impl("auto") == "c" and jax.default_backend() == "cpu"
    assert apply_overrides(get_preset("t1_velocity"), ["env.impl=auto"]).env.impl == "auto"
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert mjx_impl.resolve_impl("auto") == "jax"
    with pytest.raises(ValueError, match="impl='c'.*use impl=jax") as err:
        mjx_impl.check_impl("c")
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="env.impl='c'"):
        apply_overrides(get_preset("t1_velocity"), ["env.impl=c"])
