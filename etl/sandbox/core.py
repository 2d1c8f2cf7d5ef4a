"""What both simulators share: a movable clock, fault knobs, rate limits, request counts, a
dropped connection, and the records (``etl.sandbox.tables``).

Timestamps are kept internally as aware UTC datetimes (``Row.created`` / ``Row.updated``); each
simulator renders them in its vendor's format (Ploomes ``-03:00`` with milliseconds, Omie naive
Brasília time at second precision).
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import Counter, defaultdict, deque
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

import httpx

from etl.sandbox.tables import Database, Row
from etl.sandbox.webhooks import Deliverer, Knobs

BRT = ZoneInfo("America/Sao_Paulo")


class DroppedConnection(httpx.RemoteProtocolError):
    """The ``drop_rate`` fault: raised inside a simulator's app after a partial response.
    uvicorn closes the socket mid-answer (the client sees a protocol error), and Starlette's
    TestClient re-raises it to the caller as this transport error."""


class Clock:
    """The simulator's clock: real time plus a movable offset, optionally frozen.

    ``freeze_at`` makes every write share one instant (the "identical timestamps" knob).
    """

    def __init__(self) -> None:
        self.offset = timedelta(0)
        self.frozen: datetime | None = None

    def now(self) -> datetime:
        if self.frozen is not None:
            return self.frozen
        return datetime.now(UTC) + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)

    def freeze(self, at: datetime | None) -> None:
        self.frozen = at


async def answer_at(arrived: float, latency_ms: float) -> None:
    """Wait until ``latency_ms`` after ``arrived`` (a ``time.monotonic()`` instant): the
    simulator's answer takes the latency asked, not the latency plus its own work."""
    if latency_ms:
        await asyncio.sleep(max(0.0, arrived + latency_ms / 1000 - time.monotonic()))


@dataclass
class Faults:
    """Fault knobs. Rates are probabilities per request in [0, 1]."""

    #: each answered request is sent this long after it arrived, the simulator's own work
    #: included (a request that took longer to serve is answered when done)
    latency_ms: float = 0.0
    error_rate: float = 0.0  # answer 500 (Ploomes) / a 500 server fault (Omie)
    timeout_rate: float = 0.0  # sleep ``timeout_s`` before answering (client should time out)
    timeout_s: float = 30.0
    drop_rate: float = 0.0  # close the connection without an answer
    burst_429: int = 0  # the next N requests get 429
    page_cap: int | None = None  # silently cap page sizes (Omie default 100, Ploomes 300)
    same_timestamp: bool = False  # every write gets the same instant (frozen clock)
    redundant_rule: bool = True  # Omie: identical list call within 60 s is refused
    window_needs_flag: bool = False  # Omie [U]: date window ignored without filtrar_apenas_*
    unique_cnpj_cpf: bool = True  # Omie [O]: inclusion refuses a CPF/CNPJ already registered
    write_faults_http200: bool = False  # Omie [O]: write faults arrive with HTTP 200
    misuse_after: int = 0  # Omie: N faults in a row -> MISUSE_API_PROCESS (HTTP 425); 0 = off
    misuse_block_s: float = 1800.0  # how long that block lasts
    next_link: bool = False  # Ploomes: emit @odata.nextLink on full pages (unconfirmed)
    tax_id_in_step: bool = True  # Ploomes [U]: Register, CNPJ and CPF kept in step by TypeId
    webhook_delay_s: float = 0.0  # each webhook delivery waits this long before its first try
    webhook_duplicate_rate: float = 0.0  # share of webhook deliveries sent twice, identical
    webhook_reorder: float = 0.0  # share held back and sent after the next one to that URL
    webhook_max_tries: int = 6  # attempts before a delivery goes to the dead-letter list
    webhook_timeout_s: float = 2.0  # how long a receiver may take to answer one delivery
    seed: int | None = None

    def update(self, values: dict[str, Any]) -> None:
        names = {f.name for f in fields(self)}
        unknown = set(values) - names
        if unknown:
            raise ValueError(f"unknown fault knob(s) {sorted(unknown)}; valid: {sorted(names)}")
        for k, v in values.items():
            setattr(self, k, v)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class RateLimiter:
    """Sliding one-minute window per bucket key (e.g. user key, or app key + method);
    ``window_s`` shortens the minute (tests of rate limits that must not take minutes)."""

    def __init__(self, per_minute: int, *, window_s: float = 60.0) -> None:
        self.per_minute = per_minute
        self.window_s = window_s
        self._hits: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def allow(self, bucket: str, now: float | None = None) -> tuple[bool, float]:
        """Record a hit; return (allowed, seconds until the oldest hit leaves the window)."""
        t = time.monotonic() if now is None else now
        with self._lock:
            hits = self._hits[bucket]
            while hits and hits[0] <= t - self.window_s:
                hits.popleft()
            if len(hits) >= self.per_minute:
                return False, max(0.0, hits[0] + self.window_s - t)
            hits.append(t)
            return True, 0.0

    def reset(self) -> None:
        with self._lock:
            self._hits.clear()


