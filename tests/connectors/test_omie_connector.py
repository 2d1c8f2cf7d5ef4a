"""The Omie connector (the built-in spec, run by the generic connector) against the Omie
simulator, in-process (TestClient as the httpx.Client)."""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from loguru import logger
from starlette.testclient import TestClient

from etl.connectors.base import Connector, WriteOp
from etl.connectors.generic import GenericConnector
from etl.connectors.http import RetryPolicy
from etl.connectors.registry import get
from etl.errors import ConfigError, Stopped, SystemUnavailable
from etl.sandbox.omie import OmieSim, create_app
from etl.watermark import Window

KEY, SECRET = "2000000000002", "omie-connector-test-secret-xyz"
T0 = datetime(2026, 3, 10, 13, 0, 0, tzinfo=UTC)  # 10/03/2026 10:00:00 in Brasília
S = timedelta(seconds=1)
CNPJ = ["11222333000181", "11444777000161", "45723174000110", "04252011000110"]


class FakeSleep:
    """Records waits and moves the simulator's clock instead of sleeping."""

    def __init__(self, sim: OmieSim) -> None:
        self.sim = sim
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.sim.clock.advance(seconds)


@pytest.fixture
def omie_sim() -> OmieSim:
    return OmieSim(app_key=KEY, app_secret=SECRET, rpm=100_000)


@pytest.fixture
def omie_sleep(omie_sim: OmieSim) -> FakeSleep:
    return FakeSleep(omie_sim)


@pytest.fixture
def omie_http(omie_sim: OmieSim) -> Iterator[TestClient]:
    with TestClient(create_app(omie_sim), base_url="http://omie.test/api/v1") as client:
        yield client


def make(http: TestClient, sleep: FakeSleep, *, app_key: str = KEY, app_secret: str = SECRET,
         page_size: int = 500, **kw: Any) -> GenericConnector:
    kw.setdefault("requests_per_minute", 100_000)
    return GenericConnector(get("omie").spec, http, system="erp", page_size=page_size,
                            credentials={"app_key": app_key, "app_secret": app_secret},
                            retry=RetryPolicy(attempts=8, base_s=0.001, cap_s=0.01),
                            sleep=sleep, **kw)


@pytest.fixture
def omie_conn(omie_http: TestClient, omie_sleep: FakeSleep) -> GenericConnector:
    return make(omie_http, omie_sleep)


def put(sim: OmieSim, table: str, updated: datetime, created: datetime | None = None,
        **data: Any) -> int:
    """Insert a row directly (the seeder's path) with the given change time."""
    row = sim.db[table].insert({"razao_social": "R", **data} if table == "clientes" else data,
                               created or updated)
    row.updated = updated
    return row.id


def keys(conn: GenericConnector, entity: str, window: Window) -> list[str]:
    return [conn.key_of(entity, r) for page in conn.list_changed(entity, window) for r in page]


def cliente(i: int, **extra: Any) -> dict[str, Any]:
    return {"razao_social": f"EMPRESA {i}", "cnpj_cpf": CNPJ[i % len(CNPJ)],
            "email": f"c{i}@x.com", **extra}


def produto(i: int, **extra: Any) -> dict[str, Any]:
    return {"codigo": f"SKU-{i}", "descricao": f"PRODUTO {i}", "unidade": "UN",
            "ncm": "9403.30.00", "valor_unitario": 10.0 + i, **extra}


def pedido(**cab: Any) -> dict[str, Any]:
    return {
        "cabecalho": {"codigo_cliente_integracao": "crm:1", "data_previsao": "20/03/2026",
                      "etapa": "10", "codigo_parcela": "000", **cab},
        "det": [{"ide": {"codigo_item_integracao": "1"},
                 "produto": {"codigo_produto_integracao": "crm:p1", "quantidade": 2,
                             "valor_unitario": 10.0}}],
        "informacoes_adicionais": {"codigo_categoria": "1.01.03", "codigo_conta_corrente": 1,
                                   "consumidor_final": "S"},
        "frete": {"modalidade": "9"},
    }


# --- protocol and record facts ------------------------------------------------------------

