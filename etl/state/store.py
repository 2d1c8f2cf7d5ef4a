"""The state store: watermarks, snapshots, links, quarantine, intents, runs and run locks.

One :class:`Store` wraps one SQLAlchemy ``Engine`` (SQLite by default, PostgreSQL for production
or several workers). The schema is created and upgraded by the Alembic migrations shipped in
``etl/state/migrations``, found through the package path, so they work from an installed wheel.

Conventions:

* Time always comes in as an argument (``now``); the store never reads the clock. Every
  timestamp must be aware (a naive one is a ``ValueError``); it is stored as UTC and returned
  as an aware UTC datetime on every backend.
* Writes that belong together go through :meth:`Store.checkpoint`, one transaction per page.
  On SQLite, write transactions start with ``BEGIN IMMEDIATE`` so that two processes never
  deadlock on a read-then-write upgrade; readers are never blocked (WAL).
* Errors: a URL that cannot be parsed or reached is a ``ConfigError`` naming ``PONTE_STATE_URL``
  (the password hidden); a checkpoint that would break a link's uniqueness raises
  :class:`StateConflict` and writes nothing.
"""

from __future__ import annotations

import os
import socket
import uuid
import weakref
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Self

import pandas as pd
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from loguru import logger
from sqlalchemy import event, exc
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect

from etl.errors import ConfigError, StateConflict
from etl.state import models as m
from etl.state.models import to_utc

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000
BACKOFF_BASE = timedelta(minutes=1)
BACKOFF_CAP = timedelta(hours=6)
DROPPED = "dropped"  # quarantine kind of an entry the operator dropped
NEVER = datetime(9999, 12, 31, tzinfo=UTC)  # the next retry of a dropped entry
# SQLite allows 999 bound parameters per statement in old builds; PostgreSQL far more.
_CHUNK = {"sqlite": 900, "postgresql": 5000}
_SNAPSHOT_COLUMNS = ["key", "h1", "h2", "data", "natural_key", "source_updated"]
_ADVISORY_LOCK_ID = 0x706F6E7465  # "ponte": serializes concurrent upgrades on PostgreSQL


@dataclass
class SnapshotRow:
    system: str
    entity: str
    key: str
    h1: int
    h2: int
    data: dict[str, Any]
    natural_key: str | None = None
    source_updated: datetime | None = None


@dataclass
class QuarantineEntry:
    entity: str
    system: str  # the side the record comes from
    key: str
    kind: str  # invalid | rejected | conflict
    reason: str
    field: str | None = None
    payload: dict[str, Any] | None = None


@dataclass
class QuarantineRow:
    id: int
    entity: str
    system: str
    key: str
    kind: str
    reason: str
    field: str | None
    payload: dict[str, Any] | None
    attempts: int
    first_seen: datetime
    last_seen: datetime
    next_retry_at: datetime
    run_id: str | None


@dataclass
class IntentRow:
    id: int
    entity: str
    target_system: str
    source_key: str
    external_id: str
    payload: dict[str, Any]
    created_at: datetime


@dataclass
class WatermarkRow:
    entity: str
    system: str
    value: datetime | None
    updated_at: datetime


@dataclass(frozen=True)
class BindingRow:
    """The system one side of the state was built with: kind and normalized base URL (safe to
    show) and a salted hash of the account credential (``salt`` hex; never the credential)."""

    side: str
    kind: str
    base_url: str
    account_hash: str
    salt: str
    bound_at: datetime


@dataclass
class RunRow:
    id: str
    kind: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    entities: list[str]
    report: dict[str, Any]


@dataclass
class Checkpoint:
    """Everything one page of one entity commits, in one transaction."""

    entity: str
    snapshots: list[SnapshotRow] = field(default_factory=list)  # upsert by (system, entity, key)
    links: list[tuple[str, str]] = field(default_factory=list)  # (crm_key, erp_key), if absent
    quarantine: list[QuarantineEntry] = field(default_factory=list)  # upsert, attempts += 1
    clear_quarantine: list[tuple[str, str]] = field(default_factory=list)  # (system, key)
    clear_intents: list[tuple[str, str]] = field(default_factory=list)  # (target_system, key)
    watermarks: dict[str, datetime] = field(default_factory=dict)  # system -> new value
    # deletes carried out (``ponte verify --fix``), committed with the rest of the page:
    drop_snapshots: list[tuple[str, str]] = field(default_factory=list)  # (system, key)
    drop_links: list[tuple[str, str]] = field(default_factory=list)  # (crm_key, erp_key)
    tombstones: list[tuple[str, str, str]] = field(default_factory=list)  # (crm, erp, side)


