"""The Omie (ERP) connector: ``geral/clientes``, ``geral/produtos`` and ``produtos/pedido``
through Omie's JSON-over-POST API (reference Part B).

What a response means is decided by its ``faultcode``, not by its HTTP status (Omie sends
almost every fault with 500, some write faults with 200):

* 429, ``SOAP-ENV:Server`` faults, other 5xx without a client faultcode, timeouts and dropped
  connections: transient, retried with backoff by :class:`etl.connectors.http.HttpSession`.
* ``Client-6`` / ``Client-1100`` / ``Client-8020`` (the 60-s "redundant call" rule): not a
  failure; wait the stated seconds and send again.
* ``Client-5113`` on a list: the end of the list (no matches / past the last page).
* Invalid ``app_key``/``app_secret`` and ``MISUSE_API_PROCESS`` (HTTP 425): the whole system
  refuses us -> :class:`SystemUnavailable`.
* Any other client fault on a write (validation, ``Client-102`` duplicate, ``Client-105`` not
  found): that record is rejected (:class:`RecordError`, ``kind="rejected"``); the others go on.

Time: Omie's ``info.dAlt``/``hAlt`` are naive Brasília time at second precision. The
changed-since window ``[since, until)`` (aware UTC) is sent as the inclusive second range
``[floor(since), last whole second before until]`` in Brasília time, with
``filtrar_apenas_alteracao = "S"`` (at inclusion dAlt = dInc, so new records match too, and the
flag keeps the filter working where a bare date window is ignored). The server's list is in id
order, so the window is collected whole, trimmed client-side to the exact window, and yielded
sorted by (updated-at, key).
"""

from __future__ import annotations

import copy
import json
import re
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from loguru import logger

from etl.connectors.base import (
    ApiCalls,
    Capabilities,
    Record,
    RetryStats,
    WriteOp,
    WriteResult,
)
from etl.connectors.hooks.omie import redundant_wait
from etl.connectors.http import HttpSession, RetryPolicy, Verdict, retry_after_seconds
from etl.errors import ConfigError, RecordError, SystemUnavailable
from etl.settings import SideSettings
from etl.watermark import Window

BRT = ZoneInfo("America/Sao_Paulo")
SYSTEM = "erp"
REDUNDANT_CODES = ("SOAP-ENV:Client-6", "SOAP-ENV:Client-1100", "SOAP-ENV:Client-8020")
BUSY_CODES = ("SOAP-ENV:Client-1880",)  # previous request of the method still processing
END_OF_LIST = "SOAP-ENV:Client-5113"
DUPLICATE = "SOAP-ENV:Client-102"
NOT_FOUND = "SOAP-ENV:Client-105"
MISUSE = "MISUSE_API_PROCESS"
MAX_REDUNDANT_WAITS = 4
REDUNDANT_WINDOW_S = 60.0  # Omie refuses an identical call repeated within this many seconds
LOOKUP_CHUNK = 50  # keys per clientesPorCodigo / produtosPorCodigo call
FILTER_CALLS_MAX = 25  # above this many values, find_by scans the list instead


@dataclass(frozen=True)
class Spec:
    """Endpoint facts of one entity."""

    service: str
    list_call: str
    list_key: str
    id_field: str
    int_field: str
    consult: str
    create: str  # inclusion without an integration code
    upsert: str | None  # upsert keyed on the integration code
    alter: str
    by_code: str | None  # the list's "por código" parameter


SPECS: dict[str, Spec] = {
    "customers": Spec("geral/clientes", "ListarClientes", "clientes_cadastro",
                      "codigo_cliente_omie", "codigo_cliente_integracao", "ConsultarCliente",
                      "IncluirCliente", "UpsertCliente", "AlterarCliente", "clientesPorCodigo"),
    "products": Spec("geral/produtos", "ListarProdutos", "produto_servico_cadastro",
                     "codigo_produto", "codigo_produto_integracao", "ConsultarProduto",
                     "IncluirProduto", "UpsertProduto", "AlterarProduto", "produtosPorCodigo"),
    "orders": Spec("produtos/pedido", "ListarPedidos", "pedido_venda_produto", "codigo_pedido",
                   "codigo_pedido_integracao", "ConsultarPedido", "IncluirPedido", None,
                   "AlterarPedidoVenda", None),
}
FIND_FIELDS = {
    "customers": ("cnpj_cpf", "codigo_cliente_integracao"),
    "products": ("codigo", "codigo_produto_integracao"),
    "orders": ("codigo_pedido_integracao",),
}


