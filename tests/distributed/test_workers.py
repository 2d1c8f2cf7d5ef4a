"""``ponte worker`` processes over the real RabbitMQ, state in the real PostgreSQL: many
connections converge, a worker killed mid-run has its job redelivered and the run converges
without duplicates, and no connection's records reach another's state."""

from __future__ import annotations

import json
import re
import signal
import time
from collections import Counter

import pytest
import sqlalchemy as sa

from etl.connections import settings_for
from etl.ponte import Ponte
from etl.sandbox.server import Sandbox
from tests.distributed.conftest import Fleet


def digits(value: object) -> str:
    return re.sub(r"\D", "", str(value or ""))


def tax_ids(sb: Sandbox) -> tuple[list[str], list[str]]:
    """Every customer's CNPJ/CPF digits, in the CRM and in the ERP."""
    crm = [digits(r.data.get("Register") or r.data.get("CNPJ") or r.data.get("CPF"))
           for r in sb.crm.db["Contacts"]]
    erp = [digits(r.data.get("cnpj_cpf")) for r in sb.erp.db["clientes"]]
    return crm, erp


def assert_no_duplicates(fleet: Fleet) -> None:
    for name, sb in fleet.pairs.items():
        for side, ids in zip(("crm", "erp"), tax_ids(sb), strict=True):
            twice = {k: n for k, n in Counter(ids).items() if n > 1}
            assert not twice, f"{name}: customers twice in the {side}: {twice}"
        codes = Counter(r.data.get("codigo") for r in sb.erp.db["produtos"])
        assert max(codes.values(), default=1) == 1, f"{name}: products twice: {codes}"
        products = Counter(r.data.get("Code") for r in sb.crm.db["Products"])
        assert max(products.values(), default=1) == 1, f"{name}: products twice: {products}"
        orders = Counter(r.data.get("cabecalho", {}).get("codigo_pedido_integracao")
                         for r in sb.erp.db["pedidos"])
        assert max(orders.values(), default=1) == 1, f"{name}: orders twice: {orders}"


def assert_converged(fleet: Fleet, monkeypatch: pytest.MonkeyPatch) -> None:
    """``ponte verify`` of every connection finds no drift."""
    monkeypatch.setenv("PONTE_STATE_URL", fleet.state_url)
    monkeypatch.chdir(fleet.folder.parent)
    for name in fleet.names:
        report = Ponte(settings_for(name, fleet.folder)).verify()
        assert report.drift == 0, f"{name}: {json.dumps(report.as_dict(items=True))[:3000]}"


def assert_isolated(fleet: Fleet) -> None:
    """Each connection's state holds its own customers' tax ids and none of another's."""
    ids = {name: set(tax_ids(sb)[0]) | set(tax_ids(sb)[1]) for name, sb in fleet.pairs.items()}
    for name in fleet.names:
        with fleet.store(name) as store, store.engine.connect() as conn:
            seen = set(conn.scalars(sa.text(
                "SELECT natural_key FROM snapshots WHERE entity = 'customers' "
                "AND natural_key IS NOT NULL")))
        assert seen, f"{name}: no customer in its state"
        assert seen <= ids[name], f"{name}: foreign records {seen - ids[name]}"
        for other in fleet.names:
            if other != name:
                assert not seen & ids[other], f"{name}'s state holds {other}'s customers"


def test_ten_connections_over_three_workers_converge(make_fleet, monkeypatch) -> None:
    fleet = make_fleet(10)
    for _ in range(3):  # 12 slots: the 10 connections' chains run at once
        fleet.start_worker(concurrency=4)
    queued = json.loads(fleet.ponte("enqueue", "--all", "--queue", fleet.queue,
                                    "--json").stdout)
    assert queued["jobs"] == 30 and len(queued["chains"]) == 10
    fleet.wait_runs(3)
    # a second round, as the next schedule would: the customers' facts computed from the
    # orders the first round sent (sales volume) reach the CRM
    fleet.ponte("enqueue", "--all", "--queue", fleet.queue)
    fleet.wait_runs(6)
    for name in fleet.names:
        runs = [r for r in fleet.runs(name) if r.kind == "sync"]
        assert {r.status for r in runs} <= {"ok", "partial"}, (name, [r.report for r in runs])
        assert Counter(e for r in runs for e in r.entities) == {
            "customers": 2, "products": 2, "orders": 2}
    assert_no_duplicates(fleet)
    assert_converged(fleet, monkeypatch)
    assert_isolated(fleet)
    served = [bool(re.search(r"ponte\.run\[.*succeeded", fleet.worker_log(i)))
              for i in range(3)]
    assert all(served), "every worker ran jobs"