def test_protocol_and_capabilities(omie_conn: GenericConnector) -> None:
    assert isinstance(omie_conn, Connector)
    assert (omie_conn.system, omie_conn.kind) == ("erp", "omie")
    assert omie_conn.entities() == {"customers", "products", "orders"}
    cap = omie_conn.capabilities
    assert (cap.page_size, cap.batch_size, cap.max_concurrency) == (500, 1, 4)
    assert cap.clock_zone == "America/Sao_Paulo" and cap.clock_precision == S
    assert cap.has_external_id_upsert and cap.has_changed_since


def test_updated_at_and_key_of(omie_conn: GenericConnector) -> None:
    rec = {"codigo_cliente_omie": 7, "info": {"dInc": "09/03/2026", "hInc": "23:59:59",
                                              "dAlt": "10/03/2026", "hAlt": "10:00:00"}}
    assert omie_conn.updated_at("customers", rec) == T0
    assert omie_conn.key_of("customers", rec) == "7"
    only_inc = {"codigo_produto": 3, "info": {"dInc": "09/03/2026", "hInc": "23:59:59"}}
    assert omie_conn.updated_at("products", only_inc) == datetime(2026, 3, 10, 2, 59, 59,
                                                                  tzinfo=UTC)
    order = {"cabecalho": {"codigo_pedido": 9},
             "infoCadastro": {"dAlt": "10/03/2026", "hAlt": "10:00:01"}}
    assert omie_conn.key_of("orders", order) == "9"
    assert omie_conn.updated_at("orders", order) == T0 + S
    with pytest.raises(ConfigError):
        omie_conn.key_of("invoices", rec)


# --- changed-since ------------------------------------------------------------------------

def test_window_edges_at_second_precision(omie_conn: GenericConnector, omie_sim: OmieSim) -> None:
    until = T0 + 10 * S
    stamps = [T0 - S, T0, T0 + 5 * S, until - S, until, until + S]
    ids = [put(omie_sim, "clientes", t) for t in stamps]
    assert keys(omie_conn, "customers", Window(T0, until)) == [str(i) for i in ids[1:4]]
    # a fractional since: the record at its whole second lies before it
    assert keys(omie_conn, "customers", Window(T0 + timedelta(milliseconds=300), until)) == \
        [str(i) for i in ids[2:4]]
    # a fractional until: the record at its whole second lies inside
    assert keys(omie_conn, "customers", Window(T0, until + timedelta(milliseconds=1))) == \
        [str(i) for i in ids[1:5]]
    # a window too narrow to hold a whole second asks nothing
    before = omie_conn.calls.read
    assert keys(omie_conn, "customers", Window(T0 + timedelta(milliseconds=100),
                                               T0 + timedelta(milliseconds=900))) == []
    assert omie_conn.calls.read == before


def test_many_records_sharing_one_second_with_page_cap(omie_conn: GenericConnector,
                                                       omie_sim: OmieSim) -> None:
    omie_sim.faults.page_cap = 3
    ids = [put(omie_sim, "clientes", T0) for _ in range(10)]
    put(omie_sim, "clientes", T0 + S)
    got = keys(omie_conn, "customers", Window(T0, T0 + S))
    assert got == [str(i) for i in ids]  # each once, in (updated_at, key) order
    assert omie_sim.requests.as_list() == [
        {"endpoint": "geral/clientes/ListarClientes", "status": 200, "count": 4}]


def test_full_read_streams_page_by_page_in_omies_order(omie_conn: GenericConnector,
                                                        omie_sim: OmieSim) -> None:
    """Omie's listing is not ordered by change time: each page is yielded as it arrives (never
    the whole listing collected first), sorted by change time within the page only."""
    # ids grow with creation, but changes happen in another order
    stamps = [T0 + 5 * S, T0 + S, T0 + 3 * S, T0 + S, T0 - timedelta(days=400)]
    for t in stamps:
        put(omie_sim, "clientes", t, created=T0 - timedelta(days=500))
    conn = make(omie_conn.client, FakeSleep(omie_sim), page_size=2)
    assert not conn.capabilities.ordered_by_updated_at
    pages = conn.list_changed("customers", Window(None))
    first = next(pages)
    assert sum(omie_sim.requests.counts.values()) == 1  # one page asked so far
    rest = list(pages)
    flat = [conn.key_of("customers", r) for p in [first, *rest] for r in p]
    assert [len(p) for p in [first, *rest]] == [2, 2, 1]
    assert flat == ["2", "1", "4", "3", "5"]


