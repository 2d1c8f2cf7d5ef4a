"""The library façade (:class:`etl.ponte.Ponte`) against both simulators (in-process World)
and a real state database: backfill, watermark show/set/reset, status, runs, quarantine,
stopping a run between chunks, and the one clock every entry point reads."""

from __future__ import annotations

import copy
import itertools
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from etl import ops
from etl.clock import ManualClock
from etl.engine.entity import CHUNK, IN_FLIGHT, chunk_starts
from etl.errors import ConfigError, LockHeld
from etl.mapping import load_mappings
from etl.ponte import Ponte
from etl.results import MetricsPublished
from tests.engine.conftest import MAPPINGS, World, make_world


def marks(w: World) -> dict[tuple[str, str], datetime | None]:
    with w.store() as store:
        return {(r.entity, r.system): r.value for r in store.watermarks()}


def tax_ids(w: World) -> tuple[list[str], list[str]]:
    crm = [r.data.get("Register", "") for r in w.crm.db["Contacts"]]
    erp = [re.sub(r"\D", "", r.data.get("cnpj_cpf", "")) for r in w.erp.db["clientes"]]
    return crm, erp


def backfill(w: World, entity: str, **kw: Any):
    w.tick()
    report = w.ponte().backfill(entity, **kw)
    w.tick()
    return report


MAPS = load_mappings(MAPPINGS)


def test_backfill_over_a_window_leaves_the_stored_watermark_untouched(world: World) -> None:
    assert world.sync().status == "ok"
    before = marks(world)
    assert before and all(before.values())
    cliente = next(iter(world.erp.db["clientes"]))
    world.erp.ui_update("clientes", cliente.id, {"nome_fantasia": "Padaria Backfill"})
    report = backfill(world, "customers", since=world.now() - timedelta(hours=1))
    assert report.kind == "backfill" and report.status == "ok", report.as_dict()
    c = report.entities["customers"]
    assert c.crm.updated == 1 and c.erp.created == c.crm.created == 0
    assert any(r.data.get("Name") == "Padaria Backfill" for r in world.crm.db["Contacts"])
    assert marks(world) == before  # neither read nor moved
    with world.store() as store:
        assert store.runs(limit=1)[0].kind == "backfill"
    # the re-run of the same window finds everything unchanged
    again = backfill(world, "customers", since="1h")  # text, read against the clock
    assert again.writes == 0 and marks(world) == before


def test_backfill_reads_only_the_window_and_the_side_asked(world: World) -> None:
    world.sync()
    cliente = next(iter(world.erp.db["clientes"]))
    world.erp.ui_update("clientes", cliente.id, {"nome_fantasia": "Fora da Janela"})
    old = world.now() - timedelta(days=30)
    past = backfill(world, "customers", since=old, until=old + timedelta(days=1))
    assert past.entities["customers"].erp.read == 0 and past.writes == 0
    only_crm = backfill(world, "customers", sides=("crm",))
    assert only_crm.entities["customers"].erp.read == 0
    assert only_crm.entities["customers"].crm.read == len(world.crm.db["Contacts"])
    assert only_crm.writes == 0  # the ERP edit is outside what was asked
    with pytest.raises(ConfigError, match="not before"):
        backfill(world, "customers", since=world.now() + timedelta(days=1))
    with pytest.raises(ConfigError, match="unknown entity"):
        backfill(world, "invoices")
    with pytest.raises(ConfigError, match="--side: 'sap' is not a side"):
        backfill(world, "customers", sides=("sap",))
    with pytest.raises(ConfigError, match="--until: 'soon' is not a time"):
        backfill(world, "customers", until="soon")


def test_backfill_dry_run_writes_nothing(world: World) -> None:
    report = backfill(world, "customers", dry_run=True)
    assert report.dry_run and report.writes > 0
    assert world.write_requests() == 0 and marks(world) == {}


