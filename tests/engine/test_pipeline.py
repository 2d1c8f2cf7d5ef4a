"""The engine's parts on their own (pairing and plan are pure: plain data in, units and plans
out) and the sequencer streaming a window through them chunk by chunk."""

from __future__ import annotations

import itertools
import re
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from loguru import logger
from stdnum.br import cpf

from etl import api
from etl.engine import run_sync
from etl.engine.entity import CHUNK, chunk_starts
from etl.engine.model import FIRST_READ_CHUNK, Seen, Unit
from etl.engine.pairing import Candidates, Links, link_units, match
from etl.engine.plan import Planner
from etl.engine.report import Change, EntityReport
from etl.engine.switching import SWITCH_S
from etl.mapping import EntityMapping, MapContext, load_mappings
from etl.mapping.models import Side
from tests.engine.conftest import MAPPINGS, World, make_world

T = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def customers() -> EntityMapping:
    return load_mappings(MAPPINGS, ["customers"])["customers"]


def seen(side: Side, key: str, tax_id: str | None, **values: str) -> Seen:
    return Seen(side, key, {"tax_id": tax_id, **values}, T, 1, 1, {})


# --- pairing: pure -------------------------------------------------------------------------

PAIRING = [
    # (case, crm changes, erp changes, links, candidates, expected units, matched)
    ("same tax id read on both sides: one unit",
     [("c1", "111")], [("e1", "111")], {}, Candidates(), [("c1", "e1", False)], 1),
    ("linked pair, one side changed: the partner from the link",
     [("c1", "111")], [], {("crm", "c1"): "e9"}, Candidates(), [("c1", "e9", True)], 0),
    ("both sides of a linked pair changed: still one unit",
     [("c1", "111")], [("e9", "111")], {("crm", "c1"): "e9", ("erp", "e9"): "c1"},
     Candidates(), [("c1", "e9", True)], 0),
    ("known to ponte on the other side, unlinked: matched to it",
     [("c1", "111")], [], {}, Candidates(known={"crm": {}, "erp": {"111": ("e5", {})}}),
     [("c1", "e5", False)], 1),
    ("known on the other side but linked to another record: a duplicate",
     [("c1", "111")], [], {}, Candidates(known={"crm": {}, "erp": {"111": ("e5", {})}},
                                         known_linked={"crm": set(), "erp": {"e5"}}),
     [("c1", None, False)], 0),
    ("found by searching the other side (a later chunk, say)",
     [("c1", "111")], [], {},
     Candidates(remote={"crm": {}, "erp": {"111": seen("erp", "e7", "111")}}),
     [("c1", "e7", False)], 1),
    ("no partner anywhere: stays alone",
     [("c1", "111")], [("e1", "222")], {}, Candidates(),
     [("c1", None, False), (None, "e1", False)], 0),
]


@pytest.mark.parametrize(("case", "crm", "erp", "partner", "cand", "expected", "n"), PAIRING,
                         ids=[p[0] for p in PAIRING])
def test_pairing(customers: EntityMapping, case: str, crm: list[tuple[str, str]],
                 erp: list[tuple[str, str]], partner: dict[tuple[Side, str], str],
                 cand: Candidates, expected: list[tuple[str | None, str | None, bool]],
                 n: int) -> None:
    changes: dict[Side, list[Seen]] = {
        "crm": [seen("crm", k, v) for k, v in crm], "erp": [seen("erp", k, v) for k, v in erp]}
    units = link_units(changes, Links(partner=partner))
    assert match(customers, units, cand) == n
    assert [(u.crm_key, u.erp_key, u.linked) for u in units] == expected
    if "duplicate" in case:
        assert units[0].duplicate_of == "e5"


# --- plan: pure ----------------------------------------------------------------------------


def planner(m: EntityMapping) -> Planner:
    return Planner(m, MapContext(), {"crm": "ploomes", "erp": "omie"})