def test_products_and_orders_windows(omie_conn: GenericConnector, omie_sim: OmieSim) -> None:
    put(omie_sim, "produtos", T0 - S, descricao="OLD")
    p = put(omie_sim, "produtos", T0, descricao="NEW")
    assert keys(omie_conn, "products", Window(T0, T0 + S)) == [str(p)]
    o = put(omie_sim, "pedidos", T0, cabecalho={"codigo_pedido_integracao": "X", "etapa": "10"},
            det=[])
    assert keys(omie_conn, "orders", Window(T0, None)) == [str(o)]


def test_end_of_list_5113_is_empty_not_an_error(omie_conn: GenericConnector) -> None:
    assert list(omie_conn.list_changed("customers", Window(T0, T0 + S))) == []
    assert list(omie_conn.list_changed("orders", Window(None))) == []


def test_window_needs_flag_quirk_is_harmless(omie_conn: GenericConnector, omie_sim: OmieSim) -> None:
    omie_sim.faults.window_needs_flag = True
    put(omie_sim, "clientes", T0 - timedelta(days=9))
    new = put(omie_sim, "clientes", T0)
    assert keys(omie_conn, "customers", Window(T0, T0 + S)) == [str(new)]
    assert omie_sim.requests.as_list()[0]["count"] == 1


@pytest.fixture
def info_lines() -> Iterator[list[str]]:
    """Messages ponte logs at INFO and above while the test runs."""
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(m.record["message"]), level="INFO")
    yield lines
    logger.remove(sink)


def test_identical_read_in_one_run_is_not_sent_twice(omie_conn: GenericConnector,
                                                      omie_sim: OmieSim,
                                                      omie_sleep: FakeSleep) -> None:
    assert omie_sim.faults.redundant_rule  # the default
    put(omie_sim, "clientes", T0)
    window = Window(T0, T0 + S)
    assert keys(omie_conn, "customers", window) == ["1"]
    assert keys(omie_conn, "customers", window) == ["1"]  # identical call within 60 s
    assert [r["codigo_cliente_omie"] for r in omie_conn.find_by(
        "customers", "cnpj_cpf", [f"{i:014d}" for i in range(30)])] == []
    assert omie_conn.find_by("customers", "cnpj_cpf", [f"{i:014d}" for i in range(30)]) == []
    assert omie_sleep.waits == []  # no redundant-call wait
    counts = {(c["endpoint"], c["status"]): c["count"] for c in omie_sim.requests.as_list()}
    assert counts == {("geral/clientes/ListarClientes", 200): 2}  # the window + one full scan


def test_answers_are_kept_only_for_the_vendor_window(omie_http: TestClient, omie_sim: OmieSim,
                                                     omie_sleep: FakeSleep) -> None:
    clock = [100.0]
    conn = make(omie_http, omie_sleep, clock=lambda: clock[0])
    put(omie_sim, "clientes", T0)
    window = Window(T0, T0 + S)
    keys(conn, "customers", window)
    clock[0] += 59.0
    keys(conn, "customers", window)
    assert sum(c["count"] for c in omie_sim.requests.as_list()) == 1
    clock[0] += 1.0
    omie_sim.clock.advance(61)  # Omie takes the same call again: ponte reads it fresh
    keys(conn, "customers", window)
    assert sum(c["count"] for c in omie_sim.requests.as_list()) == 2
    assert omie_sleep.waits == []