class OmieFault(Exception):
    """A fault Omie answered with; stays inside this module."""

    def __init__(self, code: str, text: str, status: int) -> None:
        super().__init__(f"{code}: {text}")
        self.code = code
        self.text = text
        self.status = status

    def tag(self) -> str | None:
        """The field the fault names (``tag [x]`` / ``Tag [X]``), if any."""
        m = re.search(r"[Tt]ag \[([^\]]+)\]", self.text)
        if not m:
            return None
        tag = m.group(1)
        return tag.lower() if tag.isupper() else tag


def to_brt(moment: datetime) -> datetime:
    """Aware instant -> naive Brasília, floored to the second."""
    return moment.astimezone(BRT).replace(tzinfo=None, microsecond=0)


def last_second_before(moment: datetime) -> datetime:
    """The last whole second (naive Brasília) strictly before ``moment``."""
    local = moment.astimezone(BRT).replace(tzinfo=None)
    floor = local.replace(microsecond=0)
    return floor - timedelta(seconds=1) if floor == local else floor


def from_brt(day: str, hour: str) -> datetime:
    """``dd/mm/aaaa`` + ``hh:mm:ss`` naive Brasília -> aware UTC."""
    naive = datetime.strptime(f"{day} {hour}", "%d/%m/%Y %H:%M:%S")
    return naive.replace(tzinfo=BRT).astimezone(UTC)


def digits(value: Any) -> str:
    return re.sub(r"\D", "", str(value or ""))


def _key_order(key: str) -> tuple[int, str]:
    return (int(key), "") if key.isdigit() else (0, key)


