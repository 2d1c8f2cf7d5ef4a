"""The Ploomes connector against the Ploomes simulator, in-process over HTTP."""

from __future__ import annotations

import socket
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from starlette.testclient import TestClient

from etl.connectors.base import Connector, Deactivates, Window, WriteOp
from etl.connectors.generic import GenericConnector
from etl.connectors.http import RetryPolicy
from etl.connectors.registry import get
from etl.connectors.templates import render
from etl.errors import NotSent, Stopped, SystemUnavailable
from etl.sandbox.ploomes import PloomesSim

Make = Callable[..., GenericConnector]
T0 = datetime(2024, 3, 1, 15, 0, 0, 250000, tzinfo=UTC)


def add_contacts(sim: PloomesSim, n: int, *, at: datetime = T0, step_s: float = 0.0,
                 **fields: object) -> None:
    for i in range(n):
        sim.db["Contacts"].insert({"Name": f"Cliente {i}", "TypeId": 1, "CityId": 1,
                                   "StateId": 25, **fields}, at + timedelta(seconds=i * step_s))


def all_ids(pages: list[list[dict[str, object]]]) -> list[int]:
    return [int(r["Id"]) for page in pages for r in page]  # type: ignore[call-overload]


def test_is_a_connector_with_ploomes_capabilities(ploomes_connector: Make) -> None:
    conn = ploomes_connector(max_concurrency=3)
    assert isinstance(conn, Connector)
    assert (conn.system, conn.kind) == ("crm", "ploomes")
    caps = conn.capabilities
    assert (caps.page_size, caps.batch_size, caps.max_concurrency) == (300, 1, 3)
    assert caps.clock_zone == "America/Sao_Paulo"
    assert caps.clock_precision == timedelta(milliseconds=1)
    assert caps.has_changed_since and not caps.has_external_id_upsert
    assert caps.ordered_by_updated_at  # keyset on (LastUpdateDate, Id)
    assert conn.entities() == {"customers", "products", "orders"}


@pytest.mark.parametrize(
    ("since_s", "until_s", "expected"),
    [
        (None, None, [1, 2, 3, 4, 5]),
        (2, None, [3, 4, 5]),  # the record exactly at the watermark is included
        (2.0005, None, [3, 4, 5]),  # rounded down to the source's millisecond
        (2.001, None, [4, 5]),
        (None, 3, [1, 2, 3]),  # until is exclusive
        (1, 3.0001, [2, 3, 4]),
    ],
)
def test_list_changed_window(ploomes_sim: PloomesSim, ploomes_connector: Make,
                             since_s: float | None, until_s: float | None,
                             expected: list[int]) -> None:
    add_contacts(ploomes_sim, 5, step_s=1)
    conn = ploomes_connector()

    def at(s: float | None) -> datetime | None:
        return None if s is None else T0 + timedelta(seconds=s)

    pages = list(conn.list_changed("customers", Window(at(since_s), at(until_s))))
    assert all_ids(pages) == expected
    record = pages[0][0]
    assert record["City"]["IBGECode"] == 3550308 and record["State"]["Short"] == "SP"
    assert conn.key_of("customers", record) == str(record["Id"])
    updated = conn.updated_at("customers", record)
    assert updated.tzinfo is not None and updated.utcoffset() == timedelta(0)
    assert updated == T0 + timedelta(seconds=expected[0] - 1)


def test_keyset_paging_identical_timestamps_with_updates_mid_read(
        ploomes_sim: PloomesSim, ploomes_http: TestClient, ploomes_connector: Make) -> None:
    add_contacts(ploomes_sim, 60)
    sent: list[httpx.URL] = []
    ploomes_http.event_hooks["request"].append(lambda request: sent.append(request.url))
    conn = ploomes_connector(page_size=7)
    seen: list[int] = []
    for n, page in enumerate(conn.list_changed("customers", Window(T0))):
        seen += [r["Id"] for r in page]
        if n == 0:  # a user edits one record already read and one not yet read
            ploomes_sim.ui_update("Contacts", 2, {"Note": "again"})
            ploomes_sim.ui_update("Contacts", 40, {"Note": "moved"})
    counts = Counter(seen)
    assert set(counts) == set(range(1, 61))
    assert {k for k, v in counts.items() if v > 1} <= {2}
    assert seen[-2:] in ([2, 40], [40, 2])  # updated records come last, in update order
    params = [dict(url.params) for url in sent]
    assert all("$skip" not in p and p["$top"] == "7" for p in params)
    assert params[0]["$orderby"] == "LastUpdateDate asc,Id asc"
    assert "(LastUpdateDate gt 2024-03-01T15:00:00.250Z or (LastUpdateDate eq " \
        "2024-03-01T15:00:00.250Z and Id gt 7))" in params[1]["$filter"]


