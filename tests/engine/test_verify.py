"""verify: full reads of both simulators report every drift; --fix repairs it; deletes follow
the mapping's policy and its guard."""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from etl import api
from etl.engine.verify import verify
from etl.errors import ConfigError
from etl.state import Store
from tests.engine.conftest import World, make_world
from tests.engine.test_sync_e2e import _mappings_with


def digits(value: str) -> str:
    return re.sub(r"\D", "", value or "")


def _requests(sim: Any, method: str) -> int:
    return sum(n for (endpoint, _), n in sim.requests.counts.items()
               if endpoint.startswith(f"{method} "))


def run_verify(w: World, *entities: str, fix: bool = False):
    w.tick()
    return w.ponte().verify(list(entities) or None, fix=fix)


def test_no_drift_after_a_sync(world: World) -> None:
    before = run_verify(world)
    assert before.entities["customers"].missing_in_erp > 0
    assert before.entities["customers"].unlinked > 0
    world.sync()
    report = run_verify(world)
    assert report.drift == 0, report.as_dict(items=True)


def test_drift_is_found_and_fixed(world: World) -> None:
    world.sync()
    # a change the sync cannot see: made with the clock moved back, below the watermarks
    contact = next(r for r in world.crm.db["Contacts"] if r.data.get("Register"))
    world.crm.clock.advance(-3600)
    world.crm.ui_update("Contacts", contact.id, {"Email": "drift@exemplo.com.br"})
    world.crm.clock.advance(3600)
    assert world.sync().writes == 0  # outside every window: the incremental sync misses it
    report = run_verify(world, "customers")
    c = report.entities["customers"]
    assert c.mismatched == 1 and c.drift == 1
    assert c.items[0].fields == {"email": ["drift@exemplo.com.br", c.items[0].fields["email"][1]]}
    fixed = run_verify(world, "customers", fix=True)
    assert fixed.entities["customers"].fixed == 1
    assert run_verify(world).drift == 0


def test_duplicates_are_reported(world: World) -> None:
    world.sync("customers")
    original = next(iter(world.erp.db["clientes"]))
    data = dict(original.data)
    data["codigo_cliente_integracao"] = ""
    world.erp.faults.update({"unique_cnpj_cpf": False})
    world.erp.ui_create("clientes", data)
    report = run_verify(world, "customers")
    assert report.entities["customers"].duplicates == 1


def test_vanished_records_follow_the_delete_policy(tmp_path: Path) -> None:
    w = make_world(f"sqlite:///{tmp_path / 's.db'}", customers=20, overlap=1.0)
    w.settings.mappings_dir = _mappings_with(tmp_path, "customers", deletes="deactivate")
    w.settings.max_delete_share = 0.2
    w.sync("customers")
    contact = next(iter(w.crm.db["Contacts"]))
    tax = contact.data["Register"]
    w.crm.ui_delete("Contacts", contact.id)
    report = run_verify(w, "customers")
    assert report.entities["customers"].vanished == 1
    fixed = run_verify(w, "customers", fix=True)
    assert fixed.entities["customers"].fixed == 1
    cliente = next(r for r in w.erp.db["clientes"] if digits(r.data["cnpj_cpf"]) == tax)
    assert cliente.data["inativo"] == "S"
    assert run_verify(w, "customers").drift == 0


def test_a_vanished_product_is_deactivated_by_the_crm_spec_request(tmp_path: Path) -> None:
    """Products flow ERP -> CRM; the Ploomes spec says how to deactivate a product (Suspended),
    so a mapping with ``deletes: deactivate`` needs no ``deactivate`` block of its own."""
    w = make_world(f"sqlite:///{tmp_path / 's.db'}", products=10)
    w.settings.mappings_dir = _mappings_with(tmp_path, "products", deletes="deactivate",
                                             deactivate={})
    w.settings.max_delete_share = 0.2
    w.sync("products")
    produto = next(iter(w.erp.db["produtos"]))
    product = next(r for r in w.crm.db["Products"] if r.data["Code"] == produto.data["codigo"])
    assert product.data["Suspended"] is False
    w.erp.ui_delete("produtos", produto.id)
    patches_before = _requests(w.crm, "PATCH")
    fixed = run_verify(w, "products", fix=True)
    assert fixed.entities["products"].fixed == 1
    assert w.crm.db["Products"].get(product.id).data["Suspended"] is True
    assert _requests(w.crm, "PATCH") == patches_before + 1  # one request, the spec's
    assert run_verify(w, "products").drift == 0


