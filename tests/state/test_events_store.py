"""The events part of the store (``ponte serve``), on each backend: an event is stored once per
vendor identity, read when due, finished or put back with a backoff, failed after the last
attempt."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from etl.state import Store
from etl.state.events import EventIn

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def _event(event_id: str, *, side: str = "crm", key: str = "7", action: str = "update",
           status: str = "pending") -> EventIn:
    return EventIn(side, event_id, "Contacts", "customers", key, action, status,
                   {"New": {"Id": int(key)}})


def test_an_event_is_stored_once_per_side_and_identity(store: Store) -> None:
    assert store.add_event(_event("a"), now=T0, due_at=T0) is True
    assert store.add_event(_event("a"), now=T0, due_at=T0) is False
    assert store.add_event(_event("a", side="erp"), now=T0, due_at=T0) is True
    rows = store.events()
    assert [(r.side, r.event_id) for r in rows] == [("erp", "a"), ("crm", "a")]
    assert store.event_payload(rows[1].id) == {"New": {"Id": 7}}
    assert rows[1].received_at == T0 and rows[1].attempts == 0


def test_only_due_pending_events_are_read(store: Store) -> None:
    store.add_event(_event("now"), now=T0, due_at=T0)
    store.add_event(_event("later", key="8"), now=T0, due_at=T0 + timedelta(seconds=5))
    store.add_event(_event("skip", status="ignored"), now=T0, due_at=T0)
    assert [e.event_id for e in store.due_events(T0)] == ["now"]
    assert [e.event_id for e in store.due_events(T0 + timedelta(seconds=5))] == ["now", "later"]
    assert store.next_event_due() == T0
    assert store.oldest_pending_event() == T0
    assert store.event_counts() == {"pending": 2, "done": 0, "ignored": 1, "failed": 0}


def test_finished_events_are_done_and_put_back_ones_fail_after_the_last_attempt(
        store: Store) -> None:
    store.add_event(_event("a"), now=T0, due_at=T0)
    store.add_event(_event("b", key="8"), now=T0, due_at=T0)
    a, b = sorted(store.due_events(T0), key=lambda e: e.event_id)
    store.finish_events([a.id], now=T0 + timedelta(seconds=1))
    later = T0 + timedelta(seconds=30)
    assert store.retry_events([b.id], now=T0, due_at=later, error="lock held",
                              max_attempts=2) == 0
    (back,) = store.events(status="pending")
    assert (back.attempts, back.due_at, back.error) == (1, later, "lock held")
    assert store.due_events(T0) == []
    assert store.retry_events([b.id], now=later, due_at=later, error="still held",
                              max_attempts=2) == 1
    (failed,) = store.events(status="failed")
    assert (failed.attempts, failed.error, failed.processed_at) == (2, "still held", later)
    (done,) = store.events(status="done")
    assert done.processed_at == T0 + timedelta(seconds=1)
    store.finish_events([b.id], now=later)  # only pending events are finished
    assert store.event_counts() == {"pending": 0, "done": 1, "ignored": 0, "failed": 1}
    assert store.next_event_due() is None and store.oldest_pending_event() is None