def test_paging_survives_a_server_cap_below_the_page_size(ploomes_sim: PloomesSim,
                                                          ploomes_connector: Make) -> None:
    add_contacts(ploomes_sim, 23)
    ploomes_sim.faults.page_cap = 5
    conn = ploomes_connector(page_size=7)
    pages = list(conn.list_changed("customers", Window(None)))
    assert all_ids(pages) == list(range(1, 24))
    assert [len(p) for p in pages] == [5, 5, 5, 5, 3]


def test_empty_and_short_listings_end(ploomes_sim: PloomesSim, ploomes_connector: Make) -> None:
    conn = ploomes_connector()
    assert list(conn.list_changed("products", Window(T0))) == []
    add_contacts(ploomes_sim, 3)
    assert all_ids(list(conn.list_changed("customers", Window(T0)))) == [1, 2, 3]


def test_read_by_keys_in_chunks(ploomes_sim: PloomesSim, ploomes_connector: Make) -> None:
    add_contacts(ploomes_sim, 130)
    conn = ploomes_connector()
    keys = [str(i) for i in range(1, 131, 2)] + ["999", "not-a-key"]
    got = conn.read_by_keys("customers", keys)
    assert sorted(int(r["Id"]) for r in got) == list(range(1, 131, 2))
    assert all("City" in r for r in got)
    assert conn.read_by_keys("customers", []) == []


def test_find_by_quotes_values(ploomes_sim: PloomesSim, ploomes_connector: Make) -> None:
    ploomes_sim.db["Contacts"].insert({"Name": "Beta O'Neil", "Register": "22333444000172",
                                       "Key": "erp:7"}, T0)
    add_contacts(ploomes_sim, 3)
    conn = ploomes_connector()
    assert render("{value:q}", {"value": "O'Neil"}) == "'O''Neil'"
    assert [r["Id"] for r in conn.find_by("customers", "Name", ["Beta O'Neil", "nobody"])] == [1]
    assert [r["Id"] for r in conn.find_by("customers", "Register", ["22333444000172"])] == [1]
    assert [r["Id"] for r in conn.find_by("customers", "Key", ["erp:7"])] == [1]
    values = [f"Cliente {i}" for i in range(3)] + [f"x{i}" for i in range(70)]
    assert len(conn.find_by("customers", "Name", values)) == 3


@pytest.mark.parametrize(
    ("fields", "wanted"),
    [
        ({"Register": "11222333000181"}, "11222333000181"),
        ({"CNPJ": "11222333000181"}, "11222333000181"),  # typed in the UI: no Register
        ({"CNPJ": "11.222.333/0001-81"}, "11222333000181"),
        ({"CPF": "12345678909", "TypeId": 2}, "12345678909"),
        ({"CPF": "123.456.789-09", "TypeId": 2}, "12345678909"),
        ({"Register": "", "CNPJ": None, "CPF": "12345678909"}, "12345678909"),
    ],
)
def test_find_by_register_also_finds_the_document_in_cnpj_or_cpf(
        ploomes_sim: PloomesSim, ploomes_connector: Make, fields: dict[str, object],
        wanted: str) -> None:
    add_contacts(ploomes_sim, 2, Register="45723174000110", CNPJ="45723174000110")
    ploomes_sim.db["Contacts"].insert({"Name": "Só no campo do UI", "TypeId": 1, **fields}, T0)
    conn = ploomes_connector()
    found = conn.find_by("customers", "Register", [wanted, "98765432000198"])
    assert [r["Name"] for r in found] == ["Só no campo do UI"]