def test_plan_creates_a_record_found_on_one_side_only(customers: EntityMapping) -> None:
    p = planner(customers)
    u = Unit(erp_key="e1", seen={"erp": seen("erp", "e1", "11222333000181", name="ACME")})
    plan = p.plan(u)
    assert plan.error is None and not plan.writes["erp"]
    [w] = plan.writes["crm"]
    assert (w.op.action, w.op.external_id) == ("create", "omie-e1")
    [change] = plan.changes
    assert (change.target, change.action, change.source_key) == ("crm", "create", "e1")
    assert change.fields["tax_id"] == (None, "11222333000181")


def test_plan_refuses_a_second_create_with_the_same_natural_key(
        customers: EntityMapping) -> None:
    p = planner(customers)
    first = p.plan(Unit(erp_key="e1", seen={"erp": seen("erp", "e1", "11222333000181")}))
    again = p.plan(Unit(erp_key="e2", seen={"erp": seen("erp", "e2", "11222333000181")}))
    assert first.error is None
    assert again.error is not None and "being created in the crm in this run" in str(again.error)
    assert not again.writes["crm"]


def test_plan_updates_only_what_changed_on_a_linked_pair(customers: EntityMapping) -> None:
    p = planner(customers)
    before = {"tax_id": "11222333000181", "email": "a@x.com.br"}
    u = Unit("c1", "e1", seen={"crm": Seen("crm", "c1", {**before, "email": "b@x.com.br"}, T,
                                           1, 1, {})},
             snapshot={"crm": dict(before), "erp": dict(before)}, linked=True)
    plan = p.plan(u)
    assert plan.error is None and not plan.writes["crm"]
    [w] = plan.writes["erp"]
    assert (w.op.action, w.op.key, w.values) == ("update", "e1", {"email": "b@x.com.br"})


# --- the sequencer: a window in chunks -----------------------------------------------------


def run(world: World, **options: object) -> tuple[object, list[str]]:
    """One customers sync through run_sync with these options; the progress phases seen."""
    phases: list[str] = []
    crm_client, erp_client = world.clients()
    world.tick()
    opt = api.options_from(world.settings, **options)
    given = opt.progress
    opt.progress = lambda phase, n: (phases.append(phase), given and given(phase, n))
    with api.session(world.settings, crm_client=crm_client, erp_client=erp_client,
                     now=world.now()) as (
            store, connectors, mappings):
        report = run_sync(store=store, connectors=connectors, mappings=mappings,
                          entities=["customers"], options=opt, now=world.now)
    world.tick()
    return report, phases


def tax_ids(world: World) -> tuple[Counter[str], Counter[str]]:
    crm = Counter(r.data.get("Register") for r in world.crm.db["Contacts"])
    erp = Counter(re.sub(r"\D", "", r.data.get("cnpj_cpf", "")) for r in world.erp.db["clientes"])
    return crm, erp


def small_pages(world: World, size: int) -> World:
    """Both systems serve pages of ``size`` records (chunks are made of whole pages)."""
    world.crm.faults.page_cap = size
    world.erp.faults.page_cap = size
    world.settings = world.settings.model_copy(
        update={"erp": world.settings.erp.model_copy(update={"page_size": size})})
    return world


def test_a_window_streams_through_the_pipeline_in_chunks_and_converges(tmp_path) -> None:
    world = small_pages(make_world(f"sqlite:///{tmp_path / 'state.db'}", customers=60), 5)
    report, phases = run(world, read_chunk=7)
    assert report.status == "ok"  # type: ignore[attr-defined]
    # the first chunk was written before the window was read to its end
    first_write = phases.index("customers: write")
    assert "customers: read crm" in phases[first_write:] or \
        "customers: read erp" in phases[first_write:]
    assert phases.count("customers: write") >= 4  # 40-odd ERP records, 10 per chunk
    crm, erp = tax_ids(world)
    assert crm == erp and set(crm.values()) == {1}  # everything on both sides, no duplicate
    again, _ = run(world, read_chunk=7)
    counts = again.entities["customers"]  # type: ignore[attr-defined]
    assert (counts.crm.created, counts.crm.updated, counts.erp.created,
            counts.erp.updated) == (0, 0, 0, 0)


