"""MuJoCo C physics for the MJX tasks on a CPU (``impl="c"``), called from inside jitted code.

The env code keeps its MJX form: its state holds a small physics record (:class:`data.CData`: the state
MuJoCo needs to continue exactly and the kinematic fields the MDP reads), its per-env model parameters are an
``mjx.Model`` with the randomised fields swapped in, and its physics step is a function of both. That step
(:func:`callback.make_step`) is a ``jax.pure_callback`` with a batched ``vmap_method``: the whole vmapped env
batch arrives in one host call, which loads it into a :class:`mujoco.batch.Batch` (one MuJoCo C simulation per
env, stepped on a thread pool without the GIL, :mod:`host`) and returns the new state. Everything the next
step depends on goes in and comes out of each call, so a call is a pure function of its inputs: runs are
reproducible bit for bit at any thread count and a resumed run continues exactly.
"""

from envs.mujoco_c.callback import make_step
from envs.mujoco_c.data import CData, make_data
from envs.mujoco_c.host import MODEL_FIELDS, default_threads

__all__ = ["CData", "MODEL_FIELDS", "default_threads", "make_data", "make_step"]
