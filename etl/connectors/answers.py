"""Answers a connector keeps for a while (spec ``read_cache``): for a system that refuses an
identical read repeated within some seconds (and would cost a wait of that length), the same
read within them is answered from here. Kept zlib-compressed: a listing read whole within the
window costs a fraction of its size, not a second copy; each hit gets its own copy. A write to a
path forgets what was read from it."""

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
        self._lock = threading.Lock()

    def recall(self, call: Call) -> tuple[Outcome, Any, httpx.Response] | None:
        with self._lock:
            self._prune()
            hit = self._kept.get(identity(call))
        if hit is None:
            return None
        _, _, outcome, head, blob = hit
        return outcome, json.loads(zlib.decompress(blob)), head

    def keep(self, call: Call, outcome: Outcome, answer: Any, response: httpx.Response) -> None:
        blob = zlib.compress(json.dumps(answer, separators=(",", ":")).encode(), 1)
        head = httpx.Response(response.status_code, headers={  # the status and headers only
            k: v for k, v in response.headers.items() if k.lower() not in _BODY_HEADERS})
        with self._lock:
            self._prune()
            self._kept[identity(call)] = (call.path, self.clock(), outcome, head, blob)

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
