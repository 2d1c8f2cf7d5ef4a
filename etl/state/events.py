"""What the store keeps of webhook events (``ponte serve``).

An accepted event is stored before the vendor is answered, once per vendor identity
(``side``, ``event_id``): a redelivery inserts nothing. The worker then reads the pending
events that are due, and marks each ``done`` after its sync returned, or puts it back with
one attempt more and a later ``due_at`` (``failed`` after the last attempt, with the error).
Events the mappings do not cover are stored ``ignored``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from etl.state import models as m
from etl.state.db import StoreBase, chunks

STATUSES = ("pending", "done", "ignored", "failed")


@dataclass(frozen=True)
class EventIn:
    """An event as received: who sent it, what it names, and its record without secrets."""

    side: str
    event_id: str
    collection: str | None
    entity: str | None
    key: str | None
    action: str
    status: str  # pending | ignored
    payload: dict[str, Any] | None = None


@dataclass(frozen=True)
class EventRow:
    id: int
    side: str
    event_id: str
    collection: str | None
    entity: str | None
    key: str | None
    action: str
    status: str
    attempts: int
    received_at: datetime
    due_at: datetime
    processed_at: datetime | None
    error: str | None


_COLUMNS = ("id", "side", "event_id", "collection", "entity", "key", "action", "status",
            "attempts", "received_at", "due_at", "processed_at", "error")


class EventStore(StoreBase):
    """Webhook events: stored once, processed later."""

    def add_event(self, event: EventIn, *, now: datetime, due_at: datetime) -> bool:
        """Store ``event`` (committed when this returns); False when the same vendor event
        was stored before (a redelivery: nothing changes)."""
        t = m.events
        stmt = self._insert(t).values(
            side=event.side, event_id=event.event_id, collection=event.collection,
            entity=event.entity, key=event.key, action=event.action, status=event.status,
            attempts=0, received_at=now, due_at=due_at,
            processed_at=now if event.status != "pending" else None, error=None,
            payload=event.payload,
        ).on_conflict_do_nothing(index_elements=[t.c.side, t.c.event_id]).returning(t.c.id)
        with self._writer.begin() as conn:  # a row comes back only when one was inserted
            return conn.execute(stmt).first() is not None

    def due_events(self, now: datetime, *, limit: int = 1000) -> list[EventRow]:
        """Pending events whose ``due_at`` has come, oldest first."""
        t = m.events
        query = (sa.select(*(t.c[c] for c in _COLUMNS))
                 .where(t.c.status == "pending", t.c.due_at <= now)
                 .order_by(t.c.id).limit(limit))
        with self.engine.connect() as conn:
            return [EventRow(*r) for r in conn.execute(query)]

    def pending_of(self, keys: Sequence[str]) -> list[EventRow]:
        """The pending events naming any of ``keys`` (due or not), oldest first."""
        t = m.events
        out: list[EventRow] = []
        with self.engine.connect() as conn:
            for chunk in chunks(list(dict.fromkeys(keys)), self._chunk):
                out += [EventRow(*r) for r in conn.execute(
                    sa.select(*(t.c[c] for c in _COLUMNS))
                    .where(t.c.status == "pending", t.c.key.in_(chunk)).order_by(t.c.id))]
        return out

    def next_event_due(self) -> datetime | None:
        """When the earliest pending event falls due (None: nothing pending)."""
        return self._earliest_pending(m.events.c.due_at)

    def oldest_pending_event(self) -> datetime | None:
        """When the oldest event still pending was received (a stalled backlog's age)."""
        return self._earliest_pending(m.events.c.received_at)

    def _earliest_pending(self, column: sa.Column[datetime]) -> datetime | None:
        with self.engine.connect() as conn:
            value: datetime | None = conn.execute(
                sa.select(sa.func.min(column)).where(m.events.c.status == "pending")).scalar()
        return None if value is None else m.to_utc(value)

    def events(self, *, status: str | None = None, limit: int = 100) -> list[EventRow]:
        """The latest events (of one status), newest first."""
        t = m.events
        query = sa.select(*(t.c[c] for c in _COLUMNS)).order_by(t.c.id.desc()).limit(limit)
        if status is not None:
            query = query.where(t.c.status == status)
        with self.engine.connect() as conn:
            return [EventRow(*r) for r in conn.execute(query)]

    def event_payload(self, event_id: int) -> dict[str, Any] | None:
        t = m.events
        with self.engine.connect() as conn:
            value = conn.execute(sa.select(t.c.payload).where(t.c.id == event_id)).scalar()
        return value if isinstance(value, dict) else None

    def finish_events(self, ids: Sequence[int], *, now: datetime, status: str = "done",
                      error: str | None = None) -> None:
        """Mark pending events ``done`` (or ``ignored``/``failed`` with ``error``)."""
        t = m.events
        with self._writer.begin() as conn:
            for chunk in chunks(list(ids), self._chunk):
                conn.execute(sa.update(t).where(t.c.id.in_(chunk), t.c.status == "pending")
                             .values(status=status, processed_at=now, error=error))

    def retry_events(self, ids: Sequence[int], *, now: datetime, due_at: datetime, error: str,
                     max_attempts: int) -> int:
        """One attempt more for each event, due again at ``due_at``; an event that has had
        ``max_attempts`` becomes ``failed`` with ``error``. Returns how many failed."""
        t = m.events
        failed = 0
        with self._writer.begin() as conn:
            for chunk in chunks(list(ids), self._chunk):
                base = sa.update(t).where(t.c.id.in_(chunk), t.c.status == "pending")
                failed += conn.execute(
                    base.where(t.c.attempts + 1 >= max_attempts).values(
                        status="failed", attempts=t.c.attempts + 1, processed_at=now,
                        error=error)).rowcount
                conn.execute(base.values(attempts=t.c.attempts + 1, due_at=due_at,
                                         error=error))
        return failed

    def postpone_events(self, ids: Sequence[int], *, due_at: datetime) -> None:
        """Pending events due again at ``due_at``, with no attempt counted (the entity was
        busy with another run: nothing was tried)."""
        t = m.events
        with self._writer.begin() as conn:
            for chunk in chunks(list(ids), self._chunk):
                conn.execute(sa.update(t).where(t.c.id.in_(chunk), t.c.status == "pending")
                             .values(due_at=due_at))

    def event_counts(self) -> dict[str, int]:
        """How many events each status holds (every status named, 0 when none)."""
        t = m.events
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t.c.status, sa.func.count()).group_by(t.c.status))
            found = {str(s): int(n) for s, n in rows}
        return {s: found.get(s, 0) for s in STATUSES} | found


__all__ = ["STATUSES", "EventIn", "EventRow", "EventStore"]
