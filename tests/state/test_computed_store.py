"""The store's part of computed fields, on SQLite and PostgreSQL: facts mark the records they
belong to only when they change, a mark set again meanwhile survives the clearing of the one
read, and facts are found by link and by the part of the window that moved."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from etl.state import Checkpoint, Store
from etl.state.computed import FactRow

T, S = "customers", "invoiced_orders"


def day(d: int, m: int = 1, y: int = 2026) -> datetime:
    return datetime(y, m, d, tzinfo=UTC)


def test_new_and_changed_facts_mark_their_records(store: Store) -> None:
    assert store.record_facts(T, S, [FactRow("o1", "c1", 10.0, day(1), True),
                                     FactRow("o2", "c2", 5.5, day(2), False)]) == 2
    assert set(store.computed_marks(T)) == {"c1", "c2"}
    store.clear_computed_marks(T, store.computed_marks(T))
    # the same facts again (an overlap re-read): nothing marked
    assert store.record_facts(T, S, [FactRow("o1", "c1", 10.0, day(1), True)]) == 0
    assert store.computed_marks(T) == {}
    # an order moved to another customer: both are marked
    assert store.record_facts(T, S, [FactRow("o1", "c3", 10.0, day(1), True)]) == 1
    assert set(store.computed_marks(T)) == {"c1", "c3"}
    frame = store.facts_for(T, S, ["c1", "c3"])
    assert frame.to_dict("records") == [{"link": "c3", "amount": 10.0,
                                         "at": frame["at"][0], "counts": True}]
    assert frame["at"][0].to_pydatetime() == day(1)


def test_a_mark_set_again_meanwhile_is_not_cleared(open_store: Callable[[], Store]) -> None:
    run, orders = open_store(), open_store()
    orders.record_facts(T, S, [FactRow("o1", "c1", 10.0, day(1), True)])
    read = run.computed_marks(T)  # the customers run reads the marks ...
    orders.record_facts(T, S, [FactRow("o1", "c1", 12.0, day(1), True)])  # ... an order changes
    run.clear_computed_marks(T, read)
    assert set(run.computed_marks(T)) == {"c1"}
    run.clear_computed_marks(T, run.computed_marks(T))
    assert run.computed_marks(T) == {}


def test_links_crossing_the_window_and_the_cutoff(store: Store) -> None:
    store.record_facts(T, S, [FactRow("o1", "c1", 1.0, day(5), True),
                              FactRow("o2", "c2", 1.0, day(20), True),
                              FactRow("o3", "c3", 1.0, day(6), False),
                              FactRow("o4", "c4", 1.0, day(10), True)])
    assert store.links_crossing(T, S, day(5), day(10)) == ["c1"]
    assert store.computed_cutoff(T, S) is None
    store.set_computed_cutoff(T, S, day(10))
    store.set_computed_cutoff(T, S, day(11))
    assert store.computed_cutoff(T, S) == day(11)


def test_a_checkpoint_that_links_records_marks_those_with_facts(store: Store) -> None:
    store.record_facts(T, S, [FactRow("o1", "c1", 10.0, day(1), True)])
    store.clear_computed_marks(T, store.computed_marks(T))
    store.checkpoint(Checkpoint(T, links=[("x1", "c1"), ("x2", "c2")],
                                computed_marks=["c1", "c2"]), now=day(3))
    # c2 has no facts: nothing to compute for it
    assert set(store.computed_marks(T)) == {"c1"}
    assert dict(store.links(T)) == {"x1": "c1", "x2": "c2"}