def test_a_write_forgets_what_was_read_and_a_forced_wait_is_said_at_info(
        omie_conn: GenericConnector, omie_sim: OmieSim, omie_sleep: FakeSleep,
        info_lines: list[str]) -> None:
    put(omie_sim, "clientes", T0, cnpj_cpf=CNPJ[0], email="old@x.com")
    assert [r["email"] for r in omie_conn.find_by("customers", "cnpj_cpf", [CNPJ[0]])] == \
        ["old@x.com"]
    assert omie_conn.write_batch("customers", [WriteOp("update", {"email": "new@x.com"},
                                                       key="1")])[0].ok
    # the same call again after a write: sent (the answer above is stale), so Omie's rule
    # forces a wait, which is said at INFO with its length
    assert [r["email"] for r in omie_conn.find_by("customers", "cnpj_cpf", [CNPJ[0]])] == \
        ["new@x.com"]
    assert [w for w in omie_sleep.waits if w >= 1] == [61.0]
    assert ("Omie asks to wait 61 s before repeating ListarClientes (redundant-call rule); "
            "waiting") in info_lines


def test_a_stop_request_ends_a_reads_stated_wait_within_half_a_second(
        omie_http: TestClient, omie_sim: OmieSim, omie_sleep: FakeSleep) -> None:
    """Ctrl-C while Omie holds a repeated listing back for a minute: the read stops at the next
    half second of the wait, not after the minute; a write's wait is never cut short."""
    put(omie_sim, "clientes", T0)
    full = Window(None, T0 + S)
    assert keys(make(omie_http, omie_sleep), "customers", full) == ["1"]
    second = make(omie_http, omie_sleep)  # a second run: Omie asks it to wait
    second.should_stop = lambda: sum(omie_sleep.waits) >= 1.0
    with pytest.raises(Stopped, match="^stopped while Omie asked to wait 6[01] s before "
                                      "repeating ListarClientes$"):
        keys(second, "customers", full)
    assert omie_sleep.waits == [0.5, 0.5]
    counts = {(c["endpoint"], c["status"]): c["count"] for c in omie_sim.requests.as_list()}
    assert counts == {("geral/clientes/ListarClientes", 200): 1,
                      ("geral/clientes/ListarClientes", 500): 1}  # not sent again


def test_the_same_read_on_two_threads_at_once_is_sent_once(
        omie_conn: GenericConnector, omie_sim: OmieSim, omie_sleep: FakeSleep) -> None:
    """A window's reader and a search's scan asking for the same page at the same moment: the
    second waits for the first one's answer instead of sending the call again, which Omie
    would refuse for a minute."""
    put(omie_sim, "clientes", T0)
    omie_sim.faults.latency_ms = 300
    window = Window(T0, T0 + S)
    with ThreadPoolExecutor(max_workers=2) as pool:
        got = list(pool.map(lambda _: keys(omie_conn, "customers", window), range(2)))
    assert got == [["1"], ["1"]]
    counts = {(c["endpoint"], c["status"]): c["count"] for c in omie_sim.requests.as_list()}
    assert counts == {("geral/clientes/ListarClientes", 200): 1}
    assert omie_sleep.waits == []


def test_two_runs_within_a_minute_wait_once_with_an_info_line(
        omie_http: TestClient, omie_sim: OmieSim, omie_sleep: FakeSleep,
        info_lines: list[str]) -> None:
    put(omie_sim, "clientes", T0)
    full = Window(None, T0 + S)
    assert keys(make(omie_http, omie_sleep), "customers", full) == ["1"]
    assert keys(make(omie_http, omie_sleep), "customers", full) == ["1"]  # a second run
    redundant = [w for w in omie_sleep.waits if w >= 1]
    assert len(redundant) == 1 and 55 <= redundant[0] <= 62
    assert [m for m in info_lines if "redundant-call rule" in m] == [
        (f"Omie asks to wait {redundant[0]:.0f} s before repeating ListarClientes "
         "(redundant-call rule); waiting")]
    counts = {(c["endpoint"], c["status"]): c["count"] for c in omie_sim.requests.as_list()}
    assert counts == {("geral/clientes/ListarClientes", 200): 2,
                      ("geral/clientes/ListarClientes", 500): 1}


# --- reads by key and matching ------------------------------------------------------------