def test_find_by_document_in_many_fields_keeps_urls_short_and_records_unique(
        ploomes_sim: PloomesSim, ploomes_connector: Make) -> None:
    ploomes_sim.db["Contacts"].insert({"Name": "Os três", "TypeId": 1, "Register": "11222333000181",
                                       "CNPJ": "11222333000181"}, T0)
    conn = ploomes_connector()
    wanted = ["11222333000181"] + [f"{i:014d}" for i in range(1, 40)]
    ploomes_sim.requests.reset()
    found = conn.find_by("customers", "Register", wanted)
    assert [r["Name"] for r in found] == ["Os três"]  # matched by two fields, listed once
    assert sum(n for (e, _s), n in ploomes_sim.requests.counts.items()
               if e == "GET /Contacts") >= 4  # 40 values, 10 per request


def test_creates_and_updates_translate_city_and_state(ploomes_sim: PloomesSim,
                                                      ploomes_connector: Make) -> None:
    conn = ploomes_connector()
    ops = [
        WriteOp("create", {"Name": f"Novo {i}", "TypeId": 1, "Register": f"{i:014d}",
                           "City": {"IBGECode": "3304557"}, "State": {"Short": "rj"}},
                external_id=f"omie:{i}")
        for i in range(6)
    ]
    results = conn.write_batch("customers", ops)
    assert all(r.ok for r in results), [r.error for r in results]
    assert [r.op for r in results] == ops
    for i, result in enumerate(results):
        assert result.record is not None and result.key == str(result.record["Id"])
        assert result.record["City"] == {"Id": 7, "Name": "Rio de Janeiro",
                                         "IBGECode": 3304557, "StateId": 19}
        assert result.record["State"]["Short"] == "RJ"
        assert result.record["Key"] == f"omie:{i}"
    assert [r["Name"] for r in conn.find_by("customers", "Key", ["omie:3"])] == ["Novo 3"]

    key = results[0].key
    upd = conn.write_batch("customers", [WriteOp("update", {"Note": "vip", "City": None},
                                                 key=key)])
    assert upd[0].ok and upd[0].record is not None
    assert upd[0].record["Note"] == "vip" and upd[0].record["City"] is None
    assert upd[0].record["Name"] == "Novo 0"  # fields not sent are kept
    cities_reads = [c for c in ploomes_sim.requests.as_list() if c["endpoint"] == "GET /Cities"]
    assert sum(c["count"] for c in cities_reads) == 1  # looked up once, cached


def test_orders_and_products(ploomes_sim: PloomesSim, ploomes_connector: Make) -> None:
    add_contacts(ploomes_sim, 1)
    conn = ploomes_connector()
    (product,) = conn.write_batch("products", [WriteOp("create", {"Name": "Caneta",
                                                                  "Code": "CAN-1",
                                                                  "UnitPrice": 2.5},
                                                       external_id="omie:p1")])
    assert product.ok and product.record is not None and "Key" not in product.record
    line = {"ProductId": int(product.key or 0), "Quantity": 2, "UnitPrice": 2.5}
    (order,) = conn.write_batch("orders", [WriteOp("create", {"ContactId": 1,
                                                              "Products": [line]},
                                                   external_id="crm-order:1")])
    assert order.ok and order.record is not None
    assert order.record["Products"][0]["Total"] == 5.0 and order.record["Key"] == "crm-order:1"
    listed = all_ids(list(conn.list_changed("orders", Window(None))))
    assert listed == [int(order.key or 0)]


def test_a_rejected_record_does_not_fail_the_others(ploomes_connector: Make) -> None:
    conn = ploomes_connector()
    ops = [
        WriteOp("create", {"Name": "Boa"}),
        WriteOp("create", {"TypeId": 1}),  # no Name
        WriteOp("create", {"Name": "Cidade ruim", "City": {"IBGECode": "0000000"}}),
        WriteOp("update", {"Name": "Fantasma"}, key="99999"),
        WriteOp("create", {"Name": "Campo ruim", "Nope": 1}),
        WriteOp("create", {"Name": "Também boa"}),
    ]
    results = conn.write_batch("customers", ops)
    assert [r.ok for r in results] == [True, False, False, False, False, True]
    assert results[1].error is not None and results[1].error.kind == "rejected"
    assert "HTTP 400" in str(results[1].error) and "Name" in str(results[1].error)
    assert results[2].error is not None and results[2].error.field == "City.IBGECode"
    assert "HTTP 404" in str(results[3].error)
    assert "Nope" in str(results[4].error)


