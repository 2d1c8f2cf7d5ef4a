"""The Ploomes (CRM) connector: OData collections over ``httpx``, behind :class:`HttpSession`.

Reading changes pages with a *keyset* cursor on ``(LastUpdateDate, Id)`` rather than a growing
``$skip``: a record updated while we read moves to the end of the order instead of shifting the
pages under us, and any number of records sharing one timestamp page correctly. No page size is
trusted: the server may cap ``$top`` silently, so a short page only ends the listing once a page
of that length is known not to be a cap.

Ploomes has no batch write endpoint: :meth:`write_batch` runs one request per record on a
small thread pool, within the session's rate limit. A create carries ``Key`` = the op's external
id (Contacts and Orders have that field), so a create whose answer was lost is found by
``find_by("Key")`` and never sent twice: after an ambiguous failure (5xx, timeout, dropped
connection) the connector looks the key up before trying again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import httpx
from stdnum.br import cnpj as std_cnpj
from stdnum.br import cpf as std_cpf

from etl.connectors.base import (
    ApiCalls,
    Capabilities,
    Record,
    Window,
    WriteOp,
    WriteResult,
)
from etl.connectors.http import HttpSession, RetryPolicy, Verdict, retry_after_seconds
from etl.errors import ConfigError, RecordError, SystemUnavailable

COLLECTIONS = {"customers": "Contacts", "products": "Products", "orders": "Orders"}
EXPAND = {
    "Contacts": "City,State,Phones,Tags,OtherProperties",
    "Products": "OtherProperties",
    "Orders": "Products,OtherProperties",
}
#: Collections with a ``Key`` (external id) field.
KEYED = {"Contacts", "Orders"}
# collections without a Key field: the field a create whose answer was lost is found by
FOUND_BY = {"Products": "Code"}
STATES_PATH = "/Cities@Countries@States"
CHUNK = 50  # ids / values per ``or`` filter
#: Fields that carry one document: a search by the first also looks in the others, digits-only
#: and punctuated (Contacts: ``Register`` = CNPJ or CPF, digits only; ``CNPJ``/``CPF`` are what
#: the UI and other integrations fill, in a format the reference does not give).
SAME_DOCUMENT = {("Contacts", "Register"): ("CNPJ", "CPF")}


def odata_string(value: str) -> str:
    """A quoted OData string literal (``'`` doubled)."""
    return "'" + value.replace("'", "''") + "'"


def odata_instant(value: datetime) -> str:
    """An unquoted UTC datetime literal at millisecond precision."""
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def floor_ms(value: datetime) -> datetime:
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def ceil_ms(value: datetime) -> datetime:
    floor = floor_ms(value)
    return floor if floor == value else floor + timedelta(milliseconds=1)


def parse_instant(text: str) -> datetime:
    """``2024-01-15T18:15:01.727-03:00`` (or ``...Z``) -> aware UTC."""
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no offset")
    return value.astimezone(UTC)


def _punctuated_document(value: str) -> str:
    """``11.222.333/0001-81`` / ``123.456.789-09`` for a digits-only CNPJ / CPF, else as is."""
    if value.isdigit() and len(value) == 14:
        return std_cnpj.format(value)
    if value.isdigit() and len(value) == 11:
        return std_cpf.format(value)
    return value


def _next_cursor(page: list[Record], *, by_time: bool, what: str) -> tuple[str, int]:
    """The keyset cursor after ``page``: its last record with a usable ``LastUpdateDate``.
    Undated records after it are read again on the next page (the engine keeps one per key and
    quarantines them); a page with no usable date at all cannot be paged past."""
    if not by_time:
        return "", int(page[-1]["Id"])
    for record in reversed(page):
        try:
            instant = parse_instant(record.get("LastUpdateDate"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            continue
        return odata_instant(instant), int(record["Id"])
    raise SystemUnavailable("Ploomes", f"no record of a page of {what} has a usable "
                            "LastUpdateDate; cannot read past it")


def _classify(response: httpx.Response) -> tuple[Verdict, float | None]:
    status = response.status_code
    if status in (408, 429) or status >= 500:
        return "retry", retry_after_seconds(response)
    return ("ok" if status < 400 else "fail"), None


def _final(response: httpx.Response) -> tuple[Verdict, float | None]:
    """Every answer is final: the caller decides (used for creates it must not repeat)."""
    return ("ok" if response.status_code < 400 else "fail"), None


def _server_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200] or response.reason_phrase
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str):
            return error
        if body.get("message"):
            return str(body["message"])
    return str(body)[:200]


class PloomesConnector:
    """Connector for the Ploomes API; ``client.base_url`` is the Ploomes base URL."""

    system = "crm"
    kind = "ploomes"

    def __init__(
        self,
        client: httpx.Client,
        *,
        user_key: str,
        requests_per_minute: int = 120,
        max_concurrency: int = 4,
        page_size: int = 300,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.session = HttpSession(client, system=self.system,
                                   requests_per_minute=requests_per_minute,
                                   max_concurrency=max_concurrency, retry=retry, sleep=sleep)
        # one-shot twin for creates: same limiter, counts and concurrency, no automatic retry
        self._once = HttpSession(client, system=self.system,
                                 requests_per_minute=requests_per_minute,
                                 max_concurrency=max_concurrency,
                                 retry=RetryPolicy(attempts=1), sleep=sleep)
        self._once.limiter = self.session.limiter
        self._once.concurrency = self.session.concurrency
        self._once.calls = self.session.calls
        self._once.stats = self.session.stats
        self._once._count_lock = self.session._count_lock
        self._headers = {"User-Key": user_key, "Accept": "application/json"}
        self._sleep = sleep
        self.page_size = page_size
        self.max_concurrency = max_concurrency
        self.capabilities = Capabilities(
            page_size=300, batch_size=1, requests_per_minute=requests_per_minute,
            max_concurrency=max_concurrency, clock_zone="America/Sao_Paulo",
            clock_precision=timedelta(milliseconds=1), has_external_id_upsert=False,
            has_changed_since=True, ordered_by_updated_at=True,
        )
        self._cities: dict[str, int] = {}  # IBGE code -> CityId
        self._states: dict[str, int] | None = None  # UF -> StateId
        self._lookup_lock = threading.Lock()
        self._states_lock = threading.Lock()

    @property
    def calls(self) -> ApiCalls:
        return self.session.calls

    def entities(self) -> set[str]:
        return set(COLLECTIONS)

    def key_of(self, entity: str, record: Record) -> str:
        return str(record["Id"])

    def updated_at(self, entity: str, record: Record) -> datetime:
        value = record.get("LastUpdateDate")
        try:
            return parse_instant(value)
        except (TypeError, ValueError, AttributeError):
            raise RecordError(f"Ploomes record has no usable change time (LastUpdateDate="
                              f"{value!r})", field="LastUpdateDate") from None

    def close(self) -> None:
        """The client belongs to the caller; nothing to release here."""

    # --- HTTP ---------------------------------------------------------------------------------

    def _collection(self, entity: str) -> str:
        try:
            return COLLECTIONS[entity]
        except KeyError:
            raise ConfigError(f"Ploomes has no entity {entity!r}; "
                              f"valid: {sorted(COLLECTIONS)}") from None

    def _send(self, method: str, path: str, *, kind: Literal["read", "write"],
              **kwargs: Any) -> httpx.Response:
        response = self.session.request(method, path, kind=kind, classify=_classify,
                                        describe=f"Ploomes {method} {path}",
                                        headers=self._headers, **kwargs)
        self._check_auth(response)
        return response

    def _check_auth(self, response: httpx.Response) -> None:
        if response.status_code == 401:
            raise SystemUnavailable(self.system, "Ploomes refused the User-Key (HTTP 401); "
                                    "check PONTE_CRM__USER_KEY")

    def _get(self, path: str, params: dict[str, str], *, what: str) -> list[Record]:
        response = self._send("GET", path, kind="read", params=params)
        if response.status_code >= 400:
            message = (f"Ploomes GET {path} ({what}) answered HTTP {response.status_code}: "
                       f"{_server_message(response)}")
            if response.status_code == 400:
                raise ConfigError(message)
            raise SystemUnavailable(self.system, message)
        value = response.json().get("value")
        if not isinstance(value, list):
            raise SystemUnavailable(self.system, f"Ploomes GET {path}: no 'value' list in answer")
        return value

    def _pages(self, path: str, base: list[str], *, by_time: bool, expand: str | None,
               what: str, limit: int | None = None) -> Iterator[list[Record]]:
        """Keyset-paged GET, ordered by (LastUpdateDate, Id) or by Id.

        A page shorter than asked ends the listing only when it cannot be a server cap: an
        earlier page of this listing was longer, or ``limit`` (the most records the filter
        can match) is reached. Otherwise one more request confirms the end.
        """
        cursor: tuple[str, int] | None = None
        longest = 0  # longest earlier page of this listing (each was followed by more data)
        total = 0
        while True:
            clauses = list(base)
            if cursor is not None:
                ts, rid = cursor
                clauses.append(f"(LastUpdateDate gt {ts} or (LastUpdateDate eq {ts} and "
                               f"Id gt {rid}))" if by_time else f"Id gt {rid}")
            params = {
                "$orderby": "LastUpdateDate asc,Id asc" if by_time else "Id asc",
                "$top": str(self.page_size),
            }
            if clauses:
                params["$filter"] = " and ".join(
                    c if len(clauses) == 1 else f"({c})" for c in clauses)
            if expand:
                params["$expand"] = expand
            page = self._get(path, params, what=what)
            if not page:
                return
            yield page
            n = len(page)
            total += n
            if limit is not None and total >= limit:
                return
            if n < self.page_size and ((longest and n < longest) or longest >= self.page_size):
                return
            longest = max(longest, n)
            cursor = _next_cursor(page, by_time=by_time, what=what)

    # --- reading ------------------------------------------------------------------------------

    def list_changed(self, entity: str, window: Window) -> Iterator[list[Record]]:
        coll = self._collection(entity)
        base = []
        if window.since is not None:
            base.append(f"LastUpdateDate ge {odata_instant(floor_ms(window.since))}")
        if window.until is not None:
            base.append(f"LastUpdateDate lt {odata_instant(ceil_ms(window.until))}")
        yield from self._pages(f"/{coll}", base, by_time=True, expand=EXPAND[coll],
                               what=f"changed {entity}")

    def read_by_keys(self, entity: str, keys: Sequence[str]) -> list[Record]:
        coll = self._collection(entity)
        ids = sorted({int(k) for k in keys if str(k).isdigit()})
        out: list[Record] = []
        for i in range(0, len(ids), CHUNK):
            clause = " or ".join(f"Id eq {rid}" for rid in ids[i:i + CHUNK])
            for page in self._pages(f"/{coll}", [clause], by_time=False, expand=EXPAND[coll],
                                    what=f"{entity} by id", limit=len(ids[i:i + CHUNK])):
                out.extend(page)
        return out

    def find_by(self, entity: str, native_field: str, values: Sequence[str]) -> list[Record]:
        """Records whose ``native_field`` equals one of ``values``; for a document field
        (:data:`SAME_DOCUMENT`) also those that carry the value only in a sibling field."""
        coll = self._collection(entity)
        wanted = sorted({str(v) for v in values if v is not None and str(v) != ""})
        siblings = SAME_DOCUMENT.get((coll, native_field), ())
        chunk = max(1, CHUNK // (1 + 2 * len(siblings)))  # keep the URL as short as before
        out: list[Record] = []
        seen: set[int] = set()
        for i in range(0, len(wanted), chunk):
            clauses = []
            for v in wanted[i:i + chunk]:
                clauses.append(f"{native_field} eq {odata_string(v)}")
                forms = dict.fromkeys([v, _punctuated_document(v)])
                clauses.extend(f"{f} eq {odata_string(form)}" for f in siblings for form in forms)
            for page in self._pages(f"/{coll}", [" or ".join(clauses)], by_time=False,
                                    expand=EXPAND[coll], what=f"{entity} by {native_field}"):
                for record in page:
                    if record.get("Id") not in seen:
                        seen.add(record.get("Id"))
                        out.append(record)
        return out

    def custom_field_keys(self, entity_id: int) -> set[str]:
        """The ``FieldKey`` of every custom field the account defines for a Ploomes entity
        (``/Fields``, ``EntityId eq N and Dynamic eq true``): what records carry in
        ``OtherProperties``."""
        keys: set[str] = set()
        for page in self._pages("/Fields", [f"EntityId eq {int(entity_id)}",
                                            "Dynamic eq true"],
                                by_time=False, expand=None, what="custom fields"):
            keys.update(str(f["Key"]) for f in page if f.get("Key"))
        return keys

    # --- reference lookups --------------------------------------------------------------------

    def _prime_cities(self, codes: set[str]) -> None:
        with self._lookup_lock:
            missing = sorted(c for c in codes if c not in self._cities and c.isdigit())
        for i in range(0, len(missing), CHUNK):
            clause = " or ".join(f"IBGECode eq {int(c)}" for c in missing[i:i + CHUNK])
            for page in self._pages("/Cities", [clause], by_time=False, expand=None,
                                    what="cities by IBGE code",
                                    limit=len(missing[i:i + CHUNK])):
                with self._lookup_lock:
                    for city in page:
                        self._cities[str(city["IBGECode"])] = int(city["Id"])

    def _state_ids(self) -> dict[str, int]:
        with self._lookup_lock:
            if self._states is not None:
                return self._states
        with self._states_lock:  # one fetch, however many write threads ask at once
            if self._states is not None:
                return self._states
            states: dict[str, int] = {}
            for page in self._pages(STATES_PATH, [], by_time=False, expand=None, what="states"):
                states.update({str(s["Short"]).upper(): int(s["Id"]) for s in page})
            with self._lookup_lock:
                self._states = states
            return states

    def _translate(self, payload: Record) -> Record:
        """Native payload with ``City``/``State`` references turned into ``CityId``/``StateId``."""
        out = dict(payload)
        if "City" in out:
            city = out.pop("City")
            code = city.get("IBGECode") if isinstance(city, dict) else city
            if code is None or code == "":
                out["CityId"] = None
            else:
                code = str(code).strip()
                self._prime_cities({code})
                if code not in self._cities:
                    raise RecordError(f"no Ploomes city has IBGE code {code!r}",
                                      field="City.IBGECode")
                out["CityId"] = self._cities[code]
        if "State" in out:
            state = out.pop("State")
            short = state.get("Short") if isinstance(state, dict) else state
            if short is None or short == "":
                out["StateId"] = None
            else:
                short = str(short).strip().upper()
                states = self._state_ids()
                if short not in states:
                    raise RecordError(f"no Ploomes state has the abbreviation {short!r}",
                                      field="State.Short")
                out["StateId"] = states[short]
        return out

    # --- writing ------------------------------------------------------------------------------

    def write_batch(self, entity: str, ops: Sequence[WriteOp]) -> list[WriteResult]:
        coll = self._collection(entity)
        codes = set()
        for op in ops:
            city = op.payload.get("City")
            code = city.get("IBGECode") if isinstance(city, dict) else city
            if code not in (None, ""):
                codes.add(str(code).strip())
        if codes:
            self._prime_cities(codes)
        if len(ops) <= 1:
            return [self._write_one(coll, op) for op in ops]
        pool = ThreadPoolExecutor(max_workers=self.max_concurrency,
                                  thread_name_prefix="ploomes-write")
        try:
            futures = [pool.submit(self._write_one, coll, op) for op in ops]
            return [f.result() for f in futures]
        finally:  # aborted (second Ctrl-C): writes not yet sent are never sent; intents cover
            pool.shutdown(wait=True, cancel_futures=True)  # the few in flight

    def delete(self, entity: str, key: str) -> RecordError | None:
        """Delete one record (``verify --fix`` with the mapping's ``deletes: delete``)."""
        coll = self._collection(entity)
        if not str(key).isdigit():
            return RecordError(f"cannot delete {coll}: invalid key {key!r}", kind="rejected")
        response = self._send("DELETE", f"/{coll}({key})", kind="write")
        if response.status_code == 404:
            return None  # already gone
        if response.status_code >= 400:
            return RecordError(f"Ploomes refused DELETE {coll}({key}): HTTP "
                               f"{response.status_code}: {_server_message(response)}",
                               kind="rejected")
        return None

    def _write_one(self, coll: str, op: WriteOp) -> WriteResult:
        try:
            body = self._translate(op.payload)
        except RecordError as exc:
            return WriteResult(op, key=op.key, error=exc)
        if op.action == "create":
            if op.external_id and coll in KEYED:
                body["Key"] = op.external_id
                response = self._create_once(coll, body, "Key", op.external_id)
                if isinstance(response, dict):
                    return WriteResult(op, key=str(response["Id"]), record=response)
            elif coll in FOUND_BY and str(body.get(FOUND_BY[coll]) or "").strip():
                response = self._create_once(coll, body, FOUND_BY[coll],
                                             str(body[FOUND_BY[coll]]))
                if isinstance(response, dict):
                    return WriteResult(op, key=str(response["Id"]), record=response)
            else:
                response = self._send("POST", f"/{coll}", kind="write", json=body,
                                      params={"$expand": EXPAND[coll]})
        else:
            if not op.key or not str(op.key).isdigit():
                return WriteResult(op, key=op.key, error=RecordError(
                    f"cannot update {coll}: invalid key {op.key!r}", kind="rejected"))
            response = self._send("PATCH", f"/{coll}({op.key})", kind="write", json=body,
                                  params={"$expand": EXPAND[coll]})
        if response.status_code >= 400:
            what = f"a create in {coll}" if op.action == "create" else f"PATCH {coll}({op.key})"
            return WriteResult(op, key=op.key, error=RecordError(
                f"Ploomes refused {what}: HTTP {response.status_code}: "
                f"{_server_message(response)}", kind="rejected"))
        value = response.json().get("value") or [{}]
        record = value[0]
        if "Id" not in record:
            raise SystemUnavailable(self.system, f"Ploomes {coll}: write answer has no record")
        record = self._complete(coll, record)
        return WriteResult(op, key=str(record["Id"]), record=record)

    def _complete(self, coll: str, record: Record) -> Record:
        """Re-read the record when the write answer lacks the expansions lists carry."""
        needed = [n for n in EXPAND[coll].split(",") if n not in record]
        if not needed:
            return record
        found = self._get(f"/{coll}({record['Id']})", {"$expand": EXPAND[coll]},
                          what="written record")
        return found[0] if found else record

    def _create_once(self, coll: str, body: Record, field: str, value: str
                     ) -> httpx.Response | Record:
        """POST a create without ever repeating one that may have gone through.

        429 is safe to repeat (not processed); after a 5xx, a timeout or a dropped connection
        the record may exist, so look it up by ``field`` (``Key``, or a product's ``Code``)
        before trying again.
        """
        attempts = self.session.retry.attempts
        attempt = 0
        throttled, throttles = 0.0, 0  # 429s are waited out without using up attempts
        while attempt < attempts:
            attempt += 1
            wait: float | None = None
            try:
                response: httpx.Response | None = self._once.request(
                    "POST", f"/{coll}", kind="write", classify=_final,
                    describe=f"Ploomes POST /{coll}", headers=self._headers, json=body,
                    params={"$expand": EXPAND[coll]})
            except SystemUnavailable:  # timed out or dropped: it may have been created
                response = None
            if response is not None:
                self._check_auth(response)
                if response.status_code == 429:
                    wait = retry_after_seconds(response)
                    self.session.stats.got_429 += 1
                    delay = self.session.retry.backoff(1, wait)
                    throttles += 1
                    if (throttled + delay <= self.session.retry.throttle_budget_s
                            and throttles <= self.session.retry.throttle_max):
                        throttled += delay
                        attempt -= 1
                        self.session.stats.retries += 1
                        self._sleep(delay)
                        continue
                elif response.status_code < 500 and response.status_code != 408:
                    return response
            if response is None or response.status_code != 429:
                existing = self.find_by(_ENTITY_OF[coll], field, [value])
                if existing:
                    return self._complete(coll, existing[0])
            if attempt < attempts:
                self.session.stats.retries += 1
                self._sleep(self.session.retry.backoff(attempt, wait))
        raise SystemUnavailable(self.system, f"Ploomes POST /{coll} failed {attempts} times; "
                                "the system looks down — check its status and the base URL, "
                                "then run again")


_ENTITY_OF = {v: k for k, v in COLLECTIONS.items()}