def quarantine_backoff(attempts: int) -> timedelta:
    """Wait before the next retry after ``attempts`` failures: 1 min, 2, 4, ... capped at 6 h."""
    if attempts < 1:
        return timedelta(0)
    if attempts > 20:  # 2**19 minutes is far past the cap; avoid huge numbers
        return BACKOFF_CAP
    return min(BACKOFF_BASE * (1 << (attempts - 1)), BACKOFF_CAP)


def _chunks(values: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start:start + size]


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


class Store:
    """The state database. Build with :meth:`open` (URL) or ``Store(engine)``."""

    def __init__(self, engine: sa.Engine, *, migrate: bool = True) -> None:
        self.engine = engine
        self.dialect: str = engine.dialect.name
        if self.dialect not in _CHUNK:
            raise ConfigError(f"PONTE_STATE_URL: unsupported database {self.dialect!r} "
                              "(use sqlite or postgresql)")
        if self.dialect == "sqlite":
            _install_sqlite_events(engine)
        # Write transactions: BEGIN IMMEDIATE on SQLite (see the module docstring).
        self._writer = engine.execution_options(ponte_begin="IMMEDIATE")
        self._chunk = _CHUNK[self.dialect]
        self._insert = sqlite_dialect.insert if self.dialect == "sqlite" else pg_dialect.insert
        if migrate:
            self.upgrade()

    @classmethod
    def open(cls, url: str, *, migrate: bool = True) -> Store:
        """Connect to ``url`` (the value of PONTE_STATE_URL) and bring the schema to head."""
        try:
            parsed = sa.make_url(url)
        except exc.ArgumentError as e:
            raise ConfigError(f"PONTE_STATE_URL: cannot parse the state database URL: {e}") from None
        safe = parsed.render_as_string(hide_password=True)
        try:
            engine = sa.create_engine(parsed)
            if engine.dialect.name == "sqlite":
                _install_sqlite_events(engine)
        except (exc.ArgumentError, exc.NoSuchModuleError, ImportError, TypeError) as e:
            raise ConfigError(f"PONTE_STATE_URL: cannot use {safe}: "
                              f"{_scrub(str(e), parsed)}") from None
        try:
            with engine.connect():
                pass
            return cls(engine, migrate=migrate)
        except exc.DBAPIError as e:
            engine.dispose()
            reason = _scrub(str(e.orig), parsed).strip()
            raise ConfigError(f"PONTE_STATE_URL: cannot open the state database {safe}: "
                              f"{reason}") from None

    def upgrade(self) -> None:
        """Apply every pending migration (idempotent; concurrent callers are serialized)."""
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with self._writer.begin() as conn:
            if self.dialect == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"),
                             {"id": _ADVISORY_LOCK_ID})
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ---------------------------------------------------------------- watermarks

    def watermark(self, entity: str, system: str) -> datetime | None:
        t = m.watermarks
        with self.engine.connect() as conn:
            value: datetime | None = conn.scalar(
                sa.select(t.c.value).where(t.c.entity == entity, t.c.system == system))
        return value

    def watermarks(self, entity: str | None = None) -> list[WatermarkRow]:
        t = m.watermarks
        q = sa.select(t.c.entity, t.c.system, t.c.value, t.c.updated_at)
        if entity is not None:
            q = q.where(t.c.entity == entity)
        with self.engine.connect() as conn:
            rows = conn.execute(q.order_by(t.c.entity, t.c.system)).all()
        return [WatermarkRow(*r) for r in rows]

    def set_watermark(self, entity: str, system: str, value: datetime | None, *,
                      now: datetime) -> None:
        """Set (or, with ``None``, delete) a watermark; used by admin commands and resets."""
        with self._writer.begin() as conn:
            if value is None:
                t = m.watermarks
                conn.execute(sa.delete(t).where(t.c.entity == entity, t.c.system == system))
            else:
                self._upsert_watermarks(conn, entity, {system: value}, now)

    def _upsert_watermarks(self, conn: sa.Connection, entity: str,
                           values: dict[str, datetime], now: datetime) -> None:
        t = m.watermarks
        stmt = self._insert(t)
        stmt = stmt.on_conflict_do_update(
            index_elements=[t.c.entity, t.c.system],
            set_={"value": stmt.excluded.value, "updated_at": stmt.excluded.updated_at})
        conn.execute(stmt, [{"entity": entity, "system": s, "value": to_utc(v),
                             "updated_at": now} for s, v in values.items()])

    # ---------------------------------------------------------------- snapshots

    def snapshots(self, system: str, entity: str, keys: Sequence[str]) -> pd.DataFrame:
        """Snapshot rows of these keys only (absent keys are simply missing)."""
        t = m.snapshots
        return self._snapshot_frame(system, entity, t.c.key, keys)

    def snapshots_by_natural_key(self, system: str, entity: str,
                                 values: Sequence[str]) -> pd.DataFrame:
        """Snapshot rows whose natural key is one of ``values`` (may be several per value)."""
        t = m.snapshots
        return self._snapshot_frame(system, entity, t.c.natural_key, values)

    def _snapshot_frame(self, system: str, entity: str, column: sa.ColumnElement[Any],
                        values: Sequence[str]) -> pd.DataFrame:
        t = m.snapshots
        base = sa.select(t.c.key, t.c.h1, t.c.h2, t.c.data, t.c.natural_key,
                         t.c.source_updated).where(t.c.system == system, t.c.entity == entity)
        rows: list[sa.Row[*tuple[Any, ...]]] = []
        with self.engine.connect() as conn:
            for chunk in _chunks(_unique(values), self._chunk):
                rows.extend(conn.execute(base.where(column.in_(chunk))).all())
        frame = pd.DataFrame.from_records(rows, columns=_SNAPSHOT_COLUMNS)
        frame["h1"] = frame["h1"].astype("int64")
        frame["h2"] = frame["h2"].astype("int64")
        frame["source_updated"] = pd.to_datetime(frame["source_updated"], utc=True)
        return frame

    def count_snapshots(self, system: str, entity: str) -> int:
        t = m.snapshots
        with self.engine.connect() as conn:
            return int(conn.scalar(sa.select(sa.func.count()).select_from(t).where(
                t.c.system == system, t.c.entity == entity)) or 0)

    def delete_snapshots(self, system: str, entity: str, keys: Sequence[str]) -> None:
        t = m.snapshots
        with self._writer.begin() as conn:
            for chunk in _chunks(_unique(keys), self._chunk):
                conn.execute(sa.delete(t).where(t.c.system == system, t.c.entity == entity,
                                                t.c.key.in_(chunk)))

    # ---------------------------------------------------------------- links

    def links(self, entity: str, *, crm_keys: Sequence[str] | None = None,
              erp_keys: Sequence[str] | None = None) -> list[tuple[str, str]]:
        """(crm_key, erp_key) pairs of ``entity``: all of them, or those touching any of the
        given CRM keys or ERP keys (both filters together: the union)."""
        with self.engine.connect() as conn:
            return self._links(conn, entity, crm_keys, erp_keys)

    def _links(self, conn: sa.Connection, entity: str, crm_keys: Sequence[str] | None,
               erp_keys: Sequence[str] | None) -> list[tuple[str, str]]:
        t = m.links
        base = sa.select(t.c.crm_key, t.c.erp_key).where(t.c.entity == entity)
        if crm_keys is None and erp_keys is None:
            return [(c, e) for c, e in conn.execute(base.order_by(t.c.crm_key))]
        found: dict[tuple[str, str], None] = {}
        for column, keys in ((t.c.crm_key, crm_keys), (t.c.erp_key, erp_keys)):
            for chunk in _chunks(_unique(keys or ()), self._chunk):
                for c, e in conn.execute(base.where(column.in_(chunk))):
                    found[(c, e)] = None
        return list(found)

    def delete_links(self, entity: str, pairs: Sequence[tuple[str, str]]) -> None:
        if not pairs:
            return
        t = m.links
        stmt = sa.delete(t).where(t.c.entity == entity, t.c.crm_key == sa.bindparam("c"),
                                  t.c.erp_key == sa.bindparam("e"))
        with self._writer.begin() as conn:
            conn.execute(stmt, [{"c": c, "e": e} for c, e in pairs])

    def tombstone_link(self, entity: str, crm_key: str, erp_key: str, side: str) -> None:
        """Remember that the record of ``side`` was deleted; the link stays so that changes
        from the other side never re-create it."""
        t = m.links
        with self._writer.begin() as conn:
            conn.execute(sa.update(t).where(t.c.entity == entity, t.c.crm_key == crm_key,
                                            t.c.erp_key == erp_key).values(deleted_in=side))

    def tombstones(self, entity: str, *, crm_keys: Sequence[str] | None = None
                   ) -> dict[tuple[str, str], str]:
        """(crm_key, erp_key) -> the side the record was deleted from: all of them, or those of
        the given CRM keys (looked up by key, so a run's cost follows its delta)."""
        t = m.links
        base = sa.select(t.c.crm_key, t.c.erp_key, t.c.deleted_in).where(
            t.c.entity == entity, t.c.deleted_in.is_not(None))
        with self.engine.connect() as conn:
            if crm_keys is None:
                return {(c, e): d for c, e, d in conn.execute(base)}
            found: dict[tuple[str, str], str] = {}
            for chunk in _chunks(_unique(crm_keys), self._chunk):
                found.update({(c, e): d for c, e, d in
                              conn.execute(base.where(t.c.crm_key.in_(chunk)))})
            return found

    # ---------------------------------------------------------------- quarantine

    def quarantine(self, entity: str | None = None, *, dropped: bool = False
                   ) -> list[QuarantineRow]:
        """Entries waiting in quarantine (``dropped``: also the dropped ones)."""
        t = m.quarantine
        q = sa.select(t)
        if entity is not None:
            q = q.where(t.c.entity == entity)
        if not dropped:
            q = q.where(t.c.kind != DROPPED)
        with self.engine.connect() as conn:
            return [QuarantineRow(**r._mapping) for r in conn.execute(q.order_by(t.c.id))]

    def quarantined_keys(self, entity: str, system: str) -> set[str]:
        """Keys of one side with an entry (dropped ones included)."""
        t = m.quarantine
        q = sa.select(t.c.key).where(t.c.entity == entity, t.c.system == system)
        with self.engine.connect() as conn:
            return {str(k) for (k,) in conn.execute(q)}

    def quarantine_dropped(self, entity: str, system: str) -> dict[str, dict[str, Any] | None]:
        """Dropped entries of one side: key -> the record as it was when dropped."""
        t = m.quarantine
        q = sa.select(t.c.key, t.c.payload).where(
            t.c.entity == entity, t.c.system == system, t.c.kind == DROPPED)
        with self.engine.connect() as conn:
            return {str(k): p for k, p in conn.execute(q)}

    def quarantine_get(self, qid: int) -> QuarantineRow | None:
        t = m.quarantine
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t).where(t.c.id == qid)).first()
        return None if row is None else QuarantineRow(**row._mapping)

    def quarantine_drop(self, qid: int) -> bool:
        """Drop an entry: it is kept, marked dropped with the record as last read, so that
        the record is ignored while it stays the same and processed again once it changes."""
        t = m.quarantine
        with self._writer.begin() as conn:
            return conn.execute(sa.update(t).where(t.c.id == qid, t.c.kind != DROPPED).values(
                kind=DROPPED, next_retry_at=NEVER)).rowcount > 0

    def quarantine_due(self, entity: str, system: str, now: datetime) -> list[QuarantineRow]:
        """Quarantined records of one side whose next retry is due at ``now``."""
        t = m.quarantine
        q = (sa.select(t)
             .where(t.c.entity == entity, t.c.system == system, t.c.next_retry_at <= now,
                    t.c.kind != DROPPED)
             .order_by(t.c.next_retry_at, t.c.id))
        with self.engine.connect() as conn:
            return [QuarantineRow(**r._mapping) for r in conn.execute(q)]

    def quarantine_make_due(self, qid: int | None, now: datetime) -> int:
        """Make one entry (or all, with ``None``) due at ``now``; returns how many. Dropped
        entries stay dropped."""
        t = m.quarantine
        stmt = sa.update(t).values(next_retry_at=now).where(t.c.kind != DROPPED)
        if qid is not None:
            stmt = stmt.where(t.c.id == qid)
        with self._writer.begin() as conn:
            return int(conn.execute(stmt).rowcount)

    def count_quarantine(self, entity: str | None = None) -> dict[str, int]:
        """Entries waiting per entity (dropped ones are not waiting)."""
        t = m.quarantine
        q = (sa.select(t.c.entity, sa.func.count()).where(t.c.kind != DROPPED)
             .group_by(t.c.entity))
        if entity is not None:
            q = q.where(t.c.entity == entity)
        with self.engine.connect() as conn:
            return {e: int(n) for e, n in conn.execute(q.order_by(t.c.entity))}

    def _upsert_quarantine(self, conn: sa.Connection, entries: Sequence[QuarantineEntry],
                           now: datetime, run_id: str | None) -> None:
        t = m.quarantine
        latest = {(q.entity, q.system, q.key): q for q in entries}  # last entry wins
        attempts: dict[tuple[str, str, str], int] = {}
        groups: dict[tuple[str, str], list[str]] = {}
        for entity, system, key in latest:
            groups.setdefault((entity, system), []).append(key)
        for (entity, system), keys in groups.items():
            for chunk in _chunks(keys, self._chunk):
                query = sa.select(t.c.key, t.c.attempts, t.c.kind).where(
                    t.c.entity == entity, t.c.system == system, t.c.key.in_(chunk))
                for key, n, kind in conn.execute(query):
                    # a dropped record that changed and fails again starts a fresh count
                    attempts[(entity, system, key)] = 0 if kind == DROPPED else n
        rows = []
        for ident, q in latest.items():
            n = attempts.get(ident, 0) + 1
            rows.append({"entity": q.entity, "system": q.system, "key": q.key, "kind": q.kind,
                         "reason": q.reason, "field": q.field, "payload": q.payload,
                         "attempts": n, "first_seen": now, "last_seen": now,
                         "next_retry_at": now + quarantine_backoff(n), "run_id": run_id})
        stmt = self._insert(t)
        ex = stmt.excluded
        stmt = stmt.on_conflict_do_update(
            index_elements=[t.c.entity, t.c.system, t.c.key],
            set_={"kind": ex.kind, "reason": ex.reason, "field": ex.field,
                  "payload": ex.payload, "attempts": ex.attempts, "last_seen": ex.last_seen,
                  "next_retry_at": ex.next_retry_at, "run_id": ex.run_id})
        conn.execute(stmt, rows)

    # ---------------------------------------------------------------- intents

    def record_intent(self, entity: str, target_system: str, source_key: str, external_id: str,
                      payload: dict[str, Any], *, now: datetime) -> None:
        """Remember, durably and before sending, that a create is about to happen."""
        t = m.intents
        stmt = self._insert(t).values(entity=entity, target_system=target_system,
                                      source_key=source_key, external_id=external_id,
                                      payload=payload, created_at=now)
        stmt = stmt.on_conflict_do_update(
            index_elements=[t.c.entity, t.c.target_system, t.c.source_key],
            set_={"external_id": stmt.excluded.external_id, "payload": stmt.excluded.payload,
                  "created_at": stmt.excluded.created_at})
        with self._writer.begin() as conn:
            conn.execute(stmt)

    def pending_intents(self, entity: str, target_system: str) -> list[IntentRow]:
        t = m.intents
        q = (sa.select(t).where(t.c.entity == entity, t.c.target_system == target_system)
             .order_by(t.c.id))
        with self.engine.connect() as conn:
            return [IntentRow(**r._mapping) for r in conn.execute(q)]

    # ---------------------------------------------------------------- checkpoint

    def checkpoint(self, cp: Checkpoint, *, now: datetime, run_id: str | None = None) -> None:
        """Commit one page: snapshots, quarantine, clears, deletes, links and watermarks, all
        or none."""
        try:
            with self._writer.begin() as conn:
                if cp.snapshots:
                    self._upsert_snapshots(conn, cp.snapshots, now)
                if cp.quarantine:
                    self._upsert_quarantine(conn, cp.quarantine, now, run_id)
                if cp.clear_quarantine:
                    t = m.quarantine
                    conn.execute(
                        sa.delete(t).where(t.c.entity == cp.entity,
                                           t.c.system == sa.bindparam("s"),
                                           t.c.key == sa.bindparam("k")),
                        [{"s": s, "k": k} for s, k in dict.fromkeys(cp.clear_quarantine)])
                if cp.clear_intents:
                    t = m.intents
                    conn.execute(
                        sa.delete(t).where(t.c.entity == cp.entity,
                                           t.c.target_system == sa.bindparam("s"),
                                           t.c.source_key == sa.bindparam("k")),
                        [{"s": s, "k": k} for s, k in dict.fromkeys(cp.clear_intents)])
                if cp.drop_snapshots or cp.drop_links or cp.tombstones:
                    self._apply_deletes(conn, cp)
                if cp.links:
                    self._insert_links(conn, cp.entity, cp.links, now)
                if cp.watermarks:
                    self._upsert_watermarks(conn, cp.entity, cp.watermarks, now)
        except exc.IntegrityError as e:
            raise StateConflict(f"checkpoint of {cp.entity!r} rolled back: it breaks a "
                                f"uniqueness rule of the state store ({e.orig})") from e

    def _apply_deletes(self, conn: sa.Connection, cp: Checkpoint) -> None:
        t = m.snapshots
        for system, key in dict.fromkeys(cp.drop_snapshots):
            conn.execute(sa.delete(t).where(t.c.system == system, t.c.entity == cp.entity,
                                            t.c.key == key))
        links = m.links
        for crm, erp in dict.fromkeys(cp.drop_links):
            conn.execute(sa.delete(links).where(links.c.entity == cp.entity,
                                                links.c.crm_key == crm, links.c.erp_key == erp))
        for crm, erp, side in cp.tombstones:
            conn.execute(sa.update(links).where(links.c.entity == cp.entity,
                                                links.c.crm_key == crm, links.c.erp_key == erp)
                         .values(deleted_in=side))

    def _upsert_snapshots(self, conn: sa.Connection, snaps: Sequence[SnapshotRow],
                          now: datetime) -> None:
        t = m.snapshots
        latest = {(s.system, s.entity, s.key): s for s in snaps}  # last row wins
        stmt = self._insert(t)
        ex = stmt.excluded
        stmt = stmt.on_conflict_do_update(
            index_elements=[t.c.system, t.c.entity, t.c.key],
            set_={"h1": ex.h1, "h2": ex.h2, "data": ex.data, "natural_key": ex.natural_key,
                  "source_updated": ex.source_updated, "seen_at": ex.seen_at})
        rows = [{"system": s.system, "entity": s.entity, "key": s.key, "h1": int(s.h1),
                 "h2": int(s.h2), "data": s.data, "natural_key": s.natural_key,
                 "source_updated": s.source_updated, "seen_at": now} for s in latest.values()]
        for chunk in _chunks(rows, 10_000):
            conn.execute(stmt, chunk)

    def _insert_links(self, conn: sa.Connection, entity: str, pairs: Sequence[tuple[str, str]],
                      now: datetime) -> None:
        wanted = list(dict.fromkeys(pairs))
        by_crm: dict[str, str] = {}
        by_erp: dict[str, str] = {}
        for crm, erp in wanted:  # the page itself must not link one key twice
            other_erp, other_crm = by_crm.setdefault(crm, erp), by_erp.setdefault(erp, crm)
            if other_erp != erp or other_crm != crm:
                raise StateConflict(
                    f"checkpoint of {entity!r} rolled back: it links {crm!r} <-> {erp!r} and "
                    f"also {crm!r} <-> {other_erp!r} or {other_crm!r} <-> {erp!r}")
        existing = set(self._links(conn, entity, list(by_crm), list(by_erp)))
        for crm, erp in existing:
            if (crm in by_crm and by_crm[crm] != erp) or (erp in by_erp and by_erp[erp] != crm):
                raise StateConflict(
                    f"checkpoint of {entity!r} rolled back: {crm!r} <-> {erp!r} is already "
                    f"linked; refusing to link {crm!r} <-> {by_crm.get(crm, '?')!r} or "
                    f"{by_erp.get(erp, '?')!r} <-> {erp!r}")
        new = [(c, e) for c, e in wanted if (c, e) not in existing]
        if new:
            conn.execute(sa.insert(m.links), [{"entity": entity, "crm_key": c, "erp_key": e,
                                               "created_at": now} for c, e in new])

    # ---------------------------------------------------------------- bindings

    @property
    def safe_url(self) -> str:
        """The state database's URL with any password hidden (for messages)."""
        return self.engine.url.render_as_string(hide_password=True)

    def bindings(self) -> dict[str, BindingRow]:
        """The systems this state was built with, by side (empty before first use)."""
        t = m.bindings
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t.c.side, t.c.kind, t.c.base_url, t.c.account_hash,
                                          t.c.salt, t.c.bound_at)).all()
        return {r.side: BindingRow(*r) for r in rows}

    def set_bindings(self, rows: Sequence[BindingRow], *, replace: bool) -> None:
        """Store the sides' bindings. ``replace=False`` (first use) keeps a side already bound
        by a concurrent process; ``replace=True`` (a deliberate rebind) overwrites."""
        if not rows:
            return
        t = m.bindings
        stmt = self._insert(t)
        if replace:
            stmt = stmt.on_conflict_do_update(index_elements=[t.c.side], set_={
                c: getattr(stmt.excluded, c)
                for c in ("kind", "base_url", "account_hash", "salt", "bound_at")})
        else:
            stmt = stmt.on_conflict_do_nothing(index_elements=[t.c.side])
        with self._writer.begin() as conn:
            conn.execute(stmt, [asdict(r) for r in rows])

    # ---------------------------------------------------------------- runs

    def start_run(self, kind: str, entities: Sequence[str], *, now: datetime) -> str:
        run_id = uuid.uuid4().hex
        with self._writer.begin() as conn:
            conn.execute(sa.insert(m.runs).values(id=run_id, kind=kind, status="running",
                                                  started_at=now, entities=list(entities),
                                                  report={}))
        return run_id

    def finish_run(self, run_id: str, status: str, report: dict[str, Any], *,
                   now: datetime) -> None:
        t = m.runs
        with self._writer.begin() as conn:
            done = conn.execute(sa.update(t).where(t.c.id == run_id).values(
                status=status, report=report, finished_at=now)).rowcount
        if not done:
            raise KeyError(f"no run {run_id!r} in the state store")

    def fail_orphaned_runs(self, *, now: datetime, grace_s: float = 60.0) -> list[str]:
        """Finish as failed every run still recorded as running that holds no lock and started
        more than ``grace_s`` ago: a live run holds its entities' locks from right after its
        start to its end, so such a run's process is gone (SIGKILL, OOM, power cut) and no
        later run of its entities took its lock over. Returns their ids."""
        t, locks = m.runs, m.locks
        with self._writer.begin() as conn:
            owners = {str(o).split(_HOLDER_SEP, 1)[0] for o in conn.scalars(sa.select(locks.c.owner))}
            candidates = conn.execute(sa.select(t.c.id).where(
                t.c.status == "running",
                t.c.started_at <= now - timedelta(seconds=grace_s))).scalars().all()
            orphans = [rid for rid in candidates if rid not in owners]
            for rid in orphans:
                conn.execute(sa.update(t).where(t.c.id == rid, t.c.status == "running").values(
                    status="failed", finished_at=now, report={
                        "error": "killed: its process ended without finishing the run (it holds "
                                 "no lock)"}))
        for rid in orphans:
            logger.warning("run {} marked failed: its process ended without finishing it", rid[:8])
        return orphans

    def runs(self, limit: int = 20) -> list[RunRow]:
        """The latest runs, newest first."""
        t = m.runs
        q = sa.select(t).order_by(t.c.started_at.desc(), t.c.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [_run_row(r) for r in conn.execute(q)]

    def run(self, run_id: str) -> RunRow | None:
        """A run by id or by a prefix of its id; an ambiguous prefix is a ``ConfigError``."""
        t = m.runs
        if not run_id:
            return None
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t).where(t.c.id == run_id)).first()
            if row is not None:
                return _run_row(row)
            rows = conn.execute(sa.select(t).where(t.c.id.startswith(run_id, autoescape=True))
                                .limit(2)).all()
        if len(rows) > 1:
            raise ConfigError(f"run id prefix {run_id!r} is ambiguous; give more characters")
        return _run_row(rows[0]) if rows else None

    # ---------------------------------------------------------------- locks

    def acquire_lock(self, name: str, owner: str, *, lease_s: float, now: datetime) -> bool:
        """Take ``name`` for ``lease_s`` seconds if it is free, expired, already ours, or held
        by a process of this host that no longer exists (killed: SIGKILL, OOM, power cut).

        One conditional upsert: the row is written only when absent, expired or ours, so two
        live owners can never both hold it on either backend. The stored owner carries the
        holder's host and pid (``owner|host:pid``) so a dead holder's lease is not waited out."""
        if self._try_lock(name, owner, lease_s=lease_s, now=now):
            return True
        t = m.locks
        with self.engine.connect() as conn:
            stored = conn.scalar(sa.select(t.c.owner).where(t.c.name == name))
        if stored is None or not _holder_dead(stored):
            return False
        with self._writer.begin() as conn:  # only that dead holder's row; a live taker wins
            gone = conn.execute(sa.delete(t).where(t.c.name == name, t.c.owner == stored))
            if gone.rowcount:
                _, _, where = stored.partition(_HOLDER_SEP)
                self._fail_dead_run(conn, stored, now, f"killed: lock {name!r} taken over from "
                                    f"a dead process ({where}) by run {owner[:8]}")
        return self._try_lock(name, owner, lease_s=lease_s, now=now)

    def _try_lock(self, name: str, owner: str, *, lease_s: float, now: datetime) -> bool:
        t = m.locks
        me = _lock_owner(owner)
        expires = now + timedelta(seconds=lease_s)
        stmt = self._insert(t).values(name=name, owner=me, acquired_at=now, expires_at=expires)
        ex = stmt.excluded
        stmt = stmt.on_conflict_do_update(
            index_elements=[t.c.name],
            set_={"owner": ex.owner, "acquired_at": ex.acquired_at, "expires_at": ex.expires_at},
            where=sa.or_(t.c.expires_at <= now, t.c.owner == me))
        with self._writer.begin() as conn:
            before = conn.execute(sa.select(t.c.owner, t.c.expires_at)
                                  .where(t.c.name == name)).first()
            conn.execute(stmt)
            holder = conn.scalar(sa.select(t.c.owner).where(t.c.name == name))
            if holder == me and before is not None and before[0] != me:
                self._fail_dead_run(conn, before[0], now, f"lease expired: lock {name!r} "
                                    f"(lease until {before[1].isoformat()}) taken over by run "
                                    f"{owner[:8]}")
        return holder == me

    @staticmethod
    def _fail_dead_run(conn: sa.Connection, stored_owner: str, now: datetime,
                       reason: str) -> None:
        """Finish the run of a lock holder that was taken over as failed, with ``reason`` —
        only while it is still recorded as running (a live holder that finishes later
        records its own outcome)."""
        t = m.runs
        run_id = stored_owner.split(_HOLDER_SEP, 1)[0]
        conn.execute(sa.update(t).where(t.c.id == run_id, t.c.status == "running").values(
            status="failed", finished_at=now, report={"error": reason}))
        logger.warning("run {} marked failed: {}", run_id[:8], reason)

    def renew_lock(self, name: str, owner: str, *, lease_s: float, now: datetime) -> bool:
        """Extend our lease; False when the lock is no longer ours (lost to a takeover)."""
        t = m.locks
        with self._writer.begin() as conn:
            n = conn.execute(sa.update(t).where(t.c.name == name, t.c.owner == _lock_owner(owner))
                             .values(expires_at=now + timedelta(seconds=lease_s))).rowcount
        return n > 0

    def release_lock(self, name: str, owner: str) -> None:
        """Let go of ``name`` if we hold it; someone else's lock is left alone."""
        t = m.locks
        with self._writer.begin() as conn:
            conn.execute(sa.delete(t).where(t.c.name == name, t.c.owner == _lock_owner(owner)))

    def live_lock_holder(self, name: str, *, now: datetime) -> str | None:
        """The run id holding ``name`` right now: its lease has not expired and its process is
        not known to be dead (a SIGKILLed run on this host is not "in progress")."""
        t = m.locks
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t.c.owner, t.c.expires_at).where(t.c.name == name)).first()
        if row is None or row[1] <= now or _holder_dead(row[0]):
            return None
        return str(row[0].split(_HOLDER_SEP, 1)[0])

    def lock_holder(self, name: str) -> tuple[str, datetime] | None:
        """(owner, expires_at) of the lock row, expired or not; None when nobody holds it."""
        t = m.locks
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t.c.owner, t.c.expires_at).where(t.c.name == name)).first()
        return None if row is None else (row[0].split(_HOLDER_SEP, 1)[0], row[1])