def test_429_burst_and_transient_5xx_are_retried(ploomes_sim: PloomesSim,
                                                 ploomes_connector: Make) -> None:
    add_contacts(ploomes_sim, 3)
    conn = ploomes_connector(retry=RetryPolicy(attempts=12, base_s=0, cap_s=0))
    ploomes_sim.faults.burst_429 = 3
    assert all_ids(list(conn.list_changed("customers", Window(None)))) == [1, 2, 3]
    assert conn.stats.got_429 == 3
    ploomes_sim.faults.error_rate = 0.5
    results = conn.write_batch("customers", [WriteOp("update", {"Note": str(i)}, key=str(i))
                                             for i in (1, 2, 3)])
    assert all(r.ok for r in results)
    assert conn.stats.got_5xx > 0
    assert conn.calls.read >= 4 and conn.calls.write >= 3


def test_keyed_creates_are_not_duplicated_when_answers_are_lost(ploomes_sim: PloomesSim,
                                                                ploomes_connector: Make) -> None:
    conn = ploomes_connector(retry=RetryPolicy(attempts=15, base_s=0, cap_s=0))
    ploomes_sim.faults.drop_rate = 0.4
    ploomes_sim.faults.error_rate = 0.2
    ops = [WriteOp("create", {"Name": f"N{i}"}, external_id=f"omie:{i}") for i in range(12)]
    results = conn.write_batch("customers", ops)
    assert all(r.ok for r in results), [r.error for r in results]
    keys = Counter(row.data["Key"] for row in ploomes_sim.db["Contacts"])
    assert keys == Counter({f"omie:{i}": 1 for i in range(12)})
    lost = [c for c in ploomes_sim.requests.as_list()
            if c["endpoint"] == "POST /Contacts" and c["status"] == 0]
    assert lost and conn.stats.dropped > 0  # some creates landed but their answer didn't


def test_persistent_500_means_the_system_is_down(ploomes_sim: PloomesSim,
                                                 ploomes_connector: Make) -> None:
    add_contacts(ploomes_sim, 2)
    conn = ploomes_connector()
    ploomes_sim.faults.error_rate = 1.0
    with pytest.raises(SystemUnavailable, match="failed 4 times"):
        list(conn.list_changed("customers", Window(None)))
    with pytest.raises(SystemUnavailable):
        conn.write_batch("customers", [WriteOp("update", {"Note": "x"}, key="1"),
                                       WriteOp("update", {"Note": "y"}, key="2")])
    with pytest.raises(SystemUnavailable):
        conn.write_batch("customers", [WriteOp("create", {"Name": "x"}, external_id="e")])


def test_bad_key_is_system_unavailable_without_the_secret(ploomes_connector: Make) -> None:
    secret = "s3cr3t-user-key-value"
    conn = ploomes_connector(user_key=secret)
    for call in (
        lambda: list(conn.list_changed("customers", Window(None))),
        lambda: conn.write_batch("customers", [WriteOp("create", {"Name": "x"})]),
        lambda: conn.write_batch("customers", [WriteOp("create", {"Name": "x"},
                                                       external_id="e1")]),
    ):
        with pytest.raises(SystemUnavailable) as info:
            call()
        assert "PONTE_CRM__CREDENTIALS__USER_KEY" in str(info.value)
        assert secret not in str(info.value)


def test_custom_field_keys_come_from_fields(ploomes_connector: Make) -> None:
    c = ploomes_connector()
    keys = c.custom_field_keys(1)
    from etl.sandbox.ploomes.custom import FIELDS  # what the simulated account configures
    assert keys == {f["Key"] for f in FIELDS if f["EntityId"] == 1 and f["Dynamic"]}
    assert len(keys) == 11 and all(k.startswith("contact_") for k in keys)
    assert "contact_name" not in keys  # a standard field, not a custom one
    assert c.custom_field_keys(10) == set()  # no custom product fields in the sandbox


