"""Orbax checkpoints of the whole train state, with clear errors for bad or foreign checkpoints.

Layout of a run directory::

    <run_dir>/config.yaml
    <run_dir>/checkpoints/<iteration>/state/...   (Orbax PyTree: params, optimiser, normalisers,
                                                   shaping, schedules, rng, iteration, env state)
    <run_dir>/checkpoints/<iteration>/meta/...    (JSON: iteration, tree signature, config)

A checkpoint holds everything an exact resume needs, the env state included, so training N
iterations, saving, restoring and training N more gives bit-identical parameters to 2N in one go.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

META_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt or does not fit the current configuration."""


def _to_storable(tree):
    """Typed PRNG keys become their raw ``uint32`` data; empty arrays (Orbax refuses them) become ``None``."""

    def convert(x):
        if np.size(x) == 0:
            return None
        return jax.random.key_data(x) if _is_key(x) else x

    return jax.tree.map(convert, tree)


def _is_key(x) -> bool:
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _from_storable(stored, template):
    """Inverse of :func:`_to_storable`, using ``template`` for the keys and the empty arrays."""
    leaves, treedef = jax.tree.flatten(template)
    saved = iter(jax.tree.leaves(stored))
    out = []
    for leaf in leaves:
        if np.size(leaf) == 0:
            out.append(leaf)
        else:
            value = next(saved)
            out.append(jax.random.wrap_key_data(value) if _is_key(leaf) else value)
    return jax.tree.unflatten(treedef, out)


def tree_signature(tree) -> dict[str, str]:
    """``path -> "dtype[shape]"`` of every leaf, to compare a checkpoint with a target before restoring."""
    flat, _ = jax.tree_util.tree_flatten_with_path(_to_storable(tree))
    return {jax.tree_util.keystr(path): f"{np.dtype(leaf.dtype).name}{list(np.shape(leaf))}" for path, leaf in flat}


def _diff(saved: dict[str, str], current: dict[str, str], limit: int = 5) -> list[str]:
    lines = []
    for key in sorted(set(saved) | set(current)):
        if saved.get(key) != current.get(key):
            lines.append(f"  {key}: checkpoint {saved.get(key, 'absent')} vs current {current.get(key, 'absent')}")
    return lines[:limit] + ([f"  ... and {len(lines) - limit} more"] if len(lines) > limit else [])


class Checkpointer:
    """Saves and restores train states under ``<run_dir>/checkpoints`` keeping the newest ``keep``."""

    def __init__(self, run_dir: str, keep: int = 5):
        self.directory = os.path.abspath(os.path.join(run_dir, "checkpoints"))
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
        self.manager = ocp.CheckpointManager(self.directory, options=options, item_names=("state", "meta"))

    def save(self, iteration: int, state: Any, extra_meta: dict | None = None) -> str:
        """Saves ``state`` as checkpoint ``iteration`` (asynchronously; see :meth:`wait`)."""
        meta = {"version": META_VERSION, "iteration": int(iteration), "signature": tree_signature(state)}
        meta.update(extra_meta or {})
        self.manager.save(
            int(iteration),
            args=ocp.args.Composite(state=ocp.args.StandardSave(_to_storable(state)), meta=ocp.args.JsonSave(meta)),
            force=True,
        )
        return os.path.join(self.directory, str(int(iteration)))

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def latest(self) -> int | None:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self.manager.all_steps())

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def restore(directory: str, iteration: int | None, template: Any) -> tuple[Any, dict]:
    """Restores checkpoint ``iteration`` (latest if ``None``) into the structure of ``template``.

    Args:
        directory: the checkpoints directory (or a run directory containing ``checkpoints/``).
        iteration: which checkpoint; ``None`` for the newest.
        template: a train state of the current configuration (its shapes, dtypes and shardings are used).

    Raises:
        CheckpointError: no checkpoint, unreadable files, or a tree that does not match ``template``.
    """
    if os.path.isdir(os.path.join(directory, "checkpoints")):
        directory = os.path.join(directory, "checkpoints")
    if not os.path.isdir(directory):
        raise CheckpointError(f"no checkpoint directory at '{directory}'")
    manager = ocp.CheckpointManager(os.path.abspath(directory), item_names=("state", "meta"))
    try:
        steps = list(manager.all_steps())
        if not steps:
            raise CheckpointError(f"'{directory}' holds no complete checkpoint")
        step = max(steps) if iteration is None or iteration < 0 else int(iteration)
        if step not in steps:
            raise CheckpointError(f"no checkpoint for iteration {step} in '{directory}'; available: {sorted(steps)}")
        meta = _restore_meta(manager, step, directory)
        mismatch = _diff(meta.get("signature", {}), tree_signature(template))
        if mismatch:
            raise CheckpointError(
                f"checkpoint {step} in '{directory}' does not fit the current configuration "
                "(was it trained with other network sizes, observations or env count?):\n" + "\n".join(mismatch)
            )
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, _to_storable(template))
        try:
            restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))
        except Exception as err:  # Orbax raises many types for damaged files.
            raise CheckpointError(
                f"checkpoint {step} in '{directory}' is corrupt or incomplete ({type(err).__name__}: "
                f"{str(err).splitlines()[0][:200]}); restore an earlier one with load_checkpoint=<iteration> "
                f"(available: {sorted(steps)})"
            ) from None
        return _from_storable(restored["state"], template), meta
    finally:
        manager.close()


def _restore_meta(manager, step: int, directory: str) -> dict:
    try:
        return dict(manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"])
    except Exception as err:
        raise CheckpointError(
            f"checkpoint {step} in '{directory}' has unreadable metadata ({type(err).__name__}); "
            "it is corrupt or was not written by this package"
        ) from None
