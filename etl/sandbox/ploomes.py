"""A faithful simulator of the Ploomes CRM API (reference Part A, checklist Part D).

OData-style REST: ``User-Key`` header auth; collections ``/Contacts``, ``/Products``,
``/Deals``, ``/Orders``, ``/Users``, ``/Cities``, ``/States`` (also served at the vendor's own
``/Cities@Countries@States``), lookups ``/Contacts@Status``, ``/Contacts@Types``,
``/Orders@Stages``, ``/Deals@Status``, the field metadata ``/Fields`` (a few seeded custom
fields, ``Dynamic eq true``), and ``/Self``. Lists take ``$filter``, ``$orderby``,
``$top``, ``$skip``, ``$select`` and ``$expand`` and answer
``{"@odata.context": ..., "value": [...]}``; ``/X(id)`` takes GET, PATCH and DELETE; POST to a
collection creates. POST, PATCH and GET-by-id answer the same envelope with one record.

Records are stored natively (``Table.data`` without ``Id`` / ``CreateDate`` /
``LastUpdateDate``); :meth:`PloomesSim.render` adds those, formatted
``YYYY-MM-DDTHH:MM:SS.fff-03:00`` from the aware-UTC row timestamps.

Unconfirmed vendor behaviour ([U] in the reference) is a knob, default first:

* ``$top`` above the cap is silently capped at :data:`MAX_TOP` (300), or at ``Faults.page_cap``;
  ``$top`` omitted serves :data:`DEFAULT_TOP` (300) records.
* ``@odata.nextLink`` on full pages: ``Faults.next_link`` (off).
* 429 carries ``Retry-After`` (seconds): ``PloomesSim.retry_after_header`` (on).
* Error bodies are ``{"error": {"code": ..., "message": ...}}``; the 429 body is free-form.
* Datetime literals without an offset are read as Brasília time.
* A contact's ``Register``, ``CNPJ`` and ``CPF`` carry one document: a write of any of them (or
  of ``TypeId``) sets ``Register`` and, by ``TypeId``, ``CNPJ`` (1) or ``CPF`` (2) to its digits
  and clears the other: ``Faults.tax_id_in_step`` (on). Off, each field keeps what was written.

Fault knobs (``core.Faults``) apply to vendor routes only, never to ``/_sandbox``. A dropped
connection sends the response head and then aborts: uvicorn closes the socket (the client
sees a protocol error), and Starlette's ``TestClient`` raises :class:`DroppedConnection`, an
``httpx.RemoteProtocolError``. A dropped read is not processed; a dropped write *is* applied
before the connection drops (the answer is lost, the hard case for a client). Dropped requests
are counted with status 0.
"""

from __future__ import annotations

