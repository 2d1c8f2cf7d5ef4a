"""Fixtures for the simulator tests (Ploomes: ``ploomes_*``; a webhook ``receiver``)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.testclient import TestClient

from etl.sandbox.ploomes import PloomesSim, create_app
from tests.sandbox.receiver import Receiver

PLOOMES_KEY = "test-ploomes-key"


@pytest.fixture
def ploomes_key() -> str:
    return PLOOMES_KEY


@pytest.fixture
def ploomes_sim() -> PloomesSim:
    return PloomesSim(user_key=PLOOMES_KEY)


@pytest.fixture
def ploomes_client(ploomes_sim: PloomesSim) -> Iterator[TestClient]:
    """An in-process client of the Ploomes simulator that sends the valid User-Key."""
    with TestClient(create_app(ploomes_sim), headers={"User-Key": PLOOMES_KEY}) as client:
        yield client


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    app = Starlette(routes=[Route("/{path:path}", rec.endpoint, methods=["POST"])])
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    rec.port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="critical", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    yield rec
    server.should_exit = True
    thread.join(5)
    sock.close()
