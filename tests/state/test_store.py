"""The store contract, run on SQLite and PostgreSQL alike (see conftest.py)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from etl.errors import ConfigError

#: the newest migration shipped in etl/state/migrations/versions
HEAD = max(p.name.split("_")[0] for p in (
    Path(__file__).resolve().parents[2] / "etl" / "state" / "migrations" / "versions"
).glob("0*.py"))
from etl.state import (
    Checkpoint,
    QuarantineEntry,
    SnapshotRow,
    StateConflict,
    Store,
    models,
    quarantine_backoff,
)

T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
TABLES = {"watermarks", "snapshots", "links", "runs", "quarantine", "locks", "intents"}


def snap(key: str, h: int = 1, *, system: str = "crm", entity: str = "company",
         natural_key: str | None = None, **data: object) -> SnapshotRow:
    return SnapshotRow(system=system, entity=entity, key=key, h1=h, h2=-h,
                       data=data or {"name": f"n{key}"}, natural_key=natural_key,
                       source_updated=T0)


def snapshot_keys(store: Store, system: str, entity: str) -> list[str]:
    """Every snapshot key of one system and entity, sorted (the engine never needs them all)."""
    t = models.snapshots
    with store.engine.connect() as conn:
        return list(conn.scalars(sa.select(t.c.key).where(
            t.c.system == system, t.c.entity == entity).order_by(t.c.key)))


# ------------------------------------------------------------------ schema


def test_migrations_create_schema_and_are_idempotent(open_store: Callable[[], Store]) -> None:
    first = open_store()
    assert first.dialect in {"sqlite", "postgresql"}
    assert TABLES <= set(sa.inspect(first.engine).get_table_names())
    first.set_watermark("company", "crm", T0, now=T0)
    second = open_store()  # migrations run again: nothing to do, nothing lost
    second.upgrade()
    assert second.watermark("company", "crm") == T0
    with second.engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT version_num FROM alembic_version")) == HEAD


def test_the_head_read_from_file_names_is_alembics_head_and_revision_follows_it(
        store_url: str) -> None:
    """ponte reads the head and the schema's revision without alembic (a run whose schema is
    current never loads it): both must agree with alembic's own reading."""
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from etl.state.db import MIGRATIONS, head_revision

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    assert head_revision() == ScriptDirectory.from_config(cfg).get_current_head() == HEAD
    store = Store.open(store_url, migrate=False)
    try:
        assert store.revision() is None  # no alembic_version table yet
        store.upgrade()
        with store.engine.connect() as conn:
            assert store.revision() == MigrationContext.configure(conn).get_current_revision()
        assert store.revision() == HEAD
    finally:
        store.close()


def test_open_without_migrate_leaves_the_database_empty(store_url: str) -> None:
    store = Store.open(store_url, migrate=False)
    try:
        assert not TABLES & set(sa.inspect(store.engine).get_table_names())
        store.upgrade()
        assert TABLES <= set(sa.inspect(store.engine).get_table_names())
    finally:
        store.close()


def test_sqlite_pragmas(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'p.db'}")
    try:
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() > 0
    finally:
        store.close()


@pytest.mark.parametrize("url, needle", [
    ("nonsense://", "PONTE_STATE_URL"),
    ("not a url at all", "PONTE_STATE_URL"),
    ("postgresql+psycopg://ponte:s3cretpw@127.0.0.1:1/nope", "***"),
])
def test_bad_url_is_a_config_error_without_password(url: str, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        Store.open(url)
    message = str(info.value)
    assert "PONTE_STATE_URL" in message and needle in message
    assert "s3cretpw" not in message


def test_unreachable_sqlite_path_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="PONTE_STATE_URL"):
        Store.open(f"sqlite:///{tmp_path / 'missing' / 'dir' / 'x.db'}")


# ------------------------------------------------------------------ watermarks


def test_watermark_get_set_delete_round_trip(store: Store) -> None:
    assert store.watermark("company", "crm") is None
    brt = timezone(timedelta(hours=-3))
    local = datetime(2026, 3, 1, 9, 0, 0, 654321, tzinfo=brt)
    store.set_watermark("company", "crm", local, now=T0)
    got = store.watermark("company", "crm")
    assert got == local and got is not None
    assert got.tzinfo == UTC and got.microsecond == 654321 and got.hour == 12
    store.set_watermark("company", "crm", T0, now=T0)  # overwrite
    store.set_watermark("company", "erp", T0 + timedelta(seconds=1), now=T0)
    store.set_watermark("product", "crm", T0, now=T0)
    rows = store.watermarks("company")
    assert [(r.system, r.value) for r in rows] == [("crm", T0), ("erp", T0 + timedelta(seconds=1))]
    assert all(r.updated_at == T0 and r.updated_at.tzinfo == UTC for r in rows)
    assert len(store.watermarks()) == 3
    store.set_watermark("company", "crm", None, now=T0)
    assert store.watermark("company", "crm") is None
    assert len(store.watermarks()) == 2