import asyncio
import copy
import math
import re
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from etl.sandbox import geo
from etl.sandbox.admin import admin_routes
from etl.sandbox.core import BRT, Row, Simulator
from etl.sandbox.odata import (
    Filter,
    FilterError,
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
from etl.settings import SANDBOX_USER_KEY

MAX_TOP = 300  # largest page served; larger $top is silently capped [U]
DEFAULT_TOP = 300  # page size when $top is omitted [U]

S, I, N, B, L, D = "string", "integer", "number", "boolean", "list", "datetime"

#: Native fields per table and their types (reference A6).
SCHEMA: dict[str, dict[str, str]] = {
    "Contacts": {
        "TypeId": I, "Name": S, "LegalName": S, "Register": S, "CNPJ": S, "CPF": S,
        "IdentityDocument": S, "Email": S, "Website": S, "Phones": L, "StreetAddress": S,
        "StreetAddressNumber": S, "StreetAddressLine2": S, "Neighborhood": S, "ZipCode": I,
        "ForeignZipCode": S, "CityId": I, "StateId": I, "CountryId": I, "CompanyId": I,
        "OwnerId": I, "StatusId": I, "OriginId": I, "LineOfBusinessId": I, "CNAECode": S,
        "CNAEName": S, "Note": S, "Birthday": S, "Key": S, "Tags": L, "OtherProperties": L,
    },
    "Products": {
        "Name": S, "Code": S, "MeasurementUnit": S, "UnitPrice": N, "CurrencyId": I,
        "FamilyId": I, "GroupId": I, "ImageUrl": S, "Suspended": B, "OtherProperties": L,
    },
    "Deals": {
        "Title": S, "ContactId": I, "ContactName": S, "PersonId": I, "PipelineId": I,
        "StageId": I, "StatusId": I, "Amount": N, "CurrencyId": I, "OwnerId": I,
        "StartDate": D, "FinishDate": D, "DealNumber": S, "OtherProperties": L,
    },
    "Orders": {
        "OrderNumber": I, "Date": D, "ContactId": I, "ContactName": S, "PersonId": I,
        "DealId": I, "StageId": I, "Amount": N, "Discount": N, "OwnerId": I, "TemplateId": I,
        "Description": S, "Key": S, "OriginQuoteId": I, "Products": L, "OtherProperties": L,
    },
    "Users": {"Name": S, "Email": S},
    "Cities": {"Name": S, "IBGECode": I, "StateId": I, "CountryId": I},
    "States": {"Name": S, "Short": S, "CountryId": I},
}
WRITABLE = {"Contacts", "Products", "Deals", "Orders"}
REQUIRED = {"Contacts": ("Name",), "Products": ("Name",), "Deals": ("Title",),
            "Orders": ("ContactId",)}
READ_ONLY = {"Id", "CreateDate", "LastUpdateDate"}

#: Small fixed lookup lists served as collections.
LOOKUPS: dict[str, list[dict[str, Any]]] = {
    "Contacts@Status": [{"Id": 1, "Name": "Ativo"}, {"Id": 2, "Name": "Inativo"}],
    "Contacts@Types": [{"Id": 1, "Name": "Empresa"}, {"Id": 2, "Name": "Pessoa"}],
    "Orders@Stages": [
        {"Id": 1, "Name": "Em aberto", "Ordination": 1},
        {"Id": 2, "Name": "Aprovada", "Ordination": 2},
        {"Id": 3, "Name": "Faturada", "Ordination": 3},
        {"Id": 4, "Name": "Cancelada", "Ordination": 4},
    ],
    "Deals@Status": [{"Id": 1, "Name": "Em aberto"}, {"Id": 2, "Name": "Ganho"},
                     {"Id": 3, "Name": "Perdido"}],
    # field metadata (reference A2): standard fields (Dynamic false) and the account's custom
    # fields (Dynamic true), whose values records carry in OtherProperties by FieldKey
    "Fields": [
        {"Id": 1, "EntityId": 1, "Name": "Nome", "Key": "contact_name", "TypeId": 1,
         "Dynamic": False},
        {"Id": 2, "EntityId": 1, "Name": "E-mail", "Key": "contact_email", "TypeId": 1,
         "Dynamic": False},
        {"Id": 101, "EntityId": 1, "Name": "Código no ERP",
         "Key": "contact_5E1A0C7B-3D2F-4A8B-9C61-2F7D0B9E4A13", "TypeId": 1, "Dynamic": True},
        {"Id": 102, "EntityId": 1, "Name": "Segmento",
         "Key": "contact_9F0D4B61-7A2E-4C35-8E1B-6D3A5C2F7E90", "TypeId": 1, "Dynamic": True},
        {"Id": 201, "EntityId": 4, "Name": "Pedido do cliente",
         "Key": "order_2C7E9A14-5B6D-4F08-A3E2-8D1C4B7F6A25", "TypeId": 1, "Dynamic": True},
    ],
}

#: Contact fields that carry one document, and which of CNPJ / CPF goes with each TypeId [U].
DOCUMENT_FIELDS = ("Register", "CNPJ", "CPF")
DOCUMENT_BY_TYPE = {1: "CNPJ", 2: "CPF"}

_PERSON = ("Id", "Name", "Email")
#: Navigation properties: name -> (foreign key field, target table or lookup, fields shown).
NAV: dict[str, dict[str, tuple[str, str, tuple[str, ...] | None]]] = {
    "Contacts": {
        "City": ("CityId", "Cities", ("Id", "Name", "IBGECode", "StateId")),
        "State": ("StateId", "States", ("Id", "Name", "Short")),
        "Owner": ("OwnerId", "Users", _PERSON),
        "Status": ("StatusId", "Contacts@Status", None),
        "Type": ("TypeId", "Contacts@Types", None),
        "Company": ("CompanyId", "Contacts", ("Id", "Name", "LegalName", "Register")),
    },
    "Orders": {
        "Contact": ("ContactId", "Contacts", ("Id", "Name", "LegalName", "Register")),
        "Owner": ("OwnerId", "Users", _PERSON),
        "Stage": ("StageId", "Orders@Stages", None),
        "Deal": ("DealId", "Deals", ("Id", "Title")),
    },
    "Deals": {
        "Contact": ("ContactId", "Contacts", ("Id", "Name", "LegalName", "Register")),
        "Owner": ("OwnerId", "Users", _PERSON),
        "Status": ("StatusId", "Deals@Status", None),
    },
    "Products": {},
    "Users": {},
    "Cities": {"State": ("StateId", "States", ("Id", "Name", "Short"))},
    "States": {},
}
ALIASES = {"Cities@Countries@States": "States"}

USERS = [
    {"Name": "Ana Souza", "Email": "ana.souza@example.com.br"},
    {"Name": "Integração ponte", "Email": "integracao@example.com.br"},
]
INTEGRATION_USER_ID = 2

_PATH = re.compile(r"^/(?P<coll>[A-Za-z]+(?:@[A-Za-z]+)*)(?:\((?P<id>[^)]*)\))?/?$")


def format_instant(value: datetime) -> str:
    """``2024-01-15T18:15:01.727-03:00``: Brasília offset, milliseconds (rounded down)."""
    return value.astimezone(BRT).isoformat(timespec="milliseconds")


class BadRequest(Exception):
    def __init__(self, message: str, *, status: int = 400, code: str = "BadRequest") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class DroppedConnection(httpx.RemoteProtocolError):
    """Raised by the app to drop a connection (the ``drop_rate`` fault)."""


class _DropResponse(Response):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", b"1024")]})
        raise DroppedConnection("the sandbox dropped the connection (drop_rate fault)")


class PloomesSim(Simulator):
    """State of one simulated Ploomes account."""

    tables = ["Contacts", "Products", "Deals", "Orders", "Users", "Cities", "States"]  # noqa: RUF012
    retry_after_header = True

    def __init__(self, *, user_key: str = SANDBOX_USER_KEY, rpm: int = 120,
                 db_path: str | None = None, seed: int = 0) -> None:
        super().__init__(rpm=rpm, db_path=db_path, seed=seed)
        self.user_key = user_key
        self._populate_reference()

    def _populate_reference(self) -> None:
        with self.db.lock:
            at = self.clock.now()
            if not len(self.db["States"]):
                for short, name in geo.STATES:
                    self.db["States"].insert({"Name": name, "Short": short, "CountryId": 76}, at)
            if not len(self.db["Cities"]):
                state_ids = {r.data["Short"]: r.id for r in self.db["States"]}
                for city in geo.CITIES:
                    self.db["Cities"].insert({"Name": city.name, "IBGECode": int(city.ibge),
                                              "StateId": state_ids[city.uf], "CountryId": 76}, at)
            if not len(self.db["Users"]):
                for user in USERS:
                    self.db["Users"].insert(dict(user), at)

    def reset(self) -> None:
        super().reset()
        self._populate_reference()

    # --- contacts' documents ------------------------------------------------------------------

    def in_step(self, table: str, current: dict[str, Any], changes: dict[str, Any]
                ) -> dict[str, Any]:
        """``changes`` to a record holding ``current``, with ``Register``/``CNPJ``/``CPF`` kept
        in step by ``TypeId`` when the ``tax_id_in_step`` knob is on (the fields written win,
        in that order; clearing them clears the document)."""
        if table != "Contacts" or not self.faults.tax_id_in_step:
            return changes
        touched = [f for f in DOCUMENT_FIELDS if f in changes]
        if not touched and "TypeId" not in changes:
            return changes
        merged = {**current, **changes}
        source = touched or list(DOCUMENT_FIELDS)
        doc = next((str(merged[f]) for f in source if str(merged.get(f) or "").strip()), None)
        chosen = DOCUMENT_BY_TYPE.get(merged.get("TypeId"))
        if doc is None and ("Register" not in touched and chosen not in touched):
            return changes  # no document, or only the field of the other type was cleared
        digits = re.sub(r"\D", "", doc) if doc is not None else None
        out = {**changes, "Register": digits or None}
        if chosen is not None:
            for name in DOCUMENT_BY_TYPE.values():
                out[name] = (digits or None) if name == chosen else None
        return out

    def ui_create(self, table: str, data: dict[str, Any]) -> Row:
        return super().ui_create(table, self.in_step(table, {}, dict(data)))

    def ui_update(self, table: str, rid: int, changes: dict[str, Any]) -> Row:
        with self.db.lock:
            row = self.db[table].get(rid)
            current = row.data if row is not None else {}
            return super().ui_update(table, rid, self.in_step(table, current, dict(changes)))

    # --- rendering ----------------------------------------------------------------------------

    def render(self, table: str, row: Row) -> dict[str, Any]:
        data = row.data
        out: dict[str, Any] = {"Id": row.id}
        for name, kind in SCHEMA.get(table, {}).items():
            out[name] = [] if kind == L else None
        out.update(copy.deepcopy(data))
        if table == "Contacts":
            out["Phones"] = [
                {**p, "Id": p.get("Id") or row.id * 100 + i + 1, "ContactId": row.id}
                for i, p in enumerate(out.get("Phones") or [])
            ]
        elif table == "Orders":
            lines = []
            for i, line in enumerate(out.get("Products") or []):
                line = {**line, "Id": line.get("Id") or row.id * 1000 + i + 1, "OrderId": row.id}
                if line.get("ProductName") is None:
                    line["ProductName"] = self._field("Products", line.get("ProductId"), "Name")
                if line.get("Total") is None:
                    qty, price = line.get("Quantity") or 0, line.get("UnitPrice") or 0
                    line["Total"] = round(qty * price * (1 - (line.get("Discount") or 0) / 100), 2)
                lines.append(line)
            out["Products"] = lines
            if out.get("OrderNumber") is None:
                out["OrderNumber"] = row.id
            if out.get("Amount") is None:
                out["Amount"] = round(sum(x["Total"] for x in lines) - (out.get("Discount") or 0), 2)
        if table in ("Orders", "Deals") and out.get("ContactName") is None:
            out["ContactName"] = self._field("Contacts", out.get("ContactId"), "Name")
        out["CreateDate"] = format_instant(row.created)
        out["LastUpdateDate"] = format_instant(row.updated)
        out.update(out.pop("_raw", None) or {})  # admin-stored malformed fields, sent verbatim
        return out

    def _field(self, table: str, rid: Any, name: str) -> Any:
        row = self.db[table].get(rid) if isinstance(rid, int) else None
        return row.data.get(name) if row else None

    def navigate(self, table: str, nav: str, fk_value: Any) -> dict[str, Any] | None:
        """The expanded navigation ``nav`` of a ``table`` record whose key field holds
        ``fk_value`` (None when unset or dangling)."""
        _, target, shown = NAV[table][nav]
        if fk_value is None:
            return None
        if target in LOOKUPS:
            return next((dict(x) for x in LOOKUPS[target] if x["Id"] == fk_value), None)
        row = self.db[target].get(fk_value) if isinstance(fk_value, int) else None
        if row is None:
            return None
        full = self.render(target, row)
        return {k: full.get(k) for k in shown} if shown else full

    # --- validation of writes -----------------------------------------------------------------

    def validate(self, table: str, body: Any, *, partial: bool) -> dict[str, Any]:
        """Native fields of a POST/PATCH body, type-checked; raises :class:`BadRequest`."""
        if not isinstance(body, dict):
            raise BadRequest("the body must be a JSON object")
        schema = SCHEMA[table]
        out: dict[str, Any] = {}
        for name, value in body.items():
            if name in READ_ONLY:
                continue
            if name in NAV[table]:
                fk = NAV[table][name][0]
                raise BadRequest(f"navigation property '{name}' cannot be written; send '{fk}'")
            if name not in schema:
                raise BadRequest(f"The property '{name}' does not exist on type "
                                 f"'{table}'. Make sure to only use property names that are "
                                 "defined by the type.")
            out[name] = _coerce(table, name, schema[name], value)
        if not partial:
            for name in REQUIRED.get(table, ()):
                if out.get(name) in (None, ""):
                    raise BadRequest(f"{table}: field '{name}' is required")
        for name, (fk, target, _) in NAV[table].items():
            value = out.get(fk)
            if value is None:
                continue
            known = (any(x["Id"] == value for x in LOOKUPS[target]) if target in LOOKUPS
                     else self.db[target].get(value) is not None)
            if not known:
                raise BadRequest(f"{table}: {fk} {value} does not exist ({name})")
        if table == "Orders":
            for line in out.get("Products") or []:
                pid = line.get("ProductId")
                if not isinstance(pid, int) or self.db["Products"].get(pid) is None:
                    raise BadRequest(f"Orders: product line ProductId {pid!r} does not exist")
        return out


def _coerce(table: str, name: str, kind: str, value: Any) -> Any:
    if value is None:
        return None
    bad = BadRequest(f"{table}: field '{name}' must be {kind}, got {value!r}")
    if kind == I:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and value.strip().isdigit():
            return int(value)
        raise bad
    if kind == N:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, int | float):
            return value
        try:
            return float(value)
        except (TypeError, ValueError):
            raise bad from None
    if kind == S:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise bad
        return str(value)
    if kind == B:
        if not isinstance(value, bool):
            raise bad
        return value
    if kind == L:
        if not isinstance(value, list) or not all(isinstance(x, dict) for x in value):
            raise BadRequest(f"{table}: field '{name}' must be a list of objects")
        return copy.deepcopy(value)
    if kind == D:
        try:
            return to_instant(value).astimezone(BRT).isoformat(timespec="seconds")
        except (FilterError, TypeError):
            raise bad from None
    raise bad


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
        if name in ("Phones", "Products", "OrderNumber", "ContactName", "Amount"):
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


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def _envelope(request: Request, collection: str, records: list[dict[str, Any]],
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


class _Api:
    """The vendor routes of one simulator."""

    def __init__(self, sim: PloomesSim) -> None:
        self.sim = sim

    async def endpoint(self, request: Request) -> Response:
        match = _PATH.match(request.url.path)
        collection = match["coll"] if match else request.url.path.lstrip("/")
        endpoint = f"{request.method} /{collection}"
        try:
            response = await self.handle(request, match)
        except BadRequest as exc:
            response = _error(exc.status, exc.code, str(exc))
        except FilterError as exc:
            response = _error(400, "BadRequest", str(exc))
        self.sim.requests.record(endpoint, 0 if isinstance(response, _DropResponse)
                                 else response.status_code)
        return response

    async def handle(self, request: Request, match: re.Match[str] | None) -> Response:
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
        if faults.latency_ms:
            await asyncio.sleep(faults.latency_ms / 1000)
        drop = bool(faults.drop_rate) and sim.rng.random() < faults.drop_rate
        if drop and request.method == "GET":
            return _DropResponse()
        if faults.error_rate and sim.rng.random() < faults.error_rate:
            return _error(500, "InternalServerError", "An error has occurred.")
        if faults.timeout_rate and sim.rng.random() < faults.timeout_rate:
            await asyncio.sleep(faults.timeout_s)
        if match is None:
            raise BadRequest(f"no resource at {request.url.path}", status=404, code="NotFound")
        response = await self.dispatch(request, match["coll"], match["id"])
        return _DropResponse() if drop else response

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
            return _envelope(request, "Self", records)
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
                    data = self.sim.in_step(table, {}, self.sim.validate(table, body,
                                                                         partial=False))
                    row = self.sim.db[table].insert(data, self.sim.write_instant())
                    return _envelope(request, collection, [self.shape(request, table, row)])
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
                return _envelope(request, collection, [self.shape(request, table, row)])
            if method == "PATCH":
                changes = self.sim.in_step(table, row.data,
                                           self.sim.validate(table, body, partial=True))
                row = self.sim.db[table].update(rid, changes, self.sim.write_instant())
                return _envelope(request, collection, [self.shape(request, table, row)])
            if method == "DELETE":
                self.sim.db[table].delete(rid)
                return Response(status_code=200)
        raise BadRequest(f"{method} is not allowed on /{collection}(id)", status=405,
                         code="MethodNotAllowed")

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
            rows = self._candidates(table, flt)
            if keys:
                rows = sort_records(rows, keys, self._row_key(table))
            views = (_View(self.sim, table, row) for row in rows)
            page, extra = self._page(request, views, flt)
            records = [self.shape(request, table, v.row, projection) for v in page]
        return _envelope(request, collection, records, **extra)

    def _candidates(self, table: str, flt: Filter | None) -> list[Row]:
        """Rows that may match ``$filter``, in id order: narrowed by the ids or the earliest
        LastUpdateDate the filter allows (an index, in database terms)."""
        rows = self.sim.db[table]
        if flt is not None and (wanted := flt.key_set("Id")) is not None:
            found = (rows.get(i) for i in sorted(wanted) if isinstance(i, int))
            return [r for r in found if r is not None]
        out = sorted(rows, key=_by_id)
        if flt is not None and (since := flt.lower_bound("LastUpdateDate")) is not None:
            out = [r for r in out if r.updated >= since]
        return out

    def _row_key(self, table: str) -> Callable[[Path], Callable[[Row], Any]]:
        """Sort keys straight from the row where possible (the hot path of every listing)."""
        computed = {"Phones", "Products", "OrderNumber", "ContactName", "Amount"}

        def key_for(path: Path) -> Callable[[Row], Any]:
            name = path[0]
            if len(path) == 1 and name == "Id":
                return _by_id
            if len(path) == 1 and name in ("LastUpdateDate", "CreateDate"):
                attr = "updated" if name == "LastUpdateDate" else "created"

                def instant(row: Row) -> datetime:
                    t: datetime = getattr(row, attr)
                    return t.replace(microsecond=t.microsecond - t.microsecond % 1000)

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
        return _envelope(request, collection, records, **extra)

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
