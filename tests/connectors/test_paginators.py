"""Every paginator of the registry against one small listing server (an httpx transport, in
process): paging to the end under a silent page cap, many records sharing one timestamp across
page breaks, paging values in the query or in a JSON-RPC body, and the listing modes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from etl.connectors.generic import GenericConnector
from etl.connectors.http import RetryPolicy
from etl.connectors.spec import parse_spec
from etl.errors import SystemUnavailable
from etl.watermark import Window

T0 = datetime(2026, 3, 10, 13, 0, 0, tzinfo=UTC)
CAP = 3  # the server serves at most 3 per page, whatever is asked


def records(n: int) -> list[dict[str, Any]]:
    """``n`` records, four sharing each timestamp, listed in id order."""
    return [{"id": i, "updated": (T0 + timedelta(seconds=(i - 1) // 4)).isoformat()}
            for i in range(1, n + 1)]


class Server:
    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows, self.requests = rows, 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        q = dict(request.url.params)
        body = json.loads(request.content) if request.content else {}
        q.update({k: str(v) for k, v in (body.get("params") or [{}])[0].items()})
        rows = sorted(self.rows, key=lambda r: (r["updated"], r["id"]))
        if "after" in q:  # keyset: "<updated>|<id>"
            at, rid = q["after"].split("|")
            rows = [r for r in rows if (r["updated"], r["id"]) > (
                datetime.fromisoformat(at).isoformat(), int(rid))]
        start = int(q.get("offset") or q.get("cursor") or 0)
        if "page" in q:
            start = (int(q["page"]) - 1) * min(int(q.get("size", CAP)), CAP)
        headers = {}
        size = min(int(q.get("limit") or q.get("size") or CAP), CAP)
        if "Range" in request.headers:
            lo, hi = request.headers["Range"].split("=")[1].split("-")
            start, size = int(lo), min(int(hi) - int(lo) + 1, CAP)
            headers["Content-Range"] = f"items {start}-{start + size - 1}/{len(rows)}"
        page = rows[start:start + size]
        more = start + size < len(rows)
        return httpx.Response(200, headers=headers, json={
            "items": page, "meta": {"total": len(rows)}, "next_cursor": str(start + size) if more else None,
            "next": f"/items?cursor={start + size}" if more else None})


def spec(paginator: dict[str, Any], **listing: Any) -> dict[str, Any]:
    return {"name": "lister", "kind": "any", "title": "Lister", "entities": {"items": {
        "collection": "items", "key": "id",
        "updated_at": {"paths": ["updated"], "format": "iso", "precision_ms": 1000},
        "list": {"path": "/items", "records": "items", "paginator": paginator, **listing}}}}


@pytest.mark.parametrize(("paginator", "listing"), [
    ({"type": "offset", "offset_param": "offset", "limit_param": "limit"}, {}),
    ({"type": "page_number", "page_param": "page", "size_param": "size"}, {}),
    ({"type": "keyset", "param": "after", "clause": "{last_updated}|{last_key}"},
     {"sorted": True}),
    ({"type": "cursor", "cursor_path": "next_cursor", "cursor_param": "cursor"}, {}),
    ({"type": "next_link", "next_path": "next"}, {}),
    ({"type": "range"}, {}),
    ({"type": "offset", "where": "body", "body_path": "params.0"},
     {"method": "POST", "body": {"call": "ListItems", "params": [{}]}}),
], ids=["offset", "page-number", "keyset", "cursor", "next-link", "range", "json-rpc-body"])
@pytest.mark.parametrize("n", [0, 1, 3, 10, 13])
def test_every_paginator_reads_to_the_end_under_a_cap(paginator: dict[str, Any],
                                                      listing: dict[str, Any], n: int) -> None:
    server = Server(records(n))
    client = httpx.Client(transport=httpx.MockTransport(server), base_url="http://lister.test")
    conn = GenericConnector(parse_spec(spec(paginator, **listing), "lister.yaml"), client,
                            system="erp", credentials={}, page_size=50,
                            retry=RetryPolicy(attempts=1), sleep=lambda _s: None)
    pages = list(conn.list_changed("items", Window(None)))
    got = [r["id"] for page in pages for r in page]
    assert got == list(range(1, n + 1))  # all, once, in (updated-at, key) order
    assert server.requests <= n // CAP + 2  # no page read twice: at most one confirming read


@pytest.mark.parametrize(("changed_since", "since_s", "expected"), [
    ("filter", 1, [5, 6, 7, 8, 9, 10]),  # trimmed to the window client-side
    ("none", 1, list(range(1, 11))),  # the system cannot filter: everything, the diff decides
])
def test_changed_since_modes(changed_since: str, since_s: int, expected: list[int]) -> None:
    server = Server(records(10))
    client = httpx.Client(transport=httpx.MockTransport(server), base_url="http://lister.test")
    raw = spec({"type": "offset"}, changed_since=changed_since)
    conn = GenericConnector(parse_spec(raw, "lister.yaml"), client, system="erp",
                            credentials={}, retry=RetryPolicy(attempts=1), sleep=lambda _s: None)
    window = Window(T0 + timedelta(seconds=since_s))
    got = [r["id"] for page in conn.list_changed("items", window) for r in page]
    assert got == expected
    assert conn.capabilities.has_changed_since is (changed_since == "filter")


@pytest.mark.parametrize("n", [0, 1, 3, 10, 13])
def test_offset_with_a_stated_total_ends_there(n: int) -> None:
    server = Server(records(n))
    client = httpx.Client(transport=httpx.MockTransport(server), base_url="http://lister.test")
    raw = spec({"type": "offset", "total_path": "meta.total"})
    conn = GenericConnector(parse_spec(raw, "lister.yaml"), client, system="erp",
                            credentials={}, page_size=50, retry=RetryPolicy(attempts=1),
                            sleep=lambda _s: None)
    got = [r["id"] for page in conn.list_changed("items", Window(None)) for r in page]
    assert got == list(range(1, n + 1))
    assert server.requests == max(1, -(-n // CAP))  # no confirming read past the total


def test_find_by_over_a_listing_that_sends_no_value_reads_it_once() -> None:
    server = Server(records(13))
    client = httpx.Client(transport=httpx.MockTransport(server), base_url="http://lister.test")
    raw = spec({"type": "offset", "total_path": "meta.total"})
    raw["entities"]["items"]["find_by"] = {"id": {
        "path": "/items", "records": "items", "paginator": {"type": "offset"}}}
    conn = GenericConnector(parse_spec(raw, "lister.yaml"), client, system="erp",
                            credentials={}, page_size=50, retry=RetryPolicy(attempts=1),
                            sleep=lambda _s: None)
    wanted = ["2", "7", "11", *(str(i) for i in range(100, 160))]  # more than one chunk (50)
    found = conn.find_by("items", "id", wanted)
    assert sorted(r["id"] for r in found) == [2, 7, 11]  # matched client-side
    assert server.requests == 5  # one listing: 13 records in pages of 3


class TwoListServer:
    """Open and closed records in two lists of one answer, each with its own total, both paged
    by the same offset and limit (under the cap), as some CRMs list accounts."""

    def __init__(self, open_n: int, closed_n: int, *, totals: bool = True) -> None:
        self.open = [{"id": i, "updated": T0.isoformat(), "active": True}
                     for i in range(1, open_n + 1)]
        self.closed = [{"id": 1000 + i, "updated": T0.isoformat(), "active": False}
                       for i in range(1, closed_n + 1)]
        self.totals, self.requests = totals, 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        start = int(request.url.params.get("offset", 0))
        size = min(int(request.url.params.get("limit", CAP)), CAP)
        opened: dict[str, Any] = {"rows": self.open[start:start + size]}
        closed: dict[str, Any] = {"rows": self.closed[start:start + size]}
        if self.totals:
            opened["count"], closed["count"] = len(self.open), len(self.closed)
        return httpx.Response(200, json={"open": opened, "closed": closed})


def two_lists(server: TwoListServer, total_path: Any,
              records: tuple[str, ...] = ("open.rows", "closed.rows")) -> GenericConnector:
    raw = spec({"type": "offset", **({"total_path": total_path} if total_path else {})},
               records=list(records), changed_since="none")
    raw["entities"]["items"]["find_by"] = {"active": {
        "path": "/items", "records": ["open.rows", "closed.rows"],
        "paginator": {"type": "offset", "total_path": ["open.count", "closed.count"]}}}
    client = httpx.Client(transport=httpx.MockTransport(server), base_url="http://lister.test")
    return GenericConnector(parse_spec(raw, "lister.yaml"), client, system="erp",
                            credentials={}, page_size=50, retry=RetryPolicy(attempts=1),
                            sleep=lambda _s: None)


@pytest.mark.parametrize(("open_n", "closed_n"), [(0, 0), (2, 0), (0, 2), (7, 1), (1, 7), (6, 6)])
@pytest.mark.parametrize("total_path", [["open.count", "closed.count"], None],
                         ids=["totals", "no-total"])
def test_several_record_lists_share_one_offset(open_n: int, closed_n: int,
                                               total_path: Any) -> None:
    server = TwoListServer(open_n, closed_n, totals=total_path is not None)
    got = [r["id"] for page in two_lists(server, total_path).list_changed("items", Window(None))
           for r in page]
    assert sorted(got) == [*range(1, open_n + 1), *range(1001, 1001 + closed_n)]  # each once
    longest = max(open_n, closed_n)
    if total_path:  # the largest total ends the listing: no read past it
        assert server.requests == max(1, -(-longest // CAP))
    else:  # a short page of the longest list ends it, after at most one confirming read
        assert server.requests <= longest // CAP + 2


def test_a_find_by_reads_every_list_of_the_answer() -> None:
    server = TwoListServer(4, 5)
    found = two_lists(server, None).find_by("items", "active", ["False"])
    assert sorted(r["id"] for r in found) == [1001, 1002, 1003, 1004, 1005]


def test_a_missing_list_of_several_is_named() -> None:
    conn = two_lists(TwoListServer(2, 2), None, ("open.rows", "archived.rows"))
    with pytest.raises(SystemUnavailable, match="no records at archived.rows of the answer"):
        list(conn.list_changed("items", Window(None)))