class OmieConnector:
    """Omie through its public API; see the module docstring for the rules."""

    system = SYSTEM
    kind = "omie"

    def __init__(
        self,
        client: httpx.Client,
        *,
        app_key: str,
        app_secret: str,
        requests_per_minute: int = 240,
        max_concurrency: int = 4,
        page_size: int = 500,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self._app_key = app_key
        self._app_secret = app_secret
        self.page_size = page_size
        self._sleep = sleep
        self._now = now
        self.session = HttpSession(client, system=SYSTEM, requests_per_minute=requests_per_minute,
                                   max_concurrency=max_concurrency, retry=retry, sleep=sleep)
        self._write_lock = threading.Lock()  # Omie: no simultaneous inclusions/alterations
        # answers of read calls, by (service, call, param), kept for Omie's redundant-call
        # window: the same call repeated within it is answered from here instead of being
        # refused by Omie (and costing a 61-s wait); a write to a service forgets its answers
        self._answers: dict[tuple[str, str, str], tuple[float, bytes]] = {}
        self._answers_lock = threading.Lock()
        self._monotonic = monotonic
        self.capabilities = Capabilities(
            page_size=page_size, batch_size=1, requests_per_minute=requests_per_minute,
            max_concurrency=max_concurrency, clock_zone="America/Sao_Paulo",
            clock_precision=timedelta(seconds=1), has_external_id_upsert=True,
            has_changed_since=True,
            updated_at_paths={"customers": "info.dAlt", "products": "info.dAlt",
                              "orders": "infoCadastro.dAlt"},
        )

    @classmethod
    def from_settings(cls, side: str, conf: SideSettings, client: httpx.Client, *,
                      sleep: Callable[[float], None] = time.sleep) -> OmieConnector:
        return cls(client, app_key=conf.credential("app_key"),
                   app_secret=conf.credential("app_secret"),
                   requests_per_minute=conf.requests_per_minute,
                   max_concurrency=conf.max_concurrency, page_size=conf.page_size, sleep=sleep)

    @property
    def calls(self) -> ApiCalls:
        return self.session.calls

    def entities(self) -> set[str]:
        return set(SPECS)

    def close(self) -> None:
        self.client.close()

    # --- record facts ----------------------------------------------------------------------

    def key_of(self, entity: str, record: Record) -> str:
        spec = self._spec(entity)
        holder = record.get("cabecalho", {}) if entity == "orders" else record
        return str(holder[spec.id_field])

    @property
    def stats(self) -> RetryStats:
        return self.session.stats

    def updated_at(self, entity: str, record: Record) -> datetime | None:
        block = "infoCadastro" if entity == "orders" else "info"
        info = record.get(block) or {}
        day, hour = info.get("dAlt") or info.get("dInc"), info.get("hAlt") or info.get("hInc")
        try:
            return from_brt(str(day), str(hour))
        except ValueError:
            return None

    # --- the wire --------------------------------------------------------------------------

    def _classify(self, response: httpx.Response) -> tuple[Verdict, float | None]:
        if response.status_code == 429:
            return "retry", retry_after_seconds(response)
        try:
            body = response.json()
        except ValueError:
            body = None
        code = body.get("faultcode") if isinstance(body, dict) else None
        if isinstance(code, str):
            if code in BUSY_CODES:
                return "retry", None
            if code.startswith("SOAP-ENV:Client") or code == MISUSE:
                return "ok", None  # the caller decides what this fault means
            return "retry", None  # SOAP-ENV:Server and other server-side faults
        if response.status_code >= 500:
            return "retry", retry_after_seconds(response)
        return ("ok" if response.status_code == 200 and isinstance(body, dict) else "fail"), None

    def _call(self, service: str, call: str, param: dict[str, Any], *, kind: str = "read"
              ) -> dict[str, Any]:
        """One API call; returns the JSON object or raises :class:`OmieFault`.

        A read repeated within Omie's redundant-call window is answered with what this
        connector already read (see ``_answers``); a write forgets the service's answers."""
        ident = (service, call, json.dumps(param, sort_keys=True, default=str))
        if kind == "read":
            cached = self._recall(ident)
            if cached is not None:
                return cached
        else:
            self._forget(service)
        try:
            data = self._send(service, call, param, kind=kind)
        finally:
            if kind != "read":
                self._forget(service)  # also what a concurrent read cached meanwhile
        if kind == "read":
            # kept compressed: a listing read whole within the window (a first sync's pages)
            # costs a fraction of its size, not a second copy; a repeat gets its own copy
            blob = zlib.compress(json.dumps(data, separators=(",", ":")).encode(), 1)
            with self._answers_lock:
                self._prune()
                self._answers[ident] = (self._monotonic(), blob)
        return data

    def _recall(self, ident: tuple[str, str, str]) -> dict[str, Any] | None:
        with self._answers_lock:
            self._prune()
            hit = self._answers.get(ident)
        return json.loads(zlib.decompress(hit[1])) if hit is not None else None

    def _prune(self) -> None:
        """Forget answers older than the window: Omie would answer them again (caller holds
        ``_answers_lock``)."""
        now = self._monotonic()
        for old in [k for k, (at, _) in self._answers.items() if now - at >= REDUNDANT_WINDOW_S]:
            del self._answers[old]

    def _forget(self, service: str) -> None:
        with self._answers_lock:
            for ident in [k for k in self._answers if k[0] == service]:
                del self._answers[ident]

    def _send(self, service: str, call: str, param: dict[str, Any], *, kind: str
              ) -> dict[str, Any]:
        body = {"call": call, "app_key": self._app_key, "app_secret": self._app_secret,
                "param": [param]}
        for _ in range(MAX_REDUNDANT_WAITS + 1):
            response = self.session.request(
                "POST", f"{service}/", kind="write" if kind == "write" else "read",
                classify=self._classify, describe=f"{service}/{call}", json=body)
            try:
                data = response.json()
            except ValueError:
                data = None
            if not isinstance(data, dict):
                raise SystemUnavailable(SYSTEM, f"{service}/{call} answered HTTP "
                                                f"{response.status_code} without a JSON object; "
                                                "check PONTE_ERP__BASE_URL (it should end in "
                                                "/api/v1)")
            if "faultcode" not in data and "faultstring" not in data:
                return data
            fault = OmieFault(str(data.get("faultcode", "")), str(data.get("faultstring", "")),
                              response.status_code)
            if fault.code in REDUNDANT_CODES:
                wait = redundant_wait(fault.text, self._now())
                logger.info("Omie asks to wait {:.0f} s before repeating {} (redundant-call "
                            "rule); waiting", wait, call)
                self._sleep(wait)
                continue
            self._raise_if_system(fault, f"{service}/{call}")
            raise fault
        raise SystemUnavailable(SYSTEM, f"{service}/{call} kept being refused as a redundant "
                                        f"call after {MAX_REDUNDANT_WAITS} waits")

    @staticmethod
    def _raise_if_system(fault: OmieFault, what: str) -> None:
        text = fault.text.lower()
        if fault.code == MISUSE or fault.status == 425:
            raise SystemUnavailable(SYSTEM, f"Omie blocked this app for misuse ({what}: "
                                            f"{fault.text}); wait the stated time, then run again")
        if "chave de acesso" in text or "app_key" in text or "app_secret" in text:
            raise SystemUnavailable(SYSTEM, f"Omie refused the credentials ({fault.code}); check "
                                            "PONTE_ERP__CREDENTIALS__APP_KEY / PONTE_ERP__CREDENTIALS__APP_SECRET")

    def _spec(self, entity: str) -> Spec:
        try:
            return SPECS[entity]
        except KeyError:
            raise ConfigError(f"Omie has no entity {entity!r}; valid: {sorted(SPECS)}") from None

    # --- reads -----------------------------------------------------------------------------

    def _list(self, spec: Spec, base: dict[str, Any]) -> Iterator[Record]:
        """Every record of a list call, page by page, trusting the server's page counts."""
        for items in self._pages(spec, base):
            yield from items

    def _pages(self, spec: Spec, base: dict[str, Any]) -> Iterator[list[Record]]:
        """The pages of a list call as the server sends them."""
        page = 1
        while True:
            param = {**base, "pagina": page, "registros_por_pagina": self.page_size}
            try:
                data = self._call(spec.service, spec.list_call, param)
            except OmieFault as fault:
                if fault.code == END_OF_LIST:
                    return
                raise SystemUnavailable(SYSTEM, f"{spec.service}/{spec.list_call} refused the "
                                                f"listing: {fault}") from None
            items = data.get(spec.list_key) or []
            yield list(items)
            if not items or page >= int(data.get("total_de_paginas") or 1):
                return
            page += 1

    def list_changed(self, entity: str, window: Window) -> Iterator[list[Record]]:
        spec = self._spec(entity)
        base: dict[str, Any] = {}
        if window.since is not None:
            lo = to_brt(window.since)
            base.update(filtrar_por_data_de=lo.strftime("%d/%m/%Y"),
                        filtrar_por_hora_de=lo.strftime("%H:%M:%S"))
        if window.until is not None and window.since is not None:
            hi = last_second_before(window.until)
            first = to_brt(window.since)
            if first.replace(tzinfo=BRT) < window.since:  # ceil: Omie times are whole seconds
                first += timedelta(seconds=1)
            if hi < first:
                return  # no whole second lies inside the window: nothing can have changed in it
            base.update(filtrar_por_data_ate=hi.strftime("%d/%m/%Y"),
                        filtrar_por_hora_ate=hi.strftime("%H:%M:%S"))
        if base:
            base["filtrar_apenas_alteracao"] = "S"
        # Each page as it comes, trimmed to the exact window: Omie's listing is not ordered by
        # change time (Capabilities.ordered_by_updated_at is False), so collecting and sorting
        # it would hold the whole window in memory for nothing the engine needs.
        for items in self._pages(spec, base):
            latest: dict[str, tuple[datetime, Record]] = {}
            undated: list[Record] = []
            for record in items:
                key = self.key_of(entity, record)
                at = self.updated_at(entity, record)
                if at is None:
                    undated.append(record)  # the engine quarantines it when it asks updated_at
                    continue
                if window.since is not None and at < window.since:
                    continue
                if window.until is not None and at >= window.until:
                    continue
                if key not in latest or latest[key][0] <= at:
                    latest[key] = (at, record)
            page = [rec for _, rec in sorted(
                latest.values(), key=lambda t: (t[0], _key_order(self.key_of(entity, t[1]))))]
            page += undated
            if page:
                yield page

    def read_by_keys(self, entity: str, keys: Sequence[str]) -> list[Record]:
        spec = self._spec(entity)
        ids = sorted({int(k) for k in keys if str(k).isdigit()})
        if spec.by_code is None:
            return [r for r in (self._consult(spec, {spec.id_field: i}) for i in ids) if r]
        out: list[Record] = []
        for start in range(0, len(ids), LOOKUP_CHUNK):
            chunk = [{spec.id_field: i} for i in ids[start:start + LOOKUP_CHUNK]]
            out.extend(self._list(spec, {spec.by_code: chunk}))
        return out

    def _consult(self, spec: Spec, key: dict[str, Any]) -> Record | None:
        try:
            data = self._call(spec.service, spec.consult, key)
        except OmieFault as fault:
            if fault.code == NOT_FOUND:
                return None
            raise SystemUnavailable(SYSTEM, f"{spec.service}/{spec.consult} failed: "
                                            f"{fault}") from None
        found = data.get(spec.list_key, data)  # ConsultarPedido wraps the order in its list key
        return found if isinstance(found, dict) else None

    def find_by(self, entity: str, native_field: str, values: Sequence[str]) -> list[Record]:
        spec = self._spec(entity)
        if native_field not in FIND_FIELDS[entity]:
            raise ConfigError(f"Omie {entity} cannot be matched by {native_field!r}; valid: "
                              f"{list(FIND_FIELDS[entity])}")
        wanted = sorted({str(v) for v in values if str(v or "").strip()})
        if not wanted:
            return []
        if entity == "orders":
            found = (self._consult(spec, {native_field: v}) for v in wanted)
            return [r for r in found if r]
        if native_field == "cnpj_cpf":
            want = {digits(v) for v in wanted} - {""}
            if len(want) > FILTER_CALLS_MAX:
                pool: Iterator[Record] = self._list(spec, {})
            else:
                pool = (r for v in sorted(want)
                        for r in self._list(spec, {"clientesFiltro": {"cnpj_cpf": v}}))
            return self._unique(entity, (r for r in pool if digits(r.get("cnpj_cpf")) in want))
        assert spec.by_code is not None
        out: list[Record] = []
        for start in range(0, len(wanted), LOOKUP_CHUNK):
            chunk = [{native_field: v} for v in wanted[start:start + LOOKUP_CHUNK]]
            out.extend(r for r in self._list(spec, {spec.by_code: chunk})
                       if str(r.get(native_field, "")) in wanted)
        return self._unique(entity, iter(out))

    def _unique(self, entity: str, records: Iterator[Record]) -> list[Record]:
        seen: dict[str, Record] = {}
        for r in records:
            seen.setdefault(self.key_of(entity, r), r)
        return list(seen.values())

    # --- writes ----------------------------------------------------------------------------

    def write_batch(self, entity: str, ops: Sequence[WriteOp]) -> list[WriteResult]:
        spec = self._spec(entity)
        results = []
        with self._write_lock:
            for op in ops:
                try:
                    results.append(self._write_one(entity, spec, op))
                except OmieFault as fault:
                    results.append(WriteResult(op, key=op.key, error=RecordError(
                        f"Omie rejected the {entity[:-1]}: {fault.code}: {fault.text}",
                        field=fault.tag(), kind="rejected")))
                except RecordError as exc:
                    results.append(WriteResult(op, key=op.key, error=exc))
        self._reread(entity, spec, results)
        return results

    def _reread(self, entity: str, spec: Spec, results: list[WriteResult]) -> None:
        """Fill in each written record as Omie now stores it (its snapshot suppresses the echo).

        Omie's write answers carry only the ids, so the records are read back: with the list
        call's "por código" filter, 50 per request, rather than one ``Consultar`` per write. A
        single record keeps ``Consultar`` (a one-key list call repeated within 60 s would trip
        the redundant-call rule)."""
        todo = [r for r in results if r.ok and r.record is None and r.key]
        if not todo:
            return
        if spec.by_code is None or len(todo) == 1:
            for r in todo:
                r.record = self._consult(spec, {spec.id_field: int(str(r.key))})
            return
        found = {self.key_of(entity, rec): rec
                 for rec in self.read_by_keys(entity, [str(r.key) for r in todo])}
        for r in todo:
            r.record = found.get(str(r.key))

    def delete(self, entity: str, key: str) -> RecordError | None:
        """Delete one record (``verify --fix`` with the mapping's ``deletes: delete``)."""
        spec = self._spec(entity)
        call = {"customers": "ExcluirCliente", "products": "ExcluirProduto",
                "orders": "ExcluirPedido"}[entity]
        if not str(key).isdigit():
            return RecordError(f"cannot delete from Omie: invalid key {key!r}", kind="rejected")
        with self._write_lock:
            try:
                self._call(spec.service, call, {spec.id_field: int(key)}, kind="write")
            except OmieFault as fault:
                if fault.code == NOT_FOUND:
                    return None  # already gone
                return RecordError(f"Omie refused {call} {key}: {fault.code}: {fault.text}",
                                   kind="rejected")
        return None

    def _write_one(self, entity: str, spec: Spec, op: WriteOp) -> WriteResult:
        payload = copy.deepcopy(op.payload)
        if entity == "orders":
            return self._write_order(spec, op, payload)
        if op.action == "update":
            payload[spec.id_field] = self._numeric_key(op)
            status = self._call(spec.service, spec.alter, payload, kind="write")
        elif op.external_id and spec.upsert:
            payload[spec.int_field] = op.external_id  # a retried create updates, never doubles
            payload.pop(spec.id_field, None)
            status = self._call(spec.service, spec.upsert, payload, kind="write")
        else:
            status = self._call(spec.service, spec.create, payload, kind="write")
        key = int(status.get(spec.id_field) or op.key or 0)
        return WriteResult(op, key=str(key))  # the record is read back by _reread

    @staticmethod
    def _numeric_key(op: WriteOp) -> int:
        if not op.key or not str(op.key).isdigit():
            raise RecordError(f"an Omie update needs the numeric Omie id as key, got {op.key!r}",
                              kind="invalid")
        return int(op.key)

    def _write_order(self, spec: Spec, op: WriteOp, payload: dict[str, Any]) -> WriteResult:
        cab = payload.setdefault("cabecalho", {})
        if op.action == "update":
            cab[spec.id_field] = self._numeric_key(op)
            status = self._call(spec.service, spec.alter, payload, kind="write")
            key = int(status.get(spec.id_field) or cab[spec.id_field])
        else:
            if op.external_id:
                cab[spec.int_field] = op.external_id
            try:
                status = self._call(spec.service, spec.create, payload, kind="write")
                key = int(status[spec.id_field])
            except OmieFault as fault:
                code = cab.get(spec.int_field)
                if fault.code != DUPLICATE or not code:
                    raise
                # created by an earlier attempt whose answer we never saw: that is success
                existing = self._consult(spec, {spec.int_field: code})
                if existing is None:
                    raise
                return WriteResult(op, key=self.key_of("orders", existing), record=existing)
        return WriteResult(op, key=str(key), record=self._consult(spec, {spec.id_field: key}))


__all__ = ["SPECS", "OmieConnector"]
