"""Fixtures of the status page tests: a Starlette app built from the status routes alone, served
by uvicorn on loopback for the browser, and a state with runs, quarantine and a verify in it."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
import uvicorn
from starlette.applications import Starlette

from etl.serve.status import status_routes
from etl.settings import Settings
from etl.state import Checkpoint, QuarantineEntry, Store
from tests.ops.conftest import Env, cli_env  # noqa: F401  (fixture reused)
from tests.state.conftest import store_url  # noqa: F401  (SQLite and PostgreSQL, reused)

TOKEN = "s3cr3t-status-token"
# vendor text with HTML in it: the page must show it as text
REASON = 'Omie: <b>"cnpj_cpf"</b> & <script>x</script> inválido'


def status_app(settings: Settings) -> Starlette:
    """What ``ponte serve`` mounts, alone."""
    return Starlette(routes=status_routes(settings))


@pytest.fixture
def served() -> Iterator[Callable[[Settings], str]]:
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
        conn.execute(sa.insert(m.alerts), [
            {"condition": "drift:customers", "active": True, "since": now,
             "detail": "the last verify found customers drifted (1 record)",
             "notified_at": now, "cleared_at": None},
            {"condition": "run_failed:orders", "active": False, "since": now,
             "detail": "cleared", "notified_at": now, "cleared_at": now}])


__all__ = ["REASON", "TOKEN", "Env", "add_events", "quarantine_one", "served", "status_app"]
