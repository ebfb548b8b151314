"""The command-line tools' last line of defence: every failure ends in one line, never a traceback by default.

``run(main, argv)`` calls ``main(argv)`` and maps what escapes it to one ``error:`` line on stderr and an exit
code: 2 for what the user can fix (bad settings, a damaged or foreign checkpoint, a file that is not a policy,
a diverged run, an export that failed its parity check), 1 for the rest (out of memory, disk full, an
unwritable folder, a bug). ``--debug`` anywhere on the command line, or ``AGILE_JAX_DEBUG=1``, re-raises with
the full traceback instead.
"""

from __future__ import annotations

import os
import select
import sys
from collections.abc import Callable

DEBUG_FLAG = "--debug"


def _user_errors() -> tuple[type[BaseException], ...]:
    from agile_jax.config import ConfigError
    from agile_jax.export.exporter import ExportParityError
    from agile_jax.export.io_descriptor import DescriptorError
    from agile_jax.io.checkpoint import CheckpointError
    from agile_jax.training.runner import TrainingDivergedError

    return (ConfigError, CheckpointError, TrainingDivergedError, ExportParityError, DescriptorError, ValueError,
            FileNotFoundError)


def describe(err: BaseException) -> str:
    """One line for ``err``: its own message for known errors, the cause and the fix for resource failures."""
    text = (str(err).strip().splitlines() or [""])[0]
    if isinstance(err, MemoryError) or "RESOURCE_EXHAUSTED" in text or "out of memory" in text.lower():
        return (f"out of memory ({text[:160]}); lower env.num_envs (or runner.num_steps_per_env) and try again; "
                "earlier checkpoints are intact")
    if isinstance(err, OSError) and err.strerror:
        where = f" '{err.filename}'" if err.filename else ""
        notes = "".join(f"; {note}" for note in getattr(err, "__notes__", ()))
        return f"cannot write{where}: {err.strerror}; free space or pick another runner.log_root{notes}"
    if isinstance(err, _user_errors()):
        return text
    return f"{type(err).__name__}: {text[:300]} (run again with {DEBUG_FLAG} for the traceback)"


def _stdout_reader_gone() -> bool:
    """Whether stdout is a pipe whose reader has closed it (a broken pipe elsewhere, a logger's socket say, is an
    error to report)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLERR)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (OSError, ValueError, AttributeError):  # no poll on this platform, or stdout is not a file descriptor
        return False


def _silence_stdout() -> None:
    """Points stdout at /dev/null so that the interpreter's last flush does not fail on the closed pipe again."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a file descriptor (captured): nothing to flush into the pipe
        pass


def run(main: Callable[[list[str]], int | None], argv: list[str]) -> int:
    """``main(argv)`` with failures turned into one line and an exit code (see the module docstring)."""
    debug = DEBUG_FLAG in argv or os.environ.get("AGILE_JAX_DEBUG", "") not in ("", "0")
    argv = [a for a in argv if a != DEBUG_FLAG]
    try:
        return int(main(argv) or 0)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 (the CLI's single exit point)
        if isinstance(err, BrokenPipeError) and _stdout_reader_gone():  # ``| head`` has read enough: no error
            _silence_stdout()
            return 141  # 128 + SIGPIPE, what the shell reports for a command stopped by a closed pipe
        if debug:
            raise
        print(f"error: {describe(err)}", file=sys.stderr)
        return 2 if isinstance(err, _user_errors()) else 1


def split_named(argv: list[str], name: str) -> tuple[str, list[str]]:
    """``(value of the last <name>=<value> argument or "", the other arguments)``: a command's own shortcut
    argument (``teacher=`` of ``distill.py``, ``student=`` of ``train.py``) taken out of the overrides."""
    value, rest = "", []
    for arg in argv:
        if arg.startswith(f"{name}="):
            value = arg.split("=", 1)[1]
        else:
            rest.append(arg)
    return value, rest
