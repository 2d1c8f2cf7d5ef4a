"""The generic connector: any REST or JSON-RPC system its spec describes
(:mod:`etl.connectors.spec`), behind the same :class:`~etl.connectors.base.Connector` contract
as a hand-written one.

* Listing: the window ``[since, until)`` goes to the system at its precision (floored /
  ceiled: its timestamps are truncated to it), the answer is trimmed to that window
  client-side (or to the exact window, :mod:`etl.connectors.windows`), and unless the spec
  says the system already orders by (updated-at, key) the window (or each page) is collected,
  the latest version per key kept, and yielded in that order (undated records last).
  ``changed_since: none``: everything is read and yielded; the snapshot diff finds the changes.
* Waits a system states in its message (an error rule with ``wait_group`` or a ``hook``) are
  honoured here (and said at INFO), beyond the HTTP session's backoff cap; 429/5xx/timeouts
  are the session's. With ``read_cache``, a read repeated within its seconds is answered from
  the run's own copy (:mod:`etl.connectors.answers`).
* Creates with ``idempotency: lookup`` are sent once; after an ambiguous failure (5xx, timeout,
  dropped connection) the record is looked up by its external id before trying again; an
  ``already_exists`` answer to a create is resolved the same way.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, Literal

import httpx
from loguru import logger

from etl.connectors import lookups
from etl.connectors.answers import Answers, identity
from etl.connectors.auth import Authenticator, Call
from etl.connectors.base import ApiCalls, Capabilities, Record, RetryStats
from etl.connectors.errors import Outcome, answer_of, classify, verdict
from etl.connectors.generic_writes import Refused, Writes
from etl.connectors.hooks import HOOKS, wait_hooks
from etl.connectors.http import HttpSession, RetryPolicy
from etl.connectors.paginators import PAGINATORS, fingerprint, record_lists
from etl.connectors.references import References
from etl.connectors.spec import (
    ByValues,
    ConnectorSpec,
    EntitySpec,
    Paginator,
    Request,
    TimeFormat,
)
from etl.connectors.templates import (
    Missing,
    compose,
    dig,
    dig_all,
    encode,
    fill,
    first_field,
    format_instant,
    parse_instant,
    put,
)
from etl.connectors.windows import add_window, edges, latest_in_order, others_only
from etl.errors import ConfigError, Stopped, SystemUnavailable, WaitAsked
from etl.settings import SideSettings
from etl.watermark import Window

MAX_STATED_WAITS = 4  # waits a system states in its message, per request
STOP_CHECK_S = 0.5  # how often a read waiting as the system asked looks for a stop request


class GenericConnector(Writes, References):
    """A connector run from its spec."""

    def __init__(self, spec: ConnectorSpec, client: httpx.Client, *, system: str,
                 credentials: dict[str, str], requests_per_minute: int | None = None,
                 max_concurrency: int | None = None, page_size: int | None = None,
                 write_concurrency: int | None = None,
                 retry: RetryPolicy | None = None, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        d = spec.defaults
        self.spec, self.system, self.kind = spec, system, spec.name
        self.client = client
        rpm = requests_per_minute or d.requests_per_minute
        concurrency = max_concurrency or d.max_concurrency
        self.page_size = page_size or d.page_size
        self.session = HttpSession(client, system=system, requests_per_minute=rpm,
                                   max_concurrency=concurrency, retry=retry, sleep=sleep)
        self.auth = Authenticator(spec.auth, credentials, system=system, client=client,
                                  clock=clock)
        self._public = {n: credentials[n] for n, c in spec.credentials.items()
                        if not c.secret and n in credentials}  # {credentials.NAME}
        self._sleep = sleep
        # a stated wait longer than this raises WaitAsked instead (None: always wait in line)
        self.inline_wait_limit_s: float | None = None
        # asked during a read's stated wait (a signal): the read stops instead of waiting on
        # (set for a run's duration by :func:`etl.connectors.base.stops_waits`)
        self.should_stop: Callable[[], bool] | None = None
        self._tied = threading.local()  # .on: this thread's reads are part of a write
        self._hooks = wait_hooks(spec)
        self._write_lock = threading.Lock()
        self._writer_pools = {}
        self.write_concurrency = write_concurrency  # None: max_concurrency
        self._answers = Answers(spec.read_cache.seconds, clock) if spec.read_cache else None
        self.hook_state: dict[str, Any] = {}  # what hooks keep for the run (lookup caches)
        self._me: dict[str, str | None] = {}  # the user ponte is, by the request that said so
        self._hook_lock = threading.Lock()
        precisions = [e.updated_at.precision_ms for e in spec.entities.values() if e.updated_at]
        self.capabilities = Capabilities(
            page_size=self.page_size, batch_size=1, requests_per_minute=rpm,
            max_concurrency=concurrency, clock_zone=spec.clock_zone,
            clock_precision=timedelta(milliseconds=min(precisions, default=1000)),
            has_external_id_upsert=any(e.idempotency.strategy == "upsert"
                                       for e in spec.entities.values()),
            has_changed_since=all(e.listing is not None and e.listing.changed_since == "filter"
                                  for e in spec.entities.values()),
            updated_at_paths={n: first_field(e.updated_at.paths[0])
                              for n, e in spec.entities.items() if e.updated_at},
            skips_own_writes=frozenset(n for n, e in spec.entities.items()
                                       if e.listing is not None and e.listing.last_updater),
            repeat_refused_s=spec.read_cache.seconds if spec.read_cache else None,
            ordered_by_updated_at=all(e.listing is not None and e.listing.changed_since == "filter"
                                      and e.listing.sorted for e in spec.entities.values()))

    @classmethod
    def from_settings(cls, side: str, conf: SideSettings, client: httpx.Client, *,
                      sleep: Callable[[float], None] = time.sleep) -> GenericConnector:
        return cls(conf.spec, client, system=side, credentials={
            n: conf.credential(n) for n in conf.credentials},
            requests_per_minute=conf.requests_per_minute, max_concurrency=conf.max_concurrency,
            page_size=conf.page_size, write_concurrency=conf.write_concurrency,
            sleep=sleep)

    @property
    def refuses_repeated_reads(self) -> bool:
        """The system refuses an identical read repeated within some seconds (``read_cache``)."""
        return self._answers is not None

    @property
    def calls(self) -> ApiCalls:
        return self.session.calls

    @property
    def stats(self) -> RetryStats:
        return self.session.stats

    def entities(self) -> set[str]:
        return set(self.spec.entities)

    def forget_reads(self) -> None:
        """Drop the answers kept by ``read_cache``: a connector kept for several runs (ponte
        serve's event runs) must read a record an event names as it is now, not as an
        earlier run saw it."""
        if self._answers is not None:
            self._answers = Answers(self._answers.seconds, self._answers.clock)

    def close(self) -> None:
        """Stops the writer threads; the client belongs to whoever made it."""
        self.close_writers()

    def _entity(self, entity: str) -> EntitySpec:
        try:
            return self.spec.entities[entity]
        except KeyError:
            raise ConfigError(f"{self.spec.title} has no entity {entity!r}; valid: "
                              f"{', '.join(sorted(self.spec.entities))}") from None

    # --- record facts ------------------------------------------------------------------------

    def key_of(self, entity: str, record: Record) -> str:
        return str(dig(record, self._entity(entity).key or ""))

    def updated_at(self, entity: str, record: Record) -> datetime | None:
        spec = self._entity(entity).updated_at
        if spec is None:
            return None
        found: list[datetime] = []
        for path in spec.paths:
            try:
                texts = [fill(path, record)] if "{" in path else dig_all(record, path)
            except (KeyError, ValueError, Missing):
                continue
            found += [at for text in texts if (at := parse_instant(text, spec)) is not None]
            if found and not spec.latest:
                return found[0]
        return max(found, default=None)

    # --- the wire ----------------------------------------------------------------------------

    def _what(self, call: Call) -> str:
        """``POST geral/clientes/ ListarClientes``: the request, and the procedure it calls."""
        name = dig(call.body, self.spec.procedure) if self.spec.procedure else None
        return f"{call.method} {call.path}" + (f" {name}" if name else "")

    def _send(self, call: Call, kind: Literal["read", "write"], *, attempts: int | None = None
              ) -> tuple[Outcome, Any, httpx.Response]:
        """One request (answered from ``read_cache`` when the spec keeps reads, and sent once
        when two threads read the same at once); a write forgets what was read from its path,
        before and after it is sent."""
        answers = self._answers  # this one throughout, though forget_reads replaces it
        if answers is None:
            return self._exchange(call, kind, attempts)
        if kind == "read":
            ident = identity(call)
            while True:
                hit = answers.recall(ident)
                if hit is not None:
                    return hit
                flying = answers.take_off(ident)
                if flying is None:
                    break
                flying.wait()  # the same read on another thread: its answer, once kept
            try:
                sent = self._exchange(call, kind, attempts)
                if sent[0].action == "ok":
                    answers.keep(ident, call, sent[0], sent[1], sent[2])
                return sent
            finally:
                answers.land(ident)
        answers.forget(call.path)
        try:
            return self._exchange(call, kind, attempts)
        finally:  # also what a concurrent read kept meanwhile
            answers.forget(call.path)

    def _exchange(self, call: Call, kind: Literal["read", "write"], attempts: int | None
                  ) -> tuple[Outcome, Any, httpx.Response]:
        judged: list[Any] = [None, None, None]  # the last answer judged: its body, outcome

        def judge(response: httpx.Response) -> Any:
            body = answer_of(response)  # parsed once: the outcome and the caller both use it
            judged[:] = [response, body, classify(response, self.spec.errors, self._hooks,
                                                  body=body)]
            return verdict(judged[2])

        what = self._what(call)
        for _ in range(MAX_STATED_WAITS + 1):
            # what is sent differs from ``call`` in its params and headers (filters, auth)
            # only: the body is shared (auth replaces it whole; nothing changes it in place)
            sent = dataclasses.replace(call, params=dict(call.params),
                                       headers=dict(call.headers))
            for param, clauses in sent.filters.items():
                if clauses:
                    sent.params[param] = compose(clauses, sent.joins.get(param, " and "))
            self.auth.apply(sent)
            response = self.session.request(
                sent.method, sent.path.lstrip("/"), kind=kind, classify=judge,
                describe=f"{self.spec.title} {what}", attempts=attempts,
                pause=lambda seconds, last, unsent: self._pause(
                    seconds, kind, self._again(what, seconds, last), unsent=unsent),
                params=sent.params or None, headers=sent.headers or None,
                json=sent.body if sent.body is not None else None)
            if judged[0] is not response:  # the session returns the answer it judged last
                judge(response)
            answer, outcome = judged[1], judged[2]
            if outcome.action == "retry" and outcome.stated and outcome.wait is not None:
                why = f" ({outcome.hint})" if outcome.hint else ""
                limit = self.inline_wait_limit_s
                if limit is not None and outcome.wait > limit:
                    raise WaitAsked(f"{self.spec.title} asks to wait {outcome.wait:.0f} s before "
                                    f"repeating {what.rsplit(' ', 1)[-1]}{why}", outcome.wait)
                logger.info("{} asks to wait {:.0f} s before repeating {}{}; waiting",
                            self.spec.title, outcome.wait, what.rsplit(" ", 1)[-1], why)
                self._pause(outcome.wait, kind, f"{self.spec.title} asked to wait "
                            f"{outcome.wait:.0f} s before repeating {what.rsplit(' ', 1)[-1]}")
                continue
            hint = "; " + outcome.hint.replace("{prefix}", f"PONTE_{self.system.upper()}") \
                if outcome.hint else ""
            if outcome.action == "bad_credentials":
                self.auth.forget_token()
                names = ", ".join(f"PONTE_{self.system.upper()}__CREDENTIALS__{n.upper()}"
                                  for n in self.spec.credentials)
                raise Refused(self.system, f"{self.spec.title} refused the credentials (HTTP "
                              f"{outcome.status}); check {names or 'the credentials'}{hint}")
            if outcome.action == "unavailable":
                raise Refused(self.system, f"{self.spec.title} {what}: {outcome.message}{hint}")
            return outcome, answer, response
        raise SystemUnavailable(self.system, f"{self.spec.title} {what} kept asking to wait "
                                f"({MAX_STATED_WAITS} waits)")

    def _pause(self, seconds: float, kind: Literal["read", "write"], why: str, *,
               unsent: bool = False) -> None:
        """A wait before sending again: the system asked for it, or a retry backs off. A
        read's gives way to a stop request, asked every :data:`STOP_CHECK_S`, and raises
        :class:`Stopped` ``"stopped while " + why``: nothing it would have read is used yet, so
        the run stops as between chunks. A write's is waited out, and so is a read made for a
        write (:meth:`for_write`): its outcome must be known — unless the write never reached
        the system (``unsent``: every attempt refused at connect time, or with HTTP 429), whose
        outcome is known: not done; or the next run sends it again (an update: a stopped
        run does not record it, so its record still looks changed)."""
        stop = self.should_stop  # this wait's, though the run may end (and unset it) meanwhile
        if kind == "write":
            gives_way = unsent or getattr(self._tied, "resent", False)
            why += "; it was never sent" if unsent else "; the next run sends it again"
        else:  # a read made for a write is waited out like the write
            gives_way = not getattr(self._tied, "on", False)
        if stop is None or not gives_way:
            self._sleep(seconds)
            return
        left = seconds
        while left > 0:
            if stop():
                raise Stopped(f"stopped while {why}")
            step = min(left, STOP_CHECK_S)
            self._sleep(step)
            left -= step

    def _again(self, what: str, seconds: float, last: str) -> str:
        """What a retry wait is for, as a stop that ends it says: ``Ploomes GET /Fields was to
        be tried again after 3.0 s (last: HTTP 500)``."""
        return f"{self.spec.title} {what} was to be tried again after {seconds:.1f} s (last: {last})"

    @contextmanager
    def for_write(self, *, resent: bool = False) -> Iterator[None]:
        """For the block, on this thread: reads are part of a write (the look-up after an
        ambiguous create, the read-back of its answer) and wait out their retries like it.
        ``resent``: the write is one the next run sends again, the same, when this run does
        not record it (an update), so its retries give way to a stop even once it may have
        reached the system."""
        before = (getattr(self._tied, "on", False), getattr(self._tied, "resent", False))
        self._tied.on, self._tied.resent = True, resent
        try:
            yield
        finally:
            self._tied.on, self._tied.resent = before

    def _call(self, req: Request, values: dict[str, Any], fmt: TimeFormat | None = None) -> Call:
        """A request's template filled (filter clauses whose values are unset left out)."""
        values = {"credentials": self._public, **values}
        call = Call(req.method, fill(req.path, values), fill(req.params, values, fmt),
                    fill(req.body, values, fmt), fill(req.headers, values, fmt))
        for name, how in req.encode.items():
            for where in (call.params, call.headers):
                if isinstance(where.get(name), str):
                    where[name] = encode(where[name], how)
        if req.filter is not None:
            clauses = [c for c in fill(req.filter.clauses, values, fmt, drop=True)]
            call.filters[req.filter.param] = clauses
            call.joins[req.filter.param] = req.filter.join
        return call

    def _pages(self, call: Call, paginator: Paginator, records: str | list[str], entity: str,
               size: int | None = None, limit: int | None = None) -> Iterator[list[Record]]:
        """Pages of one listing, with the repeated-request guard; ``limit``: the most records
        the request can match (a page reaching it is the last). Several ``records`` paths: a
        page is their lists, one after the other."""
        size = size or self.page_size
        total = 0
        pager = PAGINATORS[paginator.type](paginator, position=self._position(entity),
                                           records=records)
        pager.first(call, size)
        seen: set[str] = set()
        while True:
            mark = fingerprint(call)
            if mark in seen:
                raise SystemUnavailable(self.system, f"{self.spec.title} {call.path}: the "
                                        f"{paginator.type} paginator asked for the same page "
                                        "twice (its cursor did not move); stopped")
            seen.add(mark)
            outcome, answer, response = self._send(call, "read")
            if outcome.action in ("end_of_list", "not_found"):
                return
            if outcome.action != "ok":
                what = f"{self.spec.title} {call.method} {call.path} answered HTTP " \
                       f"{outcome.status}: {outcome.message}"
                if outcome.action in ("bad_request", "rejected"):
                    raise ConfigError(what)
                raise SystemUnavailable(self.system, what)
            try:
                page = [r for part in record_lists(answer, records) for r in part]
            except LookupError as missing:
                raise SystemUnavailable(self.system, f"{self.spec.title} {call.path}: no records "
                                        f"at {missing} of the answer") from None
            if page:
                yield page
            total += len(page)
            if (limit is not None and total >= limit) or not pager.next(
                    call, size, answer, response, page):
                return

    def _position(self, entity: str) -> Callable[[Record], tuple[str | None, str]]:
        listing = self.spec.entities[entity].listing if entity in self.spec.entities else None

        def position(record: Record) -> tuple[str | None, str]:
            if listing is None:  # not an entity's listing: the paginator names its key
                return None, ""
            at = self.updated_at(entity, record)
            return (None if at is None else format_instant(at, listing.time),
                    self.key_of(entity, record))
        return position

    # --- reading -----------------------------------------------------------------------------

    def list_changed(self, entity: str, window: Window) -> Iterator[list[Record]]:
        ls = self._entity(entity).listing
        assert ls is not None  # checked when the spec was loaded
        bounds = edges(ls, window)
        if bounds.empty:
            return  # no whole step of the source's clock lies inside: nothing changed in it
        call = self._call(ls, bounds.values, ls.time)
        add_window(call, ls, bounds.values)
        me = self.own_user(ls.last_updater.me) if window.skip_own and ls.last_updater else None
        pages = self._pages(call, ls.paginator, ls.records, entity, ls.page_size)
        pages = others_only(call, ls, me, pages)  # ponte's own last changes left out
        if ls.changed_since == "none":
            yield from pages
            return

        def at(record: Record) -> datetime | None:
            return self.updated_at(entity, record)

        def key(record: Record) -> str:
            return self.key_of(entity, record)
        if ls.sorted:
            for page in pages:
                kept = [r for r in page if (t := at(r)) is None or bounds.inside(t)]
                if kept:
                    yield kept
            return
        if ls.collect == "page":  # each page as it comes, ordered within itself
            for page in pages:
                if kept := latest_in_order(page, at, key, bounds):
                    yield kept
            return
        ordered = latest_in_order((r for page in pages for r in page), at, key, bounds)
        for start in range(0, len(ordered), self.page_size):
            yield ordered[start:start + self.page_size]

    def _by_values(self, entity: str, spec: ByValues, values: Sequence[str],
                   field: str = "", *, unlinked_only: bool = False) -> list[Record]:
        # kept answers hold only when the same values make the same requests: sorted
        wanted = lookups.wanted(spec, values, ordered=self._answers is not None)
        out: list[Record] = []
        if spec.scan_above is not None and len(wanted) > spec.scan_above:
            return self._scan(entity, unlinked_only=unlinked_only)
        chunk = 1 if "{value}" in spec.path else spec.chunk
        if lookups.sends_no_value(spec):
            chunk = max(1, len(wanted))
        for i in range(0, len(wanted), chunk):
            part = wanted[i:i + chunk]
            call = self._call(spec, {"value": part[0], "values": part, "field": field})
            if spec.item_hook is not None:
                items = [HOOKS[spec.item_hook](field, v) for v in part]
            else:
                items = [fill(spec.item, {"value": v, "field": field}) for v in part]
            if spec.filter is not None:
                call.filters[spec.filter.param].append(spec.join.join(map(str, items)))
            elif spec.param is not None:
                call.params[spec.param] = items if spec.repeat else spec.join.join(map(str, items))
            elif spec.body_path is not None:
                call.body = call.body if isinstance(call.body, dict) else {}
                put(call.body, spec.body_path, items)
            for page in self._pages(call, spec.paginator, spec.records, entity,
                                    limit=len(part) if spec.unique else None):
                out.extend(page)
        return out

    def _scan(self, entity: str, *, unlinked_only: bool) -> list[Record]:
        """The entity's whole listing, for a search of more values than ``scan_above`` (fewer
        requests than one per value). With ``unlinked_only`` (see :meth:`find_by`) on a system
        that refuses a repeated read (``read_cache``), a scan made within its window is used
        again, whatever ponte wrote since: the next batch of a big first sync does not wait
        out Omie's minute for the same listing."""
        ls = self._entity(entity).listing
        assert ls is not None
        call = self._call(ls, {}, ls.time)
        scan = identity(call)  # before paging moves the call on
        answers = self._answers if unlinked_only else None
        if answers is not None and (kept := answers.recall_scan(scan)) is not None:
            return kept
        at = answers.clock() if answers is not None else 0.0
        out = [r for page in self._pages(call, ls.paginator, ls.records, entity, ls.page_size)
               for r in page]
        if answers is not None:
            answers.keep_scan(scan, out, at)
        return out

    def read_by_keys(self, entity: str, keys: Sequence[str]) -> list[Record]:
        e, wanted = self._entity(entity), {str(k) for k in keys}
        if e.read_by_keys is None:
            raise ConfigError(f"{self.spec.title} {entity}: the spec has no read_by_keys")
        return self._unique(entity, [r for r in self._by_values(entity, e.read_by_keys, keys)
                                     if self.key_of(entity, r) in wanted])

    def find_by(self, entity: str, native_field: str, values: Sequence[str], *,
                unlinked_only: bool = False) -> list[Record]:
        e = self._entity(entity)
        spec = e.find_by.get(native_field) or e.find_by.get("*")
        if spec is None:
            raise ConfigError(f"{self.spec.title} {entity} cannot be matched by "
                              f"{native_field!r}; valid: {', '.join(e.find_by) or 'none'}")
        wanted = {lookups.norm(spec, v) for v in values} - {""}
        # a system that ignores a filter it does not know must not match every record
        found = [r for r in self._by_values(entity, spec, values, native_field,
                                            unlinked_only=unlinked_only)
                 if not spec.verify or lookups.norm(spec, dig(r, native_field)) in wanted]
        return self._unique(entity, found)

    def _unique(self, entity: str, records: list[Record]) -> list[Record]:
        return list({self.key_of(entity, r): r for r in records}.values())
