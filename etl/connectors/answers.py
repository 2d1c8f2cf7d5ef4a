"""Answers a connector keeps for a while (spec ``read_cache``): for a system that refuses an
identical read repeated within some seconds (and would cost a wait of that length), the same
read within them is answered from here. Kept zlib-compressed: a listing read whole within the
window costs a fraction of its size, not a second copy; each hit gets its own copy. A write to a
path forgets what was read from it — but for a whole listing scanned for a natural-key search
(:meth:`Answers.keep_scan`): such a search only ever uses records that are nobody's partner yet,
and what ponte writes (its creates, linked at once; its updates, of linked records) never is."""

from __future__ import annotations

import json
import threading
import time
import zlib
from collections.abc import Callable
from typing import Any

import httpx

from etl.connectors.auth import Call
from etl.connectors.errors import Outcome

_BODY_HEADERS = ("content-encoding", "content-length", "transfer-encoding")


def identity(call: Call) -> str:
    """What makes two reads the same read (before credentials are added)."""
    return json.dumps([call.method, call.path, call.params, call.filters, call.body],
                      sort_keys=True, default=str)


class Answers:
    """Read answers by request, each for ``seconds``. Thread-safe."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self.clock = clock
        self._kept: dict[str, tuple[str, float, Outcome, httpx.Response, bytes]] = {}
        self._scans: dict[str, tuple[float, bytes]] = {}
        self._flying: dict[str, threading.Event] = {}  # reads sent and not answered yet
        self._lock = threading.Lock()

    def recall(self, ident: str) -> tuple[Outcome, Any, httpx.Response] | None:
        """The answer kept for the read ``ident`` (its :func:`identity`) within the window."""
        with self._lock:
            self._prune()
            hit = self._kept.get(ident)
        if hit is None:
            return None
        _, _, outcome, head, blob = hit
        return outcome, json.loads(zlib.decompress(blob)), head

    def keep(self, ident: str, call: Call, outcome: Outcome, answer: Any,
             response: httpx.Response) -> None:
        blob = zlib.compress(json.dumps(answer, separators=(",", ":")).encode(), 1)
        head = httpx.Response(response.status_code, headers={  # the status and headers only
            k: v for k, v in response.headers.items() if k.lower() not in _BODY_HEADERS})
        with self._lock:
            self._prune()
            self._kept[ident] = (call.path, self.clock(), outcome, head, blob)

    def take_off(self, ident: str) -> threading.Event | None:
        """Before sending a read: None when this thread is to send it (then :meth:`land` it
        after), else the event an identical read already on its way sets when it lands. Two
        threads reading the same page at once (a window's reader and a search's scan) send
        it once: the second one would be refused for the system's whole window."""
        with self._lock:
            flying = self._flying.get(ident)
            if flying is None:
                self._flying[ident] = threading.Event()
            return flying

    def land(self, ident: str) -> None:
        """The read :meth:`take_off` let this thread send is answered (or failed)."""
        with self._lock:
            flying = self._flying.pop(ident, None)
        if flying is not None:
            flying.set()

    def keep_scan(self, scan: str, records: list[Any], at: float) -> None:
        """The records of a whole listing (``scan``: the :func:`identity` of its first call),
        read from ``at`` (as :attr:`clock` told it) to search it by natural key: kept for the
        window, whatever ponte writes meanwhile."""
        blob = zlib.compress(json.dumps(records, separators=(",", ":")).encode(), 1)
        with self._lock:
            self._scans[scan] = (at, blob)

    def recall_scan(self, scan: str) -> list[Any] | None:
        """The records of ``scan`` kept within the window (a copy), or None."""
        with self._lock:
            hit = self._scans.get(scan)
            if hit is not None and self.clock() - hit[0] >= self.seconds:
                del self._scans[scan]
                hit = None
        if hit is None:
            return None
        records: list[Any] = json.loads(zlib.decompress(hit[1]))
        return records

    def forget(self, path: str) -> None:
        """After (and before) a write to ``path``: what was read from it is stale."""
        with self._lock:
            for ident in [k for k, v in self._kept.items() if v[0] == path]:
                del self._kept[ident]

    def _prune(self) -> None:
        """Forget answers older than the window: the system takes the read again (the caller
        holds the lock)."""
        now = self.clock()
        for old in [k for k, v in self._kept.items() if now - v[1] >= self.seconds]:
            del self._kept[old]


__all__ = ["Answers", "identity"]
