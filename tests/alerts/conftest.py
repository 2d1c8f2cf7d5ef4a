"""Fixtures of the alert tests: a real SMTP server (aiosmtpd) and a webhook receiver (a plain
HTTP server) on free loopback ports, the world of the engine tests, and loguru's lines."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from loguru import logger

from etl.settings import Settings
from etl.settings_serve import AlertSettings
from tests.engine.conftest import World, empty_world, world  # noqa: F401  (fixtures reused)
from tests.ops.conftest import cli_env  # noqa: F401  (fixture reused)
from tests.state.conftest import open_store, store_url  # noqa: F401  (both backends)

SMTP_USER = "ponte-alerts"
SMTP_PASSWORD = "s3cret-smtp-Pa55"
HOOK_TOKEN = "T0KEN-b7c9e1-in-the-path"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Mailbox:
    """What the SMTP server accepted: one parsed message per DATA, and the logins tried."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.logins: list[tuple[str, bool]] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        self.messages.append(message_from_bytes(content))
        return "250 OK"

    def authenticate(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                     auth_data: Any) -> AuthResult:
        ok = (isinstance(auth_data, LoginPassword) and auth_data.login.decode() == SMTP_USER
              and auth_data.password.decode() == SMTP_PASSWORD)
        self.logins.append((auth_data.login.decode(), ok))
        return AuthResult(success=ok, handled=False)


@dataclass
class SmtpServer:
    port: int
    box: Mailbox = field(default_factory=Mailbox)
    controller: Controller | None = None

    @property
    def url(self) -> str:
        return f"smtp://{SMTP_USER}:{SMTP_PASSWORD}@127.0.0.1:{self.port}"

    def start(self) -> None:
        self.controller = Controller(self.box, hostname="127.0.0.1", port=self.port,
                                     authenticator=self.box.authenticate,
                                     auth_require_tls=False)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer(free_port())
    server.start()
    yield server
    server.stop()


@dataclass
class Receiver:
    """A chat tool's incoming webhook: records every JSON body; answers ``status``."""

    port: int
    bodies: list[dict[str, Any]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    status: int = 200

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/{HOOK_TOKEN}"

    def texts(self) -> list[str]:
        return [str(b["text"]) for b in self.bodies]


@pytest.fixture
def hook() -> Iterator[Receiver]:
    receiver = Receiver(0)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            receiver.paths.append(self.path)
            receiver.bodies.append(json.loads(self.rfile.read(length)))
            self.send_response(receiver.status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield receiver
    server.shutdown()
    server.server_close()


@pytest.fixture
def logs() -> Iterator[list[str]]:
    """Every line loguru writes while the test runs (all levels, with the bound context)."""
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), level="TRACE",
                      format="{level} {message} {extra}")
    yield lines
    logger.remove(sink)


def with_alerts(settings: Settings, **values: Any) -> Settings:
    """``settings`` with these ``PONTE_ALERTS__*`` values."""
    return settings.model_copy(update={"alerts": AlertSettings(**values)})
