"""Orbax checkpoints of the whole train state, with clear errors for bad or foreign checkpoints.

Layout of a run directory::

    <run_dir>/config.yaml
    <run_dir>/checkpoints/<iteration>/state/...   (Orbax PyTree: params, optimiser, normalisers,
                                                   shaping, schedules, rng, iteration, env state)
    <run_dir>/checkpoints/<iteration>/meta/...    (JSON: iteration, tree signature, config)
    <run_dir>/checkpoints/<iteration>/checksums.json  (SHA-256 of every file above, written last)

Every checkpoint is verified before it is restored: a file that was changed, truncated, removed or added
after the save refuses the checkpoint with one line that names it and the newest intact one. A checkpoint
without ``checksums.json`` was interrupted before it was complete and is not restored either.

A checkpoint holds everything an exact resume needs, the env state included, so training N
iterations, saving, restoring and training N more gives bit-identical parameters to 2N in one go.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import re
import shutil
import sys
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

META_VERSION = 1
CHECKSUMS = "checksums.json"


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


_NAMED_ENTRY = re.compile(r"\['([A-Za-z_]\w*)'\]")


def _attribute_paths(signature: dict[str, str]) -> dict[str, str]:
    """``signature`` with every named dict entry written as an attribute (``.params['actor']`` -> ``.params.actor``).

    Orbax stores a dict's keys and a record's fields alike, by name, so a checkpoint whose state held dicts where the
    train state now holds records of the same names (:mod:`agile_jax.networks.records`) restores into it; the
    signatures are compared in this form so that they do not tell the two apart either.
    """
    return {_NAMED_ENTRY.sub(r".\1", path): spec for path, spec in signature.items()}


def _diff(saved: dict[str, str], current: dict[str, str], limit: int = 2) -> str:
    """The differing arrays in one line: network weights first, then the rest, ``limit`` named and a count."""
    keys = [k for k in sorted(set(saved) | set(current)) if saved.get(k) != current.get(k)]
    keys.sort(key=lambda k: (not k.startswith(".params"), k))
    named = [f"{k}: checkpoint {saved.get(k, 'absent')} vs current {current.get(k, 'absent')}" for k in keys[:limit]]
    more = f"; and {len(keys) - limit} more" if len(keys) > limit else ""
    return "; ".join(named) + more


class _OrbaxThreadErrors(logging.Filter):
    """Keeps Orbax's error reports off the console: each one comes from a failed background save, which
    ``wait_until_finished`` raises again in the main thread, where :meth:`Checkpointer.save` reports it once."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno >= logging.ERROR and f"{os.sep}orbax{os.sep}" in record.pathname)


def _quiet_orbax_errors() -> None:
    """Installs :class:`_OrbaxThreadErrors` on absl's logger (once)."""
    absl_logger = logging.getLogger("absl")
    if not any(isinstance(f, _OrbaxThreadErrors) for f in absl_logger.filters):
        absl_logger.addFilter(_OrbaxThreadErrors())


def as_os_error(err: Exception, path: str) -> Exception:
    """``err`` as an :class:`OSError` naming ``path`` when it reports one (TensorStore raises
    ``ValueError("... [os_error_code='28']")`` for a full disk), else ``err`` itself."""
    if isinstance(err, OSError):
        return err if err.filename or not err.strerror else OSError(err.errno, err.strerror, path)
    found = re.search(r"os_error_code='(\d+)'", str(err))
    if found is None:
        return err
    code = int(found.group(1))
    return OSError(code, os.strerror(code), path)


