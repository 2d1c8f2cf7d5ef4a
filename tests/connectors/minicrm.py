"""A tiny REST CRM for the generic connector's tests: what ``examples/connectors/minicrm.yaml``
describes. Pages by number with a silent cap on ``per_page``, filters by updated-at, by ids, by
e-mail and by external ref; creates answer the record; faults on demand."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

API_KEY = "minicrm-test-key-5150"
T0 = datetime(2026, 3, 10, 13, 0, 0, tzinfo=UTC)


@dataclass
class Faults:
    burst_429: int = 0  # the next N requests answer 429 (Retry-After: 0)
    fail_5xx: int = 0  # the next N requests answer 503
    lose_create_answers: int = 0  # the next N creates are stored, then answer 500


@dataclass
class MiniCrm:
    records: dict[int, dict[str, Any]] = field(default_factory=dict)
    page_cap: int = 1000
    faults: Faults = field(default_factory=Faults)
    requests: list[str] = field(default_factory=list)
    now: datetime = T0

    def add(self, n: int, *, step_s: float = 1.0, **values: Any) -> list[int]:
        ids = []
        for _ in range(n):
            rid = len(self.records) + 1
            at = self.now + timedelta(seconds=step_s * (rid - 1))
            self.records[rid] = {"id": rid, "name": f"Customer {rid}",
                                 "email": f"c{rid}@example.com", "external_ref": None,
                                 "updated_at": at.isoformat().replace("+00:00", "Z"), **values}
            ids.append(rid)
        return ids

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/api/customers", self.collection, methods=["GET", "POST"]),
            Route("/api/customers/{rid:int}", self.item, methods=["PATCH", "DELETE"]),
        ])

    def _guard(self, request: Request) -> Response | None:
        self.requests.append(f"{request.method} {request.url.path}?{request.url.query}")
        if request.headers.get("X-Api-Key") != API_KEY:
            return JSONResponse({"error": {"message": "invalid API key"}}, 401)
        if self.faults.burst_429:
            self.faults.burst_429 -= 1
            return JSONResponse({"error": {"message": "slow down"}}, 429,
                                headers={"Retry-After": "0"})
        if self.faults.fail_5xx:
            self.faults.fail_5xx -= 1
            return JSONResponse({"error": {"message": "maintenance"}}, 503)
        return None

    async def collection(self, request: Request) -> Response:
        refused = self._guard(request)
        if refused is not None:
            return refused
        if request.method == "POST":
            return self._create(await request.json())
        q = request.query_params
        rows = sorted(self.records.values(), key=lambda r: r["id"])
        if "ids" in q:
            wanted = {int(x) for x in q["ids"].split(",") if x.isdigit()}
            rows = [r for r in rows if r["id"] in wanted]
        for name in ("email", "external_ref"):
            if name in q:
                rows = [r for r in rows if r.get(name) == q[name]]
        if "updated_since" in q:
            rows = [r for r in rows if _at(r) >= _at({"updated_at": q["updated_since"]})]
        if "updated_before" in q:
            rows = [r for r in rows if _at(r) < _at({"updated_at": q["updated_before"]})]
        size = min(int(q.get("per_page", 20)), self.page_cap)
        page = int(q.get("page", 1))
        total_pages = max(1, -(-len(rows) // size))
        chunk = rows[(page - 1) * size:page * size]
        return JSONResponse({"data": chunk, "meta": {"page": page, "total_pages": total_pages}})

    def _create(self, body: dict[str, Any]) -> Response:
        if "@" not in str(body.get("email", "@")):
            return JSONResponse({"error": {"code": "validation", "field": "email",
                                           "message": "email: not an e-mail"}}, 422)
        ref = body.get("external_ref")
        if ref and any(r.get("external_ref") == ref for r in self.records.values()):
            return JSONResponse({"error": {"message": f"external_ref {ref} exists"}}, 409)
        rid = max(self.records, default=0) + 1
        self.records[rid] = {"id": rid, "updated_at": self.now.isoformat().replace("+00:00", "Z"),
                             "external_ref": None, **body}
        if self.faults.lose_create_answers:
            self.faults.lose_create_answers -= 1
            return JSONResponse({"error": {"message": "gateway timeout"}}, 500)
        return JSONResponse(self.records[rid], 201)

    async def item(self, request: Request) -> Response:
        refused = self._guard(request)
        if refused is not None:
            return refused
        rid = int(request.path_params["rid"])
        if rid not in self.records:
            return JSONResponse({"error": {"message": "not found"}}, 404)
        if request.method == "DELETE":
            del self.records[rid]
            return Response(status_code=204)
        self.records[rid].update(await request.json())
        return JSONResponse(self.records[rid])


def _at(record: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(str(record["updated_at"]))
