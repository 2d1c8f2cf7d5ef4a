"""What the status page and ``/metrics`` read from the state database.

Everything here reads: short connections, one per query, and nothing held between requests, so
a sync running at the same time is never blocked. The figures shown per entity and side come
from :func:`etl.ops.status` (what ``ponte status --json`` prints); this module adds the rest of
the page: the latest runs, quarantine, the last verify of each entity, the webhook event backlog
and the active alerts. The ``events`` and ``alerts`` tables may be empty (no ``ponte serve``
yet): every figure then says so rather than failing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from etl import binding, ops
from etl.fleet import ConnectionStatus
from etl.mapping import load_mappings
from etl.metrics import Sample, last_runs
from etl.settings import Settings
from etl.state import AlertRow, QuarantineRow, Store
from etl.state.events import EventRow

VERIFY_KINDS = ("verify", "verify-fix")
RUNS_SHOWN = 20
QUARANTINE_SHOWN = 200
FAILED_EVENTS_SHOWN = 5


@contextmanager
def open_state(settings: Settings) -> Iterator[Store]:
    """The state database for one request, closed at its end. A schema already at head is not
    written to (a new install's first use creates the tables, as any ponte command does)."""
    with settings.open_state() as store:
        yield store


def ping(settings: Settings) -> None:
    """One trivial query against the state database; raises ``ConfigError`` (naming
    PONTE_STATE_URL, its password hidden) when it cannot be opened."""
    with settings.open_state(migrate=False) as store, store.engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))


# ------------------------------------------------------------------------------ webhook events


@dataclass(frozen=True)
class Backlog:
    counts: dict[str, int]  # by status, every status present (0 when none)
    oldest_pending: datetime | None
    failed: list[EventRow]  # the latest failed events, newest first

    def oldest_pending_age_s(self, now: datetime) -> float:
        return (now - self.oldest_pending).total_seconds() if self.oldest_pending else 0.0


def backlog(store: Store, *, failed_shown: int = FAILED_EVENTS_SHOWN) -> Backlog:
    """Webhook events by status, the oldest pending one, the latest failed ones."""
    return Backlog(store.event_counts(), store.oldest_pending_event(),
                   store.events(status="failed", limit=failed_shown))


# ------------------------------------------------------------------------------ alerts


def alerts(store: Store) -> list[AlertRow]:
    """Every alert condition known to the state, active ones first, the newest first."""
    rows = sorted(store.alerts(), key=lambda a: a.since, reverse=True)
    return sorted(rows, key=lambda a: not a.active)


# ------------------------------------------------------------------------------ verify


@dataclass(frozen=True)
class LastVerify:
    entity: str
    run_id: str
    kind: str
    status: str
    finished_at: datetime
    drift: int | None  # None: the run ended before it counted this entity
    details: dict[str, int]  # missing_in_crm, missing_in_erp, mismatched, ...


def last_verifies(store: Store, entities: list[str]) -> list[LastVerify]:
    out = []
    for name, run in last_runs(store, entities, kinds=VERIFY_KINDS).items():
        counts = run.report.get("entities", {}).get(name)
        details = {k: int(v) for k, v in (counts or {}).items()
                   if k != "drift" and isinstance(v, int)}
        assert run.finished_at is not None
        out.append(LastVerify(name, run.id, run.kind, run.status, run.finished_at,
                              int(counts["drift"]) if counts else None, details))
    return sorted(out, key=lambda v: entities.index(v.entity))


# ------------------------------------------------------------------------------ the whole page


@dataclass(frozen=True)
class System:
    side: str
    kind: str
    base_url: str  # normalized: scheme, host, port, path (never user info or a query)


@dataclass
class PageData:
    now: datetime
    state_url: str  # password hidden
    systems: list[System]
    status: ops.StatusReport
    runs: list[Any]  # RunRow, newest first
    quarantine: list[QuarantineRow]
    quarantine_total: int
    verifies: list[LastVerify]
    backlog: Backlog
    alerts: list[AlertRow] = field(default_factory=list)
    # the connection this page is of (None: the single-connection settings), and with
    # PONTE_CONNECTIONS_DIR set, the summary of every connection (etl/fleet.py)
    connection: str | None = None
    connections: list[ConnectionStatus] = field(default_factory=list)


def systems(settings: Settings) -> list[System]:
    out = []
    for side in ("crm", "erp"):
        conf = getattr(settings, side)
        out.append(System(side, conf.kind, binding.normalize_url(conf.base_url)))
    return out


def page_data(settings: Settings, *, now: datetime) -> PageData:
    """Everything the status page shows, read in one go (with ``PONTE_CONNECTIONS_DIR`` set,
    every connection's summary too)."""
    mappings = load_mappings(settings.mappings_dir)
    every = connections(settings, now=now)
    with open_state(settings) as store:
        quarantined = store.quarantine()
        return PageData(
            now=now, state_url=store.safe_url, systems=systems(settings),
            status=ops.status(store, mappings, settings, now=now),
            runs=store.runs(limit=RUNS_SHOWN),
            quarantine=quarantined[:QUARANTINE_SHOWN], quarantine_total=len(quarantined),
            verifies=last_verifies(store, list(mappings)),
            backlog=backlog(store),
            alerts=[a for a in alerts(store) if a.active],
            connection=settings.connection, connections=every)


def connections(settings: Settings, *, now: datetime) -> list[ConnectionStatus]:
    """Every connection's status when ``PONTE_CONNECTIONS_DIR`` is set (else none); a bad
    folder is one line saying so, not a page that fails."""
    if settings.connections_dir is None:
        return []
    from etl.clock import ManualClock
    from etl.errors import ConfigError
    from etl.fleet import load, status_all

    try:
        loaded = load(settings.connections_dir)
    except ConfigError as exc:
        return [ConnectionStatus("PONTE_CONNECTIONS_DIR", None, str(exc))]
    return status_all(loaded, clock=ManualClock(now)).connections


# ------------------------------------------------------------------------------ metrics


def serve_samples(store: Store, *, now: datetime) -> list[Sample]:
    """The webhook backlog and the alerts as gauges (their HELP lines are in etl.metrics)."""
    b = backlog(store, failed_shown=0)
    samples = [Sample("ponte_webhook_events", {"status": s}, float(n))
               for s, n in b.counts.items()]
    samples.append(Sample("ponte_webhook_oldest_pending_age_seconds", {},
                          b.oldest_pending_age_s(now)))
    samples += [Sample("ponte_alert_active", {"condition": a.condition}, float(a.active))
                for a in alerts(store)]
    return samples


def metrics_text(settings: Settings, *, now: datetime) -> str:
    """The Prometheus text of ``/metrics``: the textfile's series plus the serve ones."""
    from etl.metrics import collect, render

    names = list(load_mappings(settings.mappings_dir))
    with open_state(settings) as store:
        samples = collect(store, names, now=now,
                          safety_lag=timedelta(seconds=settings.safety_lag_s))
        samples += serve_samples(store, now=now)
    return render(samples, connection=settings.connection)
