"""Webhooks end to end: the simulators' own deliveries (registered by ``ponte webhooks
register`` in Ploomes, configured in Omie's portal) into ``ponte serve`` — its receiver under
uvicorn on loopback and its worker thread — with no polling at all after the initial sync.

User edits go through the simulators' ``/_sandbox`` admin API, which fires their webhooks as a
person's edit in the UI would; ponte's own writes fire them back too (as on the vendors)."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.testclient import TestClient
from stdnum.br import cnpj as stdnum_cnpj

from etl.mapping import load_mappings
from etl.serve.app import build_app
from etl.serve.worker import Worker
from etl.state import Store
from tests.engine.conftest import World, make_world
from tests.engine.test_sync_e2e import _mappings_with
from tests.ops.conftest import wait_for
from tests.serve.conftest import CRM_KEY, QuietServer, free_port

LIMITE = "contact_0B6E2D48-91C3-4F7A-B5E2-7C1D9A3F6B04"  # "Limite de crédito" (Decimal)
OMIE = "http://omie.test"


def digits(text: str) -> str:
    return "".join(ch for ch in str(text) if ch.isdigit())


@dataclass
class Live:
    """A synced world, ``ponte serve`` on a loopback port, and the simulators' admin APIs."""

    world: World
    app: Starlette
    port: int
    store: Store
    worker: Worker
    crm: TestClient
    erp: TestClient
    server: QuietServer | None = None
    thread: threading.Thread | None = None
    latencies: list[float] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start_receiver(self) -> None:
        self.server = QuietServer(uvicorn.Config(self.app, host="127.0.0.1", port=self.port,
                                                 log_config=None, access_log=False,
                                                 lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        assert wait_for(lambda: self.server is not None and self.server.started, 20), \
            "the receiver did not start"

    def stop_receiver(self) -> None:
        if self.server is not None and self.thread is not None:
            self.server.should_exit = True
            self.thread.join(10)
        self.server = self.thread = None

    # --- a person in each system's UI (the admin API) ---------------------------------------

    def crm_edit(self, table: str, rid: int, changes: dict[str, Any]) -> None:
        r = self.crm.patch(f"/_sandbox/{table}/{rid}", json=changes)
        assert r.status_code == 200, r.text

    def erp_edit(self, table: str, rid: int, changes: dict[str, Any]) -> None:
        r = self.erp.patch(f"{OMIE}/_sandbox/{table}/{rid}", json=changes)
        assert r.status_code == 200, r.text

    def timed(self, edit: Callable[[], None], visible: Callable[[], bool],
              timeout: float = 60) -> None:
        """Make ``edit``, wait until ``visible``; keeps the latency."""
        start = time.monotonic()
        edit()
        assert wait_for(visible, timeout), self.problems()
        self.latencies.append(time.monotonic() - start)

    def problems(self) -> str:
        failed = [(e.entity, e.side, e.key, e.error) for e in self.store.events(status="failed")]
        return f"events {self.store.event_counts()}, failed {failed}"

    def event_runs(self) -> list[Any]:
        return [r for r in self.store.runs(limit=1000) if r.kind == "event"]

    def settled(self, quiet_s: float = 3.0, timeout: float = 60) -> bool:
        """Nothing pending or queued for ``quiet_s`` seconds (no event run either)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            runs = len(self.event_runs())
            time.sleep(quiet_s)
            if (self.store.event_counts()["pending"] == 0 and not self.world.crm.deliveries
                    .pending() and not self.world.erp.deliveries.pending()
                    and len(self.event_runs()) == runs):
                return True
        return False


@contextmanager
def live(tmp_path: Path, *, customers: int = 12, orders: int = 4,
         mappings: Path | None = None) -> Iterator[Live]:
    """The world synced once, then ``ponte webhooks register`` (Ploomes) and Omie's portal
    configured as it prints, ``ponte serve``'s receiver and worker started."""
    w = make_world(f"sqlite:///{tmp_path / 'state.db'}", customers=customers, products=6,
                   orders=orders, overlap=1.0)
    if mappings is not None:
        w.settings.mappings_dir = mappings
    assert w.sync().status == "ok"
    port = free_port()
    w.settings.crm.webhook_key = SecretStr(CRM_KEY)
    w.settings.serve.public_url = f"http://127.0.0.1:{port}"
    store = Store.open(w.settings.state_url)
    app = build_app(w.settings, store, load_mappings(w.settings.mappings_dir), now=w.now)
    crm, erp = w.clients()
    s = Live(w, app, port, store, Worker(w.ponte(), store, now=w.now, backoff_s=(0.5,)),
             crm, erp)
    s.start_receiver()
    try:
        report = w.ponte().webhooks_register()
        assert report.changed > 0
        (portal,) = report.manual
        r = erp.post(f"{OMIE}/_sandbox/webhooks",
                     json={"url": portal.url, "topics": list(portal.topics)})
        assert r.status_code == 201, r.text
        s.worker.start()
        yield s
    finally:
        s.worker.stop(30)
        s.stop_receiver()
        w.crm.deliveries.close()
        w.erp.deliveries.close()
        store.close()


def cliente_of(s: Live, contact_id: int) -> dict[str, Any] | None:
    erp_key = dict(s.store.links("customers")).get(str(contact_id))
    row = s.world.erp.db["clientes"].get(int(erp_key)) if erp_key else None
    return None if row is None else dict(row.data)


def limit_of(w: World, cliente: int) -> Decimal | None:
    """The ERP client's credit limit, as a number (None: not set)."""
    value = w.erp.db["clientes"].get(cliente).data.get("valor_limite_credito")
    return None if value in (None, "") else Decimal(str(value))


def writes(report: dict[str, Any]) -> int:
    """Records created or updated by a run, from its stored report."""
    return sum(e[side][what] for e in report.get("entities", {}).values()
               for side in ("crm", "erp") for what in ("created", "updated"))


def custom_value(contact: dict[str, Any], key: str) -> Any:
    return next((p.get("DecimalValue") for p in contact.get("OtherProperties") or []
                 if p.get("FieldKey") == key), None)


def test_register_against_the_ploomes_simulator_is_idempotent(tmp_path: Path) -> None:
    with live(tmp_path, customers=2, orders=0) as s:
        hooks = [h.data for h in s.world.crm.db["Webhooks"]]
        assert len(hooks) == 9  # Contacts, Orders, Products x Create, Update, Delete
        assert {h["CallbackUrl"] for h in hooks} == {
            f"{s.url}/webhooks/ploomes?collection={c}" for c in ("Contacts", "Orders",
                                                                 "Products")}
        assert sorted((h["EntityId"], h["ActionId"]) for h in hooks
                      if h["CallbackUrl"].endswith("Contacts")) == [(1, 1), (1, 2), (1, 3)]
        assert all(h["ValidationKey"] == CRM_KEY and h["Active"] for h in hooks)
        writes = s.world.write_requests()
        again = s.world.ponte().webhooks_register()
        assert again.changed == 0 and {c.state for c in again.callbacks} == {"unchanged"}
        assert s.world.write_requests() == writes and len(s.world.crm.db["Webhooks"]) == 9
        status = s.world.ponte().webhooks_status()
        assert {(c.collection, c.action) for c in status.callbacks} == {
            (c, a) for c in ("Contacts", "Orders", "Products")
            for a in ("Create", "Update", "Delete")}
        # Omie's portal holds what register printed, and pinged the receiver (answered 200)
        (config,) = s.erp.get(f"{OMIE}/_sandbox/webhooks").json()["records"]
        assert config["url"] == f"{s.url}/webhooks/omie"
        assert "ClienteFornecedor.Alterado" in config["topics"]
        assert s.world.erp.deliveries.wait_idle()
        assert s.erp.get(f"{OMIE}/_sandbox/deliveries").json()["delivered"] == 1


def test_user_edits_flow_both_ways_without_polling_and_settle(tmp_path: Path) -> None:
    with live(tmp_path) as s:
        w = s.world
        links = [(int(c), int(e)) for c, e in s.store.links("customers")]
        (c1, e1), (c2, e2) = links[0], links[1]
        # a CRM user edits a contact: the ERP client follows
        s.timed(lambda: s.crm_edit("Contacts", c1, {"Email": "compras@padaria.com.br"}),
                lambda: w.erp.db["clientes"].get(e1).data.get("email") ==
                "compras@padaria.com.br")
        # an ERP user edits a client, a credit limit too: the CRM contact follows, custom field
        s.timed(lambda: s.erp_edit("clientes", e2, {"nome_fantasia": "Mercadinho do Zé",
                                                    "valor_limite_credito": 12345.67}),
                lambda: w.crm.db["Contacts"].get(c2).data.get("Name") == "Mercadinho do Zé"
                and Decimal(str(custom_value(w.crm.db["Contacts"].get(c2).data, LIMITE)))
                == Decimal("12345.67"))
        # a CRM user creates a contact: ponte creates the ERP client
        tax = "123456780001" + stdnum_cnpj.calc_check_digits("123456780001")
        created: dict[str, Any] = {}

        def new_contact() -> None:
            r = s.crm.post("/_sandbox/Contacts", json={
                "Name": "Oficina Nova", "LegalName": "Oficina Nova Ltda", "TypeId": 1,
                "Register": tax, "CNPJ": tax, "Email": "oficina@nova.com.br"})
            assert r.status_code == 201, r.text
            created.update(r.json())

        s.timed(new_contact, lambda: any(digits(r.data.get("cnpj_cpf", "")) == tax
                                         for r in w.erp.db["clientes"]))
        # an ERP user moves an order's stage: the CRM order's stage follows
        crm_order, erp_order = (int(k) for k in s.store.links("orders")[0])
        cab = dict(w.erp.db["pedidos"].get(erp_order).data["cabecalho"])
        etapa, stage = ("20", 2) if cab.get("etapa") != "20" else ("10", 1)
        s.timed(lambda: s.erp_edit("pedidos", erp_order, {"cabecalho": {**cab,
                                                                         "etapa": etapa}}),
                lambda: w.crm.db["Orders"].get(crm_order).data.get("StageId") == stage)
        # ponte's own writes fired webhooks back: they settle, the last event runs write 0
        assert s.settled(), s.problems()
        runs = s.event_runs()
        written = [writes(r.report) for r in reversed(runs)]  # oldest first
        print("\nevent runs' writes:", written, s.store.event_counts())
        # each user edit made by one run; ponte's own writes came back and wrote nothing
        assert len(runs) <= 3 * 4 and sum(1 for n in written if n) <= 4, written
        assert written[-1] == 0 and written.count(0) >= 1, written
        counts = s.store.event_counts()
        assert counts["failed"] == 0 and counts["pending"] == 0
        assert len([r for r in w.erp.db["clientes"] if digits(r.data["cnpj_cpf"]) == tax]) == 1
        print(f"\nedit -> visible on the other side (debounce {w.settings.serve.debounce_s}s):"
              f" median {statistics.median(s.latencies):.2f}s of "
              f"{[round(x, 2) for x in s.latencies]}; {len(runs)} event runs")


@pytest.mark.parametrize("deletes", ["delete", "ignore"])
def test_a_crm_delete_follows_the_mappings_deletes_setting(tmp_path: Path, deletes: str
                                                           ) -> None:
    folder = _mappings_with(tmp_path, "customers", deletes=deletes) if deletes != "ignore" \
        else None  # the shipped mappings say ignore
    # one contact of 20 (5%): under the share of deletions a run may apply (10%)
    with live(tmp_path, customers=20, orders=0, mappings=folder) as s:
        contact, cliente = (int(k) for k in s.store.links("customers")[0])
        r = s.crm.delete(f"/_sandbox/Contacts/{contact}")
        assert r.status_code == 200, r.text
        assert wait_for(lambda: any(e.action == "delete" and e.status == "done"
                                    for e in s.store.events(limit=1000)), 60), s.problems()
        assert s.settled(), s.problems()
        gone = s.world.erp.db["clientes"].get(cliente) is None
        assert gone is (deletes == "delete")
        assert s.store.event_counts()["failed"] == 0


def test_duplicates_reordering_and_a_receiver_down_still_land_each_edit_once(
        tmp_path: Path) -> None:
    with live(tmp_path, orders=0) as s:
        w = s.world
        knobs = {"webhook_duplicate_rate": 0.5, "webhook_reorder": 0.5}
        assert s.crm.post("/_sandbox/faults", json=knobs).status_code == 200
        assert s.erp.post(f"{OMIE}/_sandbox/faults", json=knobs).status_code == 200
        contacts, clientes = len(w.crm.db["Contacts"]), len(w.erp.db["clientes"])
        links = [(int(c), int(e)) for c, e in s.store.links("customers")]
        from_crm, from_erp = links[:5], links[5:8]
        s.stop_receiver()  # ponte serve is down for a moment: deliveries fail, are retried
        for n in (1, 2):  # each record edited twice: the last value must win
            for i, (c, _e) in enumerate(from_crm):
                s.crm_edit("Contacts", c, {"Email": f"v{n}.c{i}@exemplo.com.br"})
            for i, (_c, e) in enumerate(from_erp):
                s.erp_edit("clientes", e, {"nome_fantasia": f"Loja {i} versão {n}"})
        time.sleep(1.0)
        s.start_receiver()
        assert wait_for(lambda: all(
            w.erp.db["clientes"].get(e).data.get("email") == f"v2.c{i}@exemplo.com.br"
            for i, (_c, e) in enumerate(from_crm)) and all(
            w.crm.db["Contacts"].get(c).data.get("Name") == f"Loja {i} versão 2"
            for i, (c, _e) in enumerate(from_erp)), 90), s.problems()
        assert s.settled(), s.problems()
        assert (len(w.crm.db["Contacts"]), len(w.erp.db["clientes"])) == (contacts, clientes)
        counts = s.store.event_counts()
        assert counts["failed"] == counts["pending"] == 0
        stored = {side: sum(1 for e in s.store.events(limit=10_000) if e.side == side)
                  for side in ("crm", "erp")}
        for side, admin, base in (("crm", s.crm, ""), ("erp", s.erp, OMIE)):
            d = admin.get(f"{base}/_sandbox/deliveries").json()
            assert d["retried"] > 0 and d["dead_lettered"] == 0 and d["dead_letters"] == [], d
            # duplicates arrived: more deliveries than events, each event stored once
            pings = 1 if side == "erp" else 0
            assert d["delivered"] - pings > stored[side], (d, stored)


def test_the_stored_payload_keeps_the_custom_field_map_without_the_key(tmp_path: Path
                                                                        ) -> None:
    with live(tmp_path, customers=4, orders=0) as s:
        w = s.world
        contact, cliente = (int(k) for k in s.store.links("customers")[0])
        email = w.erp.db["clientes"].get(cliente).data.get("email")
        # the ERP's credit limit reaches the CRM's custom field; that write fires Ploomes'
        # webhook back, its record's OtherProperties as a FieldKey -> value map
        s.erp_edit("clientes", cliente, {"valor_limite_credito": 777.5})
        assert wait_for(lambda: custom_value(w.crm.db["Contacts"].get(contact).data, LIMITE)
                        == 777.5, 60), s.problems()

        def stored() -> list[dict[str, Any]]:
            out = []
            for e in s.store.events(limit=1000):
                payload = s.store.event_payload(e.id) if e.side == "crm" else None
                if payload and e.key == str(contact) and isinstance(
                        (payload.get("New") or {}).get("OtherProperties"), dict):
                    out.append(payload)
            return out

        assert wait_for(lambda: any(p["New"]["OtherProperties"].get(LIMITE) == 777.5
                                    for p in stored()), 30), s.problems()
        for payload in stored():
            assert "ValidationKey" not in payload and CRM_KEY not in str(payload)
        # the worker reads the record by its key, never the payload: a call whose record says
        # otherwise changes nothing on either side
        assert s.settled(), s.problems()
        payload = stored()[0]
        forged = {**payload, "ValidationKey": CRM_KEY, "New": {
            **payload["New"], "Email": "forjado@exemplo.com.br",
            "OtherProperties": {LIMITE: 1.0}}}
        answer = httpx.post(f"{s.url}/webhooks/ploomes?collection=Contacts", json=forged)
        assert answer.status_code == 200 and answer.json()["stored"] is True
        assert s.settled(), s.problems()
        assert s.store.event_counts()["pending"] == 0
        assert w.erp.db["clientes"].get(cliente).data.get("email") == email
        assert limit_of(w, cliente) == Decimal("777.5")
        assert custom_value(w.crm.db["Contacts"].get(contact).data, LIMITE) == 777.5