class Checkpointer:
    """Saves and restores train states under ``<run_dir>/checkpoints`` keeping the newest ``keep``.

    A save that fails (a full disk, an unwritable folder) removes what it had written, leaves every earlier
    checkpoint as it was, raises an :class:`OSError` for the failure and makes :meth:`wait` and :meth:`close`
    no-ops, since Orbax keeps re-raising a failed background save.
    """

    def __init__(self, run_dir: str, keep: int = 5):
        self.directory = os.path.abspath(os.path.join(run_dir, "checkpoints"))
        _quiet_orbax_errors()
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
        self.manager = ocp.CheckpointManager(self.directory, options=options, item_names=("state", "meta"))
        self.failed = False

    def save(self, iteration: int, state: Any, extra_meta: dict | None = None) -> str:
        """Saves ``state`` as checkpoint ``iteration`` and seals it with its checksums once written."""
        meta = {"version": META_VERSION, "iteration": int(iteration), "signature": tree_signature(state)}
        meta.update(extra_meta or {})
        step_dir = os.path.join(self.directory, str(int(iteration)))
        previous_hook = sys.excepthook
        sys.excepthook = _drop_closed_loop_reports(previous_hook)
        if not isinstance(sys.stderr, _DropClosedLoopTracebacks):
            sys.stderr = _DropClosedLoopTracebacks(sys.stderr)
        try:
            self.manager.save(
                int(iteration),
                args=ocp.args.Composite(state=ocp.args.StandardSave(_to_storable(state)),
                                        meta=ocp.args.JsonSave(meta)),
                force=True,
            )
            self.wait()
        except Exception as err:
            self.failed = True  # the hook stays: writes of the failed save may still report
            _silence_abandoned_writes()
            discard_unfinished(self.directory)
            failure = as_os_error(err, step_dir)
            if failure is err:
                raise
            raise failure from None
        sys.excepthook = previous_hook
        return step_dir

    def wait(self) -> None:
        """Waits for pending writes, then seals every finished checkpoint that has no checksums yet."""
        if self.failed:
            return
        self.manager.wait_until_finished()
        if jax.process_index() == 0:  # one writer; every process's files are on the shared disk by now
            for step in self.manager.all_steps():
                seal(os.path.join(self.directory, str(step)))

    def latest(self) -> int | None:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self.manager.all_steps())

    def close(self) -> None:
        if not self.failed:
            self.manager.wait_until_finished()
            self.manager.close()


def _silence_abandoned_writes() -> None:
    """Silences what a failed save's abandoned writes print when they are collected, often only at exit:
    ``RuntimeWarning: coroutine '...write_fragment' was never awaited`` for writes that never started and
    asyncio's ``Future exception was never retrieved`` for those that failed beside the one reported."""
    warnings.filterwarnings("ignore", message=r"coroutine '.*' was never awaited", category=RuntimeWarning)
    asyncio_logger = logging.getLogger("asyncio")
    if not any(isinstance(f, _UnretrievedWriteErrors) for f in asyncio_logger.filters):
        asyncio_logger.addFilter(_UnretrievedWriteErrors())


class _UnretrievedWriteErrors(logging.Filter):
    """Drops asyncio's reports of futures whose file-system error (an ``OSError``, or TensorStore's
    ``ValueError`` carrying an ``os_error_code``) nobody retrieved."""

    def filter(self, record: logging.LogRecord) -> bool:
        unretrieved = str(record.msg).split("\n")[0].endswith("exception was never retrieved")
        error = record.exc_info[1] if record.exc_info else None
        return not (unretrieved and isinstance(error, Exception) and isinstance(as_os_error(error, ""), OSError))


def _drop_closed_loop_reports(previous):
    """``previous`` (a ``sys.excepthook``) without the reports of a failed save's TensorStore writes: those
    still in flight when it failed call back into its closed event loop, and TensorStore prints the
    ``RuntimeError: Event loop is closed`` through ``sys.excepthook``."""

    def hook(kind, value, traceback):
        if not (isinstance(value, RuntimeError) and str(value) == "Event loop is closed"):
            previous(kind, value, traceback)

    return hook


class _DropClosedLoopTracebacks:
    """A text stream that passes everything to ``stream`` except whole tracebacks ending in
    ``RuntimeError: Event loop is closed`` (what a failed save's in-flight TensorStore writes print)."""

    def __init__(self, stream):
        self.stream, self._pending, self._block, self._open, self._lock = stream, "", None, 0, threading.Lock()

    def write(self, text: str) -> int:
        with self._lock:
            self._pending += text
            *lines, self._pending = self._pending.split("\n")
            for line in lines:
                self._line(line)
        return len(text)

    def _line(self, line: str) -> None:
        """Holds traceback lines (several threads' tracebacks interleave) until each open one has ended."""
        block = self._block or []
        if line.startswith("Traceback (most recent call last):"):
            self._block, self._open = block + [line], self._open + 1
        elif block and line[:1] in (" ", "\t"):
            block.append(line)
        elif block and self._open and line.strip() == "RuntimeError: Event loop is closed":
            self._open -= 1
            self._block = block + [line] if self._open else None
        else:
            if block:
                self.stream.write("\n".join(block) + "\n")
            self._block, self._open = None, 0
            self.stream.write(line + "\n")

    def flush(self) -> None:
        with self._lock:
            if self._pending and self._block is None:
                self.stream.write(self._pending)
                self._pending = ""
        self.stream.flush()

    def __getattr__(self, name):
        return getattr(self.stream, name)


