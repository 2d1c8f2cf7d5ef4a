"""The connector contract, writing and failing side: creates are idempotent when their answer is
lost, every fault is classified (429 waited out, 5xx and timeouts retried then
``SystemUnavailable``, a rejected record a ``RecordError`` naming the field, bad credentials
``SystemUnavailable`` naming the setting and never the secret), ``calls`` counts what was sent,
and ``delete`` is done when the record is already gone. Only the ``Connector`` protocol is used."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator

import pytest
from contract_harness import FACTORY_TAKES_SLEEP, NEEDS_FAKE_SLEEP, Pair
from loguru import logger

from etl.connectors.base import Connector, Record, WriteOp, WriteResult
from etl.errors import RecordError, SystemUnavailable
from etl.watermark import Window


def listed_keys(conn: Connector, entity: str) -> list[str]:
    return [conn.key_of(entity, r) for page in conn.list_changed(entity, Window(None))
            for r in page]


def creates(pair: Pair, *numbers: int, prefix: str = "contract") -> list[WriteOp]:
    return [WriteOp("create", pair.profile.create_payload(n), external_id=f"{prefix}:{n}")
            for n in numbers]


def identities(pair: Pair) -> Counter[str]:
    """How many stored records carry each external id (or natural key, see the profile)."""
    field = pair.profile.identity_field
    return Counter(str(r[field]) for r in pair.stored() if r.get(field))


def statuses(pair: Pair) -> Counter[int]:
    out: Counter[int] = Counter()
    for row in pair.requests():
        out[row["status"]] += row["count"]
    return out


def assert_written(pair: Pair, results: list[WriteResult], ops: list[WriteOp]) -> None:
    """Every op succeeded, once: one stored record per external id, the key it reported."""
    assert all(r.ok for r in results), [r.error for r in results]
    profile = pair.profile
    by_key = {str(r[profile.admin_key]): r for r in pair.stored()}
    for op, result in zip(ops, results, strict=True):
        assert result.key in by_key, f"{op.external_id}: reported key {result.key} not stored"
        assert str(by_key[result.key][profile.identity_field]) == profile.identity(op)
    assert identities(pair) == Counter(profile.identity(op) for op in ops)


@pytest.fixture
def captured_logs() -> Iterator[list[str]]:
    lines: list[str] = []
    sink = logger.add(lambda message: lines.append(str(message)), level="TRACE")
    try:
        yield lines
    finally:
        logger.remove(sink)


# --- idempotent creates -------------------------------------------------------------------

def test_create_whose_answer_is_lost_is_not_duplicated(pair: Pair) -> None:
    conn = pair.connector()
    pair.transport.lose_write_answers = 1
    ops = creates(pair, 1)
    results = conn.write_batch(pair.entity, ops)
    assert pair.transport.lost == 1  # the create was applied and its answer never arrived
    assert_written(pair, results, ops)


def test_dropped_connections_never_duplicate_creates(pair: Pair) -> None:
    pair.faults(drop_rate=0.3)  # the sandbox's knob: some answers (Ploomes: after the write) lost
    conn = pair.connector()
    ops = creates(pair, *range(6), prefix="dropped")
    results = conn.write_batch(pair.entity, ops)
    pair.faults(drop_rate=0.0)
    assert statuses(pair)[0] > 0  # some connections really were dropped
    assert_written(pair, results, ops)


# --- error classification -------------------------------------------------------------------

@pytest.mark.parametrize("action", ["read", "write"])
def test_429_is_waited_out(pair: Pair, action: str) -> None:
    made = [pair.ui_create(i) for i in range(2)]
    conn = pair.connector()
    pair.faults(burst_429=1)
    if action == "read":
        assert sorted(listed_keys(conn, pair.entity)) == sorted(made)
    else:
        ops = creates(pair, 1)
        assert_written(pair, conn.write_batch(pair.entity, ops), ops)
    assert statuses(pair)[429] == 1
    if FACTORY_TAKES_SLEEP:
        assert pair.sleep.waits, "a 429 is waited out, not hammered"


def _transient_5xx(pair: Pair) -> None:
    pair.faults(error_rate=0.3)


def _transient_timeout(pair: Pair) -> None:
    pair.transport.timeouts = 1


TRANSIENT: dict[str, Callable[[Pair], None]] = {"5xx": _transient_5xx,
                                               "timeout": _transient_timeout}


@pytest.mark.parametrize("fault", sorted(TRANSIENT))
def test_transient_faults_are_retried(pair: Pair, fault: str) -> None:
    made = [pair.ui_create(i) for i in range(5)]
    conn = pair.connector()
    TRANSIENT[fault](pair)
    assert sorted(listed_keys(conn, pair.entity)) == sorted(made)
    TRANSIENT[fault](pair)
    ops = creates(pair, 1, 2, 3)
    results = conn.write_batch(pair.entity, ops)
    pair.faults(error_rate=0.0)
    assert_written(pair, results, ops)
    if fault == "5xx":
        assert statuses(pair)[500] > 0
    else:
        assert pair.transport.timeouts == 0


def _down_5xx(pair: Pair) -> None:
    pair.faults(error_rate=1.0)


def _down_timeout(pair: Pair) -> None:
    pair.transport.timeouts = 10**9


DOWN: dict[str, Callable[[Pair], None]] = {"5xx": _down_5xx, "timeout": _down_timeout}


@NEEDS_FAKE_SLEEP
@pytest.mark.parametrize("fault", sorted(DOWN))
def test_a_system_that_stays_down_is_unavailable(pair: Pair, fault: str) -> None:
    pair.ui_create(1)
    conn = pair.connector()
    before = len(pair.stored())
    DOWN[fault](pair)
    with pytest.raises(SystemUnavailable):
        listed_keys(conn, pair.entity)
    with pytest.raises(SystemUnavailable):  # not a per-record error: the whole system is down
        conn.write_batch(pair.entity, creates(pair, 1))
    with pytest.raises(SystemUnavailable):
        conn.read_by_keys(pair.entity, ["1"])
    pair.faults(error_rate=0.0)
    assert len(pair.stored()) == before


def _rejected(pair: Pair, knobs: dict[str, object], run: int
              ) -> tuple[list[WriteOp], list[WriteResult]]:
    pair.faults(**knobs)
    conn = pair.connector()
    ops = [WriteOp("create", pair.profile.create_payload(run * 10 + 1),
                   external_id=f"ok:{run}:1"),
           WriteOp("create", pair.profile.rejected_payload(run * 10 + 2),
                   external_id=f"bad:{run}:2"),
           WriteOp("create", pair.profile.create_payload(run * 10 + 3),
                   external_id=f"ok:{run}:3")]
    return ops, conn.write_batch(pair.entity, ops)


def test_rejected_record_is_a_record_error_naming_the_field(pair: Pair) -> None:
    expected: Counter[str] = Counter()
    for run, knobs in enumerate(pair.profile.rejection_knobs):
        ops, results = _rejected(pair, knobs, run)
        assert [r.ok for r in results] == [True, False, True], knobs  # it fails alone
        error = results[1].error
        assert isinstance(error, RecordError), knobs
        assert pair.profile.rejected_field in str(error), knobs
        expected.update(pair.profile.identity(op) for op in (ops[0], ops[2]))
        assert identities(pair) == expected, knobs


def test_rejected_record_sets_error_field(pair: Pair) -> None:
    for run, knobs in enumerate(pair.profile.rejection_knobs):
        error = _rejected(pair, knobs, run)[1][1].error
        assert error is not None and error.field == pair.profile.rejected_field, knobs


CALLS: dict[str, Callable[[Connector, str], object]] = {
    "list_changed": lambda conn, entity: list(conn.list_changed(entity, Window(None))),
    "read_by_keys": lambda conn, entity: conn.read_by_keys(entity, ["1"]),
    "write_batch": lambda conn, entity: conn.write_batch(
        entity, [WriteOp("update", {}, key="1")]),
}


@pytest.mark.parametrize("call", sorted(CALLS))
def test_bad_credentials_name_the_setting_never_the_secret(
        pair: Pair, captured_logs: list[str], call: str) -> None:
    pair.ui_create(1)
    conn = pair.connector(pair.profile.wrong_credentials)
    with pytest.raises(SystemUnavailable) as raised:
        CALLS[call](conn, pair.entity)
    message = str(raised.value)
    for name in pair.profile.credential_settings:
        assert name in message
    secrets = [*pair.profile.credentials.values.values(),
               *pair.profile.wrong_credentials.values.values()]
    text = "\n".join([message, repr(raised.value.args), *captured_logs])
    leaked = [s for s in secrets if s in text]
    assert not leaked, f"secret(s) in the error or the logs: {len(leaked)}"
    assert statuses(pair)[200] == 0  # nothing got through


# --- calls and delete -----------------------------------------------------------------------

def test_calls_count_every_request_as_read_or_write(pair: Pair) -> None:
    made = [pair.ui_create(i) for i in range(4)]
    conn = pair.connector()
    pair.reset_requests()
    assert (conn.calls.read, conn.calls.write) == (0, 0)

    def received() -> tuple[int, int]:
        rows = pair.requests()
        writes = sum(r["count"] for r in rows if pair.profile.is_write_endpoint(r["endpoint"]))
        return sum(r["count"] for r in rows) - writes, writes

    assert sorted(listed_keys(conn, pair.entity)) == sorted(made)
    assert conn.calls.read >= 1 and conn.calls.write == 0
    assert (conn.calls.read, conn.calls.write) == received()
    results = conn.write_batch(pair.entity, creates(pair, 1, 2))
    assert all(r.ok for r in results)
    assert conn.calls.write >= 1
    assert (conn.calls.read, conn.calls.write) == received()
    conn.read_by_keys(pair.entity, made)
    assert (conn.calls.read, conn.calls.write) == received()


def test_delete_is_done_when_the_record_is_already_gone(pair: Pair) -> None:
    keep, drop = pair.ui_create(1), pair.ui_create(2)
    conn = pair.connector()
    assert conn.delete(pair.entity, drop) is None
    assert [str(r[pair.profile.admin_key]) for r in pair.stored()] == [keep]
    assert conn.delete(pair.entity, drop) is None


def test_written_record_is_reported_as_stored(pair: Pair) -> None:
    conn = pair.connector()
    ops = creates(pair, 7)
    (result,) = conn.write_batch(pair.entity, ops)
    assert result.ok and result.key is not None
    (stored,) = conn.read_by_keys(pair.entity, [result.key])
    record: Record | None = result.record  # optional ("when known"); when given, it is current
    if record is not None:
        assert conn.key_of(pair.entity, record) == result.key
        assert conn.updated_at(pair.entity, record) == conn.updated_at(pair.entity, stored)


def test_update_changes_the_record_and_its_change_time(pair: Pair) -> None:
    key = pair.ui_create(1)
    conn = pair.connector()
    (before,) = conn.read_by_keys(pair.entity, [key])
    pair.advance(5)
    op = WriteOp("update", pair.profile.edit(1), key=key)
    (result,) = conn.write_batch(pair.entity, [op])
    assert result.ok and result.key == key, result.error
    (after,) = conn.read_by_keys(pair.entity, [key])
    for name, value in pair.profile.edit(1).items():
        assert after[name] == value
    assert conn.updated_at(pair.entity, after) > conn.updated_at(pair.entity, before)


@pytest.mark.parametrize("key", ["999999", "not-a-key"], ids=["vanished", "malformed"])
def test_update_of_a_missing_record_is_a_record_error(pair: Pair, key: str) -> None:
    kept = pair.ui_create(1)
    conn = pair.connector()
    results = conn.write_batch(pair.entity, [
        WriteOp("update", pair.profile.edit(2), key=key),
        WriteOp("update", pair.profile.edit(1), key=kept)])
    assert isinstance(results[0].error, RecordError)
    assert results[1].ok, results[1].error  # the others go on


def test_an_empty_batch_sends_nothing(pair: Pair) -> None:
    conn = pair.connector()
    assert conn.write_batch(pair.entity, []) == []
    assert (conn.calls.read, conn.calls.write) == (0, 0)
