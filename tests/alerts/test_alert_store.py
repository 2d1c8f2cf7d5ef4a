"""The alerts table on SQLite and PostgreSQL: transitions and announcements are claimed by one
store only, even when two stores on one database race for them."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from etl.state import Store, Transition
from etl.state import models as m

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def test_start_refresh_clear_and_restart(open_store: Callable[[], Store]) -> None:
    store = open_store()
    assert store.apply_conditions({"lag:customers:crm": "2h old", "backlog": "3 events"},
                                  now=T0) == [Transition("backlog", True),
                                              Transition("lag:customers:crm", True)]
    assert store.apply_conditions({"backlog": "4 events"}, now=T0 + timedelta(minutes=1)) == [
        Transition("lag:customers:crm", False)]
    rows = {r.condition: r for r in store.alerts()}
    assert rows["backlog"].detail == "4 events" and rows["backlog"].since == T0
    lag = rows["lag:customers:crm"]
    assert not lag.active and lag.cleared_at == T0 + timedelta(minutes=1)
    assert lag.notified_at == T0 + timedelta(minutes=1)  # never announced: cleared silently
    assert [r.condition for r in store.alerts(active_only=True)] == ["backlog"]
    # it starts again: a new start, to be announced
    later = T0 + timedelta(hours=1)
    assert store.apply_conditions({"backlog": "4", "lag:customers:crm": "3h"}, now=later) == [
        Transition("lag:customers:crm", True)]
    again = {r.condition: r for r in store.alerts()}["lag:customers:crm"]
    assert again.active and again.since == later and again.cleared_at is None
    assert again.notified_at is None


def test_an_announced_clear_is_announced_and_a_release_gives_it_back(
        open_store: Callable[[], Store]) -> None:
    store = open_store()
    store.apply_conditions({"quarantine": "60 records"}, now=T0)
    [claimed] = store.claim_announcements(now=T0)
    assert claimed.active and claimed.notified_at == T0
    store.apply_conditions({}, now=T0 + timedelta(minutes=5))
    [clear] = store.claim_announcements(now=T0 + timedelta(minutes=6))
    assert not clear.active and clear.cleared_at == T0 + timedelta(minutes=5)
    store.release_announcements([clear])
    assert [r.notified_at for r in store.alerts()] == [None]
    assert len(store.claim_announcements(now=T0 + timedelta(minutes=7))) == 1


def test_two_stores_racing_claim_each_transition_and_announcement_once(
        open_store: Callable[[], Store]) -> None:
    stores = [open_store(), open_store()]
    rounds = 15
    barrier = threading.Barrier(2)
    transitions: list[Transition] = []
    announced: list[tuple[str, bool]] = []
    guard = threading.Lock()
    errors: list[BaseException] = []

    def contender(store: Store) -> None:
        try:
            for i in range(rounds):
                found = {"backlog": f"round {i}"} if i % 2 == 0 else {}
                barrier.wait()
                made = store.apply_conditions(found, now=T0 + timedelta(minutes=i))
                got = store.claim_announcements(now=T0 + timedelta(minutes=i))
                with guard:
                    transitions.extend(made)
                    announced.extend((r.condition, r.active) for r in got)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=contender, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(transitions) == rounds  # start, clear, start... each made by one store
    assert announced == [("backlog", i % 2 == 0) for i in range(rounds)]


def test_stalled_events_counts_pending_events_received_before(
        open_store: Callable[[], Store]) -> None:
    store = open_store()
    assert store.stalled_events(T0) == (0, None)
    with store.engine.begin() as conn:
        for i, (status, age) in enumerate([("pending", 30), ("pending", 9), ("done", 60),
                                           ("pending", 1)]):
            at = T0 - timedelta(minutes=age)
            conn.execute(sa.insert(m.events).values(
                side="erp", event_id=f"e{i}", action="update", status=status, attempts=0,
                received_at=at, due_at=at))
    count, oldest = store.stalled_events(T0 - timedelta(minutes=5))
    assert count == 2 and oldest == T0 - timedelta(minutes=30)
    assert oldest.tzinfo is not None