def test_read_by_keys(omie_conn: GenericConnector) -> None:
    res = omie_conn.write_batch("customers", [WriteOp("create", cliente(i), external_id=f"c{i}")
                                              for i in range(3)])
    got = omie_conn.read_by_keys("customers", [res[0].key or "", res[2].key or "", "999", "x"])
    assert sorted(omie_conn.key_of("customers", r) for r in got) == ["1", "3"]
    prods = omie_conn.write_batch("products", [WriteOp("create", produto(1), external_id="p1")])
    assert [r["codigo"] for r in omie_conn.read_by_keys("products", [prods[0].key or ""])] == \
        ["SKU-1"]
    assert omie_conn.read_by_keys("orders", ["42"]) == []


def test_find_by(omie_conn: GenericConnector) -> None:
    omie_conn.write_batch("customers", [WriteOp("create", cliente(i), external_id=f"crm:{i}")
                                        for i in range(3)])
    omie_conn.write_batch("products", [WriteOp("create", produto(i), external_id=f"crm:p{i}")
                                       for i in range(2)])
    found = omie_conn.find_by("customers", "cnpj_cpf", ["11.444.777/0001-61", "45723174000110",
                                                        "00000000000000"])
    assert sorted(r["codigo_cliente_omie"] for r in found) == [2, 3]
    found = omie_conn.find_by("customers", "codigo_cliente_integracao", ["crm:0", "crm:9"])
    assert [r["codigo_cliente_omie"] for r in found] == [1]
    assert [r["codigo_produto"] for r in omie_conn.find_by("products", "codigo", ["SKU-1"])] \
        == [2]
    assert [r["codigo_produto"] for r in
            omie_conn.find_by("products", "codigo_produto_integracao", ["crm:p0"])] == [1]
    omie_conn.write_batch("orders", [WriteOp("create", pedido(), external_id="crm:o1")])
    orders = omie_conn.find_by("orders", "codigo_pedido_integracao", ["crm:o1", "crm:o2"])
    assert [o["cabecalho"]["codigo_pedido"] for o in orders] == [1]
    assert omie_conn.find_by("customers", "cnpj_cpf", []) == []
    with pytest.raises(ConfigError, match="valid"):
        omie_conn.find_by("customers", "email", ["a@b"])


def test_find_by_many_tax_ids_scans_once(omie_conn: GenericConnector, omie_sim: OmieSim) -> None:
    omie_conn.write_batch("customers", [WriteOp("create", cliente(0), external_id="a")])
    omie_sim.requests.reset()
    values = [f"{i:014d}" for i in range(40)] + [CNPJ[0]]
    assert len(omie_conn.find_by("customers", "cnpj_cpf", values)) == 1
    assert sum(c["count"] for c in omie_sim.requests.as_list()) == 1


# --- writes -------------------------------------------------------------------------------

def test_create_upsert_is_idempotent(omie_conn: GenericConnector, omie_sim: OmieSim) -> None:
    op = WriteOp("create", cliente(0), external_id="crm:1")
    first, second = omie_conn.write_batch("customers", [op, op])
    assert first.ok and second.ok and first.key == second.key == "1"
    assert len(omie_sim.db["clientes"]) == 1
    # the written record looks exactly like list output (the engine hashes it)
    listed = next(iter(omie_conn.list_changed("customers", Window(None))))[0]
    assert second.record == listed
    assert listed["codigo_cliente_integracao"] == "crm:1"


def test_update_by_key(omie_conn: GenericConnector, omie_sim: OmieSim) -> None:
    created = omie_conn.write_batch("customers", [WriteOp("create", cliente(0),
                                                          external_id="crm:1")])[0]
    omie_sim.clock.advance(5)
    upd = omie_conn.write_batch("customers", [WriteOp("update", {"email": "new@x.com"},
                                                      key=created.key)])[0]
    assert upd.ok and upd.record and upd.record["email"] == "new@x.com"
    assert upd.record["info"]["hAlt"] != upd.record["info"]["hInc"]
    missing = omie_conn.write_batch("customers", [WriteOp("update", {"email": "a@b"},
                                                          key="999")])[0]
    assert missing.error and missing.error.kind == "rejected"
    assert "SOAP-ENV:Client-105" in str(missing.error)
    bad_key = omie_conn.write_batch("customers", [WriteOp("update", {}, key="abc")])[0]
    assert bad_key.error and bad_key.error.kind == "invalid"
    prod = omie_conn.write_batch("products", [WriteOp("create", produto(1), external_id="p")])[0]
    p2 = omie_conn.write_batch("products", [WriteOp("update", {"valor_unitario": 99.5},
                                                    key=prod.key)])[0]
    assert p2.record and p2.record["valor_unitario"] == 99.5