def _unfinished(directory: str) -> list[str]:
    """Orbax's ``<step>.orbax-checkpoint-tmp*`` folders and finished but unsealed ``<step>`` folders."""
    if not os.path.isdir(directory):
        return []
    found = glob.glob(os.path.join(directory, "*.orbax-checkpoint-tmp*"))
    return found + [os.path.join(directory, name) for name in os.listdir(directory)
                    if name.isdigit() and not os.path.exists(os.path.join(directory, name, CHECKSUMS))]


def discard_unfinished(directory: str, settle_s: float = 0.2, tries: int = 10) -> None:
    """Removes the checkpoints in ``directory`` that a failed save left unfinished (process 0 only).

    Writes of the failed save may still land for a moment after it raised, so the folder is cleared again
    until it stays clear for ``settle_s`` seconds (at most ``tries`` times).
    """
    if jax.process_index() != 0:
        return
    for _ in range(tries):
        for path in _unfinished(directory):
            shutil.rmtree(path, ignore_errors=True)
        time.sleep(settle_s)
        if not _unfinished(directory):
            return


def newest_intact(directory: str) -> str:
    """Where the newest intact checkpoint of ``directory`` is, in words (for an error message)."""
    steps = [int(name) for name in os.listdir(directory) if name.isdigit()] if os.path.isdir(directory) else []
    intact = intact_steps(directory, steps)
    if not intact:
        return "no checkpoint of this run was saved"
    return f"the newest intact checkpoint is {os.path.join(directory, str(intact[-1]))} (--resume continues from it)"


def _file_digests(step_dir: str) -> dict[str, str]:
    """``relative path -> sha256`` of every file of a checkpoint except the checksum file itself."""
    digests = {}
    for root, _, files in os.walk(step_dir):
        for name in files:
            path = os.path.join(root, name)
            rel = os.path.relpath(path, step_dir)
            if rel in (CHECKSUMS, CHECKSUMS + ".tmp"):
                continue
            digest = hashlib.sha256()
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
            digests[rel] = digest.hexdigest()
    return digests


def _checksum_text(digests: dict[str, str]) -> str:
    """The exact text of ``checksums.json`` for ``digests`` (one canonical form, so it can be verified too)."""
    return json.dumps({"algorithm": "sha256", "files": digests}, indent=0, sort_keys=True)


def seal(step_dir: str) -> None:
    """Writes ``checksums.json`` for a finished checkpoint (atomically; kept if already there)."""
    path = os.path.join(step_dir, CHECKSUMS)
    if os.path.exists(path) or not os.path.isdir(step_dir):
        return
    tmp = path + ".tmp"
    text = _checksum_text(_file_digests(step_dir))
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def damage(step_dir: str) -> str | None:
    """Why a checkpoint cannot be trusted (a changed, missing or unexpected file), or ``None`` if it is intact."""
    try:
        with open(os.path.join(step_dir, CHECKSUMS), "rb") as f:
            raw = f.read()
        expected = json.loads(raw)["files"]
        if raw.decode() != _checksum_text(expected):  # the checksum file is itself checked, byte for byte
            raise ValueError
    except FileNotFoundError:
        return "it has no checksums (the save was interrupted)"
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return f"its {CHECKSUMS} is damaged"
    actual = _file_digests(step_dir)
    for rel in sorted(set(expected) | set(actual)):
        if rel not in actual:
            return f"file '{rel}' is missing"
        if rel not in expected:
            return f"file '{rel}' was not part of the save"
        if actual[rel] != expected[rel]:
            return f"file '{rel}' changed after the save"
    return None


def intact_steps(directory: str, steps: list[int]) -> list[int]:
    """The checkpoints among ``steps`` that pass :func:`damage`, newest last."""
    return [s for s in sorted(steps) if damage(os.path.join(directory, str(s))) is None]


def _verify(directory: str, step: int, steps: list[int]) -> None:
    """Refuses a damaged checkpoint with one line naming the newest intact one."""
    problem = damage(os.path.join(directory, str(step)))
    if problem is None:
        return
    intact = intact_steps(directory, [s for s in steps if s != step])
    advice = (f"the newest intact checkpoint is {intact[-1]}: restore it with load_checkpoint={intact[-1]}"
              if intact else "no other checkpoint here is intact")
    raise CheckpointError(f"checkpoint {step} in '{directory}' is damaged ({problem}); {advice}")


