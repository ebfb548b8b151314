"""The physics record of an env stepped by MuJoCo C: what the next step needs and what the MDP reads.

:class:`CData` stands where ``mjx.Data`` stands in an MJX env state, with ``mjx.Data``'s names, shapes and
float32 dtype, but only the fields that MuJoCo C's step continues from (``qpos``, ``qvel``,
``qacc_warmstart``: the solver's warm start, so a resumed run continues exactly), its inputs (``ctrl``,
``xfrc_applied``) and the kinematic fields the tasks read after a step (as after ``mj_step`` and ``mjx.step``:
computed at the state before the last physics step). Code that reads any other ``mjx.Data`` field fails at
trace time instead of reading a stale value.
"""

from __future__ import annotations

import jax.numpy as jnp
import mujoco
from flax import struct
from mujoco import mjx

from agile_jax.types import Array

STATE_FIELDS = ("qpos", "qvel", "qacc_warmstart")
INPUT_FIELDS = ("ctrl", "xfrc_applied")
DERIVED_FIELDS = ("xpos", "xquat", "xipos", "geom_xpos", "geom_xmat", "subtree_com", "cvel")


@struct.dataclass
class CData:
    """One env's physics record (shapes as ``mjx.Data``: ``qpos [nq]``, ``geom_xmat [ngeom, 3, 3]``, ...)."""

    qpos: Array
    qvel: Array
    qacc_warmstart: Array
    ctrl: Array
    xfrc_applied: Array
    xpos: Array
    xquat: Array
    xipos: Array
    geom_xpos: Array
    geom_xmat: Array
    subtree_com: Array
    cvel: Array


def make_data(model: mujoco.MjModel) -> CData:
    """A fresh record, field for field the values of ``mjx.make_data`` (host-built, safe to close over)."""
    d = mjx.make_data(model, impl="jax")
    return CData(**{name: jnp.asarray(getattr(d, name), jnp.float32)
                    for name in STATE_FIELDS + INPUT_FIELDS + DERIVED_FIELDS})