def test_rejected_record_does_not_fail_the_others(omie_conn: GenericConnector,
                                                  omie_sim: OmieSim) -> None:
    ops = [WriteOp("create", cliente(0), external_id="a"),
           WriteOp("create", cliente(1, cnpj_cpf="11222333000100"), external_id="b"),
           WriteOp("create", cliente(2, razao_social="R" * 61), external_id="c"),
           WriteOp("create", cliente(3), external_id="d")]
    results = omie_conn.write_batch("customers", ops)
    assert [r.ok for r in results] == [True, False, False, True]
    assert results[1].error and results[1].error.field == "cnpj_cpf"
    assert "SOAP-ENV:Client-1020" in str(results[1].error)
    assert results[2].error and results[2].error.field == "razao_social"
    assert len(omie_sim.db["clientes"]) == 2


def test_write_fault_in_http_200_is_still_a_rejection(omie_conn: GenericConnector,
                                                      omie_sim: OmieSim) -> None:
    omie_sim.faults.write_faults_http200 = True
    res = omie_conn.write_batch("customers", [WriteOp("create", {"email": "x@y"},
                                                      external_id="a")])[0]
    assert res.error and res.error.field == "razao_social"


def test_order_create_and_duplicate_102_is_success(omie_conn: GenericConnector,
                                                   omie_sim: OmieSim) -> None:
    omie_conn.write_batch("customers", [WriteOp("create", cliente(0), external_id="crm:1")])
    omie_conn.write_batch("products", [WriteOp("create", produto(0), external_id="crm:p1")])
    op = WriteOp("create", pedido(), external_id="crm:o1")
    first = omie_conn.write_batch("orders", [op])[0]
    assert first.ok and first.key == "1" and first.record
    assert first.record["cabecalho"]["codigo_pedido_integracao"] == "crm:o1"
    again = omie_conn.write_batch("orders", [op])[0]  # a retry after a lost answer
    assert again.ok and again.key == "1" and again.record == first.record
    assert len(omie_sim.db["pedidos"]) == 1
    assert ("produtos/pedido/IncluirPedido", 500) in {
        (c["endpoint"], c["status"]) for c in omie_sim.requests.as_list()}
    upd = omie_conn.write_batch("orders", [WriteOp("update", {"cabecalho": {"etapa": "20"}},
                                                   key="1")])[0]
    assert upd.ok and upd.record and upd.record["cabecalho"]["etapa"] == "20"
    bad = omie_conn.write_batch("orders", [WriteOp("create", pedido(codigo_cliente_integracao="?"),
                                                   external_id="crm:o2")])[0]
    assert bad.error and "SOAP-ENV:Client-105" in str(bad.error)


# --- transient and fatal failures ---------------------------------------------------------

def test_429_and_5xx_and_drops_are_retried(omie_conn: GenericConnector, omie_sim: OmieSim) -> None:
    put(omie_sim, "clientes", T0)
    omie_sim.faults.burst_429 = 2
    assert keys(omie_conn, "customers", Window(None)) == ["1"]
    assert omie_conn.stats.got_429 == 2
    omie_sim.faults.error_rate = 0.4
    res = omie_conn.write_batch("customers", [WriteOp("create", cliente(i, cnpj_cpf=""),
                                                      external_id=f"e{i}") for i in range(6)])
    assert all(r.ok for r in res) and len(omie_sim.db["clientes"]) == 7
    assert omie_conn.stats.got_5xx > 0
    omie_sim.faults.error_rate, omie_sim.faults.drop_rate = 0.0, 0.4
    res = omie_conn.write_batch("customers", [WriteOp("create", cliente(i, cnpj_cpf=""),
                                                      external_id=f"d{i}") for i in range(6)])
    assert all(r.ok for r in res) and omie_conn.stats.dropped > 0