def test_a_run_shortens_the_interpreter_switch_interval_and_keeps_a_shorter_one(world) -> None:
    """A writer whose answer came waits for the main thread's computing 0.5 ms at most."""
    given = sys.getswitchinterval()
    try:
        sys.setswitchinterval(0.005)  # Python's default
        assert run(world)[0].status == "ok"  # type: ignore[attr-defined]
        assert sys.getswitchinterval() == pytest.approx(SWITCH_S)
        sys.setswitchinterval(SWITCH_S / 5)  # set shorter by a program that embeds ponte
        assert run(world)[0].status == "ok"  # type: ignore[attr-defined]
        assert sys.getswitchinterval() == pytest.approx(SWITCH_S / 5)
    finally:
        sys.setswitchinterval(given)


def test_a_window_s_first_chunk_is_small_so_that_writes_start_after_a_few_pages(
        tmp_path) -> None:
    """The first chunk of a window holds FIRST_READ_CHUNK records (whole pages), the next ones
    READ_CHUNK: the first writes wait for a few pages to be read and diffed, not for forty."""
    world = small_pages(make_world(f"sqlite:///{tmp_path / 'state.db'}", customers=600), 50)
    for row in list(world.crm.db["Contacts"]):  # every customer is new to the CRM
        world.crm.ui_delete("Contacts", row.id)
    total = len(world.erp.db["clientes"])
    assert total > FIRST_READ_CHUNK + 2 * CHUNK
    writes: list[int] = []
    report, _ = run(world, progress=lambda phase, n: writes.append(n) if "write" in phase
                    else None)
    assert report.status == "ok"  # type: ignore[attr-defined]
    # two batches: the first FIRST_READ_CHUNK records (4 pages), then the rest of the window;
    # each in write chunks of 10, 20, 40... (chunk_starts)
    def sizes(count: int) -> list[int]:
        return [b - a for a, b in itertools.pairwise([*chunk_starts(count), count])]

    assert writes == sizes(FIRST_READ_CHUNK) + sizes(total - FIRST_READ_CHUNK)
    assert sizes(FIRST_READ_CHUNK) == [10, 20, 40, 80, 50]
    crm, erp = tax_ids(world)
    assert crm == erp and set(crm.values()) == {1}


def test_an_ordered_side_keeps_its_progress_when_a_run_stops(tmp_path) -> None:
    """Ploomes lists in updated-at order: its watermark moves after every chunk, so a stopped
    (or crashed) run is not read again from the start. Omie's listing is not ordered: its
    watermark moves only once the whole window was processed."""
    world = small_pages(make_world(f"sqlite:///{tmp_path / 'state.db'}", customers=60), 5)
    writes = []
    report, _ = run(world, read_chunk=5,
                    progress=lambda phase, n: writes.append(n) if "write" in phase else None,
                    should_stop=lambda: len(writes) >= 2)
    assert report.status == "stopped"  # type: ignore[attr-defined]
    store = world.store()
    crm_mark = store.watermark("customers", "crm")
    assert crm_mark is not None and crm_mark < world.now()
    assert store.watermark("customers", "erp") is None
    store.close()
    # the next run finishes the job without duplicating anything
    assert run(world)[0].status == "ok"  # type: ignore[attr-defined]
    crm, erp = tax_ids(world)
    assert crm == erp and set(crm.values()) == {1}


@pytest.mark.parametrize(("keep_all", "kept", "omitted"), [(True, 700, 0), (False, 500, 200)])
def test_a_writing_run_keeps_a_bounded_number_of_changes(keep_all: bool, kept: int,
                                                         omitted: int) -> None:
    report = EntityReport()
    for start in range(0, 700, 100):
        report.add_changes([Change("customers", "crm", "create", None, str(i), {})
                            for i in range(start, start + 100)], keep_all=keep_all)
    assert (len(report.changes), report.changes_omitted) == (kept, omitted)
    assert report.changes[-1].source_key == str(kept - 1)  # the first ones are kept


