"""Paginators, by the name a spec gives them (``paginator: {type: ...}``).

Each one turns the first request into the next from the answer; the generic connector stops
when it answers ``None``. :func:`pages` also refuses to send the same request twice in one
listing (a cursor that does not move would loop forever): that is the system misbehaving, and
is reported as such.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, Protocol

import httpx

from etl.connectors.auth import Call
from etl.connectors.base import Record
from etl.connectors.spec import (
    CursorPaging,
    KeysetPaging,
    NextLinkPaging,
    NoPaging,
    OffsetPaging,
    PagePaging,
    Paging,
    RangePaging,
)
from etl.connectors.templates import dig, put
from etl.errors import SystemUnavailable


class Pager(Protocol):
    def first(self, call: Call, size: int) -> None: ...

    def next(self, call: Call, size: int, answer: Any, response: httpx.Response,
             page: list[Record]) -> bool:
        """Move ``call`` to the next page; ``False`` when this was the last."""
        ...


def _set(paging: Paging, call: Call, name: str, value: Any) -> None:
    if paging.where == "query":
        call.params[name] = value
    else:
        if not isinstance(call.body, dict):
            call.body = {}
        put(call.body, f"{paging.body_path}.{name}" if paging.body_path else name, value)


class _ShortPage:
    """A page shorter than asked ends the listing only when it cannot be a silent server cap:
    an earlier page was longer, or one was as long as asked. Otherwise one more request
    confirms the end (it comes back empty)."""

    def __init__(self) -> None:
        self.longest = 0

    def last(self, n: int, size: int) -> bool:
        if n == 0:
            return True
        done = n < size and ((self.longest and n < self.longest) or self.longest >= size)
        self.longest = max(self.longest, n)
        return bool(done)


def record_lists(answer: Any, records: str | list[str]) -> list[list[Record]]:
    """The lists of records an answer holds at ``records`` (a path or several; a lone object is
    a list of one). A path that holds no list is a :class:`LookupError` naming it."""
    out: list[list[Record]] = []
    for path in [records] if isinstance(records, str) else records:
        match dig(answer, path):
            case list() as found:
                out.append(found)
            case dict() as one:
                out.append([one])
            case _:
                raise LookupError(path or "the top")
    return out


class OffsetPager:
    """Several record lists share the offset: it moves by the longest list of a page, and the
    listing ends at the largest of their totals."""

    def __init__(self, spec: OffsetPaging, records: str | list[str] = "", **_: Any) -> None:
        self.spec, self.offset, self.short = spec, 0, _ShortPage()
        self.records = records

    def first(self, call: Call, size: int) -> None:
        _set(self.spec, call, self.spec.offset_param, 0)
        _set(self.spec, call, self.spec.limit_param, size)

    def _total(self, answer: Any) -> int | None:
        paths = self.spec.total_path
        found = [dig(answer, p) for p in ([paths] if isinstance(paths, str) else paths or [])]
        totals = [t for t in found if isinstance(t, int) and not isinstance(t, bool)]
        if totals and len(totals) == len(found):
            return max(totals)
        return None  # not stated (or not everywhere): the short-page rule ends the listing

    def next(self, call: Call, size: int, answer: Any, response: httpx.Response,
             page: list[Record]) -> bool:
        moved = len(page) if isinstance(self.records, str) else max(
            map(len, record_lists(answer, self.records)))
        total = self._total(answer)
        if total is not None:
            if not page or self.offset + moved >= total:
                return False
        elif self.short.last(moved, size):
            return False
        self.offset += moved  # by what came, not what was asked: a capped page is fine
        _set(self.spec, call, self.spec.offset_param, self.offset)
        return True


class PageNumberPager:
    def __init__(self, spec: PagePaging, **_: Any) -> None:
        self.spec, self.page, self.short = spec, spec.first_page, _ShortPage()

    def first(self, call: Call, size: int) -> None:
        _set(self.spec, call, self.spec.page_param, self.page)
        if self.spec.size_param:
            _set(self.spec, call, self.spec.size_param, size)

    def next(self, call: Call, size: int, answer: Any, response: httpx.Response,
             page: list[Record]) -> bool:
        if not page:
            return False
        if self.spec.total_pages_path is not None:
            total = dig(answer, self.spec.total_pages_path)
            if self.page - self.spec.first_page + 1 >= int(total or 1):
                return False
        elif self.short.last(len(page), size):
            return False
        self.page += 1
        _set(self.spec, call, self.spec.page_param, self.page)
        return True


class KeysetPager:
    """Ordered by (updated-at, key) (or by key alone, when ``clause`` names no
    ``{last_updated}``): the next page starts after the last record's position, so a record
    updated while we read moves to the end instead of shifting pages, and any number of records
    sharing one timestamp page correctly. The clause joins the listing's own filter clauses."""

    def __init__(self, spec: KeysetPaging, *,
                 position: Callable[[Record], tuple[str | None, str]], **_: Any) -> None:
        self.spec, self.position, self.short = spec, position, _ShortPage()
        self.base: list[str] = []

    def first(self, call: Call, size: int) -> None:
        self.base = list(call.filters.get(self.spec.param, []))
        call.joins.setdefault(self.spec.param, self.spec.join)
        if self.spec.size_param:
            call.params[self.spec.size_param] = size

    def next(self, call: Call, size: int, answer: Any, response: httpx.Response,
             page: list[Record]) -> bool:
        if self.short.last(len(page), size):
            return False
        by_time = "{last_updated}" in self.spec.clause
        for record in reversed(page):  # undated records after it are read again (quarantined)
            updated, key = self.position(record)
            if self.spec.key:
                key = str(dig(record, self.spec.key))
            if updated is not None or not by_time:
                break
        else:
            raise SystemUnavailable("paging", "no record of a page has a usable updated-at; "
                                    "cannot page past it")
        if self.spec.key_pattern is not None and not re.fullmatch(self.spec.key_pattern, key):
            # never pasted into a filter: a record the system should not have sent
            raise ValueError(f"a record's key {key!r} does not match {self.spec.key_pattern!r}")
        clause = self.spec.clause.format(last_updated=updated, last_key=key)
        call.filters[self.spec.param] = [*self.base, clause]
        return True