def test_custom_fields_come_with_label_type_and_value_property(ploomes_connector: Make) -> None:
    by_label = {f.label: f for f in ploomes_connector().custom_fields(1)}
    assert {label: (f.type, f.value, f.transform) for label, f in by_label.items()
            if label in ("Limite de crédito", "Última compra", "Porte", "Cliente VIP")} == {
        "Limite de crédito": ("Decimal", "DecimalValue", "decimal"),
        "Última compra": ("DateTime", "DateTimeValue", "date"),
        "Porte": ("Options", "ObjectValueId", "int"),
        "Cliente VIP": ("Bool", "BoolValue", "value_map"),
    }
    assert by_label["Limite de crédito"].key.startswith("contact_")


@pytest.mark.parametrize("value", [None, "ontem", "2026-03-10T10:00:00", 17])
def test_an_undated_record_has_no_updated_at(ploomes_connector: Make, value: object) -> None:
    conn = ploomes_connector()
    assert conn.updated_at("customers", {"Id": 1, "LastUpdateDate": value}) is None
    assert conn.capabilities.updated_at_paths["customers"] == "LastUpdateDate"


def test_deactivate_runs_the_spec_request(ploomes_sim: PloomesSim,
                                          ploomes_connector: Make) -> None:
    conn = ploomes_connector()
    assert isinstance(conn, Deactivates)
    assert conn.can_deactivate("products") and not conn.can_deactivate("orders")
    row = ploomes_sim.db["Products"].insert({"Name": "Café", "Code": "CAF-1",
                                             "Suspended": False}, T0)
    assert conn.deactivate("products", str(row.id)) is None
    assert ploomes_sim.db["Products"].get(row.id).data["Suspended"] is True
    assert conn.deactivate("products", "999999") is None  # already gone: nothing to do
    bad = conn.deactivate("products", "CAF-1")
    assert bad is not None and "invalid key 'CAF-1'" in str(bad)
    none = conn.deactivate("orders", "1")
    assert none is not None and "the spec has no deactivate" in str(none)


class Waits:
    """Records the waits asked for instead of sleeping."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)

    def backoffs(self) -> list[float]:
        """The waits before a retry, without the rate limiter's (well under a millisecond
        at 100,000 requests a minute)."""
        return [w for w in self.waits if w >= 0.1]


def sent(sim: PloomesSim, endpoint: str) -> int:
    return sum(c["count"] for c in sim.requests.as_list() if c["endpoint"] == endpoint)


@pytest.mark.parametrize("fault", ["500", "429"])
def test_a_stop_request_ends_a_reads_retry_backoff_within_half_a_second(
        ploomes_sim: PloomesSim, ploomes_connector: Make, fault: str) -> None:
    """Ctrl-C while a system is down (or keeps answering 429): a read waiting to retry stops
    at the next half second of its backoff, instead of riding out all its attempts."""
    waits = Waits()
    conn = ploomes_connector(retry=RetryPolicy(attempts=8, base_s=4.0, cap_s=30.0), sleep=waits)
    if fault == "500":
        ploomes_sim.faults.error_rate = 1.0
    else:
        ploomes_sim.faults.burst_429 = 50
    conn.should_stop = lambda: len(waits.waits) >= 1
    last = "HTTP 500" if fault == "500" else "HTTP 429"
    with pytest.raises(Stopped, match=r"^stopped while Ploomes GET /Fields was to be tried "
                                      rf"again after \d+\.\d s \(last: {last}\)$"):
        conn.custom_fields(1)
    assert waits.waits == [0.5]
    assert sent(ploomes_sim, "GET /Fields") == 1  # not sent again
    conn.should_stop = None  # no stop asked: the attempts are ridden out as before
    if fault == "500":
        with pytest.raises(SystemUnavailable, match="failed 8 times"):
            conn.custom_fields(1)
        assert sent(ploomes_sim, "GET /Fields") == 1 + 8


def test_a_stop_request_does_not_cut_short_a_write_or_the_reads_it_makes(
        ploomes_sim: PloomesSim, ploomes_connector: Make) -> None:
    """A create whose answer never came is looked up before it is tried again: that look-up
    is part of the write, whose outcome must be known, so it waits out its retries even when a
    stop was asked; then the system is down, not "stopped"."""
    waits = Waits()
    conn = ploomes_connector(retry=RetryPolicy(attempts=3, base_s=1.0, cap_s=1.0), sleep=waits)
    ploomes_sim.faults.error_rate = 1.0
    conn.should_stop = lambda: True
    with pytest.raises(SystemUnavailable, match="failed 3 times"):
        conn.write_batch("customers", [WriteOp("create", {"Name": "x"}, external_id="e")])
    assert sent(ploomes_sim, "POST /Contacts") == 1  # a lookup create is sent once
    assert sent(ploomes_sim, "GET /Contacts") == 3  # its look-up, all attempts
    assert len(waits.waits) == 2 and all(0.5 <= w <= 1.0 for w in waits.waits)


@contextmanager
def connector_where_nothing_listens(waits: Waits, attempts: int) -> Iterator[GenericConnector]:
    """The Ploomes connector pointed at a loopback port nothing listens on: every connection
    is refused, before any byte of a request leaves."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with httpx.Client(base_url=f"http://127.0.0.1:{port}/") as client:
        yield GenericConnector(get("ploomes").spec, client, system="crm",
                               credentials={"user_key": "k"}, requests_per_minute=100_000,
                               retry=RetryPolicy(attempts=attempts, base_s=4.0, cap_s=30.0),
                               sleep=waits)


