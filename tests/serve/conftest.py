"""Fixtures of the ``ponte serve`` tests.

The webhook tests: the in-process world of the engine tests, with the webhook receiver served by
uvicorn on a free loopback port (real HTTP) and the event worker run a pass at a time. The status
page tests: a Starlette app built from the status routes alone, served by uvicorn on loopback for
the browser, and a state with runs, quarantine and a verify in it."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from pydantic import SecretStr
from starlette.applications import Starlette

from etl.mapping import load_mappings
from etl.sandbox.keys import SANDBOX_APP_KEY
from etl.serve.app import build_app
from etl.serve.status import status_routes
from etl.serve.worker import Worker
from etl.settings import Settings
from etl.state import Checkpoint, QuarantineEntry, Store
from tests.engine.conftest import World, make_world
from tests.ops.conftest import Env, cli_env  # noqa: F401  (fixture reused)
from tests.state.conftest import store_url  # noqa: F401  (SQLite and PostgreSQL, reused)

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


TOKEN = "s3cr3t-status-token"
# vendor text with HTML in it: the page must show it as text
REASON = 'Omie: <b>"cnpj_cpf"</b> & <script>x</script> inválido'


def status_app(settings: Settings) -> Starlette:
    """What ``ponte serve`` mounts, alone."""
    return Starlette(routes=status_routes(settings))


@pytest.fixture
def status_served() -> Iterator[Callable[[Settings], str]]:
    """``serve(settings)``: the status routes under uvicorn on a free loopback port; returns
    its base URL. Stopped at the end of the test."""
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def serve(settings: Settings) -> str:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        server = uvicorn.Server(uvicorn.Config(status_app(settings), log_level="warning",
                                               lifespan="off", access_log=False))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        servers.append((server, thread))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"

    yield serve
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=10)


def quarantine_one(state_url: str, *, key: str = "erp-key-1", reason: str = REASON) -> None:
    """Put one customers record from the ERP in quarantine, as a sync's page would."""
    with Store.open(state_url) as store:
        store.checkpoint(Checkpoint(entity="customers", quarantine=[QuarantineEntry(
            entity="customers", system="erp", key=key, kind="rejected", reason=reason,
            field="cnpj_cpf")]), now=datetime.now(UTC))


def add_events(state_url: str) -> None:
    """Webhook events as ``ponte serve`` stores them: two pending, one failed, one done."""
    import sqlalchemy as sa

    from etl.state import models as m

    now = datetime.now(UTC)
    rows = [
        {"side": "crm", "event_id": "e1", "status": "pending", "error": None},
        {"side": "crm", "event_id": "e2", "status": "pending", "error": None},
        {"side": "erp", "event_id": "e3", "status": "failed",
         "error": "sync of customers 42 failed: <Omie> SOAP-ENV:Client\nsecond line"},
        {"side": "erp", "event_id": "e4", "status": "done", "error": None},
    ]
    with Store.open(state_url) as store, store.engine.begin() as conn:
        conn.execute(sa.insert(m.events), [
            {**r, "collection": "Contacts", "entity": "customers", "key": "42",
             "action": "update", "attempts": 1, "received_at": now, "due_at": now,
             "processed_at": now if r["status"] != "pending" else None, "payload": None}
            for r in rows])
        # the alerts a real evaluation already stored (verify evaluates them) stay as they are
        known = set(conn.scalars(sa.select(m.alerts.c.condition)))
        conn.execute(sa.insert(m.alerts), [a for a in [
            {"condition": "drift:customers", "active": True, "since": now,
             "detail": "the last verify found customers drifted (1 record)",
             "notified_at": now, "cleared_at": None},
            {"condition": "run_failed:orders", "active": False, "since": now,
             "detail": "cleared", "notified_at": now, "cleared_at": now}]
            if a["condition"] not in known])


__all__ = ["REASON", "TOKEN", "Env", "add_events", "quarantine_one", "status_app", "status_served"]
