"""The connector contract, reading side: every (connector, simulator) pair lists changes to the
end under a page cap, honours the half-open window ``[since, until)``, pages through records
sharing one timestamp, reports ``updated_at`` as aware UTC at its declared precision, reads by
keys and finds by natural key and external id. Only the ``Connector`` protocol is used."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from contract_harness import FACTORY_TAKES_SLEEP, NEEDS_FAKE_SLEEP, Pair

from etl.connectors.base import Connector, Record, WriteOp
from etl.errors import RecordError
from etl.watermark import Window, floor_to

T0 = datetime(2026, 3, 10, 13, 0, 0, tzinfo=UTC)
STEP = timedelta(seconds=1)  # a multiple of every pair's precision (Omie: 1 s, Ploomes: 1 ms)


def listed(conn: Connector, entity: str, window: Window) -> list[Record]:
    return [record for page in conn.list_changed(entity, window) for record in page]


def keys(conn: Connector, entity: str, records: list[Record]) -> list[str]:
    return [conn.key_of(entity, r) for r in records]


def create_at(pair: Pair, at: datetime, n: int) -> str:
    pair.freeze(at)
    return pair.ui_create(n)


def assert_ordered(conn: Connector, entity: str, records: list[Record]) -> None:
    stamps = [conn.updated_at(entity, r) for r in records]
    assert stamps == sorted(stamps), "pages must be ordered by updated-at ascending"


def test_is_a_connector_serving_the_entity(pair: Pair) -> None:
    conn = pair.connector()
    assert isinstance(conn, Connector)
    assert conn.system == pair.profile.side
    assert pair.entity in conn.entities()
    caps = conn.capabilities
    assert caps.page_size >= 1 and caps.batch_size >= 1 and caps.max_concurrency >= 1
    assert timedelta(0) < caps.clock_precision <= STEP


def test_lists_to_the_end_under_a_server_page_cap(pair: Pair) -> None:
    pair.faults(page_cap=3)
    made = [create_at(pair, T0 + i * STEP, i) for i in range(11)]
    conn = pair.connector()
    for window in (Window(None), Window(T0, T0 + 20 * STEP)):
        records = listed(conn, pair.entity, window)
        got = keys(conn, pair.entity, records)
        assert Counter(got) == Counter(made), window
        assert_ordered(conn, pair.entity, records)
    lists = sum(r["count"] for r in pair.requests()
                if not pair.profile.is_write_endpoint(r["endpoint"]) and r["status"] == 200)
    assert lists >= 2 * 4  # 11 records, at most 3 a page, twice: the cap was really paged past


@pytest.mark.parametrize(
    ("since", "until", "expected"),
    [
        (0, 2, ["at_start", "inside"]),  # at the start: in; exactly at the end: out
        (None, 2, ["before", "at_start", "inside"]),
        (0, None, ["at_start", "inside", "at_end"]),
        (None, None, ["before", "at_start", "inside", "at_end"]),
        (1, 1, []),  # an empty window reads nothing
        (3, None, []),  # after the last change
    ],
    ids=["start-in-end-out", "open-start", "open-end", "everything", "empty", "past-the-end"],
)
def test_window_is_half_open(pair: Pair, since: int | None, until: int | None,
                             expected: list[str]) -> None:
    made = {name: create_at(pair, T0 + offset * STEP, offset + 1)
            for offset, name in ((-1, "before"), (0, "at_start"), (1, "inside"), (2, "at_end"))}
    conn = pair.connector()
    window = Window(None if since is None else T0 + since * STEP,
                    None if until is None else T0 + until * STEP)
    got = keys(conn, pair.entity, listed(conn, pair.entity, window))
    assert sorted(got) == sorted(made[name] for name in expected)


def test_many_records_sharing_one_timestamp_page_across_a_break(pair: Pair) -> None:
    pair.faults(page_cap=3, same_timestamp=True)
    before = create_at(pair, T0 - STEP, 0)
    pair.freeze(T0)
    shared = [pair.ui_create(i) for i in range(1, 9)]  # 8 records, one instant, pages of 3
    conn = pair.connector()
    records = listed(conn, pair.entity, Window(T0, T0 + STEP))
    assert Counter(keys(conn, pair.entity, records)) == Counter(shared)
    assert {conn.updated_at(pair.entity, r) for r in records} == {T0}
    everything = keys(conn, pair.entity, listed(conn, pair.entity, Window(None)))
    assert Counter(everything) == Counter([before, *shared])


@pytest.mark.parametrize("offset", [
    timedelta(0),
    timedelta(microseconds=712_345),  # below a second: floored to the declared precision
    timedelta(seconds=59, microseconds=999_999),
    timedelta(hours=3, minutes=1),  # past midnight in UTC, not yet in Brasília
], ids=["whole-second", "sub-second", "end-of-minute", "day-boundary"])
def test_updated_at_is_aware_utc_at_the_declared_precision(pair: Pair,
                                                           offset: timedelta) -> None:
    at = datetime(2026, 3, 10, 23, 59, 0, tzinfo=UTC) + offset
    key = create_at(pair, at, 1)
    conn = pair.connector()
    precision = conn.capabilities.clock_precision
    records = listed(conn, pair.entity, Window(None))
    assert keys(conn, pair.entity, records) == [key]
    stamp = conn.updated_at(pair.entity, records[0])
    assert stamp.tzinfo is not None and stamp.utcoffset() == timedelta(0)
    assert stamp == floor_to(at, precision)


def test_read_by_keys_leaves_missing_keys_out(pair: Pair) -> None:
    made = [pair.ui_create(i) for i in range(3)]
    gone = pair.ui_create(3)
    pair.ui_delete(gone)
    conn = pair.connector()
    asked = [made[0], "999999", made[1], gone, made[2]]
    assert sorted(keys(conn, pair.entity, conn.read_by_keys(pair.entity, asked))) == sorted(made)
    assert conn.read_by_keys(pair.entity, ["999998"]) == []
    assert conn.read_by_keys(pair.entity, []) == []


def test_read_by_many_keys_in_chunks_under_a_page_cap(pair: Pair) -> None:
    pair.faults(page_cap=7)
    made = [pair.ui_create(i) for i in range(120)]
    wanted = made[5:115]  # 110 present keys, asked along with 15 missing ones
    missing = [str(900_000 + i) for i in range(15)]
    conn = pair.connector()
    got = keys(conn, pair.entity, conn.read_by_keys(pair.entity, wanted + missing))
    assert Counter(got) == Counter(wanted)


def test_find_by_natural_key(pair: Pair) -> None:
    values = pair.profile.natural_values(4)
    made = [pair.ui_create(i, value) for i, value in enumerate(values[:3])]
    pair.ui_create(9)  # a record without the natural key is never a match
    conn = pair.connector()
    field = pair.profile.natural_field
    found = conn.find_by(pair.entity, field, [values[1], values[3]])  # values[3]: nobody's
    assert keys(conn, pair.entity, found) == [made[1]]
    found = conn.find_by(pair.entity, field, values[:3])
    assert sorted(keys(conn, pair.entity, found)) == sorted(made)
    assert conn.find_by(pair.entity, field, []) == []


def test_find_by_many_natural_keys_under_a_page_cap(pair: Pair) -> None:
    pair.faults(page_cap=7)
    values = pair.profile.natural_values(70)
    made = {value: pair.ui_create(i, value) for i, value in enumerate(values[:60])}
    asked = values[3:]  # 57 present, 10 nobody's
    conn = pair.connector()
    found = keys(conn, pair.entity, conn.find_by(pair.entity, pair.profile.natural_field, asked))
    assert Counter(found) == Counter(made[c] for c in asked if c in made)


def test_find_by_external_id(pair: Pair) -> None:
    if pair.profile.external_field is None:
        pytest.skip(f"{pair.profile.name}: the collection has no external id field")
    conn = pair.connector()
    results = conn.write_batch(pair.entity, [
        WriteOp("create", pair.profile.create_payload(i), external_id=f"contract:{i}")
        for i in (1, 2)])
    assert all(r.ok for r in results), [r.error for r in results]
    pair.ui_create(3)
    reader = pair.connector()  # a later run: nothing remembered from the writes
    field = pair.profile.external_field
    found = reader.find_by(pair.entity, field, ["contract:2", "contract:404"])
    assert keys(reader, pair.entity, found) == [results[1].key]
    assert reader.find_by(pair.entity, field, ["contract:404"]) == []


def test_records_changed_while_paging_are_not_lost(pair: Pair) -> None:
    pair.faults(page_cap=3)
    made = [create_at(pair, T0 + i * STEP, i) for i in range(10)]
    conn = pair.connector()
    pair.freeze(T0 + 100 * STEP)
    seen: list[str] = []
    for n, page in enumerate(conn.list_changed(pair.entity, Window(None))):
        seen += keys(conn, pair.entity, page)
        if n == 0:  # a user edits one record already read and one not read yet
            pair.ui_update(made[1], pair.profile.edit(1))
            pair.ui_update(made[7], pair.profile.edit(7))
    counts = Counter(seen)
    assert set(counts) == set(made)
    assert {k for k, v in counts.items() if v > 1} <= {made[1], made[7]}


def test_an_undated_record_is_listed_for_the_engine_to_quarantine(pair: Pair) -> None:
    if pair.profile.undated is None:
        pytest.skip(f"{pair.profile.name}: the simulator cannot serve an undated record")
    dated = [create_at(pair, T0 + i * STEP, i) for i in range(3)]
    undated = pair.ui_create_raw(9, pair.profile.undated)
    conn = pair.connector()
    records = {conn.key_of(pair.entity, r): r for r in listed(conn, pair.entity, Window(None))}
    assert set(records) == {*dated, undated}
    for key in dated:
        assert conn.updated_at(pair.entity, records[key]) is not None
    # issue 10's contract: None; the current protocol raises a RecordError naming the field
    try:
        stamp = conn.updated_at(pair.entity, records[undated])
    except RecordError as exc:
        assert exc.field, "the error names the field without a usable change time"
    else:
        assert stamp is None


@NEEDS_FAKE_SLEEP
def test_a_vendor_rule_refusing_repeated_reads_is_waited_out(pair: Pair) -> None:
    if pair.profile.throttle_knobs is None:
        pytest.skip(f"{pair.profile.name}: the system has no rule against repeated reads")
    pair.faults(**pair.profile.throttle_knobs)
    made = [pair.ui_create(i) for i in range(3)]
    conn = pair.connector()
    first = keys(conn, pair.entity, listed(conn, pair.entity, Window(None)))
    again = pair.connector()  # a second run a moment later: its own connector, same call
    assert sorted(first) == sorted(made)
    assert sorted(keys(again, pair.entity, listed(again, pair.entity, Window(None)))) \
        == sorted(made)
    refused = sum(r["count"] for r in pair.requests() if r["status"] != 200)
    assert refused >= 1, "the second run's repeated read was refused (and then waited out)"
    if FACTORY_TAKES_SLEEP:
        assert pair.sleep.waits
