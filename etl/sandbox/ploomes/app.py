"""The ASGI app of the Ploomes simulator: auth, rate limit and fault knobs in front of every
vendor route, then a collection or a record read, created, changed or deleted; plus the
``/_sandbox`` admin routes."""

from __future__ import annotations

import asyncio
import math
import re
import time
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from etl.sandbox.admin import admin_routes
from etl.sandbox.core import DroppedConnection, answer_at
from etl.sandbox.odata import FilterError
from etl.sandbox.ploomes import hooks
from etl.sandbox.ploomes.listing import Listing, envelope
from etl.sandbox.ploomes.schema import ALIASES, INTEGRATION_USER_ID, LOOKUPS, SCHEMA, WRITABLE
from etl.sandbox.ploomes.sim import PloomesSim
from etl.sandbox.ploomes.validation import BadRequest

_PATH = re.compile(r"^/(?P<coll>[A-Za-z]+(?:@[A-Za-z]+)*)(?:\((?P<id>[^)]*)\))?/?$")


class _DropResponse(Response):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", b"1024")]})
        raise DroppedConnection("the sandbox dropped the connection (drop_rate fault)")


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)



class _Api(Listing):
    """The vendor routes of one simulator."""

    async def endpoint(self, request: Request) -> Response:
        arrived = time.monotonic()
        match = _PATH.match(request.url.path)
        collection = match["coll"] if match else request.url.path.lstrip("/")
        endpoint = f"{request.method} /{collection}"
        try:
            response = await self.handle(request, match, arrived)
        except BadRequest as exc:
            response = _error(exc.status, exc.code, str(exc))
        except FilterError as exc:
            response = _error(400, "BadRequest", str(exc))
        self.sim.requests.record(endpoint, 0 if isinstance(response, _DropResponse)
                                 else response.status_code)
        return response

    async def handle(self, request: Request, match: re.Match[str] | None, arrived: float
                     ) -> Response:
        sim = self.sim
        key = request.headers.get("User-Key")
        if not key or key != sim.user_key:
            return _error(401, "Unauthorized", "missing or invalid User-Key header")
        faults = sim.faults
        if faults.burst_429 > 0:
            faults.burst_429 -= 1
            return self._too_many(1.0)
        allowed, wait = sim.limiter.allow(key)
        if not allowed:
            return self._too_many(wait)
        try:
            drop = bool(faults.drop_rate) and sim.rng.random() < faults.drop_rate
            if drop and request.method == "GET":
                return _DropResponse()
            if faults.error_rate and sim.rng.random() < faults.error_rate:
                return _error(500, "InternalServerError", "An error has occurred.")
            if faults.timeout_rate and sim.rng.random() < faults.timeout_rate:
                await asyncio.sleep(faults.timeout_s)
            if match is None:
                raise BadRequest(f"no resource at {request.url.path}", status=404,
                                 code="NotFound")
            response = await self.dispatch(request, match["coll"], match["id"])
            return _DropResponse() if drop else response
        finally:
            await answer_at(arrived, faults.latency_ms)

    def _too_many(self, wait: float) -> JSONResponse:
        seconds = max(1, math.ceil(wait))
        headers = {"Retry-After": str(seconds)} if self.sim.retry_after_header else {}
        return JSONResponse(
            {"message": f"API rate limit exceeded ({self.sim.limiter.per_minute} requests per "
                        f"minute); try again in {seconds} s"},
            status_code=429, headers=headers,
        )

    async def dispatch(self, request: Request, collection: str, rid_text: str | None) -> Response:
        method = request.method
        if collection == "Self" and method == "GET":
            with self.sim.db.lock:
                row = self.sim.db["Users"].get(INTEGRATION_USER_ID)
                records = [self.sim.render("Users", row)] if row else []
            return envelope(request, "Self", records)
        if collection == "Webhooks":
            return await self.webhooks(request, rid_text)
        if collection in LOOKUPS:
            if method != "GET" or rid_text is not None:
                raise BadRequest(f"{method} is not allowed on {collection}", status=405,
                                 code="MethodNotAllowed")
            return self.list_lookup(request, collection)
        table = ALIASES.get(collection, collection)
        if table not in SCHEMA:
            raise BadRequest(f"resource '{collection}' not found", status=404, code="NotFound")
        if method != "GET" and table not in WRITABLE:
            raise BadRequest(f"{method} is not allowed on {collection}", status=405,
                             code="MethodNotAllowed")
        if rid_text is None:
            if method == "GET":
                return self.list_table(request, collection, table)
            if method == "POST":
                body = await _json(request)
                with self.sim.db.lock:
                    data = self.sim.api_stamp(table, self.sim.in_step(
                        table, {}, self.sim.validate(table, body, partial=False)), create=True)
                    row = self.sim.db[table].insert(data, self.sim.write_instant())
                    return envelope(request, collection, [self.shape(request, table, row)])
            raise BadRequest(f"{method} needs a record id: /{collection}(id)", status=405,
                             code="MethodNotAllowed")
        if not rid_text.isdigit():
            raise BadRequest(f"invalid key {rid_text!r}; use /{collection}(123)")
        rid = int(rid_text)
        body = await _json(request) if method == "PATCH" else None
        with self.sim.db.lock:
            row = self.sim.db[table].get(rid)
            if row is None:
                raise BadRequest(f"{table} {rid} not found", status=404, code="NotFound")
            if method == "GET":
                return envelope(request, collection, [self.shape(request, table, row)])
            if method == "PATCH":
                changes = self.sim.api_stamp(table, self.sim.in_step(
                    table, row.data, self.sim.validate(table, body, partial=True)), create=False)
                row = self.sim.db[table].update(rid, changes, self.sim.write_instant())
                return envelope(request, collection, [self.shape(request, table, row)])
            if method == "DELETE":
                self.sim.db[table].delete(rid)
                return Response(status_code=200)
        raise BadRequest(f"{method} is not allowed on /{collection}(id)", status=405,
                         code="MethodNotAllowed")

    async def webhooks(self, request: Request, rid_text: str | None) -> Response:
        """``/Webhooks`` and ``/Webhooks(id)`` (:mod:`etl.sandbox.ploomes.hooks`)."""
        sim, method, table = self.sim, request.method, "Webhooks"
        if rid_text is None and method == "GET":
            return self.list_table(request, table, table)
        if rid_text is None and method == "POST":
            body = await _json(request)
            with sim.db.lock:
                made = sim.db[table].insert(hooks.check(body, creator=INTEGRATION_USER_ID),
                                            sim.write_instant())
                sim.watch()
                return envelope(request, table, [self.shape(request, table, made)])
        if rid_text is None or not rid_text.isdigit():
            raise BadRequest(f"{method} needs a webhook id: /Webhooks(123)", status=405,
                             code="MethodNotAllowed")
        rid = int(rid_text)
        body = await _json(request) if method == "PATCH" else None
        with sim.db.lock:
            row = sim.db[table].get(rid)
            if row is None:
                raise BadRequest(f"Webhooks {rid} not found", status=404, code="NotFound")
            if method == "PATCH":
                row = sim.db[table].update(rid, hooks.check(body, row.data), sim.write_instant())
            elif method == "DELETE":
                sim.db[table].delete(rid)
            elif method != "GET":
                raise BadRequest(f"{method} is not allowed on /Webhooks(id)", status=405,
                                 code="MethodNotAllowed")
            sim.watch()
            if method == "DELETE":
                return Response(status_code=200)
            return envelope(request, table, [self.shape(request, table, row)])


async def _json(request: Request) -> Any:
    try:
        return await request.json()
    except ValueError as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from exc


def create_app(sim: PloomesSim) -> Starlette:
    """The ASGI app: vendor routes plus the ``/_sandbox`` admin API."""
    api = _Api(sim)
    methods = ["GET", "POST", "PATCH", "DELETE"]
    app = Starlette(routes=[*admin_routes(sim), Route("/{path:path}", api.endpoint, methods=methods)])
    app.state.sim = sim
    return app
