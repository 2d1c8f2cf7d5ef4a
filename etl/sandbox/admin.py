"""The ``/_sandbox/`` admin API both simulators mount: act as a UI user, dump records, move the
clock, set fault knobs, read request counts and webhook deliveries, reset. Not part of any vendor API; no auth; the
servers only listen on loopback.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from etl.sandbox.core import Simulator


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def admin_routes(sim: Simulator) -> list[Route]:
    """Routes under ``/_sandbox``; tables are addressed by the simulator's table names."""

    def table_or_404(name: str) -> str | None:
        return name if name in sim.db.tables else None

    async def dump(request: Request) -> JSONResponse:
        name = table_or_404(request.path_params["table"])
        if name is None:
            return _error(404, f"unknown table {request.path_params['table']!r}; "
                               f"valid: {sorted(sim.db.tables)}")
        with sim.db.lock:
            records = [sim.render(name, row) for row in sim.db[name]]
        return JSONResponse({"table": name, "count": len(records), "records": records})

    async def create(request: Request) -> JSONResponse:
        name = table_or_404(request.path_params["table"])
        if name is None:
            return _error(404, f"unknown table {request.path_params['table']!r}")
        body = await request.json()
        if not isinstance(body, dict):
            return _error(400, "body must be a JSON object of the record's fields")
        row = sim.ui_create(name, body)
        return JSONResponse(sim.render(name, row), status_code=201)

    async def one(request: Request) -> JSONResponse:
        name = table_or_404(request.path_params["table"])
        if name is None:
            return _error(404, f"unknown table {request.path_params['table']!r}")
        rid = int(request.path_params["rid"])
        if request.method == "DELETE":
            if not sim.ui_delete(name, rid):
                return _error(404, f"{name} {rid} not found")
            return JSONResponse({"deleted": rid})
        if request.method == "PATCH":
            body = await request.json()
            try:
                changed = sim.ui_update(name, rid, body)
            except KeyError:
                return _error(404, f"{name} {rid} not found")
            return JSONResponse(sim.render(name, changed))
        row = sim.db[name].get(rid)
        if row is None:
            return _error(404, f"{name} {rid} not found")
        return JSONResponse(sim.render(name, row))

    async def clock(request: Request) -> JSONResponse:
        if request.method == "POST":
            body = await request.json()
            if "advance_s" in body:
                sim.clock.advance(float(body["advance_s"]))
            if "freeze" in body:
                sim.clock.freeze(
                    datetime.fromisoformat(body["freeze"]) if body["freeze"] else None
                )
        return JSONResponse(
            {"now": sim.clock.now().isoformat(), "offset_s": sim.clock.offset.total_seconds(),
             "frozen": sim.clock.frozen.isoformat() if sim.clock.frozen else None}
        )

    async def faults(request: Request) -> JSONResponse:
        if request.method == "POST":
            body: dict[str, Any] = await request.json()
            try:
                sim.faults.update(body)
            except ValueError as exc:
                return _error(400, str(exc))
            if not sim.faults.same_timestamp:
                sim.clock.freeze(None)
        return JSONResponse(sim.faults.as_dict())

    async def requests(request: Request) -> JSONResponse:
        if request.method == "DELETE":
            sim.requests.reset()
        return JSONResponse({"requests": sim.requests.as_list()})

    async def deliveries(request: Request) -> JSONResponse:
        if request.method == "DELETE":
            sim.deliveries.clear()
        return JSONResponse(sim.deliveries.status())

    async def reset(request: Request) -> JSONResponse:
        sim.reset()
        return JSONResponse({"reset": True})

    async def save(request: Request) -> JSONResponse:
        sim.db.save()
        return JSONResponse({"saved": bool(sim.db.path)})

    return [
        Route("/_sandbox/clock", clock, methods=["GET", "POST"]),
        Route("/_sandbox/faults", faults, methods=["GET", "POST"]),
        Route("/_sandbox/requests", requests, methods=["GET", "DELETE"]),
        Route("/_sandbox/deliveries", deliveries, methods=["GET", "DELETE"]),
        Route("/_sandbox/reset", reset, methods=["POST"]),
        Route("/_sandbox/save", save, methods=["POST"]),
        Route("/_sandbox/{table}", dump, methods=["GET"]),
        Route("/_sandbox/{table}", create, methods=["POST"]),
        Route("/_sandbox/{table}/{rid:int}", one, methods=["GET", "PATCH", "DELETE"]),
    ]