def test_naive_datetime_is_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="naive"):
        store.set_watermark("company", "crm", datetime(2026, 1, 1), now=T0)


# ------------------------------------------------------------------ snapshots


def test_snapshot_upsert_then_load_only_requested_keys(store: Store) -> None:
    big = [snap(f"k{i:05d}", i - 1500, natural_key=f"nk{i % 7}") for i in range(2000)]
    big.append(snap("k00001", 2**63 - 1, city="São Paulo"))  # same key again: last one wins
    store.checkpoint(Checkpoint("company", snapshots=big), now=T0)
    store.checkpoint(Checkpoint("company", snapshots=[snap("other", system="erp")]), now=T0)
    assert store.count_snapshots("crm", "company") == 2000
    assert snapshot_keys(store, "erp", "company") == ["other"]

    wanted = [f"k{i:05d}" for i in range(0, 2000, 2)] + ["absent"]  # 1001 keys: > 900
    frame = store.snapshots("crm", "company", wanted)
    assert list(frame.columns) == ["key", "h1", "h2", "data", "natural_key", "source_updated"]
    assert len(frame) == 1000 and set(frame["key"]) == set(wanted) - {"absent"}
    assert str(frame["h1"].dtype) == "int64"
    row = frame.set_index("key").loc["k00000"]
    assert (row["h1"], row["h2"], row["data"]) == (-1500, 1500, {"name": "nk00000"})
    assert row["source_updated"] == T0

    again = store.snapshots("crm", "company", ["k00001"]).iloc[0]
    assert again["h1"] == 2**63 - 1 and again["h2"] == -(2**63 - 1)
    assert again["data"] == {"city": "São Paulo"}

    store.checkpoint(Checkpoint("company", snapshots=[snap("k00000", 9)]), now=T0)
    assert store.snapshots("crm", "company", ["k00000"]).iloc[0]["h1"] == 9
    assert store.snapshots("crm", "company", []).empty
    store.checkpoint(Checkpoint("company", drop_snapshots=[("crm", f"k{i:05d}") for i in range(1000)]),
                     now=T0)
    assert store.count_snapshots("crm", "company") == 1000


def test_snapshot_data_is_compact_json(store: Store) -> None:
    store.checkpoint(Checkpoint("company", snapshots=[snap("k", city="Goiânia")]), now=T0)
    with store.engine.connect() as conn:
        raw = conn.scalar(sa.text("SELECT data FROM snapshots"))
    assert raw == '{"city":"Goiânia"}'


def test_snapshots_by_natural_key(store: Store) -> None:
    store.checkpoint(Checkpoint("company", snapshots=[
        snap("1", natural_key="11222333000181"), snap("2", natural_key="11222333000181"),
        snap("3", natural_key="99888777000100"), snap("4"),
    ]), now=T0)
    frame = store.snapshots_by_natural_key("crm", "company", ["11222333000181", "nope"])
    assert sorted(frame["key"]) == ["1", "2"]
    assert set(frame["natural_key"]) == {"11222333000181"}
    assert store.snapshots_by_natural_key("erp", "company", ["99888777000100"]).empty


# ------------------------------------------------------------------ links


def test_links_insert_if_absent_and_filters(store: Store) -> None:
    store.checkpoint(Checkpoint("company", links=[("c1", "e1"), ("c2", "e2")]), now=T0)
    store.checkpoint(Checkpoint("company", links=[("c1", "e1"), ("c3", "e3")]), now=T0)
    store.checkpoint(Checkpoint("product", links=[("c1", "p9")]), now=T0)
    assert sorted(store.links("company")) == [("c1", "e1"), ("c2", "e2"), ("c3", "e3")]
    assert store.links("company", crm_keys=["c2", "zz"]) == [("c2", "e2")]
    assert store.links("company", erp_keys=["e3"]) == [("c3", "e3")]
    assert sorted(store.links("company", crm_keys=["c1"], erp_keys=["e2"])) == [
        ("c1", "e1"), ("c2", "e2")]
    assert store.links("product") == [("c1", "p9")]
    store.checkpoint(Checkpoint("company", drop_links=[("c1", "e1"), ("c2", "wrong")]), now=T0)
    assert sorted(store.links("company")) == [("c2", "e2"), ("c3", "e3")]