def test_persistent_failure_is_system_unavailable(omie_conn: GenericConnector,
                                                  omie_sim: OmieSim) -> None:
    omie_sim.faults.error_rate = 1.0
    with pytest.raises(SystemUnavailable, match="failed 8 times"):
        list(omie_conn.list_changed("customers", Window(None)))
    with pytest.raises(SystemUnavailable):
        omie_conn.write_batch("customers", [WriteOp("create", cliente(0), external_id="a")])


def test_bad_credentials_never_leak(omie_http: TestClient, omie_sleep: FakeSleep) -> None:
    wrong_secret = "very-secret-value-123"
    conn = make(omie_http, omie_sleep, app_secret=wrong_secret)
    with pytest.raises(SystemUnavailable) as err:
        list(conn.list_changed("customers", Window(None)))
    text = str(err.value)
    assert "PONTE_ERP__CREDENTIALS__APP_KEY" in text and "PONTE_ERP__CREDENTIALS__APP_SECRET" in text
    assert wrong_secret not in text and KEY not in text
    with pytest.raises(SystemUnavailable) as err:
        conn.write_batch("customers", [WriteOp("create", cliente(0), external_id="a")])
    assert wrong_secret not in str(err.value)


def test_misuse_block_is_system_unavailable(omie_conn: GenericConnector, omie_sim: OmieSim) -> None:
    omie_sim.faults.misuse_after = 1
    omie_conn.write_batch("customers", [WriteOp("update", {}, key="5")])
    with pytest.raises(SystemUnavailable, match="misuse"):
        list(omie_conn.list_changed("customers", Window(None)))


def test_wrong_base_url_is_system_unavailable(omie_sim: OmieSim, omie_sleep: FakeSleep) -> None:
    with TestClient(create_app(omie_sim), base_url="http://omie.test/api") as http:
        conn = make(http, omie_sleep)
        with pytest.raises(SystemUnavailable, match="BASE_URL"):
            list(conn.list_changed("customers", Window(None)))


@pytest.mark.parametrize(("entity", "record", "path"), [
    ("customers", {"codigo_cliente_omie": 1}, "info.dAlt"),
    ("products", {"codigo_produto": 1, "info": {"dAlt": "31/02/2026", "hAlt": "25:00:00"}},
     "info.dAlt"),
    ("orders", {"cabecalho": {"codigo_pedido": 1}, "infoCadastro": {"dAlt": None}},
     "infoCadastro.dAlt"),
])
def test_an_undated_record_has_no_updated_at(omie_conn: GenericConnector, entity: str,
                                             record: dict[str, Any], path: str) -> None:
    assert omie_conn.updated_at(entity, record) is None
    assert omie_conn.capabilities.updated_at_paths[entity] == path


def test_answers_kept_for_the_window_cost_a_fraction_of_the_listing(omie_conn: GenericConnector,
                                                                    omie_sim: OmieSim) -> None:
    """The answers kept for Omie's redundant-call window do not hold a second copy of a
    listing read whole within it (a first sync's pages): memory follows the pages in use."""
    for i in range(2_000):
        put(omie_sim, "clientes", T0, **cliente(i, endereco=f"RUA {i}", bairro="CENTRO",
                                                 observacao="x" * 80))
    gc.collect()
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        pages = list(omie_conn.list_changed("customers", Window(None)))
        holding = tracemalloc.get_traced_memory()[0] - start
        assert sum(len(p) for p in pages) == 2_000
        del pages
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0] - start
    finally:
        tracemalloc.stop()
    assert kept < holding * 0.35, (kept, holding)
    sent = sum(omie_sim.requests.counts.values())
    again = list(omie_conn.list_changed("customers", Window(None)))  # answered from them
    assert sum(len(p) for p in again) == 2_000
    assert sum(omie_sim.requests.counts.values()) == sent  # not one call sent again
