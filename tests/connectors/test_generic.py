"""The generic connector, run from the example spec (examples/connectors/minicrm.yaml) against a
small REST simulator in-process (tests/connectors/minicrm.py)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from starlette.testclient import TestClient

from etl.connectors.base import Connector, WriteOp
from etl.connectors.generic import GenericConnector
from etl.connectors.http import RetryPolicy
from etl.connectors.spec import ConnectorSpec, ListSpec, load_spec, parse_spec
from etl.connectors.templates import fill
from etl.connectors.windows import edges
from etl.errors import ConfigError, SystemUnavailable
from etl.watermark import Window
from tests.connectors.minicrm import API_KEY, T0, MiniCrm

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "connectors" / "minicrm.yaml"
Make = Callable[..., GenericConnector]


@pytest.fixture
def sim() -> MiniCrm:
    return MiniCrm()


@pytest.fixture
def http(sim: MiniCrm) -> Iterator[TestClient]:
    with TestClient(sim.app(), base_url="http://minicrm.test/api/") as client:
        yield client


@pytest.fixture
def make(http: TestClient) -> Make:
    def build(spec: ConnectorSpec | None = None, **kw: Any) -> GenericConnector:
        kw.setdefault("credentials", {"api_key": API_KEY})
        kw.setdefault("retry", RetryPolicy(attempts=4, base_s=0.0, cap_s=0.0))
        return GenericConnector(spec or load_spec(EXAMPLE), http, system="crm",
                                requests_per_minute=100_000, sleep=lambda _s: None, **kw)
    return build


def ids(pages: list[list[dict[str, Any]]]) -> list[int]:
    return [r["id"] for page in pages for r in page]


def test_is_a_connector_with_the_specs_capabilities(make: Make) -> None:
    conn = make()
    assert isinstance(conn, Connector)
    assert conn.entities() == {"customers"} and conn.kind == "minicrm"
    cap = conn.capabilities
    assert (cap.page_size, cap.requests_per_minute, cap.clock_precision) == (
        50, 100_000, timedelta(seconds=1))
    assert cap.updated_at_paths == {"customers": "updated_at"} and cap.has_changed_since


@pytest.mark.parametrize(("since_s", "until_s", "expected"), [
    (None, None, [1, 2, 3, 4, 5]),
    (2, None, [3, 4, 5]),  # since is inclusive
    (None, 2, [1, 2]),  # until is exclusive
    (1.5, 3.5, [2, 3, 4]),  # edges inside a second: widened to the source's precision
    (3, 3, []),
], ids=["all", "since", "until", "sub-second-edges", "empty"])
def test_list_changed_window(sim: MiniCrm, make: Make, since_s: float | None,
                             until_s: float | None, expected: list[int]) -> None:
    sim.add(5)

    def at(s: float | None) -> Any:
        return None if s is None else T0 + timedelta(seconds=s)
    conn = make()
    assert ids(list(conn.list_changed("customers", Window(at(since_s), at(until_s))))) == expected
    record = sim.records[1]
    assert conn.updated_at("customers", record) == T0 and conn.key_of("customers", record) == "1"


@pytest.mark.parametrize(("cap", "step_s"), [(3, 1.0), (3, 0.0), (1000, 0.0)],
                         ids=["capped", "capped-one-timestamp", "uncapped-one-timestamp"])
def test_paging_to_the_end_under_a_server_cap_and_a_shared_timestamp(
        sim: MiniCrm, make: Make, cap: int, step_s: float) -> None:
    sim.add(11, step_s=step_s)
    sim.page_cap = cap  # asked 50 per page, served 3: total_pages follows what it serves
    pages = list(make().list_changed("customers", Window(None)))
    assert sorted(ids(pages)) == list(range(1, 12)) and len(ids(pages)) == 11


def test_read_by_keys_in_chunks_and_find_by(sim: MiniCrm, make: Make) -> None:
    sim.add(120)
    conn = make()
    sim.requests.clear()
    found = conn.read_by_keys("customers", [str(i) for i in range(1, 121)] + ["999"])
    assert sorted(r["id"] for r in found) == list(range(1, 121))
    assert len(sim.requests) == 3  # 50 ids per request
    assert [r["id"] for r in conn.find_by("customers", "email", ["c7@example.com"])] == [7]
    assert conn.find_by("customers", "email", ["nobody@example.com"]) == []
    with pytest.raises(ConfigError, match="cannot be matched by 'phone'; valid: email, "
                                          "external_ref"):
        conn.find_by("customers", "phone", ["1"])


def test_a_create_whose_answer_is_lost_is_not_made_twice(sim: MiniCrm, make: Make) -> None:
    conn = make()
    sim.faults.lose_create_answers = 1
    [result] = conn.write_batch("customers", [WriteOp("create", {"name": "ACME", "email":
                                                                 "acme@example.com"},
                                                      external_id="erp:42")])
    assert result.ok and result.record is not None
    assert [r["external_ref"] for r in sim.records.values()] == ["erp:42"]  # one, not two
    again = conn.write_batch("customers", [WriteOp("create", {"name": "ACME", "email":
                                                              "acme@example.com"},
                                                   external_id="erp:42")])
    assert again[0].ok and again[0].key == result.key and len(sim.records) == 1  # 409 -> found


@pytest.mark.parametrize(("max_concurrency", "write_concurrency", "spec_writers", "writers"), [
    (None, None, None, 2),  # the spec's max_concurrency
    (8, None, None, 8),  # PONTE_CRM__MAX_CONCURRENCY
    (8, 3, None, 3),  # PONTE_CRM__WRITE_CONCURRENCY
    (8, 3, 1, 1),  # the spec's write_concurrency is a vendor rule: never exceeded
    (8, None, 5, 5),
])
def test_writers_are_set_and_honoured(sim: MiniCrm, make: Make, max_concurrency: int | None,
                                      write_concurrency: int | None, spec_writers: int | None,
                                      writers: int) -> None:
    raw = yaml.safe_load(EXAMPLE.read_text())
    if spec_writers is not None:
        raw["entities"]["customers"]["write_concurrency"] = spec_writers
    conn = make(parse_spec(raw, "minicrm.yaml"), max_concurrency=max_concurrency,
                write_concurrency=write_concurrency)
    assert conn.writers("customers") == writers
    before = set(threading.enumerate())

    def writer_threads() -> set[threading.Thread]:
        return {t for t in set(threading.enumerate()) - before
                if t.name.startswith("minicrm-write") and t.is_alive()}

    try:
        results = conn.write_batch("customers", [WriteOp("create", {"name": f"C{i}"})
                                                 for i in range(40)])
        assert all(r.ok for r in results) and len(sim.records) == 40
        assert 1 <= len(writer_threads()) <= writers  # the writer threads, no more
    finally:
        conn.close()
    assert not writer_threads()  # stopped with the connector


def test_updates_deletes_and_a_rejected_record(sim: MiniCrm, make: Make) -> None:
    sim.add(2)
    conn = make()
    results = conn.write_batch("customers", [
        WriteOp("update", {"name": "Renamed"}, key="1"),
        WriteOp("create", {"name": "Bad", "email": "not-an-email"}),
        WriteOp("update", {"name": "Gone"}, key="77")])
    assert results[0].ok and results[0].record is not None
    assert results[0].record["name"] == "Renamed"
    bad = results[1].error
    assert bad is not None and bad.kind == "rejected" and bad.field == "email"
    assert "not an e-mail" in str(bad)
    assert results[2].error is not None and "no longer exists" in str(results[2].error)
    assert conn.delete("customers", "2") is None and 2 not in sim.records
    assert conn.delete("customers", "2") is None  # already gone


def test_transient_faults_are_retried_and_persistent_ones_mean_down(sim: MiniCrm,
                                                                    make: Make) -> None:
    sim.add(3)
    conn = make()
    sim.faults.burst_429, sim.faults.fail_5xx = 2, 2
    assert ids(list(conn.list_changed("customers", Window(None)))) == [1, 2, 3]
    assert conn.stats.got_429 == 2 and conn.stats.got_5xx == 2
    sim.faults.fail_5xx = 100
    with pytest.raises(SystemUnavailable, match="failed 4 times"):
        list(conn.list_changed("customers", Window(None)))


def test_bad_credentials_name_the_setting_never_the_secret(sim: MiniCrm, make: Make) -> None:
    secret = "wrong-key-secret-8472"
    conn = make(credentials={"api_key": secret})
    with pytest.raises(SystemUnavailable) as info:
        list(conn.list_changed("customers", Window(None)))
    assert "PONTE_CRM__CREDENTIALS__API_KEY" in str(info.value) and secret not in str(info.value)


def test_an_undated_record_has_no_updated_at(make: Make) -> None:
    conn = make()
    for value in (None, "", "yesterday", 17):
        assert conn.updated_at("customers", {"id": 1, "updated_at": value}) is None


def test_a_cursor_that_does_not_move_is_stopped(sim: MiniCrm, make: Make) -> None:
    raw = yaml.safe_load(EXAMPLE.read_text())
    raw["entities"]["customers"]["list"]["paginator"] = {
        "type": "cursor", "cursor_path": "meta.page", "cursor_param": "after"}
    sim.add(3)
    conn = make(parse_spec(raw, "looping.yaml"))
    with pytest.raises(SystemUnavailable, match="same page twice"):
        list(conn.list_changed("customers", Window(None)))


def test_a_before_write_hook_changes_or_refuses_the_payload(sim: MiniCrm, make: Make,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from etl.connectors.hooks import HOOKS
    from etl.errors import RecordError

    def shout(conn: GenericConnector, entity: str, payload: dict[str, Any]) -> dict[str, Any]:
        if payload.get("name") == "bad":
            raise RecordError("no such name", field="name")
        return {**payload, "name": str(payload["name"]).upper()}
    monkeypatch.setitem(HOOKS, "test_shout", shout)
    raw = yaml.safe_load(EXAMPLE.read_text())
    raw["entities"]["customers"]["hooks"] = {"before_write": "test_shout"}
    conn = make(parse_spec(raw, "hooked.yaml"))
    ok, bad = conn.write_batch("customers", [WriteOp("create", {"name": "acme"}),
                                             WriteOp("create", {"name": "bad"})])
    assert ok.record is not None and ok.record["name"] == "ACME"
    assert bad.error is not None and bad.error.field == "name" and len(sim.records) == 1


@pytest.mark.parametrize("concurrency", [1, 3])
def test_answers_without_the_record_are_read_back_in_one_go(sim: MiniCrm, make: Make,
                                                            concurrency: int) -> None:
    raw = yaml.safe_load(EXAMPLE.read_text())
    customers = raw["entities"]["customers"]
    customers["create"].update(answer="reread", key_path="id")
    customers["write_concurrency"] = concurrency
    customers["idempotency"] = {"strategy": "upsert", "external_id_field": "external_ref"}
    conn = make(parse_spec(raw, "reread.yaml"))
    sim.requests.clear()
    results = conn.write_batch("customers", [
        WriteOp("create", {"name": f"N{i}", "email": f"n{i}@example.com"}, external_id=f"e{i}")
        for i in range(5)])
    assert [r.record["name"] for r in results if r.record] == [f"N{i}" for i in range(5)]
    assert sorted(r["external_ref"] for r in sim.records.values()) == [f"e{i}" for i in range(5)]
    assert [q.split("?")[0] for q in sim.requests].count("GET /api/customers") == 1


def test_exact_edges_an_inclusive_until_and_integer_templates() -> None:
    ls = ListSpec(path="/x", edges="exact", until="inclusive",
                  time={"format": "%H:%M:%S", "zone": "UTC", "precision_ms": 1000})
    ms = timedelta(milliseconds=1)
    got = edges(ls, Window(T0 + 300 * ms, T0 + timedelta(seconds=5) + ms))
    assert (got.lo, got.hi, got.empty) == (T0 + 300 * ms, T0 + timedelta(seconds=5) + ms, False)
    assert fill("{since} {until}", got.values, ls.time) == "13:00:00 13:00:05"
    assert edges(ls, Window(T0 + 100 * ms, T0 + 900 * ms)).empty  # no whole second inside
    assert not edges(ls.model_copy(update={"edges": "widened"}),
                     Window(T0 + 100 * ms, T0 + 900 * ms)).empty
    assert fill({"id": "{key!i}", "name": "n{key!i}"}, {"key": "42"}) == {"id": 42,
                                                                          "name": "n42"}