def test_a_worker_killed_mid_run_has_its_job_redelivered(make_fleet, monkeypatch) -> None:
    fleet = make_fleet(1, customers=60, products=4, orders=0)
    (name, sb), = fleet.pairs.items()
    sb.crm.faults.latency_ms = 40  # slow enough to be killed in the middle of the run
    sb.erp.faults.latency_ms = 40
    def records() -> int:
        return len(sb.crm.db["Contacts"]) + len(sb.erp.db["clientes"])

    before = records()
    victim = fleet.start_worker(concurrency=1)
    fleet.ponte("enqueue", "--connection", name, "--queue", fleet.queue, "customers")
    deadline = time.monotonic() + 60
    created = 0
    while time.monotonic() < deadline:  # until the run has written part of its records
        created = records() - before
        if created >= 5:
            break
        time.sleep(0.05)
    assert created >= 5, fleet.worker_log(0)[-3000:]
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    killed_at = time.monotonic()
    fleet.start_worker(concurrency=1)
    fleet.wait_runs(1, timeout=120)
    redone_s = time.monotonic() - killed_at
    runs = [r for r in fleet.runs(name) if r.kind == "sync"]
    statuses = sorted(r.status for r in runs)
    assert statuses == ["failed", "ok"], ([(r.status, r.report.get("error")) for r in runs],
                                          fleet.worker_log(0)[-2000:], fleet.worker_log(1)[-3000:])
    failed = next(r for r in runs if r.status == "failed")
    assert "killed" in failed.report["error"], failed.report
    assert "delivered again" in fleet.worker_log(1)
    assert redone_s < 60, "the redelivered run did not wait out the dead worker's lease"
    sb.crm.faults.latency_ms = sb.erp.faults.latency_ms = 0
    assert_no_duplicates(fleet)
    monkeypatch.setenv("PONTE_STATE_URL", fleet.state_url)
    monkeypatch.chdir(fleet.folder.parent)
    report = Ponte(settings_for(name, fleet.folder)).verify(["customers"])
    assert report.drift == 0, report.as_dict(items=True)


def test_sigterm_stops_a_run_after_its_chunk_and_requeues_its_job(make_fleet) -> None:
    fleet = make_fleet(1, customers=300, products=2, orders=0)
    (name, sb), = fleet.pairs.items()
    sb.crm.faults.latency_ms = sb.erp.faults.latency_ms = 20
    before = len(sb.crm.db["Contacts"]) + len(sb.erp.db["clientes"])
    first = fleet.start_worker(concurrency=1)
    fleet.ponte("enqueue", "--connection", name, "--queue", fleet.queue, "customers")
    deadline = time.monotonic() + 60
    while len(sb.crm.db["Contacts"]) + len(sb.erp.db["clientes"]) - before < 5:
        assert time.monotonic() < deadline, fleet.worker_log(0)[-3000:]
        time.sleep(0.05)
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=120) == 0
    assert "stopped by the worker's shutdown; back to the queue" in fleet.worker_log(0)
    fleet.start_worker(concurrency=1)
    fleet.wait_runs(2, timeout=120)
    runs = sorted(fleet.runs(name), key=lambda r: r.started_at)
    assert [r.status for r in runs] == ["stopped", "ok"], [(r.status, r.report) for r in runs]
    sb.crm.faults.latency_ms = sb.erp.faults.latency_ms = 0
    assert_no_duplicates(fleet)