@pytest.mark.parametrize("pairs", [
    [("c1", "e-other")],  # the CRM key is already linked elsewhere
    [("c-other", "e1")],  # the ERP key is already linked elsewhere
    [("c5", "e5"), ("c5", "e6")],  # the page itself links one key twice
])
def test_links_refuse_a_conflicting_pair(store: Store, pairs: list[tuple[str, str]]) -> None:
    store.checkpoint(Checkpoint("company", links=[("c1", "e1")]), now=T0)
    with pytest.raises(StateConflict, match="company"):
        store.checkpoint(Checkpoint("company", links=pairs), now=T0)
    assert store.links("company") == [("c1", "e1")]


def test_database_uniqueness_backs_the_links(store: Store) -> None:
    store.checkpoint(Checkpoint("company", links=[("c1", "e1")]), now=T0)
    with pytest.raises(sa.exc.IntegrityError), store.engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO links (entity, crm_key, erp_key, created_at) "
                             "VALUES ('company', 'c1', 'e2', :t)"), {"t": T0})


# ------------------------------------------------------------------ checkpoint


def test_checkpoint_is_all_or_nothing(store: Store) -> None:
    store.checkpoint(Checkpoint(
        "company", snapshots=[snap("a", 1)], links=[("c1", "e1")],
        quarantine=[QuarantineEntry("company", "crm", "q1", "invalid", "bad cnpj")],
        watermarks={"crm": T0}), now=T0)
    store.record_intent("company", "erp", "a", "ext-a", {"name": "A"}, now=T0)
    later = T0 + timedelta(hours=1)
    failing = Checkpoint(
        "company",
        snapshots=[snap("a", 2), snap("b", 3)],
        quarantine=[QuarantineEntry("company", "crm", "q1", "rejected", "again"),
                    QuarantineEntry("company", "crm", "q2", "invalid", "new")],
        clear_intents=[("erp", "a")],
        links=[("c2", "e2"), ("c1", "e9")],  # conflicts with c1 <-> e1: fails after the writes
        watermarks={"crm": later, "erp": later})
    with pytest.raises(StateConflict, match="rolled back"):
        store.checkpoint(failing, now=later)

    assert store.watermark("company", "crm") == T0
    assert store.watermark("company", "erp") is None
    assert snapshot_keys(store, "crm", "company") == ["a"]
    assert store.snapshots("crm", "company", ["a"]).iloc[0]["h1"] == 1
    [q] = store.quarantine()
    assert (q.key, q.kind, q.attempts) == ("q1", "invalid", 1)
    assert store.links("company") == [("c1", "e1")]
    assert len(store.pending_intents("company", "erp")) == 1


def test_checkpoint_carries_deletes_all_or_nothing(store: Store) -> None:
    """The deletes ``verify --fix`` carried out (snapshots and links forgotten, links
    tombstoned) commit with their checkpoint, or not at all."""
    store.checkpoint(Checkpoint("company", snapshots=[snap("a", 1), snap("b", 2)],
                                links=[("c1", "e1"), ("c2", "e2")]), now=T0)
    deletes = {"drop_snapshots": [("crm", "a")], "drop_links": [("c1", "e1")],
               "tombstones": [("c2", "e2", "crm")]}
    with pytest.raises(StateConflict, match="rolled back"):
        store.checkpoint(Checkpoint("company", links=[("c2", "e9")], **deletes), now=T0)
    assert snapshot_keys(store, "crm", "company") == ["a", "b"]
    assert sorted(store.links("company")) == [("c1", "e1"), ("c2", "e2")]
    assert store.tombstones("company") == {}

    store.checkpoint(Checkpoint("company", **deletes), now=T0)
    assert snapshot_keys(store, "crm", "company") == ["b"]
    assert store.links("company") == [("c2", "e2")]
    assert store.tombstones("company") == {("c2", "e2"): "crm"}