@pytest.mark.parametrize("edited", [
    12,  # its page is read as a later batch: its spooled copy is skipped when that batch is read
    10,  # its page is the next batch, read while the write is in flight: dropped once it lands
], ids=["later-batch", "next-batch"])
def test_a_record_written_by_this_run_is_not_read_back_from_an_older_spooled_page(
        tmp_path, edited: int) -> None:
    """Omie's window is read whole (spooled) before anything is written. A record of it that
    this run then writes (a CRM change flowing over) must not be processed again later from
    its older spooled copy: that would carry its old values back over the CRM change. The same
    holds when the batch holding that copy was read ahead, while the write was in flight."""
    world = small_pages(make_world(f"sqlite:///{tmp_path / 'state.db'}", customers=40), 5)
    run(world)
    world.tick(400)
    run(world)  # the first sync's writes now lie before the next window (lookback 300 s)
    world.tick(400)
    store = world.store()
    links = {int(e): int(c) for c, e in store.links("customers")}
    store.close()
    changed = sorted(links)[-edited:]  # ERP records changed by a user, in batches of 5
    for erp_id in changed:
        world.erp.ui_update("clientes", erp_id, {"complemento": f"SALA {erp_id}"})
    last = changed[-1]  # listed on Omie's last page; its CRM partner's e-mail changes
    world.crm.ui_update("Contacts", links[last], {"Email": "novo@exemplo.com.br"})

    report, _ = run(world, read_chunk=5)
    assert report.status == "ok"  # type: ignore[attr-defined]
    assert world.crm.db["Contacts"].get(links[last]).data["Email"] == "novo@exemplo.com.br"
    assert world.erp.db["clientes"].get(last).data["email"] == "novo@exemplo.com.br"
    run(world, read_chunk=5)  # its user's change (complemento) follows in the next run
    assert world.crm.db["Contacts"].get(links[last]).data["StreetAddressLine2"] == f"SALA {last}"
    assert world.erp.db["clientes"].get(last).data["email"] == "novo@exemplo.com.br"
    again, _ = run(world, read_chunk=5)
    c = again.entities["customers"]  # type: ignore[attr-defined]
    assert (c.crm.created, c.crm.updated, c.erp.created, c.erp.updated) == (0, 0, 0, 0)


def test_the_next_batch_is_read_while_the_writes_of_the_last_one_are_in_flight(
        tmp_path) -> None:
    """The batches of a window are not separated by a wait: once a batch's last writes are
    sent, the next batch is read and diffed while they are answered. Only its pairing waits
    for them (a natural key created by one batch is found by the next)."""
    world = small_pages(make_world(f"sqlite:///{tmp_path / 'state.db'}", customers=60,
                                   overlap=0.0), 5)
    for row in list(world.erp.db["clientes"]):  # CRM-only customers: creates into Omie
        world.erp.ui_delete("clientes", row.id)
    report, phases = run(world, read_chunk=5)
    assert report.status == "ok"  # type: ignore[attr-defined]
    steps = [p for p in phases if p in ("customers: read crm", "customers: write")]
    # read, read (the next batch), write (the first), read, write, ...: not read, write, read
    assert steps[:3] == ["customers: read crm", "customers: read crm", "customers: write"], steps
    crm, erp = tax_ids(world)
    assert crm == erp and set(erp.values()) == {1}  # every customer once in Omie
    again, _ = run(world, read_chunk=5)
    c = again.entities["customers"]  # type: ignore[attr-defined]
    assert (c.crm.created, c.crm.updated, c.erp.created, c.erp.updated) == (0, 0, 0, 0)