def test_deactivate_without_a_way_to_do_it_stops_before_writing(tmp_path: Path) -> None:
    """No ``deactivate`` block, and the ERP's connector has no deactivate request: a
    configuration error that names both ways, with nothing written."""
    w = make_world(f"sqlite:///{tmp_path / 's.db'}", customers=20, overlap=1.0)
    w.settings.mappings_dir = _mappings_with(tmp_path, "customers", deletes="deactivate",
                                             deactivate={})
    w.settings.max_delete_share = 0.2
    w.sync("customers")
    contact = next(iter(w.crm.db["Contacts"]))
    w.crm.ui_delete("Contacts", contact.id)
    before = {r.id: dict(r.data) for r in w.erp.db["clientes"]}
    with pytest.raises(ConfigError, match="customers: 'deletes: deactivate' but the mapping has "
                       "no 'deactivate' block and the erp connector's spec has no deactivate"):
        run_verify(w, "customers", fix=True)
    assert {r.id: dict(r.data) for r in w.erp.db["clientes"]} == before


def test_mass_vanishing_is_stopped_and_explained(tmp_path: Path) -> None:
    w = make_world(f"sqlite:///{tmp_path / 's.db'}", customers=20, overlap=1.0)
    w.settings.mappings_dir = _mappings_with(tmp_path, "customers", deletes="delete")
    w.sync("customers")
    victims = list(w.crm.db["Contacts"])[:10]
    for row in victims:
        w.crm.ui_delete("Contacts", row.id)
    erp_before = len(w.erp.db["clientes"])
    report = run_verify(w, "customers", fix=True)
    c = report.entities["customers"]
    assert c.vanished == 10 and c.blocked and "PONTE_MAX_DELETE_SHARE" in c.blocked
    assert len(w.erp.db["clientes"]) == erp_before  # nothing deleted


def test_an_empty_read_never_means_deleted(tmp_path: Path) -> None:
    w = make_world(f"sqlite:///{tmp_path / 's.db'}", customers=10, overlap=1.0)
    w.settings.mappings_dir = _mappings_with(tmp_path, "customers", deletes="delete")
    w.settings.max_delete_share = 1.0
    w.sync("customers")
    for row in list(w.crm.db["Contacts"]):
        w.crm.ui_delete("Contacts", row.id)
    report = run_verify(w, "customers", fix=True)
    assert report.entities["customers"].vanished == 0
    assert len(w.erp.db["clientes"]) == 10
    with Store.open(w.settings.state_url) as store:
        assert len(store.links("customers")) == 10


def test_a_deactivated_record_is_not_recreated_where_it_was_deleted(tmp_path: Path) -> None:
    w = make_world(f"sqlite:///{tmp_path / 's.db'}", customers=20, overlap=1.0)
    w.settings.mappings_dir = _mappings_with(tmp_path, "customers", deletes="deactivate")
    w.settings.max_delete_share = 0.2
    w.sync("customers")
    contact = next(iter(w.crm.db["Contacts"]))
    w.crm.ui_delete("Contacts", contact.id)
    run_verify(w, "customers", fix=True)
    crm_count = len(w.crm.db["Contacts"])
    report = w.sync("customers")  # the ERP record changed (inactive): it must not come back
    assert report.entities["customers"].crm.created == 0
    assert len(w.crm.db["Contacts"]) == crm_count


def test_fix_links_records_on_both_sides_without_copying_them(world: World) -> None:
    """Records with the same tax id on both sides, never synced: `verify --fix` links them
    (one unit per pair), and copies across only the records that are on one side."""
    before = run_verify(world, "customers")
    assert before.entities["customers"].unlinked > 0
    run_verify(world, "customers", fix=True)
    crm = [digits(r.data.get("Register", "")) for r in world.crm.db["Contacts"]]
    erp = [digits(r.data.get("cnpj_cpf", "")) for r in world.erp.db["clientes"]]
    assert len(crm) == len(set(crm)) and len(erp) == len(set(erp))  # nothing copied twice
    after = run_verify(world, "customers")
    assert after.drift == 0, after.as_dict(items=True)


def test_fix_renews_its_lease_while_it_runs(world: World) -> None:
    """A full read of big systems can outlast the lease: `verify --fix` renews it (the run's
    heartbeat), so no second writer is let in while it still writes."""
    world.sync("customers")
    now = world.now()
    leases: list[datetime] = []

    def slow_page() -> bool:  # asked between pages: the read takes a while
        time.sleep(1.3)
        holder = store.lock_holder("entity:customers")
        assert holder is not None
        leases.append(holder[1])
        return False

    crm, erp = world.clients()
    with api.session(world.settings, crm_client=crm, erp_client=erp, now=now) as (
            store, connectors, mappings):
        verify(store=store, connectors=connectors, mappings=mappings, entities=["customers"],
               fix=True, now=now, should_stop=slow_page, lease_s=3)
    assert leases and max(leases) > now + timedelta(seconds=3)  # renewed past the first lease
