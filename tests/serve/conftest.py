"""Fixtures of the ``ponte serve`` tests: the in-process world of the engine tests, with the
webhook receiver served by uvicorn on a free loopback port (real HTTP) and the event worker
run a pass at a time."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from pydantic import SecretStr

from etl.mapping import load_mappings
from etl.sandbox.keys import SANDBOX_APP_KEY
from etl.serve.app import build_app
from etl.serve.worker import Worker
from etl.state import Store
from tests.engine.conftest import World, make_world

CRM_KEY = "crm-hook-secret"
DEBOUNCE_S = 0.3


class QuietServer(uvicorn.Server):
    """Signals are left to the test runner."""

    def install_signal_handlers(self) -> None:
        return None

    def capture_signals(self) -> Any:  # uvicorn >= 0.29
        from contextlib import nullcontext

        return nullcontext()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Served:
    """The world, the receiver at ``url`` and a worker over the same state."""

    world: World
    url: str
    store: Store
    worker: Worker
    http: httpx.Client

    def post_crm(self, collection: str, body: dict[str, Any], *, key: str | None = CRM_KEY
                 ) -> httpx.Response:
        full = {"EntityId": 1, "ActionId": 2, "WebhookId": 7, "AccountId": 1, **body}
        if key is not None:
            full["ValidationKey"] = key
        return self.http.post(f"/webhooks/ploomes?collection={collection}", json=full)

    def post_erp(self, topic: str, event: dict[str, Any], *, message_id: str,
                 app_key: str | None = SANDBOX_APP_KEY) -> httpx.Response:
        body: dict[str, Any] = {"messageId": message_id, "topic": topic, "event": event,
                                "author": {"email": "a@b.c", "name": "A", "userId": 1},
                                "appHash": "hash-of-the-key", "origin": "omie-connect-2.0"}
        if app_key is not None:
            body["appKey"] = app_key
        return self.http.post("/webhooks/omie", json=body)

    def settle(self) -> None:
        """Wait out the debounce, then one worker pass."""
        time.sleep(DEBOUNCE_S + 0.05)
        self.worker.run_once()

    def runs(self, kind: str = "event") -> int:
        return sum(1 for r in self.store.runs(limit=1000) if r.kind == kind)


def serve_world(world: World, *, crm_key: str | None = CRM_KEY) -> Iterator[Served]:
    world.settings.crm.webhook_key = SecretStr(crm_key) if crm_key else None
    world.settings.serve.debounce_s = DEBOUNCE_S
    store = Store.open(world.settings.state_url)
    app = build_app(world.settings, store, load_mappings(world.settings.mappings_dir),
                    now=world.now)
    port = free_port()
    server = QuietServer(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None,
                                        access_log=False, lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the receiver did not start"
        time.sleep(0.01)
    worker = Worker(world.ponte(), store, now=world.now, backoff_s=(0.1,))
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
        try:
            yield Served(world, f"http://127.0.0.1:{port}", store, worker, http)
        finally:
            server.should_exit = True
            thread.join(10)
            store.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    yield from serve_world(make_world(f"sqlite:///{tmp_path / 'state.db'}", customers=20,
                                      products=6, orders=4, overlap=1.0))
