"""Stop requests from SIGINT / SIGTERM: the current iteration finishes, a checkpoint is saved, then training stops.

The first signal only sets a flag that the runner checks between iterations; the handlers of both signals are
then reset to Python's defaults, so a second Ctrl-C interrupts at once (the last sealed checkpoint stays
intact: an interrupted save has no checksums and is never restored).
"""

from __future__ import annotations

import signal
import threading

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


class TrainingInterrupted(Exception):
    """Training stopped on a signal after saving; ``exit_code`` is the shell convention (128 + signal)."""

    def __init__(self, signum: int, iteration: int, checkpoint: str | None):
        name = signal.Signals(signum).name
        where = f"; checkpoint {iteration} saved in {checkpoint}" if checkpoint else ""
        super().__init__(f"stopped by {name} after iteration {iteration}{where}")
        self.signum, self.iteration, self.checkpoint = signum, iteration, checkpoint
        self.exit_code = EXIT_CODES.get(signum, 128 + signum)


class StopRequests:
    """Context manager that turns the first SIGINT / SIGTERM into ``self.signum`` (only in the main thread)."""

    def __init__(self):
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        self.signum = signum
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C stops at once
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():
            for signum in EXIT_CODES:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
