"""Spec features for systems that take a JSON domain in a query parameter (Tryton's REST API):
class-tagged JSON instants, ``{values:json}``, parameters and headers sent base64url-encoded,
``{credentials.NAME}`` of a non-secret credential, repeated parameters, and an updated-at that
is the latest stamp of a record and its lines; workflow steps around a write. Run against a
small in-process server that answers a search from the domain it decodes."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from etl.connectors.base import WriteOp
from etl.connectors.generic import GenericConnector
from etl.connectors.http import RetryPolicy
from etl.connectors.spec import TimeFormat, parse_spec
from etl.connectors.templates import dig_all, format_instant, parse_instant, render, tagged
from etl.watermark import Window

TAGGED = TimeFormat(format="tagged", zone="UTC", precision_ms=1)


def stamp(**at: int) -> dict[str, Any]:
    return tagged(datetime(2026, 11, 28, **at))


RECORDS = [  # id 2: never written; id 3: old, but a line changed since
    {"id": 1, "write_date": stamp(hour=2), "create_date": stamp(hour=1), "lines": []},
    {"id": 2, "write_date": None, "create_date": stamp(hour=3), "lines": []},
    {"id": 3, "write_date": stamp(hour=0), "create_date": stamp(hour=0),
     "lines": [{"write_date": stamp(hour=4)}, {"write_date": None}]},
    {"id": 4, "write_date": stamp(hour=0), "create_date": stamp(hour=0), "lines": []},
]

SPEC = {
    "name": "tagged", "kind": "erp", "title": "Tagged",
    "credentials": {"key": {}, "database": {"secret": False, "default": "db1"}},
    "auth": {"type": "bearer", "credential": "key"},
    "entities": {"orders": {
        "collection": "sale", "key": "id",
        "updated_at": {"paths": ["write_date", "create_date", "lines[].write_date"],
                       "latest": True, "format": "tagged"},
        "list": {
            "path": "/{credentials.database}/model/sale",
            "params": {"f": ["write_date", "create_date"],
                       "d": '["OR", [["write_date", ">=", {since}]], '
                            '[["create_date", ">=", {since}]]]'},
            "headers": {"X-Context": '{{"db": "{credentials.database}"}}'},
            "encode": {"d": "base64url", "X-Context": "base64url"},
            "time": {"format": "tagged", "precision_ms": 1},
            "paginator": {"type": "offset", "offset_param": "p", "limit_param": "s"}},
        "read_by_keys": {"path": "/{credentials.database}/model/sale",
                         "params": {"d": '[["id", "in", {values:json}]]'},
                         "encode": {"d": "base64url"}, "value_pattern": "\\d+"},
        "create": {"method": "POST", "path": "/{credentials.database}/model/sale",
                   "then": [{"method": "POST", "path": "/db1/model/sale/{key}/quote"}]},
        "update": {"method": "PUT", "path": "/db1/model/sale/{key}",
                   "before": [{"method": "POST", "path": "/db1/model/sale/{key}/draft"}],
                   "then": [{"method": "POST", "path": "/db1/model/sale/{key}/quote"}]}}},
}


def since_of(domain: Any) -> datetime | None:
    for clause in domain[1:] if domain and domain[0] == "OR" else []:
        return parse_instant(clause[0][2], TAGGED)
    return None


class Server:
    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.records = [dict(r) for r in RECORDS]
        self.steps: list[str] = []

    async def change(self, request: Request) -> JSONResponse:
        """A create, an update or a step; a quotation is read-only, quote needs a party, a
        confirmed sale cannot go back to draft."""
        values = json.loads(await request.body() or b"{}")
        key = request.path_params.get("key")
        action = request.path_params.get("action")
        self.steps.append(f"{request.method} {action or ''}".strip())
        if key is None:
            record = {"id": len(self.records) + 1, "state": "draft", "lines": [],
                      "create_date": stamp(hour=5), "write_date": None, **values}
            self.records.append(record)
            return JSONResponse({"id": record["id"]})
        record = next(r for r in self.records if r["id"] == int(key))
        if action == "quote" and not record.get("party"):
            return JSONResponse({"message": "an invoice address is required"}, status_code=400)
        if action == "draft" and record.get("state") == "confirmed":
            return JSONResponse({"message": "a confirmed sale stays confirmed"}, status_code=400)
        if action is None and record.get("state") == "quotation":
            return JSONResponse({"message": 'You are not allowed to modify the field "X"'},
                                status_code=400)
        record.update(values if action is None else
                      {"state": {"quote": "quotation", "draft": "draft"}[action]})
        return JSONResponse({"id": record["id"]})

    def search(self, request: Request) -> JSONResponse:
        domain = json.loads(base64.urlsafe_b64decode(request.query_params["d"])
                            if "d" in request.query_params else "[]")
        self.seen.append({"path": request.url.path, "domain": domain,
                          "f": request.query_params.getlist("f"),
                          "context": request.headers.get("X-Context"),
                          "auth": request.headers.get("Authorization")})
        since = since_of(domain)
        stamps = ("write_date", "create_date")
        out = [r for r in self.records if since is None or any(
            at is not None and at >= since for at in (
                *(parse_instant(r[f], TAGGED) for f in stamps),
                *(parse_instant(line["write_date"], TAGGED) for line in r["lines"])))]
        if domain and domain[0] != "OR":  # [["id", "in", [...]]]
            out = [r for r in self.records if str(r["id"]) in domain[0][2]]
        offset = int(request.query_params.get("p", 0))
        size = int(request.query_params.get("s", 100))
        return JSONResponse(out[offset:offset + size])

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/db1/model/sale", self.search, methods=["GET"]),
            Route("/db1/model/sale", self.change, methods=["POST"]),
            Route("/db1/model/sale/{key:int}", self.change, methods=["PUT"]),
            Route("/db1/model/sale/{key:int}/{action}", self.change, methods=["POST"])])


@pytest.fixture
def server() -> Server:
    return Server()


@pytest.fixture
def conn(server: Server) -> Iterator[GenericConnector]:
    with TestClient(server.app(), base_url="http://tagged.test/") as client:
        yield GenericConnector(parse_spec(SPEC, "tagged.yaml"), client, system="erp",
                               credentials={"key": "k1", "database": "db1"}, page_size=2,
                               max_concurrency=1,
                               retry=RetryPolicy(attempts=1, base_s=0, cap_s=0),
                               sleep=lambda _: None)


def test_tagged_instants_round_trip() -> None:
    at = datetime(2026, 11, 28, 1, 21, 23, 484516, tzinfo=UTC)
    text = format_instant(at, TAGGED)
    assert json.loads(text) == {"__class__": "datetime", "year": 2026, "month": 11, "day": 28,
                                "hour": 1, "minute": 21, "second": 23, "microsecond": 484000}
    assert parse_instant(json.loads(text), TAGGED) == at.replace(microsecond=484000)
    assert parse_instant({"__class__": "date", "year": 2026, "month": 1, "day": 2},
                         TAGGED) is None
    assert parse_instant({"__class__": "datetime", "year": "x"}, TAGGED) is None


def test_json_values_and_list_paths() -> None:
    assert render('[[{field:json}, "in", {values:json}]]',
                  {"field": 'code"x', "values": ["A", "B"]}) == '[["code\\"x", "in", ["A", "B"]]]'
    record = {"lines": [{"at": 1}, {"at": None}, {"x": 2}], "one": {"at": 3}}
    assert dig_all(record, "lines[].at") == [1, None, None]
    assert dig_all(record, "one.at") == [3]
    assert dig_all({"lines": None}, "lines[].at") == []


def test_changes_are_asked_with_an_encoded_domain_and_paged_by_offset(
        conn: GenericConnector, server: Server) -> None:
    since = datetime(2026, 11, 28, 1, 30, tzinfo=UTC)
    pages = list(conn.list_changed("orders", Window(since, datetime(2026, 12, 1, tzinfo=UTC))))
    # 1 (written at 2:00), 2 (never written, created at 3:00) and 3 (its own stamps old, a
    # line written at 4:00) are in the window; 4 is not
    assert [r["id"] for page in pages for r in page] == [1, 2, 3]
    first = server.seen[0]
    assert first["path"] == "/db1/model/sale"  # {credentials.database}
    assert first["f"] == ["write_date", "create_date"]  # a list parameter is repeated
    assert first["domain"][1] == [["write_date", ">=", tagged(datetime(2026, 11, 28, 1, 30))]]
    assert json.loads(base64.urlsafe_b64decode(first["context"])) == {"db": "db1"}
    assert first["auth"] == "Bearer k1"
    assert len(server.seen) == 2  # a page of 2, then a short one


def test_the_updated_at_is_the_latest_of_a_record_and_its_lines(conn: GenericConnector) -> None:
    at = conn.updated_at
    assert at("orders", RECORDS[0]) == datetime(2026, 11, 28, 2, tzinfo=UTC)
    assert at("orders", RECORDS[1]) == datetime(2026, 11, 28, 3, tzinfo=UTC)
    assert at("orders", RECORDS[2]) == datetime(2026, 11, 28, 4, tzinfo=UTC)
    assert at("orders", {"id": 5}) is None


def test_read_by_keys_sends_the_keys_as_a_json_list(conn: GenericConnector,
                                                    server: Server) -> None:
    found = conn.read_by_keys("orders", ["3", "1", "x"])
    assert sorted(r["id"] for r in found) == [1, 3]
    assert server.seen[-1]["domain"] == [["id", "in", ["3", "1"]]]


def test_workflow_steps_around_writes(conn: GenericConnector, server: Server) -> None:
    quoted, kept = conn.write_batch("orders", [WriteOp("create", {"party": 1}),
                                               WriteOp("create", {"party": None})])
    assert quoted.ok and quoted.record is not None and quoted.record["state"] == "quotation"
    # the quote was refused, but the sale exists: a rejected create would be made again
    assert kept.ok and kept.record is not None and kept.record["state"] == "draft"
    assert server.steps == ["POST", "POST quote", "POST", "POST quote"]

    server.steps.clear()
    updated, = conn.write_batch("orders", [WriteOp("update", {"note": "x"}, key=quoted.key)])
    assert updated.ok and updated.record is not None
    assert (updated.record["state"], updated.record["note"]) == ("quotation", "x")
    assert server.steps == ["POST draft", "PUT", "POST quote"]

    server.records[0]["state"] = "confirmed"
    server.steps.clear()
    refused, = conn.write_batch("orders", [WriteOp("update", {"note": "y"}, key="1")])
    assert refused.error is not None and refused.error.kind == "rejected"
    assert "draft: HTTP 400: a confirmed sale stays confirmed" in str(refused.error)
    assert server.steps == ["POST draft"]  # the write itself was never sent
