"""Left-right mirror maps built from joint names, and mirror functions for observation terms.

AGILE's rules (``symmetry_t1.py`` / ``symmetry_g1.py``): the mirror partner of a joint swaps the side token
(``Left``/``Right`` for the T1, ``left``/``right`` for the G1); a joint is negated when its name contains one of
the robot's sign tokens (T1: ``Roll``, ``Yaw``, ``Waist``, ``yaw``; G1: ``roll``, ``yaw``, ``hand`` except
``thumb_0``). A joint vector is mirrored as ``out[..., perm[i]] = sign[perm[i]] * in[..., i]``; since ``perm``
is an involution and the sign set is closed under it, this equals the gather ``out = sign * in[..., perm]``.

Every function acts on the last axis, so history tensors ``[..., H, D]`` are mirrored frame by frame.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence

import jax.numpy as jnp
import numpy as np

from agile_jax.types import Array

T1_MIRROR = {"sides": ("Left", "Right"), "neg_tokens": ("Roll", "Yaw", "Waist", "yaw"), "neg_exclude": ()}
G1_MIRROR = {"sides": ("left", "right"), "neg_tokens": ("roll", "yaw", "hand"), "neg_exclude": ("thumb_0",)}


@dataclasses.dataclass(frozen=True)
class JointMirror:
    """A signed permutation of joints: ``mirror(x)[..., i] = sign[i] * x[..., perm[i]]``.

    Attributes:
        perm: index of each joint's mirror partner ``[J]`` (an involution).
        sign: ``+1`` or ``-1`` per joint ``[J]``.
    """

    perm: np.ndarray
    sign: np.ndarray

    def __call__(self, x: Array) -> Array:
        """Mirrors ``x`` ``[..., J]`` on its last axis."""
        return x[..., self.perm] * self.sign


def joint_mirror(
    names: Sequence[str], sides: tuple[str, str], neg_tokens: Sequence[str], neg_exclude: Sequence[str] = ()
) -> JointMirror:
    """Builds the mirror of a list of joint names with AGILE's substring rules.

    Raises:
        ValueError: a joint's mirror partner is missing from ``names``.
    """
    left, right = sides
    index = {n: i for i, n in enumerate(names)}
    perm = []
    for name in names:
        if left in name:
            partner = name.replace(left, right)
        elif right in name:
            partner = name.replace(right, left)
        else:
            partner = name
        if partner not in index:
            raise ValueError(f"mirror partner '{partner}' of joint '{name}' not found")
        perm.append(index[partner])
    neg = [any(t in n for t in neg_tokens) and not any(e in n for e in neg_exclude) for n in names]
    sign = np.where(np.asarray(neg), -1.0, 1.0).astype(np.float32)
    return JointMirror(np.asarray(perm, np.int32), sign)


def vector_sign_mirror(sign: Sequence[float]) -> Callable[[Array], Array]:
    """Mirror of a fixed-size vector term that only flips signs (e.g. ``[1, -1, 1]`` for gravity)."""
    s = np.asarray(sign, np.float32)
    return lambda x: x * s


# AGILE's OBS_TO_MIRROR rules for the terms of the velocity task.
BASE_ANG_VEL = vector_sign_mirror([-1.0, 1.0, -1.0])
PROJECTED_GRAVITY = vector_sign_mirror([1.0, -1.0, 1.0])
BASE_LIN_VEL = vector_sign_mirror([1.0, -1.0, 1.0])
VELOCITY_COMMANDS = vector_sign_mirror([1.0, -1.0, -1.0])


def concat_mirror(parts: Sequence[tuple[int, Callable[[Array], Array]]]) -> Callable[[Array], Array]:
    """Mirror of a concatenation of terms, given ``(size, mirror_fn)`` per term in layout order."""
    bounds = np.cumsum([0] + [n for n, _ in parts])

    def mirror(x: Array) -> Array:
        pieces = [fn(x[..., bounds[i]:bounds[i + 1]]) for i, (_, fn) in enumerate(parts)]
        return jnp.concatenate(pieces, axis=-1)

    return mirror


def group_mirror(fns: Mapping[str, Callable[[Array], Array]]) -> Callable[[Mapping[str, Array]], dict[str, Array]]:
    """Mirror of an observation dict: each group by its own function (groups without one pass through)."""
    return lambda obs: {k: fns[k](v) if k in fns else v for k, v in obs.items()}
