"""Quarantine and create intents: records that could not be synced yet, and creates that were
about to be sent.

A quarantined record is retried with a growing backoff (:func:`etl.state.rows.quarantine_backoff`)
until it syncs or an operator drops it; a dropped entry keeps the record as last read, so the
record is ignored while it stays the same. An intent is written, durably, before a create is
sent, so that a run killed mid-create finds the record it made instead of making a second one.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from etl.state import models as m
from etl.state.db import StoreBase, chunks
from etl.state.rows import (
    DROPPED,
    NEVER,
    IntentRow,
    QuarantineEntry,
    QuarantineRow,
    quarantine_backoff,
)


class QuarantineStore(StoreBase):
    """The quarantine and the create intents."""

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
            for chunk in chunks(keys, self._chunk):
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
        self.record_intents(entity, target_system, [(source_key, external_id, payload)],
                            now=now)

    def record_intents(self, entity: str, target_system: str,
                       intents: Sequence[tuple[str, str, dict[str, Any]]], *,
                       now: datetime) -> None:
        """Several intents ``(source_key, external_id, payload)`` in one transaction (a write
        chunk's creates), durable before any of them is sent."""
        if not intents:
            return
        t = m.intents
        rows = {k: {"entity": entity, "target_system": target_system, "source_key": k,
                    "external_id": ext, "payload": payload, "created_at": now}
                for k, ext, payload in intents}  # one row per source key: the last wins
        stmt = self._insert(t)
        stmt = stmt.on_conflict_do_update(
            index_elements=[t.c.entity, t.c.target_system, t.c.source_key],
            set_={"external_id": stmt.excluded.external_id, "payload": stmt.excluded.payload,
                  "created_at": stmt.excluded.created_at})
        with self._writer.begin() as conn:  # many rows, one statement compiled once (cached)
            conn.execute(stmt, list(rows.values()))

    def pending_intents(self, entity: str, target_system: str) -> list[IntentRow]:
        t = m.intents
        q = (sa.select(t).where(t.c.entity == entity, t.c.target_system == target_system)
             .order_by(t.c.id))
        with self.engine.connect() as conn:
            return [IntentRow(**r._mapping) for r in conn.execute(q)]