def test_watermark_reset_rereads_everything_and_duplicates_nothing(world: World) -> None:
    assert world.sync().status == "ok"
    crm_n, erp_n = len(world.crm.db["Contacts"]), len(world.erp.db["clientes"])
    products_mark = marks(world)[("products", "erp")]
    asked: list[ops.WatermarkChange] = []
    result = world.ponte().reset_watermark("customers", confirm=asked.extend)
    assert {c.side for c in asked} == {"crm", "erp"} and all(c.old for c in asked)
    assert result.changes == asked
    with world.store() as store:
        assert store.watermark("customers", "crm") is None
        assert store.watermark("customers", "erp") is None
        run = store.run(result.run_id[:10])
    assert run is not None and run.kind == "watermark" and run.status == "ok"
    assert "-> (none" in run.report["summary"] and len(run.report["watermarks"]) == 2
    assert marks(world)[("products", "erp")] == products_mark  # only the named entity
    writes_before = world.write_requests()
    report = world.sync("customers")
    c = report.entities["customers"]
    assert report.status == "ok"
    assert c.crm.read == crm_n and c.erp.read == erp_n  # re-read from the start ...
    assert c.crm.created == c.erp.created == c.crm.updated == c.erp.updated == 0  # ... no writes
    assert world.write_requests() == writes_before
    assert (len(world.crm.db["Contacts"]), len(world.erp.db["clientes"])) == (crm_n, erp_n)
    crm, erp = tax_ids(world)
    assert len(crm) == len(set(crm)) and len(erp) == len(set(erp))
    assert marks(world)[("customers", "crm")] is not None  # and the watermark is back


def test_watermark_set_one_side_and_refusals(world: World) -> None:
    world.sync("customers")
    to = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    ponte = world.ponte()
    with world.store() as store:
        old_erp = store.watermark("customers", "erp")
    result = ponte.set_watermark("customers", side="crm", to=to)
    assert len(result.changes) == 1 and result.changes[0].new == to
    with world.store() as store:
        assert store.watermark("customers", "crm") == to
        assert store.watermark("customers", "erp") == old_erp
    views = ponte.watermarks("customers")
    assert {(v.side, v.value) for v in views.watermarks} == {("crm", to), ("erp", old_erp)}
    assert {d["side"]: d["watermark"] for d in views.as_list()} == {
        "crm": to.isoformat(), "erp": old_erp.isoformat() if old_erp else None}
    with pytest.raises(ConfigError, match="crm or erp"):
        ponte.set_watermark("customers", side="sap", to=to)
    with pytest.raises(ConfigError, match="not read from crm"):
        ponte.set_watermark("products", side="crm", to=to)
    with pytest.raises(ConfigError, match="--to: 'tomorrow' is not a time"):
        ponte.set_watermark("customers", side="crm", to="tomorrow")
    with world.store() as store:  # the façade always names the side to set; the library asks
        with pytest.raises(ConfigError, match="needs --side"):
            ops.plan_watermark(store, MAPS, "customers", side=None, to=to, now=world.now())
        # a run in progress holds the lock: nothing changes, the attempt is recorded as failed
        assert store.acquire_lock("entity:customers", "someone-else", lease_s=600,
                                  now=world.now())
    with pytest.raises(LockHeld):
        ponte.reset_watermark("customers", side="crm")
    with world.store() as store:
        assert store.watermark("customers", "crm") == to
        assert store.runs(limit=1)[0].status == "failed"


def test_status_reports_watermarks_lag_last_run_quarantine_and_next_run(tmp_path: Path) -> None:
    w = make_world(f"sqlite:///{tmp_path / 's.db'}", customers=20, products=5, orders=4)
    w.settings = w.settings.model_copy(
        update={"schedule": {**w.settings.schedule, "products": "every:300"}})
    orders = sorted(w.crm.db["Orders"], key=lambda r: r.id)
    lines = copy.deepcopy(orders[0].data["Products"])
    lines[0]["Quantity"] = 0
    w.crm.ui_update("Orders", orders[0].id, {"Products": lines})
    crm_customers = len(w.crm.db["Contacts"])
    report = w.sync()
    assert report.status == "partial"
    st = w.ponte().status()
    now = st.now
    by = {e.entity: e for e in st.entities}
    assert set(by) == {"customers", "products", "orders"}
    cust = by["customers"]
    assert [s.side for s in cust.sides] == ["crm", "erp"]
    assert all(s.watermark is not None and s.lag_s is not None and s.lag_s >= 0
               for s in cust.sides)
    assert cust.last_run is not None and cust.last_run.status == "partial"
    assert cust.last_run.counts["crm"]["read"] == crm_customers
    assert cust.next_run is not None and now < cust.next_run <= now + timedelta(minutes=5)
    assert by["products"].next_run == by["products"].last_run.started_at + timedelta(seconds=300)
    assert {s.side: s.quarantined for s in by["orders"].sides}["crm"] == 1
    assert by["orders"].running is None
    d = st.as_dict()
    assert d["entities"][0]["sides"][0]["watermark"].startswith("20")