def test_checkpoint_surfaces_a_database_integrity_error_as_state_conflict(
        store: Store) -> None:
    """A violation only the database sees (here: an extra unique index) still rolls back the
    whole page and comes out as a StateConflict naming the entity."""
    with store.engine.begin() as conn:
        conn.execute(sa.text("CREATE UNIQUE INDEX ux_test_snap ON snapshots (natural_key)"))
    with pytest.raises(StateConflict, match="uniqueness"):
        store.checkpoint(Checkpoint("company", snapshots=[
            snap("a", natural_key="same"), snap("b", natural_key="same")],
            watermarks={"crm": T0}), now=T0)
    assert store.count_snapshots("crm", "company") == 0
    assert store.watermark("company", "crm") is None


# ------------------------------------------------------------------ quarantine


def test_backoff_doubles_and_caps() -> None:
    assert [quarantine_backoff(n) for n in (1, 2, 3)] == [
        timedelta(minutes=1), timedelta(minutes=2), timedelta(minutes=4)]
    assert quarantine_backoff(9) == timedelta(minutes=256)
    assert quarantine_backoff(10) == timedelta(hours=6)
    assert quarantine_backoff(10_000) == timedelta(hours=6)


def test_quarantine_upsert_due_make_due_drop_counts(store: Store) -> None:
    entry = QuarantineEntry("company", "crm", "k1", "invalid", "cnpj has 13 digits",
                            field="cnpj", payload={"cnpj": "1122233300018", "nome": "Açaí"})
    store.checkpoint(Checkpoint("company", quarantine=[entry]), now=T0, run_id="r1")
    [row] = store.quarantine("company")
    assert (row.attempts, row.first_seen, row.last_seen) == (1, T0, T0)
    assert row.next_retry_at == T0 + timedelta(minutes=1)
    assert (row.field, row.payload, row.run_id) == ("cnpj", entry.payload, "r1")

    t1 = T0 + timedelta(minutes=5)
    again = QuarantineEntry("company", "crm", "k1", "rejected", "target said no")
    store.checkpoint(Checkpoint("company", quarantine=[again]), now=t1, run_id="r2")
    row2 = store.quarantine_get(row.id)
    assert row2 is not None and row2.id == row.id
    assert (row2.attempts, row2.kind, row2.reason, row2.field, row2.payload) == (
        2, "rejected", "target said no", None, None)
    assert (row2.first_seen, row2.last_seen, row2.run_id) == (T0, t1, "r2")
    assert row2.next_retry_at == t1 + timedelta(minutes=2)

    store.checkpoint(Checkpoint("company", quarantine=[
        QuarantineEntry("company", "erp", "e1", "conflict", "both changed")]), now=t1)
    store.checkpoint(Checkpoint("product", quarantine=[
        QuarantineEntry("product", "crm", "p1", "invalid", "no code")]), now=t1)
    assert store.count_quarantine() == {"company": 2, "product": 1}
    assert store.count_quarantine("product") == {"product": 1}

    assert store.quarantine_due("company", "crm", t1) == []
    assert [r.key for r in store.quarantine_due("company", "crm", t1 + timedelta(minutes=2))] == [
        "k1"]
    assert store.quarantine_make_due(row.id, t1) == 1
    assert [r.key for r in store.quarantine_due("company", "crm", t1)] == ["k1"]
    assert store.quarantine_make_due(None, t1) == 3
    assert [r.key for r in store.quarantine_due("company", "erp", t1)] == ["e1"]

    store.checkpoint(Checkpoint("company", clear_quarantine=[("erp", "e1")]), now=t1)
    assert store.count_quarantine("company") == {"company": 1}
    assert store.quarantine_drop(row.id) is True
    assert store.quarantine_drop(row.id) is False  # already dropped
    dropped = store.quarantine_get(row.id)
    assert dropped is not None and dropped.kind == "dropped"
    # a dropped entry is not waiting: not listed, not counted, never due, not made due
    assert store.quarantine("company") == []
    assert [r.id for r in store.quarantine("company", dropped=True)] == [row.id]
    assert store.count_quarantine() == {"product": 1}
    assert store.quarantine_due("company", "crm", t1 + timedelta(days=3650)) == []
    assert store.quarantine_make_due(None, t1) == 1
    assert store.quarantine_dropped("company", "crm") == {"k1": None}
    assert store.quarantine_dropped("company", "erp") == {}
    assert store.quarantined_keys("company", "crm") == {"k1"}
    # the record changed and fails again: a fresh entry (attempts start over)
    store.checkpoint(Checkpoint("company", quarantine=[entry]), now=t1, run_id="r3")
    back = store.quarantine_get(row.id)
    assert back is not None and (back.kind, back.attempts) == ("invalid", 1)
    assert store.count_quarantine() == {"company": 1, "product": 1}


