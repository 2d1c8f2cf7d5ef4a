"""The ASGI shell of the Omie simulator: one endpoint per service URL, with the network-level
fault knobs (latency, dropped connections, timeouts, server errors), the slash-less 301s and
the ``/_sandbox`` admin routes."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from etl.sandbox.admin import admin_routes
from etl.sandbox.core import DroppedConnection, answer_at
from etl.sandbox.omie.hooks import PortalError
from etl.sandbox.omie.sim import OmieSim
from etl.sandbox.omie.validation import F_SERVER, SERVICES


class _Service:
    """The ASGI endpoint of one Omie service URL; applies the network-level fault knobs."""

    def __init__(self, sim: OmieSim, service: str) -> None:
        self.sim = sim
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        arrived = time.monotonic()
        sim, faults = self.sim, self.sim.faults
        body = b""
        if scope["method"] == "GET":  # the generated PHP client's ``?JSON=`` form
            qs = parse_qs(scope.get("query_string", b"").decode())
            body = (qs.get("JSON") or [""])[0].encode()
        else:
            more = True
            while more:
                message = await receive()
                body += message.get("body", b"")
                more = message.get("more_body", False)
        if faults.drop_rate and sim.rng.random() < faults.drop_rate:
            sim.requests.record(self._label(body), 0)
            await answer_at(arrived, faults.latency_ms)
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", b"4096")]})
            await send({"type": "http.response.body", "body": b'{"', "more_body": True})
            raise DroppedConnection("sandbox dropped the connection (drop_rate)")
        if faults.timeout_rate and sim.rng.random() < faults.timeout_rate:
            await asyncio.sleep(faults.timeout_s)
        response: Response
        if faults.error_rate and sim.rng.random() < faults.error_rate:
            label = self._label(body)
            response = JSONResponse({"faultstring": "ERROR: Erro interno do servidor. Tente "
                                                    "novamente mais tarde.",
                                     "faultcode": F_SERVER}, status_code=500)
        else:
            status, payload, headers, label = sim.handle(self.service, body)
            if isinstance(payload, str):
                response = PlainTextResponse(payload, status_code=status, headers=headers)
            else:
                response = JSONResponse(payload, status_code=status, headers=headers)
        sim.requests.record(label, response.status_code)
        await answer_at(arrived, faults.latency_ms)
        await response(scope, receive, send)

    def _label(self, body: bytes) -> str:
        try:
            call = json.loads(body).get("call")
        except (ValueError, AttributeError):
            call = None
        return f"{self.service}/{call if isinstance(call, str) else '?'}"


class _Portal:
    """``POST /_sandbox/webhooks {url, topics?}``: the developer portal adds a webhook."""

    def __init__(self, sim: OmieSim) -> None:
        self.sim = sim

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        try:
            body = await request.json()
        except ValueError:
            body = None
        try:
            response = JSONResponse(self.sim.configure_webhook(body), status_code=201)
        except PortalError as exc:
            response = JSONResponse({"error": f"webhook configuration: {exc}"}, status_code=400)
        await response(scope, receive, send)


def create_app(sim: OmieSim) -> Starlette:
    """The ASGI app: the three service URLs, their slash-less 301s, and ``/_sandbox``."""
    routes: list[Route] = []
    for service in SERVICES:
        routes.append(Route(f"/api/v1/{service}/", _Service(sim, service),
                            methods=["POST", "GET"]))

        async def redirect(request: Any, service: str = service) -> Response:
            sim.requests.record(service, 301)
            return RedirectResponse(f"/api/v1/{service}/", status_code=301)

        routes.append(Route(f"/api/v1/{service}", redirect, methods=["POST", "GET"]))
    routes.append(Route("/_sandbox/webhooks", _Portal(sim), methods=["POST"]))
    routes.extend(admin_routes(sim))
    app = Starlette(routes=routes)
    app.state.sim = sim
    return app