def test_runs_and_run_by_prefix(world: World) -> None:
    first = world.sync("customers")
    world.sync("products")
    ponte = world.ponte()
    rows = ponte.runs(10).runs
    assert [r.kind for r in rows] == ["sync", "sync"] and rows[1].id == first.run_id
    assert ponte.run(first.run_id[:6]).id == first.run_id
    assert ops.run_dict(rows[1])["report"]["entities"]["customers"]["crm"]["read"] > 0
    with pytest.raises(ConfigError, match="no run"):
        ponte.run("ffffffffff")
    with pytest.raises(ConfigError, match="--limit must be at least 1"):
        ponte.runs(0)


def test_quarantine_list_show_retry_drop(world: World) -> None:
    orders = sorted(world.crm.db["Orders"], key=lambda r: r.id)
    bad = orders[0]
    lines = copy.deepcopy(bad.data["Products"])
    lines[0]["Quantity"] = 0
    world.crm.ui_update("Orders", bad.id, {"Products": lines})
    world.sync()
    ponte = world.ponte()
    rows = ponte.quarantine_list("orders").entries
    assert len(rows) == 1 and rows[0].key == str(bad.id)
    entry = ponte.quarantine_entry(rows[0].id)
    assert ops.quarantine_dict(entry, payload=True)["payload"]
    assert "payload" not in ops.quarantine_dict(entry)
    assert entry.next_retry_at > world.now()  # backing off
    assert ponte.quarantine_retry(entry.id).due == 1
    with world.store() as store:
        assert store.quarantine_due("orders", "crm", world.now())
    with pytest.raises(ConfigError, match="no quarantine entry"):
        ponte.quarantine_retry(999999)
    # fixed at the source, though its timestamp is older than the watermark: retry re-reads it
    lines[0]["Quantity"] = 2
    world.crm.db["Orders"].get(bad.id).data["Products"] = lines  # edit without a new timestamp
    report = world.sync("orders")
    assert report.entities["orders"].erp.created == 1
    assert ponte.quarantine_list().entries == ()
    with world.store() as store:
        store.checkpoint(_entry("orders"), now=world.now())
    qid = ponte.quarantine_list().entries[0].id

    def refuse(row: Any) -> None:
        raise ConfigError(f"not confirmed: {row.key}")

    with pytest.raises(ConfigError, match="not confirmed: x1"):
        ponte.quarantine_drop(qid, confirm=refuse)
    assert [r.id for r in ponte.quarantine_list().entries] == [qid]  # refused: still there
    assert ponte.quarantine_drop(qid).key == "x1"
    assert ponte.quarantine_list().entries == ()


def _entry(entity: str):
    from etl.state import Checkpoint, QuarantineEntry

    return Checkpoint(entity, quarantine=[QuarantineEntry(entity, "crm", "x1", "invalid", "bad")])


def test_a_stopped_run_keeps_whole_chunks_moves_no_watermark_and_the_next_converges(
        tmp_path: Path) -> None:
    w = make_world(f"sqlite:///{tmp_path / 's.db'}", customers=1000)
    chunks = []

    def progress(phase: str, n: int) -> None:
        if phase == "customers: write":
            chunks.append(n)

    w.tick()
    report = w.ponte().sync(["customers"], progress=progress,
                            should_stop=lambda: len(chunks) >= 1)
    with w.store() as store:
        assert report.status == "stopped" and "stopped" in (report.error or "")
        # whole chunks: the first, then the ones already sent when the stop was seen (the
        # write pipeline keeps up to IN_FLIGHT chunks on their way), and no more; a batch's
        # first chunk is FIRST_CHUNK records, each next one twice the last up to CHUNK
        starts = chunk_starts(1000)
        whole = [b - a for a, b in itertools.pairwise([*starts, 1000])]
        assert whole[:6] == [10, 20, 40, 80, 100, 100]
        assert chunks and chunks == whole[:len(chunks)] and len(chunks) <= IN_FLIGHT + 1
        assert store.watermark("customers", "crm") is None
        assert store.watermark("customers", "erp") is None
        assert 0 < len(store.links("customers")) <= CHUNK * (IN_FLIGHT + 1) < 1000
        assert store.runs(limit=1)[0].status == "stopped"
        assert store.lock_holder("entity:customers") is None  # released
    w.tick()
    first = w.sync("customers")
    assert first.status == "ok", first.as_dict()
    crm_ids, erp_ids = tax_ids(w)
    assert len(crm_ids) == len(set(crm_ids)) and len(erp_ids) == len(set(erp_ids))
    assert set(crm_ids) == set(erp_ids)
    assert w.sync("customers").writes == 0


