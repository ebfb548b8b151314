"""The host side of ``impl="c"``: a batch of env states stepped by MuJoCo C on a thread pool.

:class:`HostStepper` owns :class:`mujoco.batch.Batch` objects (one MuJoCo simulation per env; its threads
step them without holding the GIL) and turns one call's arrays into one batched ``mj_step``: it writes the
per-env model fields (only those that changed since the batch last ran: the randomised parameters of an env
are sampled once, at startup), the state and inputs, steps, and copies the state and, on request, the
kinematic fields back as float32. Nothing else is carried from call to call, so a call is a pure function of
its arrays. Concurrent calls (one per device of a multi-device CPU run) take different batches.
"""

from __future__ import annotations

import os
import threading

import mujoco
import numpy as np
from mujoco import batch as mj_batch

from envs.mujoco_c.bounds import moved_boxes
from envs.mujoco_c.data import DERIVED_FIELDS, INPUT_FIELDS, STATE_FIELDS

# Model fields an env may randomise (those ``envs.mdp.events.apply_domain`` swaps in); each env's values are
# written into its simulation, the other fields are the model's own.
MODEL_FIELDS = ("geom_friction", "body_mass", "body_inertia", "body_ipos", "body_iquat", "dof_armature",
                "dof_frictionloss", "body_invweight0", "dof_invweight0", "dof_damping")
THREADS_ENV = "AGILE_JAX_C_THREADS"


def default_threads() -> int:
    """Threads per batch: ``$AGILE_JAX_C_THREADS``, else every CPU this process may run on."""
    value = os.environ.get(THREADS_ENV)
    if value:
        return max(1, int(value))
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class _Slot:
    """One :class:`mujoco.batch.Batch` of ``nsim`` envs with its bound arrays and last-written model fields."""

    def __init__(self, model: mujoco.MjModel, nsim: int, nthread: int):
        self.batch = b = mj_batch.Batch(model, nsim, nthread)
        b.reset(stage=mujoco.mjtStage.mjSTAGE_NONE)
        self.time = b.bind("time")
        self.state = {name: b.bind(name) for name in STATE_FIELDS + INPUT_FIELDS}
        self.derived = {name: b.bind(name) for name in DERIVED_FIELDS}
        self.model = {name: b.expand(name) for name in MODEL_FIELDS + ("bvh_aabb",)}
        self.written: dict[str, np.ndarray] = {}

    def write_model(self, fields: dict[str, np.ndarray]) -> None:
        """Writes the model fields ``[n or 1, ...]`` that differ from the last ones written; bounding boxes follow
        the inertial frames (:mod:`envs.mujoco_c.bounds`)."""
        changed = False
        for name, value in fields.items():
            last = self.written.get(name)
            if last is None or not np.array_equal(last, value):
                self.model[name][...] = value
                self.written[name] = value.copy()
                changed |= name in ("body_ipos", "body_iquat")
        if changed:
            self.model["bvh_aabb"][...] = moved_boxes(self.batch.model, fields["body_ipos"], fields["body_iquat"])


class HostStepper:
    """Steps batches of states of ``model`` (its own copy) with MuJoCo C on ``nthread`` threads."""

    def __init__(self, model: mujoco.MjModel, nthread: int | None = None):
        if model.na or model.nmocap or model.neq or model.nuserdata or model.nplugin:
            raise ValueError("impl='c' carries qpos, qvel and the warm start only: models with activations, mocap "
                             "bodies, equality constraints, user data or plugins are not supported")
        self.model = model.__copy__()
        self.nthread = default_threads() if nthread is None else nthread
        self._free: dict[int, list[_Slot]] = {}
        self._lock = threading.Lock()

    def _checkout(self, nsim: int) -> _Slot:
        with self._lock:
            free = self._free.setdefault(nsim, [])
            if free:
                return free.pop()
        return _Slot(self.model, nsim, self.nthread)

    def _checkin(self, slot: _Slot) -> None:
        with self._lock:
            self._free[slot.batch.nsim].append(slot)

    def step(self, model_fields: dict[str, np.ndarray], state: dict[str, np.ndarray],
             derived: bool) -> dict[str, np.ndarray]:
        """One ``mj_step`` of ``n`` envs.

        Args:
            model_fields: :data:`MODEL_FIELDS` ``[n or 1, ...]`` (one row: the same for every env).
            state: ``qpos``, ``qvel``, ``qacc_warmstart``, ``ctrl``, ``xfrc_applied``, each ``[n, ...]``.
            derived: also return the kinematic fields (``xpos``, ``geom_xmat``, ...), at the state before the step.

        Returns:
            float32 arrays ``[n, ...]`` by ``mjx.Data`` name (``geom_xmat`` as ``[n, ngeom, 3, 3]``).
        """
        nsim = state["qpos"].shape[0]
        slot = self._checkout(nsim)
        try:
            slot.write_model(model_fields)
            for name, view in slot.state.items():
                view[...] = state[name]
            slot.time[...] = 0.0  # nothing depends on it; zero keeps the call a function of its inputs
            slot.batch.step()
            out = {name: slot.state[name].astype(np.float32) for name in STATE_FIELDS}
            if derived:
                out.update({name: view.astype(np.float32) for name, view in slot.derived.items()})
                out["geom_xmat"] = out["geom_xmat"].reshape(nsim, -1, 3, 3)
            return out
        finally:
            self._checkin(slot)
