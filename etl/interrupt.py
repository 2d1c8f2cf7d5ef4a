"""SIGINT/SIGTERM for every long command, one mechanism: ``sync``, ``plan``, ``verify``,
``backfill`` and the ``run`` daemon.

The first signal asks the run to stop at its next chunk boundary (whole chunks stay committed,
the watermark does not move) and says so once. In a command run from a terminal a second signal
raises :class:`etl.errors.Aborted` in the main thread at once: the run row is finished as
``aborted``, its locks are released, and the transaction in progress (one chunk at most) rolls
back. Further signals while aborting are ignored, so the clean-up itself is not interrupted.
The daemon passes ``abort_on_second=False``: the run in progress always reaches its stop point.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from types import FrameType

from etl.errors import Aborted

SIGNALS: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """Callable ``should_stop`` for the engine; set by the first signal."""

    def __init__(self, announce: Callable[[str], None], *, abort_on_second: bool = True,
                 hint: str = "", on_first: Callable[[], None] | None = None) -> None:
        self._event = threading.Event()
        self._announce = announce
        self._abort_on_second = abort_on_second
        self._hint = hint
        self._on_first = on_first
        self._aborting = False
        self.signal_name: str | None = None

    def __call__(self) -> bool:
        return self._event.is_set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def set(self) -> None:
        self._event.set()

    def handle(self, signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self._aborting:
            return
        if not self._event.is_set():
            self.signal_name = name
            self._event.set()
            again = ("press Ctrl-C again to abort now" if self._abort_on_second
                     else "the run in progress finishes its chunk first")
            self._announce(f"{name} received: stopping after the current chunk and the writes "
                           f"already sent (whole chunks are kept, the watermark does not "
                           f"move{self._hint}); {again}")
            if self._on_first is not None:
                self._on_first()
            return
        if not self._abort_on_second:
            self._announce(f"{name} received again: already stopping after the current chunk")
            return
        self._aborting = True
        self._announce(f"{name} received again: aborting now (the chunk in progress is rolled "
                       "back; the run is recorded as aborted)")
        raise Aborted(f"aborted by a second {name}")


@contextmanager
def stop_on_signals(announce: Callable[[str], None], *, abort_on_second: bool = True,
                    hint: str = "", on_first: Callable[[], None] | None = None,
                    signals: Sequence[int] = SIGNALS) -> Iterator[StopRequest]:
    """Install the handlers for the duration of the block (main thread only; elsewhere the
    request is still returned, it just never fires) and restore the previous ones after."""
    stop = StopRequest(announce, abort_on_second=abort_on_second, hint=hint, on_first=on_first)
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {s: signal.signal(s, stop.handle) for s in signals}
    try:
        yield stop
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