_HOLDER_SEP = "|"


def _lock_owner(owner: str) -> str:
    """The owner as stored in a lock row: the run's id plus this process's host and pid."""
    return f"{owner}{_HOLDER_SEP}{socket.gethostname()}:{os.getpid()}"


def _holder_dead(stored: str) -> bool:
    """True when a lock row's holder ran on this host and its process is gone."""
    _, sep, where = stored.partition(_HOLDER_SEP)
    host, _, pid = where.rpartition(":")
    if not sep or host != socket.gethostname() or not pid.isdigit():
        return False  # another host's process (or an old row): only its lease can expire
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, another user's
    return False



def _run_row(row: sa.Row[Any]) -> RunRow:
    r = row._mapping
    return RunRow(id=r["id"], kind=r["kind"], status=r["status"], started_at=r["started_at"],
                  finished_at=r["finished_at"], entities=list(r["entities"] or []),
                  report=dict(r["report"] or {}))


def _scrub(text: str, url: sa.URL) -> str:
    """``text`` with the URL's password removed, should a driver echo it."""
    if url.password:
        text = text.replace(str(url.password), "***")
    return text


_SQLITE_EVENTS: weakref.WeakSet[sa.Engine] = weakref.WeakSet()  # engines already set up


def _install_sqlite_events(engine: sa.Engine) -> None:
    """WAL, busy timeout and foreign keys on every connection; explicit BEGIN so that write
    transactions can be BEGIN IMMEDIATE (pysqlite's own implicit BEGIN is switched off)."""
    if engine in _SQLITE_EVENTS:
        return

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        mode = conn.get_execution_options().get("ponte_begin", "")
        conn.exec_driver_sql(f"BEGIN {mode}".strip())

    _SQLITE_EVENTS.add(engine)