# ------------------------------------------------------------------ intents


def test_intents_record_pending_and_cleared_by_checkpoint(store: Store) -> None:
    store.record_intent("company", "erp", "c1", "ponte-c1", {"nome": "Ação"}, now=T0)
    store.record_intent("company", "erp", "c2", "ponte-c2", {"nome": "B"}, now=T0)
    store.record_intent("company", "erp", "c1", "ponte-c1b", {"nome": "A2"}, now=T0)  # upsert
    store.record_intent("company", "crm", "e1", "x", {}, now=T0)
    pending = store.pending_intents("company", "erp")
    assert [(i.source_key, i.external_id, i.payload) for i in pending] == [
        ("c1", "ponte-c1b", {"nome": "A2"}), ("c2", "ponte-c2", {"nome": "B"})]
    assert pending[0].created_at == T0
    store.checkpoint(Checkpoint("company", links=[("c1", "e-new")],
                                clear_intents=[("erp", "c1")]), now=T0)
    assert [i.source_key for i in store.pending_intents("company", "erp")] == ["c2"]
    assert len(store.pending_intents("company", "crm")) == 1


# ------------------------------------------------------------------ runs


def test_runs_start_finish_list_and_prefix(store: Store) -> None:
    ids = [store.start_run("sync", ["company"], now=T0 + timedelta(minutes=i)) for i in range(3)]
    assert all(len(i) == 32 for i in ids)
    first = store.run(ids[0])
    assert first is not None
    assert (first.status, first.entities, first.finished_at, first.report) == (
        "running", ["company"], None, {})
    report = {"company": {"crm": {"read": 3, "created": 1}}, "note": "ção"}
    store.finish_run(ids[0], "ok", report, now=T0 + timedelta(hours=1))
    done = store.run(ids[0][:8])
    assert done is not None and done.id == ids[0]
    assert (done.status, done.report, done.finished_at) == ("ok", report, T0 + timedelta(hours=1))
    assert [r.id for r in store.runs()] == ids[::-1]
    assert [r.id for r in store.runs(limit=2)] == ids[:0:-1]
    assert store.run("f" * 33) is None
    assert store.run("%") is None
    with pytest.raises(KeyError):
        store.finish_run("nope", "ok", {}, now=T0)


# ------------------------------------------------------------------ locks


def test_lock_acquire_refuse_renew_release_takeover(store: Store) -> None:
    assert store.lock_holder("company") is None
    assert store.acquire_lock("company", "a", lease_s=60, now=T0)
    assert store.acquire_lock("company", "a", lease_s=60, now=T0)  # ours already
    assert not store.acquire_lock("company", "b", lease_s=60, now=T0 + timedelta(seconds=30))
    assert store.lock_holder("company") == ("a", T0 + timedelta(seconds=60))
    assert store.renew_lock("company", "a", lease_s=60, now=T0 + timedelta(seconds=50))
    assert not store.renew_lock("company", "b", lease_s=60, now=T0)
    assert not store.acquire_lock("company", "b", lease_s=60, now=T0 + timedelta(seconds=100))
    store.release_lock("company", "b")  # not b's: nothing happens
    assert store.lock_holder("company") == ("a", T0 + timedelta(seconds=110))
    store.release_lock("company", "a")
    assert store.lock_holder("company") is None
    assert store.acquire_lock("company", "b", lease_s=10, now=T0)

    expired = T0 + timedelta(seconds=11)
    assert store.acquire_lock("company", "c", lease_s=10, now=expired)  # takeover
    assert store.lock_holder("company") == ("c", expired + timedelta(seconds=10))
    assert not store.renew_lock("company", "b", lease_s=10, now=expired)
    assert store.acquire_lock("product", "b", lease_s=10, now=expired)  # other names are free