def test_parse_time_forms() -> None:
    now = datetime(2024, 5, 10, 12, tzinfo=UTC)
    assert ops.parse_time("7d", now=now) == now - timedelta(days=7)
    assert ops.parse_time("30m", now=now) == now - timedelta(minutes=30)
    assert ops.parse_time("2024-05-01", now=now) == datetime(2024, 5, 1, tzinfo=UTC)
    assert ops.parse_time("2024-05-01T09:00:00-03:00", now=now) == datetime(2024, 5, 1, 12,
                                                                            tzinfo=UTC)
    assert ops.parse_time("2024-05-01T12:00:00Z", now=now).tzinfo is not None
    with pytest.raises(ConfigError, match="--since"):
        ops.parse_time("yesterday", now=now, option="--since")




def test_every_entry_point_reads_the_one_clock_it_is_given(world: World) -> None:
    """status, watermark changes (spans like ``2h`` and the future check), the run records they
    leave and syncs all take their time from the façade's clock, not from the machine's."""
    assert world.sync("customers").status == "ok"
    at = world.now() + timedelta(days=3)
    clock = ManualClock(at)
    crm, erp = world.clients()
    ponte = Ponte(world.settings, clock=clock, crm_client=crm, erp_client=erp)
    assert ponte.status().now == at
    stored = marks(world)
    for view in ponte.watermarks("customers").watermarks:
        mark = stored[("customers", view.side)]
        assert mark is not None and view.lag_s == (at - mark).total_seconds()
    result = ponte.set_watermark("customers", side="crm", to="2h")
    assert result.changes[0].new == at - timedelta(hours=2)
    assert ponte.run(result.run_id).started_at == at
    with pytest.raises(ConfigError, match="is in the future"):  # later than the clock's now
        ponte.set_watermark("customers", side="crm", to=(at + timedelta(minutes=5)).isoformat())
    clock.advance(60)
    report = ponte.sync(["customers"])
    assert report.status == "ok", report.as_dict()
    assert ponte.run(report.run_id).started_at == at + timedelta(seconds=60)


def test_the_daemon_and_state_calls_return_result_objects(world: World, tmp_path: Path) -> None:
    world.tick()
    ponte = world.ponte()
    done = ponte.scheduled_sync("customers", lambda: False)
    assert done.entity == "customers" and done.error is None
    assert done.report is not None and done.report.status == "ok"
    assert done.report.entities["customers"].erp.created > 0
    assert ponte.publish_metrics() == MetricsPublished(None, written=False)  # not configured
    target = tmp_path / "metrics" / "ponte.prom"
    published = Ponte(world.settings.model_copy(update={"metrics_file": target}),
                      clock=world).publish_metrics()
    assert published == MetricsPublished(target, written=True)
    assert "ponte_" in target.read_text()
    (tmp_path / "taken" / "inside").mkdir(parents=True)  # a directory where the file should be
    failed = Ponte(world.settings.model_copy(update={"metrics_file": tmp_path / "taken"}),
                   clock=world).publish_metrics()
    assert not failed.written and failed.error and failed.path == tmp_path / "taken"
    bound = ponte.check_binding()
    assert bound.ok and set(bound.bound) == {"crm", "erp"}
    upgraded = ponte.upgrade_db()
    with world.store() as store, store.engine.connect() as conn:
        head = conn.scalar(sa.text("SELECT version_num FROM alembic_version"))
    assert upgraded.revision == head and head
    assert upgraded.state_url.startswith("sqlite")
