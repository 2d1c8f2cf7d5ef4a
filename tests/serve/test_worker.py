"""Events turned into targeted syncs through the engine's normal path: a change named by an
event reaches the other side, ten events of one record make one sync, delete events follow the
mapping's policy and its guards, a held lock puts events back, and events stored while no
worker ran are processed when one starts."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from etl.engine.run import lock_name
from etl.serve.worker import BUSY_WAIT_S, Worker
from etl.state import Store
from tests.engine.conftest import make_world
from tests.engine.test_sync_e2e import _mappings_with
from tests.serve.conftest import Served, serve_world


def digits(value: str) -> str:
    return re.sub(r"\D", "", value or "")


def _synced(served: Served) -> Served:
    assert served.world.sync().status in ("ok", "partial")
    return served


def _linked_contact(served: Served) -> tuple[int, int]:
    """A CRM contact and the ERP cliente it is linked to."""
    crm_key, erp_key = served.store.links("customers")[0]
    return int(crm_key), int(erp_key)


def test_a_crm_update_event_reaches_the_erp(served: Served) -> None:
    _synced(served)
    crm_id, erp_id = _linked_contact(served)
    other_id, other_erp = served.store.links("customers")[1]
    served.world.tick()
    served.world.crm.ui_update("Contacts", crm_id, {"Email": "evento@exemplo.com.br"})
    # a change no event names: a targeted sync leaves it to the polling runs
    served.world.crm.ui_update("Contacts", int(other_id), {"Email": "sem.evento@exemplo.com.br"})
    watermark = served.store.watermark("customers", "crm")
    answer = served.post_crm("Contacts", {"Action": "Update", "New": {"Id": crm_id}})
    assert answer.status_code == 200
    served.settle()
    assert served.world.erp.db["clientes"].get(erp_id).data["email"] == "evento@exemplo.com.br"
    assert served.world.erp.db["clientes"].get(int(other_erp)).data["email"] != \
        "sem.evento@exemplo.com.br"
    assert served.runs("event") == 1
    assert served.store.event_counts()["done"] == 1
    assert served.store.watermark("customers", "crm") == watermark  # no window was read


def test_an_erp_update_event_reaches_the_crm(served: Served) -> None:
    _synced(served)
    crm_id, erp_id = _linked_contact(served)
    served.world.tick()
    served.world.erp.ui_update("clientes", erp_id, {"telefone1_ddd": "21",
                                                    "telefone1_numero": "2555-0101"})
    answer = served.post_erp("ClienteFornecedor.Alterado", {"codigo_cliente_omie": erp_id},
                             message_id="m-phone")
    assert answer.status_code == 200
    served.settle()
    phones = served.world.crm.db["Contacts"].get(crm_id).data["Phones"]
    assert phones[0]["PhoneNumber"] == "(21) 2555-0101"
    assert served.store.event_counts()["done"] == 1


def test_ten_events_of_one_record_within_the_debounce_make_one_sync(served: Served) -> None:
    _synced(served)
    crm_id, erp_id = _linked_contact(served)
    served.world.tick()
    before = served.world.write_requests()
    for n in range(10):
        served.world.crm.ui_update("Contacts", crm_id, {"Email": f"v{n}@exemplo.com.br"})
        answer = served.post_crm("Contacts", {"Action": "Update",
                                              "New": {"Id": crm_id, "Email": f"v{n}"}})
        assert answer.json()["stored"] is True
    served.settle()
    assert served.runs("event") == 1
    assert served.world.write_requests() - before == 1  # one update of the ERP record
    assert served.world.erp.db["clientes"].get(erp_id).data["email"] == "v9@exemplo.com.br"
    assert served.store.event_counts()["done"] == 10
    served.settle()
    assert served.runs("event") == 1  # nothing left to do


def test_a_redelivered_event_syncs_nothing_more(served: Served) -> None:
    _synced(served)
    crm_id, _erp = _linked_contact(served)
    served.world.crm.ui_update("Contacts", crm_id, {"Email": "uma.vez@exemplo.com.br"})
    body = {"Action": "Update", "New": {"Id": crm_id}}
    served.post_crm("Contacts", body)
    served.settle()
    before = served.world.write_requests()
    assert served.post_crm("Contacts", body).json()["stored"] is False
    served.settle()
    assert served.runs("event") == 1
    assert served.world.write_requests() == before
    assert len(served.store.events()) == 1


def test_a_held_lock_makes_events_wait_without_an_attempt_or_a_failed_run(
        served: Served) -> None:
    _synced(served)
    crm_id, erp_id = _linked_contact(served)
    served.world.crm.ui_update("Contacts", crm_id, {"Email": "depois@exemplo.com.br"})
    served.post_crm("Contacts", {"Action": "Update", "New": {"Id": crm_id}})
    store = served.store
    runs_before = len(store.runs(limit=1000))
    assert store.acquire_lock(lock_name("customers"), "another-run", lease_s=600,
                              now=served.world.now())
    for _ in range(3):  # a long polling run: the event waits, however many passes go by
        served.settle()
        served.worker.run_once()
    ev = store.events()[0]
    assert (ev.status, ev.attempts) == ("pending", 0)
    assert ev.due_at > served.world.now()  # tried again after BUSY_WAIT_S, not at once
    # nothing was tried: no run recorded (a failed one would also start a run_failed alert)
    assert len(store.runs(limit=1000)) == runs_before
    assert served.world.erp.db["clientes"].get(erp_id).data["email"] != "depois@exemplo.com.br"
    store.release_lock(lock_name("customers"), "another-run")
    due = Worker(served.worker.runner, store, now=lambda: served.world.now() + timedelta(
        seconds=BUSY_WAIT_S + 1))
    due.run_once()
    assert store.events()[0].status == "done"
    assert served.world.erp.db["clientes"].get(erp_id).data["email"] == "depois@exemplo.com.br"


def test_events_stored_while_no_worker_runs_are_processed_when_one_starts(
        served: Served) -> None:
    _synced(served)
    crm_id, erp_id = _linked_contact(served)
    served.world.crm.ui_update("Contacts", crm_id, {"Email": "reinicio@exemplo.com.br"})
    served.post_crm("Contacts", {"Action": "Update", "New": {"Id": crm_id}})
    assert served.store.event_counts()["pending"] == 1
    # a new process: a fresh store and worker over the same state database
    with Store.open(served.world.settings.state_url) as store:
        import time

        time.sleep(0.4)
        Worker(served.world.ponte(), store, now=served.world.now).run_once()
    assert served.world.erp.db["clientes"].get(erp_id).data["email"] == "reinicio@exemplo.com.br"
    assert served.store.event_counts() == {"pending": 0, "done": 1, "ignored": 0, "failed": 0}


@pytest.fixture
def deleting(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Served]:
    world = make_world(f"sqlite:///{tmp_path / 'state.db'}", customers=20, overlap=1.0)
    world.settings.mappings_dir = _mappings_with(tmp_path, "customers", deletes=request.param)
    world.settings.max_delete_share = 0.2
    yield from serve_world(world)


@pytest.mark.parametrize("deleting", ["delete"], indirect=True)
def test_a_delete_event_deletes_the_linked_record_on_the_other_side(deleting: Served) -> None:
    served = _synced(deleting)
    crm_id, erp_id = _linked_contact(served)
    served.world.crm.ui_delete("Contacts", crm_id)
    served.post_crm("Contacts", {"Action": "Delete", "New": None, "Old": {"Id": crm_id}})
    served.settle()
    assert served.world.erp.db["clientes"].get(erp_id) is None
    assert (str(crm_id), str(erp_id)) not in served.store.links("customers")
    assert served.store.events()[0].status == "done"
    assert served.runs("event") == 1


@pytest.mark.parametrize("deleting", ["delete"], indirect=True)
def test_a_delete_event_for_a_record_that_still_exists_deletes_nothing(
        deleting: Served) -> None:
    served = _synced(deleting)
    crm_id, erp_id = _linked_contact(served)
    served.post_crm("Contacts", {"Action": "Delete", "New": None, "Old": {"Id": crm_id}})
    # a record ponte never linked: nothing to delete either
    served.post_crm("Contacts", {"Action": "Delete", "New": None, "Old": {"Id": 999_999}})
    served.settle()
    assert served.world.erp.db["clientes"].get(erp_id) is not None
    assert served.world.crm.db["Contacts"].get(crm_id) is not None
    assert (str(crm_id), str(erp_id)) in served.store.links("customers")
    assert served.store.event_counts()["done"] == 2


@pytest.mark.parametrize("deleting", ["ignore"], indirect=True)
def test_a_delete_event_under_ignore_does_nothing(deleting: Served) -> None:
    served = _synced(deleting)
    crm_id, erp_id = _linked_contact(served)
    served.world.crm.ui_delete("Contacts", crm_id)
    before = served.world.write_requests()
    served.post_crm("Contacts", {"Action": "Delete", "New": None, "Old": {"Id": crm_id}})
    served.settle()
    assert served.world.erp.db["clientes"].get(erp_id) is not None
    assert served.world.write_requests() == before
    assert served.store.events()[0].status == "done"


@pytest.mark.parametrize("deleting", ["delete"], indirect=True)
def test_delete_events_over_the_share_guard_delete_nothing(deleting: Served) -> None:
    served = _synced(deleting)
    links = served.store.links("customers")[:6]  # 6 of 20 = 30% > 20%
    for crm_key, _erp in links:
        served.world.crm.ui_delete("Contacts", int(crm_key))
        served.post_crm("Contacts", {"Action": "Delete", "Old": {"Id": int(crm_key)}})
    served.settle()
    for _crm, erp_key in links:
        assert served.world.erp.db["clientes"].get(int(erp_key)) is not None
    ev = served.store.events()[0]
    assert ev.status == "pending" and "PONTE_MAX_DELETE_SHARE" in (ev.error or "")


@pytest.mark.parametrize("deleting", ["delete"], indirect=True)
def test_an_erp_delete_event_deletes_the_linked_crm_record(deleting: Served) -> None:
    served = _synced(deleting)
    crm_id, erp_id = _linked_contact(served)
    served.world.erp.ui_delete("clientes", erp_id)
    answer = served.post_erp("ClienteFornecedor.Excluido", {"codigo_cliente_omie": erp_id},
                             message_id="m-del")
    assert answer.json()["status"] == "pending"
    served.settle()
    assert served.world.crm.db["Contacts"].get(crm_id) is None
    assert served.store.events()[0].status == "done"


def test_an_event_arriving_before_the_sync_is_covered_by_it(served: Served) -> None:
    """Events of a record that are not due yet go with the due ones: one sync for both."""
    _synced(served)
    crm_id, erp_id = _linked_contact(served)
    served.world.crm.ui_update("Contacts", crm_id, {"Email": "a@exemplo.com.br"})
    served.post_crm("Contacts", {"Action": "Update", "New": {"Id": crm_id, "v": 1}})
    import time

    time.sleep(0.35)  # the first is due now
    served.world.crm.ui_update("Contacts", crm_id, {"Email": "b@exemplo.com.br"})
    served.post_crm("Contacts", {"Action": "Update", "New": {"Id": crm_id, "v": 2}})
    done = served.worker.run_once()
    assert done.syncs == 1 and done.done == 2
    assert served.world.erp.db["clientes"].get(erp_id).data["email"] == "b@exemplo.com.br"
    assert served.store.event_counts()["pending"] == 0


@pytest.mark.parametrize("deleting", ["delete"], indirect=True)
def test_one_delete_event_is_never_held_back_by_the_share_guard(deleting: Served) -> None:
    """One record the CRM announced deleted, and a read by key confirmed gone, is not a listing
    gone wrong: it is deleted even where it alone is over the share (a small account)."""
    served = _synced(deleting)
    served.world.settings.max_delete_share = 0.01  # 1 of 20 linked = 5% > 1%
    crm_id, erp_id = _linked_contact(served)
    served.world.crm.ui_delete("Contacts", crm_id)
    served.post_crm("Contacts", {"Action": "Delete", "Old": {"Id": crm_id}})
    served.settle()
    assert served.world.erp.db["clientes"].get(erp_id) is None
    assert served.store.events()[0].status == "done"


def test_the_worker_thread_follows_a_stream_and_refreshes_metrics_when_it_pauses(
        served: Served, tmp_path: Path) -> None:
    _synced(served)
    metrics = tmp_path / "metrics" / "ponte.prom"
    served.world.settings.metrics_file = metrics
    pairs = [(int(c), int(e)) for c, e in served.store.links("customers")[:6]]
    served.world.tick()
    served.worker.start()
    try:
        for n, (crm_id, _erp) in enumerate(pairs):  # a stream: each event due during a pass
            served.world.crm.ui_update("Contacts", crm_id, {"Email": f"fluxo{n}@exemplo.com.br"})
            assert served.post_crm("Contacts", {"Action": "Update", "New": {"Id": crm_id}}
                                   ).status_code == 200
            time.sleep(0.1)
        deadline = time.monotonic() + 60
        while served.store.event_counts()["done"] < len(pairs) or not metrics.exists():
            assert time.monotonic() < deadline, served.store.event_counts()
            time.sleep(0.1)
    finally:
        served.worker.stop(30)
    for n, (_crm, erp_id) in enumerate(pairs):
        assert served.world.erp.db["clientes"].get(erp_id).data["email"] == \
            f"fluxo{n}@exemplo.com.br"
    assert 'ponte_last_run_status{connection="",entity="customers"' in metrics.read_text()  # after_run ran


def test_a_stated_wait_postpones_the_events_instead_of_holding_the_worker(served: Served
                                                                         ) -> None:
    """Omie refuses the same listing twice within 60 s and says how long to wait: the event
    run stops (no failed run, no attempt counted) and its events are due again after that
    wait, while the worker goes on with the others."""
    _synced(served)
    (crm_a, erp_a), (crm_b, erp_b) = [(int(c), int(e))
                                      for c, e in served.store.links("customers")[:2]]
    served.world.erp.faults.redundant_rule = True
    for n in (1, 2):  # the second read of the same record within 60 s is refused
        served.world.erp.ui_update("clientes", erp_a, {"email": f"espera{n}@exemplo.com.br"})
        served.post_erp("ClienteFornecedor.Alterado", {"codigo_cliente_omie": erp_a},
                        message_id=f"m-wait-{n}")
        served.settle()
    waiting = served.store.events(status="pending")
    assert len(waiting) == 1 and waiting[0].attempts == 0
    assert waiting[0].due_at > served.world.now() + timedelta(seconds=30)  # Omie's stated wait
    kinds = [(r.kind, r.status) for r in served.store.runs(limit=5)]
    assert kinds[0] == ("event", "stopped") and ("event", "failed") not in kinds
    # the worker is free: another record's event is synced at once
    served.world.erp.ui_update("clientes", erp_b, {"email": "livre@exemplo.com.br"})
    served.post_erp("ClienteFornecedor.Alterado", {"codigo_cliente_omie": erp_b},
                    message_id="m-other")
    served.settle()
    assert served.world.crm.db["Contacts"].get(crm_b).data["Email"] == "livre@exemplo.com.br"
    assert served.world.crm.db["Contacts"].get(crm_a).data["Email"] == "espera1@exemplo.com.br"


def test_event_runs_share_one_session_reading_custom_fields_and_references_once(
        served: Served) -> None:
    """The event runs of a minute share their connectors, checked mappings and reference
    lists: after the first, an event run asks the CRM only for the record it names."""
    _synced(served)
    pairs = [(int(c), int(e)) for c, e in served.store.links("customers")[:3]]
    for n, (crm_id, _erp) in enumerate(pairs):
        served.world.crm.ui_update("Contacts", crm_id, {"Email": f"sessao{n}@exemplo.com.br"})
        served.post_crm("Contacts", {"Action": "Update", "New": {"Id": crm_id, "n": n}})
        served.settle()
    reads = [r.report["api_calls"]["crm"]["read"] for r in served.store.runs(limit=3)
             if r.kind == "event"]
    assert len(reads) == 3 and reads[:2] == [1, 1], reads  # newest first; the first opened
    for n, (_crm, erp_id) in enumerate(pairs):
        assert served.world.erp.db["clientes"].get(erp_id).data["email"] == \
            f"sessao{n}@exemplo.com.br"