def test_taking_over_an_expired_lease_fails_the_holders_run(store: Store) -> None:
    a = store.start_run("sync", ["company"], now=T0)
    assert store.acquire_lock("entity:company", a, lease_s=10, now=T0)
    done = store.start_run("sync", ["product"], now=T0)
    assert store.acquire_lock("entity:product", done, lease_s=10, now=T0)
    store.finish_run(done, "ok", {"note": "kept"}, now=T0)  # finished, lock left behind
    assert store.live_lock_holder("entity:company", now=T0) == a

    later = T0 + timedelta(seconds=11)
    assert store.live_lock_holder("entity:company", now=later) is None  # expired: not running
    b = store.start_run("sync", ["company", "product"], now=later)
    assert store.acquire_lock("entity:company", b, lease_s=10, now=later)
    assert store.acquire_lock("entity:product", b, lease_s=10, now=later)
    row = store.run(a)
    assert row is not None and row.status == "failed" and row.finished_at == later
    assert row.report["error"].startswith("lease expired: lock 'entity:company'")
    kept = store.run(done)
    assert kept is not None and kept.status == "ok" and kept.report == {"note": "kept"}
    assert store.run(b).status == "running"  # type: ignore[union-attr]
    assert store.acquire_lock("entity:company", b, lease_s=10, now=later)  # ours: no change
    assert store.run(b).status == "running"  # type: ignore[union-attr]


def test_taking_over_a_dead_processes_lock_fails_its_run_at_once(store: Store,
                                                                 store_url: str) -> None:
    """A real process takes a lock and dies without releasing it (as under SIGKILL)."""
    import subprocess
    import sys

    code = (
        "import os, sys\n"
        "from datetime import UTC, datetime\n"
        "from etl.state import Store\n"
        "s = Store.open(sys.argv[1])\n"
        "run = s.start_run('sync', ['company'], now=datetime.now(UTC))\n"
        "assert s.acquire_lock('entity:company', run, lease_s=3600, now=datetime.now(UTC))\n"
        "print(run, flush=True)\n"
        "os._exit(0)\n"
    )
    done = subprocess.run([sys.executable, "-c", code, store_url], capture_output=True,
                          text=True, timeout=60, check=True)
    dead = done.stdout.strip()
    now = datetime.now(UTC)
    assert store.lock_holder("entity:company")[0] == dead  # type: ignore[index]
    assert store.live_lock_holder("entity:company", now=now) is None  # its process is gone
    assert store.run(dead).status == "running"  # type: ignore[union-attr]

    taker = store.start_run("sync", ["company"], now=now)
    assert store.acquire_lock("entity:company", taker, lease_s=60, now=now)
    row = store.run(dead)
    assert row is not None and row.status == "failed" and row.finished_at is not None
    assert row.report["error"].startswith("killed: lock 'entity:company' taken over from a "
                                          "dead process")
    assert store.live_lock_holder("entity:company", now=now) == taker


def test_runs_that_hold_no_lock_and_are_not_young_are_failed_as_orphans(store: Store) -> None:
    killed = store.start_run("sync", ["company"], now=T0)  # its process died before any lock
    holding = store.start_run("sync", ["product"], now=T0)
    assert store.acquire_lock("entity:product", holding, lease_s=3600, now=T0)
    done = store.start_run("sync", ["company"], now=T0)
    store.finish_run(done, "ok", {}, now=T0)
    young = store.start_run("sync", ["order"], now=T0 + timedelta(seconds=50))

    assert store.fail_orphaned_runs(now=T0 + timedelta(seconds=59)) == []  # within the grace
    later = T0 + timedelta(seconds=61)
    assert store.fail_orphaned_runs(now=later) == [killed]
    row = store.run(killed)
    assert row is not None and row.status == "failed" and row.finished_at == later
    assert row.report["error"].startswith("killed: its process ended")
    assert {store.run(r).status for r in (holding, young)} == {"running"}  # type: ignore[union-attr]
    assert store.run(done).status == "ok"  # type: ignore[union-attr]


def test_lock_race_between_two_stores(open_store: Callable[[], Store]) -> None:
    """Two stores on one database try for one lock at the same instant, round after round:
    every round has exactly one winner, whether the lock is free or its lease has expired."""
    stores = [open_store(), open_store()]
    rounds = 40
    winners: list[list[str]] = [[] for _ in range(rounds)]
    guard = threading.Lock()
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def contender(me: int) -> None:
        store, owner = stores[me], f"worker-{me}"
        try:
            for i in range(rounds):
                barrier.wait(timeout=20)
                now = T0 + timedelta(minutes=i)  # a lease of 30 s has expired by the next round
                won = store.acquire_lock("race", owner, lease_s=30, now=now)
                if won:
                    with guard:
                        winners[i].append(owner)
                barrier.wait(timeout=20)  # the loser has tried while the winner still holds it
                if won and i % 2 == 0:  # odd rounds leave the lease to expire instead
                    store.release_lock("race", owner)
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)
            barrier.abort()

    threads = [threading.Thread(target=contender, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert all(len(w) == 1 for w in winners), winners
