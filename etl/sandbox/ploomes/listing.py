"""Reading collections: ``$filter``, ``$orderby``, ``$top``/``$skip``, ``$select`` and
``$expand`` applied to a table or a lookup list, and the OData envelope of an answer."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from functools import partial
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from etl.sandbox.index import FieldIndex
from etl.sandbox.odata import (
    Filter,
    OrderKey,
    Path,
    nulls_first,
    parse_expand,
    parse_filter,
    parse_orderby,
    parse_select,
    sort_records,
    to_instant,
)
from etl.sandbox.ploomes.schema import (
    DEFAULT_TOP,
    LOOKUPS,
    MAX_TOP,
    NAV,
    PERSON_USER_ID,
    SCHEMA,
    L,
)
from etl.sandbox.ploomes.sim import PloomesSim
from etl.sandbox.ploomes.validation import BadRequest
from etl.sandbox.tables import Row

#: Fields whose value ``$filter`` sees is rendered, not stored as is.
_COMPUTED = frozenset({"Phones", "Products", "OrderNumber", "ContactName", "Amount"})
#: Who created and last changed a record: a seeded record's is a person (rendered so).
_AUDIT = frozenset({"CreatorId", "UpdaterId"})
_DERIVED = _COMPUTED | _AUDIT | {"Id", "LastUpdateDate", "CreateDate"}
#: Fields every record holds as an instant.
_INSTANTS = frozenset({"LastUpdateDate", "CreateDate"})


class _View(Mapping[str, Any]):
    """What ``$filter`` and ``$orderby`` see of one record: timestamps as instants, navigation
    properties resolved on demand."""

    def __init__(self, sim: PloomesSim, table: str, row: Row) -> None:
        self.sim, self.table, self.row = sim, table, row
        self._rendered: dict[str, Any] | None = None

    def __getitem__(self, name: str) -> Any:
        if name == "Id":
            return self.row.id
        if name == "LastUpdateDate":
            return to_instant(self.row.updated)
        if name == "CreateDate":
            return to_instant(self.row.created)
        nav = NAV[self.table].get(name)
        if nav is not None:
            return self.sim.navigate(self.table, name, self.row.data.get(nav[0]))
        if name in _AUDIT:
            return self.row.data.get(name) or PERSON_USER_ID
        if name in _COMPUTED:
            if self._rendered is None:
                self._rendered = self.sim.render(self.table, self.row)
            return self._rendered.get(name)
        return self.row.data.get(name)

    def __iter__(self) -> Iterator[str]:
        return iter(("Id", *SCHEMA[self.table], "CreateDate", "LastUpdateDate"))

    def __len__(self) -> int:
        return len(SCHEMA[self.table]) + 3


def _path_value(item: Mapping[str, Any], path: Path) -> Any:
    value: Any = item
    for name in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(name)
    return value



def envelope(request: Request, collection: str, records: list[dict[str, Any]],
              **extra: Any) -> JSONResponse:
    base = str(request.base_url).rstrip("/")
    return JSONResponse({"@odata.context": f"{base}/$metadata#{collection}", "value": records,
                         **extra})


def _int_option(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    if not raw.strip().isdigit():
        raise BadRequest(f"{name} must be a non-negative integer, got {raw!r}")
    return int(raw)



class Listing:
    """The read side of the vendor routes of one simulator."""

    def __init__(self, sim: PloomesSim) -> None:
        self.sim = sim

    def _projection(self, request: Request, table: str) -> tuple[list[str] | None, list[str]]:
        fields = {"Id", *SCHEMA[table], "CreateDate", "LastUpdateDate"}
        select = None
        if "$select" in request.query_params:
            select = parse_select(request.query_params["$select"])
            unknown = [s for s in select if s not in fields]
            if unknown:
                raise BadRequest(f"$select: unknown field(s) {unknown} on {table}")
        expand: list[str] = []
        if "$expand" in request.query_params:
            for name in parse_expand(request.query_params["$expand"]):
                if name in NAV[table]:
                    expand.append(name)
                elif SCHEMA[table].get(name) != L:
                    raise BadRequest(f"$expand: '{name}' is not a navigation property of {table}; "
                                     f"valid: {sorted([*NAV[table], *_lists(table)])}")
        return select, expand

    def shape(self, request: Request, table: str, row: Row,
              projection: tuple[list[str] | None, list[str]] | None = None) -> dict[str, Any]:
        select, expand = projection or self._projection(request, table)
        full = self.sim.render(table, row)
        out = {k: full.get(k) for k in select} if select is not None else full
        for nav in expand:
            out[nav] = self.sim.navigate(table, nav, row.data.get(NAV[table][nav][0]))
        return out

    def list_table(self, request: Request, collection: str, table: str) -> Response:
        projection = self._projection(request, table)
        fields = {"Id", *SCHEMA[table], "CreateDate", "LastUpdateDate", *NAV[table]}
        flt, keys = _filter_and_order(request, fields, table)
        with self.sim.db.lock:
            rows: Iterable[Row] | None = self._narrowed(table, flt)
            if rows is None and keys == _BY_CHANGE:
                rows = self._by_change(table, flt)
            else:
                rows = self._candidates(table, flt) if rows is None else rows
                if keys:
                    rows = sort_records(list(rows), keys, self._row_key(table))
            views = (_View(self.sim, table, row) for row in rows)
            page, extra = self._page(request, views, flt)
            records = [self.shape(request, table, v.row, projection) for v in page]
        return envelope(request, collection, records, **extra)

    def _narrowed(self, table: str, flt: Filter | None) -> list[Row] | None:
        """The only rows that can match ``$filter`` (or raise), in id order, when the ids it
        names or an index of a field it compares say so; None when any row can."""
        rows = self.sim.db[table]
        if flt is not None and (wanted := flt.key_set("Id")) is not None:
            found = (rows.get(i) for i in sorted(wanted) if isinstance(i, int))
            return [r for r in found if r is not None]
        if flt is not None and (ids := flt.candidates(
                partial(self._index, table), every=lambda: set(rows.rows),
                instants=_INSTANTS)) is not None:
            found = (rows.get(i) for i in sorted(ids))
            # from the earliest LastUpdateDate the filter allows, as a scan reads them: a row
            # the window excludes is never compared (a scan would not raise on it either)
            since = flt.lower_bound("LastUpdateDate")
            return [r for r in found if r is not None and (since is None or r.updated >= since)]
        return None

    def _candidates(self, table: str, flt: Filter | None) -> list[Row]:
        """Every row that may match ``$filter``, in id order: from the earliest LastUpdateDate
        the filter allows."""
        out = sorted(self.sim.db[table], key=_by_id)
        if flt is not None and (since := flt.lower_bound("LastUpdateDate")) is not None:
            out = [r for r in out if r.updated >= since]
        return out

    def _by_change(self, table: str, flt: Filter | None) -> Iterator[Row]:
        """Rows in ``LastUpdateDate,Id`` order (the keyset listing of every client), from the
        earliest LastUpdateDate the filter allows: the table's order is cached between writes,
        so a page costs a binary search and the rows it reads, not a sort of the table."""
        ordered = self.sim.db[table].ordered("LastUpdateDate,Id", _change_key)
        start = 0
        if flt is not None and (since := flt.lower_bound("LastUpdateDate")) is not None:
            # ``since`` is whole milliseconds: updated >= since iff its millisecond is
            start = bisect_left(ordered, since, key=lambda row: _change_key(row)[0])
        return (ordered[i] for i in range(start, len(ordered)))

    def _index(self, table: str, name: str) -> FieldIndex | None:
        """The equality index of ``name`` if ``$filter`` sees that field as stored (the audit
        fields: a person's where none is stored, as :class:`_View` reads them)."""
        if name in _AUDIT and name in SCHEMA[table]:
            return self.sim.db[table].index(name, default=PERSON_USER_ID)
        if name in _DERIVED or name in NAV[table] or name not in SCHEMA[table]:
            return None
        return self.sim.db[table].index(name)

    def _row_key(self, table: str) -> Callable[[Path], Callable[[Row], Any]]:
        """Sort keys straight from the row where possible (the hot path of every listing)."""
        computed = _COMPUTED | _AUDIT

        def key_for(path: Path) -> Callable[[Row], Any]:
            name = path[0]
            if len(path) == 1 and name == "Id":
                return _by_id
            if len(path) == 1 and name in ("LastUpdateDate", "CreateDate"):
                attr = "updated" if name == "LastUpdateDate" else "created"

                def instant(row: Row) -> datetime:
                    return _millisecond(getattr(row, attr))

                return instant
            if len(path) == 1 and name not in NAV[table] and name not in computed:
                return nulls_first(lambda row: row.data.get(name))
            return nulls_first(lambda row: _path_value(_View(self.sim, table, row), path))

        return key_for

    def list_lookup(self, request: Request, collection: str) -> Response:
        items = LOOKUPS[collection]
        fields = set().union(*(x.keys() for x in items))
        flt, keys = _filter_and_order(request, fields, collection)
        if keys:
            items = sort_records(items, keys, _lookup_key)
        page, extra = self._page(request, iter(items), flt)
        select = parse_select(request.query_params.get("$select", ""))
        records = [{k: x.get(k) for k in select} if select else dict(x) for x in page]
        return envelope(request, collection, records, **extra)

    def _page(self, request: Request, items: Iterator[Any],
              flt: Filter | None) -> tuple[list[Any], dict[str, Any]]:
        """Apply $filter lazily, then $skip and $top; returns the page and any nextLink."""
        skip = _int_option(request, "$skip") or 0
        top = _int_option(request, "$top")
        cap = self.sim.faults.page_cap or MAX_TOP
        size = min(DEFAULT_TOP if top is None else top, cap)
        matched: list[Any] = []
        for item in items:  # stop once the page, and whether more follow, is known
            if flt is None or flt.matches(item):
                matched.append(item)
                if len(matched) > skip + size:
                    break
        page = matched[skip:skip + size]
        extra: dict[str, Any] = {}
        if self.sim.faults.next_link and size and len(page) == size and len(matched) > skip + size:
            extra["@odata.nextLink"] = str(request.url.include_query_params(
                **{"$skip": str(skip + size), "$top": str(size)}))
        return page, extra



def _by_id(row: Row) -> int:
    return row.id


def _millisecond(t: datetime) -> datetime:
    return t.replace(microsecond=t.microsecond - t.microsecond % 1000)


def _change_key(row: Row) -> tuple[datetime, int]:
    """``$orderby=LastUpdateDate,Id`` of one row (the instant as the filter sees it)."""
    return _millisecond(row.updated), row.id


_BY_CHANGE = [OrderKey(("LastUpdateDate",)), OrderKey(("Id",))]


def _lookup_key(path: Path) -> Callable[[Mapping[str, Any]], Any]:
    return nulls_first(lambda item: _path_value(item, path))


def _filter_and_order(request: Request, fields: set[str],
                      name: str) -> tuple[Filter | None, list[OrderKey]]:
    params = request.query_params
    flt = parse_filter(params["$filter"]) if "$filter" in params else None
    if flt is not None:
        unknown = sorted({p[0] for p in flt.paths()} - fields)
        if unknown:
            raise BadRequest(f"$filter: unknown field(s) {unknown} on {name}")
    keys: list[OrderKey] = []
    if "$orderby" in params:
        keys = parse_orderby(params["$orderby"])
        unknown = sorted({k.path[0] for k in keys} - fields)
        if unknown:
            raise BadRequest(f"$orderby: unknown field(s) {unknown} on {name}")
    return flt, keys


def _lists(table: str) -> list[str]:
    return [n for n, k in SCHEMA[table].items() if k == L]
