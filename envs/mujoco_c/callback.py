"""The JAX side of ``impl="c"``: ``step(model, data) -> data`` through one host callback per physics step.

``jax.pure_callback`` with ``vmap_method="expand_dims"``: under ``jax.vmap`` (``VecEnv``) the callback is
called once with the whole batch (envs stacked on leading axes; a field that is the same for every env, such
as an un-randomised model field, arrives with size-1 leading axes and is broadcast on the host), so a
vmapped, scanned, jitted env step makes one host call per physics step, whatever the number of envs. Inside
``shard_map`` each device makes its own calls with its shard of envs.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
from mujoco import mjx

from envs.mujoco_c.data import DERIVED_FIELDS, INPUT_FIELDS, STATE_FIELDS, CData
from envs.mujoco_c.host import MODEL_FIELDS, HostStepper


def _flatten(arrays: dict[str, np.ndarray], tails: dict[str, tuple[int, ...]]) -> tuple[tuple[int, ...], dict]:
    """The common batch shape of ``arrays`` (leading axes before each one's per-env shape ``tails[name]``) and
    the arrays as ``[n or 1, *tail]`` float64 rows (``n`` envs in all)."""
    leads = {k: np.shape(a)[:np.ndim(a) - len(tails[k])] for k, a in arrays.items()}
    batch = np.broadcast_shapes(*leads.values())
    n = math.prod(batch)
    rows = {}
    for k, a in arrays.items():
        rows[k] = np.asarray(a, np.float64).reshape((n if math.prod(leads[k]) == n else 1,) + tails[k])
    return batch, rows


def _host_step(stepper: HostStepper, tails: dict, derived: bool, fields: dict, state: dict) -> dict:
    """The callback: flattens the batch axes, steps, restores them."""
    batch, rows = _flatten({**fields, **state}, tails)
    model_rows = {k: rows[k] for k in fields}
    state_rows = {k: np.broadcast_to(rows[k], (math.prod(batch),) + tails[k]) for k in state}
    out = stepper.step(model_rows, state_rows, derived)
    return {k: v.reshape(batch + v.shape[1:]) for k, v in out.items()}


def make_step(model: mujoco.MjModel, nthread: int | None = None) -> Callable[..., CData]:
    """``step(mx, data, derived=True) -> data``: one MuJoCo C ``mj_step`` of ``model`` in jittable code.

    Args:
        model: the MuJoCo model every env simulates (copied; its randomisable fields are replaced per env).
        nthread: threads stepping a batch (``None``: :func:`envs.mujoco_c.host.default_threads`).

    The returned ``step`` takes ``mx``, an ``mjx.Model`` whose :data:`MODEL_FIELDS` hold the env's parameters
    (e.g. ``envs.mdp.events.apply_domain``'s result), and a :class:`CData`; with ``derived=False`` the
    kinematic fields are left as they were (for the physics steps whose kinematics nobody reads).
    """
    stepper = HostStepper(model, nthread)
    d0 = mujoco.MjData(model)
    tails = {k: tuple(np.shape(getattr(model, k))) for k in MODEL_FIELDS}
    tails.update({k: tuple(np.shape(getattr(d0, k))) for k in STATE_FIELDS + INPUT_FIELDS})

    def step(mx: mjx.Model, data: CData, derived: bool = True) -> CData:
        fields = {k: jnp.asarray(getattr(mx, k), jnp.float32) for k in MODEL_FIELDS}
        state = {k: getattr(data, k) for k in STATE_FIELDS + INPUT_FIELDS}
        names = STATE_FIELDS + (DERIVED_FIELDS if derived else ())
        shapes = {k: jax.ShapeDtypeStruct(jnp.shape(getattr(data, k)), jnp.float32) for k in names}
        call = functools.partial(_host_step, stepper, tails, derived)
        out = jax.pure_callback(call, shapes, fields, state, vmap_method="expand_dims")
        return data.replace(**out)

    return step