def calls_in_order(world: World) -> list[str]:
    """Every request either simulator answers from now on, in the order answered
    (``crm POST /Contacts``, ``erp geral/clientes/ListarClientes``)."""
    seen: list[str] = []
    for side, sim in (("crm", world.crm), ("erp", world.erp)):
        record = sim.requests.record

        def noted(endpoint: str, status: int, record=record, side=side) -> None:  # type: ignore[no-untyped-def]
            seen.append(f"{side} {endpoint}")
            record(endpoint, status)

        sim.requests.record = noted  # type: ignore[method-assign]
    return seen


def test_the_crm_is_written_while_omie_is_still_being_read(tmp_path) -> None:
    """Omie's window is read whole before this run writes into Omie, but on its own thread:
    the creates into the CRM start with its first pages, not after its last."""
    world = small_pages(make_world(f"sqlite:///{tmp_path / 'state.db'}", customers=60,
                                   overlap=0.0), 5)
    for row in list(world.crm.db["Contacts"]):  # ERP-only customers: creates into the CRM
        world.crm.ui_delete("Contacts", row.id)
    world.erp.faults.latency_ms = 40  # reading 7+ pages of 5 takes a while
    calls = calls_in_order(world)
    report, _ = run(world, read_chunk=5)
    assert report.status == "ok"  # type: ignore[attr-defined]
    listings = [i for i, c in enumerate(calls) if c.endswith("ListarClientes")]
    creates = [i for i, c in enumerate(calls) if c == "crm POST /Contacts"]
    assert len(listings) > 3 and creates
    assert creates[0] < listings[-1], calls[:20]
    assert not [c for c in calls if c.startswith("erp ") and "Listar" not in c]
    crm, erp = tax_ids(world)
    assert set(erp) <= set(crm)  # every ERP customer reached the CRM


def test_nothing_is_written_into_omie_before_its_window_is_read_whole(tmp_path) -> None:
    """A write into Omie while its listing is read would move records out of the filtered
    listing and shift its later pages: Omie's writes wait for its last page."""
    world = small_pages(make_world(f"sqlite:///{tmp_path / 'state.db'}", customers=40), 5)
    run(world)
    world.tick(400)
    store = world.store()
    links = {int(e): int(c) for c, e in store.links("customers")}
    store.close()
    for erp_id in sorted(links)[:20]:  # four pages of Omie changes to read
        world.erp.ui_update("clientes", erp_id, {"complemento": f"SALA {erp_id}"})
    for erp_id in sorted(links)[20:30]:  # CRM changes that flow into Omie
        world.crm.ui_update("Contacts", links[erp_id], {"Email": f"c{erp_id}@exemplo.com.br"})
    world.erp.faults.latency_ms = 30
    calls = calls_in_order(world)
    run(world, read_chunk=5, dry_run=True)  # writes nothing: its listings are the window's
    pages = sum(c.endswith("ListarClientes") for c in calls)
    calls.clear()
    report, _ = run(world, read_chunk=5)
    assert report.status == "ok"  # type: ignore[attr-defined]
    omie = [c.rsplit("/", 1)[-1] for c in calls if c.startswith("erp ")]
    first_write = next(i for i, c in enumerate(omie) if c.startswith(("Alterar", "Incluir")))
    assert pages >= 4 and omie[:first_write].count("ListarClientes") >= pages, omie
    for erp_id in sorted(links)[20:30]:
        assert world.erp.db["clientes"].get(erp_id).data["email"] == f"c{erp_id}@exemplo.com.br"


def test_a_stop_is_seen_while_omie_keeps_a_page_waiting(tmp_path) -> None:
    """Omie's window is read on a thread of its own; a stop requested while the run waits for a
    slow page (Omie can hold a repeated call back for a minute) ends the run at once, not when
    the page comes: the run is stopped, nothing was written, no watermark moved."""
    world = small_pages(make_world(f"sqlite:///{tmp_path / 'state.db'}", customers=30), 5)
    world.erp.faults.latency_ms = 4000  # each Omie page takes 4 s
    asked = time.monotonic() + 1.0
    started = time.monotonic()
    report, _ = run(world, should_stop=lambda: time.monotonic() > asked)
    took = time.monotonic() - started
    assert report.status == "stopped", report.as_dict()  # type: ignore[attr-defined]
    assert "stopped while reading customers from erp" in (report.error or "")  # type: ignore[attr-defined]
    assert took < 3.5, took  # the first page alone takes 4 s
    assert world.write_requests() == 0
    store = world.store()
    assert store.watermark("customers", "erp") is None
    store.close()