class RequestLog:
    """Counts requests per (endpoint, status); ``endpoint`` is e.g. ``GET /Contacts`` or
    ``geral/clientes/ListarClientes``."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, int]] = Counter()
        self._lock = threading.Lock()

    def record(self, endpoint: str, status: int) -> None:
        with self._lock:
            self.counts[(endpoint, status)] += 1

    def as_list(self) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {"endpoint": e, "status": s, "count": n} for (e, s), n in sorted(self.counts.items())
            ]

    def reset(self) -> None:
        with self._lock:
            self.counts.clear()


class Simulator:
    """Base of the two simulators' state: tables, clock, faults, limits and counts.

    The ASGI app of each simulator is built from one of these (``app.state.sim``), so tests can
    also reach the state in-process.
    """

    tables: ClassVar[list[str]] = []

    def __init__(self, *, rpm: int, db_path: str | None = None, seed: int = 0) -> None:
        self.db = Database(self.tables, db_path)
        self.clock = Clock()
        self.faults = Faults()
        self.limiter = RateLimiter(rpm)
        self.requests = RequestLog()
        self.rng = random.Random(seed)
        self.deliveries = Deliverer(self._webhook_knobs, seed=seed,
                                    name=type(self).__name__.lower())
        self.watch()

    def _webhook_knobs(self) -> Knobs:
        f = self.faults
        return Knobs(delay_s=f.webhook_delay_s, duplicate_rate=f.webhook_duplicate_rate,
                     reorder=float(f.webhook_reorder), max_tries=max(1, f.webhook_max_tries),
                     timeout_s=f.webhook_timeout_s)

    def write_instant(self) -> datetime:
        """The instant a write happens now (frozen when ``same_timestamp`` is on)."""
        if self.faults.same_timestamp:
            if self.clock.frozen is None:
                self.clock.freeze(self.clock.now())
            return self.clock.frozen  # type: ignore[return-value]
        return self.clock.now()

    def reset(self) -> None:
        self.db.clear()
        self.faults = Faults()
        self.limiter.reset()
        self.requests.reset()
        self.clock = Clock()
        self.deliveries.clear()
        self.watch()

    # --- webhooks: writes to the tables a webhook watches call ``on_change`` ------------------

    def watched_tables(self) -> set[str]:
        """The tables some configured webhook watches (none by default)."""
        return set()

    def watch(self) -> None:
        """Point the watched tables' write listener at :meth:`on_change`, and clear it on the
        others: a table nobody watches pays nothing per write."""
        watched = self.watched_tables()
        for name, table in self.db.tables.items():
            table.listener = self.on_change if name in watched else None

    def on_change(self, table: str, old: Row | None, new: Row | None) -> None:
        """A record of a watched table was created (``old`` None), changed, or deleted (``new``
        None); ``old`` is the record as it was. Called under the database lock."""

    # --- hooks each simulator implements (used by the admin API and the seeder) ---------------

    def render(self, table: str, row: Row) -> dict[str, Any]:
        """The record as the vendor API returns it (id and timestamps included)."""
        raise NotImplementedError

    def ui_create(self, table: str, data: dict[str, Any]) -> Row:
        """Create a record as a person in the vendor's UI would (timestamps bump)."""
        with self.db.lock:
            return self.db[table].insert(dict(data), self.write_instant())

    def ui_update(self, table: str, rid: int, changes: dict[str, Any]) -> Row:
        """Change a record as a person in the vendor's UI would (its updated-at bumps)."""
        with self.db.lock:
            if self.db[table].get(rid) is None:
                raise KeyError(rid)
            return self.db[table].update(rid, dict(changes), self.write_instant())

    def ui_delete(self, table: str, rid: int) -> bool:
        with self.db.lock:
            return self.db[table].delete(rid) is not None
