"""MJX implementations (``impl``): MJX's own JAX pipeline, or MuJoCo Warp called through MJX.

``impl="jax"`` runs everywhere JAX does. ``impl="warp"`` hands ``mjx.step`` to MuJoCo Warp (bundled with
``mujoco-mjx``) through an XLA foreign-function call; it needs NVIDIA Warp (``warp-lang``, the ``warp``
extra) and runs on a CUDA GPU or, much more slowly, on Warp's CPU device. Warp data differs from JAX data in
one way the env code must respect: the contact buffer (``naconmax`` slots) is shared by every env of a batch,
so batched Warp data is merged with ``mjx.Data.where`` and never leaf by leaf.
"""

from __future__ import annotations

import mujoco
from mujoco import mjx

IMPLS = ("jax", "warp")
# MuJoCo Warp's overflow bits for "solver / line search stopped at its iteration limit": expected with the
# few solver iterations the tasks use (MJX-JAX stops the same way, silently), so they are not printed.
_ITERATION_OVERFLOWS = (1 << 9) | (1 << 10)
# Contacts one floor-touching sphere may make with a heightfield per step (with a plane: one).
HFIELD_CONTACTS_PER_SPHERE = 4


def warp_unavailable() -> str | None:
    """Why ``impl="warp"`` cannot run here, or ``None`` when it can (``warp-lang`` imports, MJX finds it)."""
    try:
        import warp
    except (ImportError, RuntimeError) as err:
        return f"NVIDIA Warp is not installed ({err}); install it with: pip install -e '.[warp]'"
    import mujoco.mjx.warp as mjx_warp

    if not mjx_warp.WARP_INSTALLED or mjx_warp.mujoco_warp is None:
        return "mujoco-mjx could not load MuJoCo Warp; reinstall with: pip install -e '.[warp]'"
    warp.config.log_level = warp.LOG_WARNING  # no per-kernel "module loaded" lines
    return None


def check_impl(impl: str) -> None:
    """Raises ``ValueError`` (one line: the problem and the fix) when ``impl`` is unknown or cannot run."""
    if impl not in IMPLS:
        raise ValueError(f"impl='{impl}', expected one of {IMPLS}")
    reason = warp_unavailable() if impl == "warp" else None
    if reason:
        raise ValueError(f"impl='warp': {reason}")


def put_model(model: mujoco.MjModel, impl: str) -> mjx.Model:
    """``mjx.put_model`` for ``impl``; Warp models keep every overflow warning but the iteration limits."""
    check_impl(impl)
    mx = mjx.put_model(model, impl=impl)
    if impl != "warp":
        return mx
    opt_impl = mx.opt._impl
    quiet = opt_impl.replace(warn_overflow=int(opt_impl.warn_overflow) & ~_ITERATION_OVERFLOWS)
    return mx.replace(opt=mx.opt.replace(_impl=quiet))


def make_data(model: mujoco.MjModel, impl: str, naconmax: int, njmax: int) -> mjx.Data:
    """A fresh ``mjx.Data``; for Warp, ``naconmax`` contact slots for the whole batch, ``njmax`` rows per env."""
    check_impl(impl)
    if impl == "warp":
        return mjx.make_data(model, impl="warp", naconmax=naconmax, njmax=njmax)
    return mjx.make_data(model, impl=impl)


def max_contacts(foot_geoms: int, heightfield: bool) -> int:
    """Contacts one env can make per step: its floor-touching spheres, several each on a heightfield."""
    return foot_geoms * (HFIELD_CONTACTS_PER_SPHERE if heightfield else 1)