def checkpoints_dir(path: str) -> tuple[str, int | None]:
    """``(checkpoints directory, iteration or None for the newest)`` of a run, ``checkpoints`` or
    ``checkpoints/<iteration>`` path (only the layout of the path is read)."""
    path = os.path.abspath(path.rstrip("/") or "/")
    name, parent = os.path.basename(path), os.path.dirname(path)
    if name.isdigit() and os.path.basename(parent) == "checkpoints":
        return parent, int(name)
    if name == "checkpoints":
        return path, None
    return os.path.join(path, "checkpoints"), None


def restore(directory: str, iteration: int | None, template: Any,
            fit: Callable[[Any, dict[str, str]], Any] | None = None) -> tuple[Any, dict]:
    """Restores checkpoint ``iteration`` (latest if ``None``) into the structure of ``template``.

    Args:
        directory: the checkpoints directory (or a run directory containing ``checkpoints/``).
        iteration: which checkpoint; ``None`` for the newest.
        template: a train state of the current configuration (its shapes, dtypes and shardings are used).
        fit: ``fit(template, saved signature) -> template`` adapts the template to parts of the checkpoint that may
            legitimately differ (:func:`agile_jax.training.term_dicts.fit_saved_terms`) before the trees are
            compared; the state comes back in the adapted structure.

    Raises:
        CheckpointError: no checkpoint, a damaged one (see :func:`damage`), unreadable files, or a tree that
            does not match ``template``.
    """
    if os.path.isdir(os.path.join(directory, "checkpoints")):
        directory = os.path.join(directory, "checkpoints")
    if not os.path.isdir(directory):
        raise CheckpointError(f"no checkpoint directory at '{directory}'")
    manager = ocp.CheckpointManager(os.path.abspath(directory), item_names=("state", "meta"))
    try:
        step, steps = _intact_step(manager, directory, iteration)
        meta = _restore_meta(manager, step, directory)
        saved = _attribute_paths(meta.get("signature", {}))
        if fit is not None:
            template = fit(template, saved)
        mismatch = _diff(saved, _attribute_paths(tree_signature(template)))
        if mismatch:
            raise CheckpointError(
                f"checkpoint {step} in '{directory}' does not fit the current configuration "
                f"(was it trained with other network sizes, observations or env count?): {mismatch}"
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


def restore_as_saved(path: str, names: tuple[str, ...]) -> dict:
    """The train-state parts ``names`` (e.g. ``("params", "normalizers")``) of a checkpoint, as saved (host
    arrays in nested dicts), without a template of the run that wrote it: a run with other envs or extensions can
    start from its networks.

    Args:
        path: a run, ``checkpoints`` or ``checkpoints/<iteration>`` directory (the newest intact checkpoint
            unless an iteration is named).

    Returns:
        ``{name: subtree}``.

    Raises:
        CheckpointError: no checkpoint there, a damaged one, or unreadable files.
    """
    directory, iteration = checkpoints_dir(path)
    if not os.path.isdir(directory):
        raise CheckpointError(f"no checkpoint directory at '{directory}'")
    manager = ocp.CheckpointManager(directory, item_names=("state", "meta"))
    try:
        step, _ = _intact_step(manager, directory, iteration)
        try:
            state = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))["state"]
        except Exception as err:  # Orbax raises many types for damaged files.
            raise CheckpointError(f"checkpoint {step} in '{directory}' is corrupt or incomplete "
                                  f"({type(err).__name__}: {str(err).splitlines()[0][:200]})") from None
        return {name: state.get(name) or {} for name in names}
    finally:
        manager.close()


def _intact_step(manager, directory: str, iteration: int | None) -> tuple[int, list[int]]:
    """``(step, all steps)``: checkpoint ``iteration`` (the newest if ``None`` or negative), refused in one line
    when missing or damaged."""
    steps = list(manager.all_steps())
    if not steps:
        raise CheckpointError(f"'{directory}' holds no complete checkpoint")
    step = max(steps) if iteration is None or iteration < 0 else int(iteration)
    if step not in steps:
        raise CheckpointError(f"no checkpoint for iteration {step} in '{directory}'; available: {sorted(steps)}")
    _verify(directory, step, steps)
    return step, steps


def _restore_meta(manager, step: int, directory: str) -> dict:
    try:
        return dict(manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"])
    except Exception as err:
        raise CheckpointError(
            f"checkpoint {step} in '{directory}' has unreadable metadata ({type(err).__name__}); "
            "it is corrupt or was not written by this package"
        ) from None