@pytest.mark.parametrize("op", [WriteOp("create", {"Name": "x"}, external_id="e"),
                                WriteOp("update", {"Name": "x"}, key="7")],
                         ids=["create (looked up when in doubt)", "update"])
def test_a_stop_request_ends_the_retries_of_a_write_that_never_reached_the_system(
        op: WriteOp) -> None:
    """The system is down: each attempt of a write is refused at connect time, so nothing of
    it was sent and its outcome is known — not done. A stop request ends its retry backoff at
    the next half second, as a read's; no look-up is made for it (the create's intent is left
    for the next run). Without a stop the attempts run out as before, as :class:`NotSent`
    (a :class:`SystemUnavailable`), still without a look-up."""
    waits = Waits()
    with connector_where_nothing_listens(waits, attempts=4) as conn:
        conn.should_stop = lambda: len(waits.waits) >= 1
        with pytest.raises(Stopped, match=r"^stopped while Ploomes (POST|PATCH) \S*Contacts\S* "
                                          r"was to be tried again after \d+\.\d s \(last: "
                                          r"connection failed \(ConnectError\)\); it was never "
                                          r"sent$"):
            conn.write_batch("customers", [op])
        assert waits.backoffs() == [0.5]
        assert (conn.session.calls.write, conn.session.calls.read) == (1, 0)
        conn.should_stop = None
        with pytest.raises(NotSent, match=r"failed \d times \(last: connection failed "
                                          r"\(ConnectError\)\)"):
            conn.write_batch("customers", [op])
        assert (conn.session.calls.write, conn.session.calls.read) == (1 + 4, 0)
        assert len(waits.backoffs()) == 1 + 3 and min(waits.backoffs()[1:]) >= 2.0


def test_an_update_gives_way_to_a_stop_even_once_it_may_have_reached_the_system(
        ploomes_sim: PloomesSim, ploomes_connector: Make) -> None:
    """An update the system answered with HTTP 500 may have been carried out, but its outcome
    need not be known to stop: a stopped run does not record it, so the next run finds the
    record still changed and sends the same update again. Its retry backoff gives way to a
    stop; a create's does not (its look-up must finish: the test above)."""
    waits = Waits()
    conn = ploomes_connector(retry=RetryPolicy(attempts=4, base_s=4.0, cap_s=30.0), sleep=waits)
    ploomes_sim.faults.error_rate = 1.0
    conn.should_stop = lambda: True
    with pytest.raises(Stopped, match=r"^stopped while Ploomes PATCH \S*Contacts\S* was to be "
                                      r"tried again after \d+\.\d s \(last: HTTP 500\); the "
                                      r"next run sends it again$"):
        conn.write_batch("customers", [WriteOp("update", {"Name": "x"}, key="7")])
    assert waits.backoffs() == []  # not one backoff slept: the stop was asked already
    assert conn.session.calls.write == 1
