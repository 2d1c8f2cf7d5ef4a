"""A webhook receiver for the simulator tests (the ``receiver`` fixture serves it)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response


@dataclass(frozen=True)
class Hit:
    """One POST the receiver got: its path, the exact body bytes, the body parsed."""

    path: str
    body: bytes
    json: Any


class Receiver:
    """A webhook receiver on a free loopback port (real uvicorn): records every POST and answers
    each path with the statuses scripted for it, in turn, then 200; ``pauses`` makes the
    answers to a path wait that many seconds, in turn."""

    def __init__(self) -> None:
        self.hits: list[Hit] = []
        self.script: dict[str, list[int]] = {}
        self.pauses: dict[str, list[float]] = {}
        self.lock = threading.Lock()
        self.port = 0

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def endpoint(self, request: Request) -> Response:
        body = await request.body()
        path = request.url.path
        with self.lock:
            self.hits.append(Hit(path, body, json.loads(body)))
            statuses = self.script.get(path) or []
            status = statuses.pop(0) if statuses else 200
            pauses = self.pauses.get(path) or []
            pause = pauses.pop(0) if pauses else 0.0
        if pause:
            await asyncio.sleep(pause)
        return Response(status_code=status)

    def received(self, path: str | None = None) -> list[Hit]:
        with self.lock:
            return [h for h in self.hits if path is None or h.path == path]

    def wait_for(self, count: int, path: str | None = None, timeout: float = 10.0) -> list[Hit]:
        """The hits (on ``path``) once there are at least ``count``; fails after ``timeout``."""
        deadline = time.monotonic() + timeout
        while len(hits := self.received(path)) < count:
            assert time.monotonic() < deadline, f"{len(hits)} of {count} deliveries arrived"
            time.sleep(0.01)
        return hits
