"""The :class:`LoadedPolicy` record every policy reader returns (:mod:`agile_jax.policies.load`,
:mod:`agile_jax.policies.rsl_rl_checkpoint`, :mod:`agile_jax.policies.run`), and the helpers they share."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agile_jax.networks.actor_critic import concat_groups
from agile_jax.types import Array, Observation


@dataclass(frozen=True)
class LoadedPolicy:
    """A deterministic policy ``x [N, D] -> actions [N, A]`` with a per-env state.

    Attributes:
        apply: ``(x [N, D], state) -> (actions [N, A], state)``; state leaves are ``[N, ...]``.
        init_state: ``num_envs -> zero state`` (``()`` for a feed-forward teacher).
        obs_dim, action_dim: input and output widths.
        is_recurrent: whether the teacher carries a state.
        source: the file it was read from.
        obs_groups: env observation groups recorded in the file (``None`` when it does not say).
        sha256: hash of the file, stored in checkpoints to catch a changed teacher on resume.
        description: format and layout, for logs.
        action_std: the teacher's state-independent action std ``[A]`` where the file holds one (an RSL-RL
            checkpoint's Gaussian), else ``None``.
    """

    apply: Callable[[Array, Any], tuple[Array, Any]]
    init_state: Callable[[int], Any]
    obs_dim: int
    action_dim: int
    is_recurrent: bool = False
    source: str = ""
    obs_groups: tuple[str, ...] | None = None
    sha256: str = ""
    description: dict = field(default_factory=dict)
    action_std: Any = None

    def bind(self, obs_groups: Sequence[str], obs_shapes: Mapping[str, tuple[int, ...]]):
        """``teacher(obs, state) -> (actions, state)`` reading the concatenated ``obs_groups`` of an env.

        Raises:
            ValueError: the groups' width differs from the teacher's input width.
        """
        width = sum(int(np.prod(obs_shapes[g])) for g in obs_groups)
        if width != self.obs_dim:
            raise ValueError(f"the teacher '{self.source}' takes {self.obs_dim} observations but the groups "
                             f"{list(obs_groups)} give {width}; set runner.obs_groups.teacher to the groups it was "
                             "trained on")

        def teacher(obs: Observation, state: Any) -> tuple[Array, Any]:
            return self.apply(concat_groups(obs, obs_groups, obs_shapes), state)

        return teacher


def file_sha256(path: str) -> str:
    """SHA-256 of a file (and of its ``.data`` external-weights companion, if any)."""
    digest = hashlib.sha256()
    for name in (path, path + ".data"):
        try:
            with open(name, "rb") as f:
                digest.update(f.read())
        except FileNotFoundError:
            if name == path:
                raise
    return digest.hexdigest()


def from_env_layout(apply: Callable, input_index: np.ndarray | None) -> Callable:
    """``apply`` fed the env's flat observation, for a graph whose first op is ``x = obs[..., input_index]``.

    Exports of a history group take AGILE's term-major layout and reorder it to the env's frame-major one
    first; a teacher receives the env's layout, so it is put into the exported layout (the inverse order).
    """
    if input_index is None:
        return apply
    to_exported = np.argsort(input_index)
    return lambda x, state: apply(x[..., to_exported], state)
