"""The changed-since window of a listing as a spec describes it (:class:`ListSpec`): the values
its templates send, the edges its answer is trimmed to, and the order records are yielded in."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from etl.connectors.auth import Call
from etl.connectors.base import Record
from etl.connectors.spec import ListSpec
from etl.connectors.templates import ceil_to, dig, fill, floor_to, put
from etl.watermark import Window


@dataclass(frozen=True)
class Edges:
    """``values``: ``since``/``until`` as the templates send them; ``lo``/``hi``: the window the
    answer is trimmed to (``[lo, hi)``); ``empty``: nothing can have changed in it."""

    values: dict[str, Any]
    lo: datetime | None = None
    hi: datetime | None = None
    empty: bool = False

    def inside(self, at: datetime) -> bool:
        return (self.lo is None or at >= self.lo) and (self.hi is None or at < self.hi)


def edges(ls: ListSpec, window: Window) -> Edges:
    """``widened``: the window at the source's precision (its timestamps are truncated to it);
    ``exact``: the window itself, and empty when no whole step of the source's clock lies in
    it. ``until: inclusive`` sends the last step before the window's end."""
    if ls.changed_since != "filter":
        return Edges({})
    ms = ls.time.precision_ms
    values: dict[str, Any] = {}
    lo = hi = None
    if window.since is not None:
        values["since"] = lo = floor_to(window.since, ms)
    if window.until is not None:
        values["until"] = hi = ceil_to(window.until, ms)
        if ls.until == "inclusive":
            values["until"] = hi - timedelta(milliseconds=ms)
    if ls.edges == "widened":
        return Edges(values, lo, hi)
    empty = window.since is not None and hi is not None and ceil_to(window.since, ms) >= hi
    return Edges(values, window.since, window.until, empty)


def add_window(call: Call, ls: ListSpec, values: dict[str, Any]) -> None:
    """The spec's ``window`` fields, when the window has a start."""
    if ls.window is None or "since" not in values:
        return
    for name, value in fill(ls.window.fields, values, ls.time).items():
        if ls.window.where == "query":
            call.params[name] = value
        else:
            call.body = call.body if isinstance(call.body, dict) else {}
            put(call.body, ".".join(p for p in (ls.window.body_path, name) if p), value)


def _sort_key(at: datetime, key: str) -> tuple[datetime, int, str]:
    return (at, int(key), "") if key.isdigit() else (at, 0, key)


def latest_in_order(records: Iterable[Record], updated_at: Callable[[Record], datetime | None],
                    key_of: Callable[[Record], str], edges: Edges) -> list[Record]:
    """The latest version per key of the records inside the window, by (updated-at, key);
    undated records last (the engine quarantines them)."""
    latest: dict[str, tuple[datetime, Record]] = {}
    undated: list[Record] = []
    for record in records:
        at = updated_at(record)
        if at is None:
            undated.append(record)
        elif edges.inside(at):
            key = key_of(record)
            if key not in latest or latest[key][0] <= at:
                latest[key] = (at, record)
    ordered = [r for k, (at, r) in sorted(latest.items(),
                                          key=lambda kv: _sort_key(kv[1][0], kv[0]))]
    return ordered + undated


__all__ = ["Edges", "add_window", "edges", "latest_in_order"]



def others_only(call: Call, ls: ListSpec, me: str | None, pages: Iterator[list[Record]]
                ) -> Iterator[list[Record]]:
    """The listing without the records whose last updater is ``me`` (ponte's own last
    changes): the ``exclude`` clause joins ``call``'s filter, else they are dropped from the
    pages here. ``me`` None, or no ``last_updater``: the pages as they are."""
    lu = ls.last_updater
    if me is None or lu is None:
        return pages
    if lu.exclude and ls.filter is not None:
        call.filters[ls.filter.param].append(fill(lu.exclude, {"me": me}))
        return pages  # the generator has not sent its first request yet
    return (kept for page in pages if (kept := [r for r in page if str(dig(r, lu.field)) != me]))