@pytest.fixture
def asked_to_wait() -> Iterator[list[str]]:
    """The waits a system asked ponte for, as logged ("Omie asks to wait 60 s before repeating
    ListarClientes (redundant-call rule); waiting")."""
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(m.record["message"]), level="INFO",
                      filter=lambda r: "asks to wait" in r["message"])
    yield lines
    logger.remove(sink)


def test_later_batches_search_omie_with_the_first_batchs_scan_not_a_minutes_wait(
        tmp_path, asked_to_wait: list[str]) -> None:
    """More of the CRM's new customers than one batch holds, Omie's redundant-call rule on:
    each batch searches Omie by tax id before creating, above 25 values by one scan of the
    whole list. The batches after the first use that scan, though the run wrote into Omie
    since (what it wrote is linked, so never a search's answer), instead of sending the same
    listing again and waiting out Omie's minute."""
    world = small_pages(make_world(f"sqlite:///{tmp_path / 'state.db'}", customers=225,
                                   overlap=0.0), 10)
    world.erp.faults.redundant_rule = True
    crm_only = len(world.crm.db["Contacts"])
    assert crm_only == 3 * 30  # three batches of 30 (a page is 10)
    started = time.monotonic()
    report, _ = run(world, read_chunk=30)
    assert report.status == "ok", report.as_dict()  # type: ignore[attr-defined]
    assert time.monotonic() - started < 30  # one wait for the rule alone would take 60 s
    assert asked_to_wait == []
    assert report.entities["customers"].erp.created == crm_only  # type: ignore[attr-defined]
    crm, erp = tax_ids(world)
    assert sorted(crm) == sorted(erp)  # every customer on both sides, once


def test_a_stop_is_seen_while_a_search_waits_out_omies_minute(
        tmp_path, asked_to_wait: list[str]) -> None:
    """Omie refuses a call repeated within a minute, and a search of more than 25 tax ids is
    one scan of its whole list: a sync whose search repeats a scan made just before it (by
    another command) is held back for the minute. A stop requested meanwhile ends the run
    within a second, not after the minute, with nothing written."""
    world = make_world(f"sqlite:///{tmp_path / 'state.db'}", customers=100, overlap=0.0)
    world.erp.faults.redundant_rule = True
    assert run(world)[0].status == "ok"  # type: ignore[attr-defined]
    docs = []
    for n in range(30):  # new CRM customers: more than 25 tax ids to search Omie for
        docs.append(next(d for c in range(100)
                         if cpf.is_valid(d := f"{123456000 + n:09d}{c:02d}")))
        world.crm.ui_create("Contacts", {"Name": f"Nova {n}", "TypeId": 2, "Register": docs[-1]})
    world.tick(61)  # the first run's calls may be repeated
    crm_client, erp_client = world.clients()
    with api.session(world.settings, crm_client=crm_client, erp_client=erp_client,
                     now=world.now()) as (_store, connectors, _maps):
        assert connectors["erp"].find_by("customers", "cnpj_cpf", docs) == []  # the scan
    writes = world.write_requests()
    started = time.monotonic()
    report, _ = run(world, should_stop=lambda: bool(asked_to_wait))
    took = time.monotonic() - started
    assert report.status == "stopped", report.as_dict()  # type: ignore[attr-defined]
    assert report.error.startswith(  # type: ignore[attr-defined]
        "stopped after 0 customers records of this run (whole chunks committed")
    assert took < 5, took
    assert len(asked_to_wait) == 1 and "repeating ListarClientes" in asked_to_wait[0]
    assert world.write_requests() == writes