class _TokenPager:
    """A pager whose first request only asks for a page size; the answer says what comes next
    (a cursor, a link)."""

    def __init__(self, spec: CursorPaging | NextLinkPaging, **_: Any) -> None:
        self.spec = spec

    def first(self, call: Call, size: int) -> None:
        if self.spec.size_param:
            _set(self.spec, call, self.spec.size_param, size)


class CursorPager(_TokenPager):
    spec: CursorPaging

    def next(self, call: Call, size: int, answer: Any, response: httpx.Response,
             page: list[Record]) -> bool:
        cursor = dig(answer, self.spec.cursor_path)
        if not page or cursor in (None, ""):
            return False
        _set(self.spec, call, self.spec.cursor_param, cursor)
        return True


class NextLinkPager(_TokenPager):
    spec: NextLinkPaging

    def next(self, call: Call, size: int, answer: Any, response: httpx.Response,
             page: list[Record]) -> bool:
        link = dig(answer, self.spec.next_path)
        if not page or not link:
            return False
        url = httpx.URL(str(link))
        call.path = url.path if url.is_absolute_url else str(link).split("?")[0]
        call.params = dict(url.params)
        return True


class RangePager:
    def __init__(self, spec: RangePaging, **_: Any) -> None:
        self.spec, self.start, self.short = spec, 0, _ShortPage()

    def first(self, call: Call, size: int) -> None:
        call.headers["Range"] = f"{self.spec.unit}=0-{size - 1}"

    def next(self, call: Call, size: int, answer: Any, response: httpx.Response,
             page: list[Record]) -> bool:
        self.start += len(page)
        total = re.search(r"/(\d+)\s*$", response.headers.get("Content-Range", ""))
        if (total and self.start >= int(total.group(1))) or (
                not total and self.short.last(len(page), size)):
            return False
        call.headers["Range"] = f"{self.spec.unit}={self.start}-{self.start + size - 1}"
        return True


class OnePage:
    def __init__(self, spec: NoPaging, **_: Any) -> None:
        pass

    def first(self, call: Call, size: int) -> None:
        pass

    def next(self, call: Call, size: int, answer: Any, response: httpx.Response,
             page: list[Record]) -> bool:
        return False


#: Paginators by ``type``.
PAGINATORS: dict[str, Callable[..., Pager]] = {
    "offset": OffsetPager, "page_number": PageNumberPager, "keyset": KeysetPager,
    "cursor": CursorPager, "next_link": NextLinkPager, "range": RangePager, "none": OnePage,
}


def fingerprint(call: Call) -> str:
    """What makes a request that request (for the repeated-cursor guard)."""
    return json.dumps([call.method, call.path, call.params, call.filters, call.body,
                       call.headers.get("Range")], sort_keys=True, default=str)
