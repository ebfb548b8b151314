"""Physics implementations (``impl``): MJX's own JAX pipeline, MuJoCo Warp called through MJX, or MuJoCo C.

``impl="jax"`` runs everywhere JAX does. ``impl="c"`` steps MuJoCo C on the host's CPUs from inside the jitted
code (:mod:`envs.mujoco_c`): the fastest choice where JAX runs on the CPU, refused where JAX has an
accelerator (every physics step would copy the env batch off the device). ``impl="auto"`` picks ``c`` on a
CPU-only JAX backend and ``jax`` elsewhere. ``impl="warp"`` hands ``mjx.step`` to MuJoCo Warp (bundled with
``mujoco-mjx``) through an XLA foreign-function call; it needs NVIDIA Warp (``warp-lang``, the ``warp``
extra) and runs on a CUDA GPU or, much more slowly, on Warp's CPU device. Warp data differs from JAX data in
one way the env code must respect: the contact buffer (``naconmax`` slots) is shared by every env of a batch,
so batched Warp data is merged with ``mjx.Data.where`` and never leaf by leaf.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import mujoco
from mujoco import mjx

IMPLS = ("jax", "warp", "c")
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


def c_unavailable() -> str | None:
    """Why ``impl="c"`` should not run here (JAX computes on an accelerator), or ``None`` when it can."""
    backend = jax.default_backend()
    if backend == "cpu":
        return None
    return (f"MuJoCo C steps on the host CPU while JAX runs on '{backend}', so every physics step would copy the "
            f"env batch off the device; use impl=jax (or auto)")


def resolve_impl(impl: str) -> str:
    """``impl`` with ``"auto"`` replaced by ``"c"`` on a CPU-only JAX backend and by ``"jax"`` elsewhere."""
    if impl == "auto":
        return "c" if jax.default_backend() == "cpu" else "jax"
    return impl


def check_impl(impl: str) -> None:
    """Raises ``ValueError`` (one line: the problem and the fix) when ``impl`` is unknown or cannot run."""
    if impl not in IMPLS + ("auto",):
        raise ValueError(f"impl='{impl}', expected one of {IMPLS + ('auto',)}")
    impl = resolve_impl(impl)
    reason = {"warp": warp_unavailable, "c": c_unavailable}.get(impl, lambda: None)()
    if reason:
        raise ValueError(f"impl='{impl}': {reason}")


def put_model(model: mujoco.MjModel, impl: str) -> mjx.Model:
    """``mjx.put_model`` for ``impl``; Warp models keep every overflow warning but the iteration limits.

    With ``impl="c"`` the MJX-JAX model only carries the per-env parameters to MuJoCo C's step.
    """
    check_impl(impl)
    impl = resolve_impl(impl)
    mx = mjx.put_model(model, impl="jax" if impl == "c" else impl)
    if impl != "warp":
        return mx
    opt_impl = mx.opt._impl
    quiet = opt_impl.replace(warn_overflow=int(opt_impl.warn_overflow) & ~_ITERATION_OVERFLOWS)
    return mx.replace(opt=mx.opt.replace(_impl=quiet))


def make_data(model: mujoco.MjModel, impl: str, naconmax: int, njmax: int):
    """A fresh ``mjx.Data``; for Warp, ``naconmax`` contact slots for the whole batch, ``njmax`` rows per env;
    for MuJoCo C, an :class:`envs.mujoco_c.CData`."""
    check_impl(impl)
    impl = resolve_impl(impl)
    if impl == "c":
        from envs import mujoco_c

        return mujoco_c.make_data(model)
    if impl == "warp":
        return mjx.make_data(model, impl="warp", naconmax=naconmax, njmax=njmax)
    return mjx.make_data(model, impl=impl)


def make_step(model: mujoco.MjModel, impl: str) -> Callable:
    """``step(mx, data, derived=True) -> data``: one physics step with ``impl``; ``mx`` holds the env's parameters.

    ``derived=False`` lets MuJoCo C skip copying back the kinematic fields (MJX computes them regardless).
    """
    check_impl(impl)
    if resolve_impl(impl) == "c":
        from envs import mujoco_c

        return mujoco_c.make_step(model)
    return lambda mx, data, derived=True: mjx.step(mx, data)


def max_contacts(foot_geoms: int, heightfield: bool) -> int:
    """Contacts one env can make per step: its floor-touching spheres, several each on a heightfield."""
    return foot_geoms * (HFIELD_CONTACTS_PER_SPHERE if heightfield else 1)
