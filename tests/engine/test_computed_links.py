"""Computed fields beyond the sync's own marks: ``ponte verify`` compares them with the values
the stored facts give (and ``--fix`` writes those), and a customer linked to an existing CRM
contact by its tax id gets its computed values in the run that links it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.engine.conftest import World, make_world
from tests.engine.test_computed_e2e import (
    SALES,
    contact_of,
    invoice,
    mappings_with_computed,
    pedidos,
    prop,
    total,
)


@pytest.fixture
def w(tmp_path: Path) -> World:
    world = make_world(f"sqlite:///{tmp_path / 'state.db'}", customers=12, products=6, orders=6,
                       overlap=1.0)
    world.settings.mappings_dir = mappings_with_computed(tmp_path)
    return world


def type_over(w: World, contact: int, key: str, value: float) -> None:
    """A CRM user types a value into one custom field, keeping the others."""
    props = [dict(p) for p in w.crm.db["Contacts"].get(contact).data.get("OtherProperties")
             or [] if p.get("FieldKey") != key]
    w.crm.ui_update("Contacts", contact, {"OtherProperties": [
        *props, {"FieldKey": key, "DecimalValue": value}]})


def run_verify(w: World, fix: bool = False) -> Any:
    w.tick()
    return w.ponte().verify(["customers"], fix=fix).entities["customers"]


def test_verify_reports_a_typed_over_sales_volume_and_fix_writes_the_computed_one(w: World
                                                                                   ) -> None:
    assert w.sync().status == "ok"
    order = pedidos(w)[0]
    contact = contact_of(w, int(order.data["cabecalho"]["codigo_cliente"]))
    invoice(w, order.id)
    assert w.sync().status == "ok"
    expected = total(w, order.id)
    assert prop(w, contact, SALES) == pytest.approx(expected)
    assert run_verify(w).drift == 0
    # typed over with the clock moved back: below the watermark, the sync never sees it
    w.crm.clock.advance(-3600)
    type_over(w, contact, SALES, 1.0)
    w.crm.clock.advance(3600)
    assert w.sync().writes == 0
    found = run_verify(w)
    assert found.mismatched == 1, found.as_dict(items=True)
    item = found.items[0]
    assert item.crm_key == str(contact)
    assert item.fields == {"sales_12m": ["1.00", f"{expected:.2f}"]}
    fixed = run_verify(w, fix=True)
    assert fixed.fixed == 1, fixed.as_dict(items=True)
    assert prop(w, contact, SALES) == pytest.approx(expected)
    assert run_verify(w).drift == 0


def test_verify_fix_writes_the_computed_values_of_a_customer_never_computed(w: World) -> None:
    """Facts stored by an orders run whose customers run has not happened yet: verify finds
    the customer's sales volume missing in the CRM and --fix writes it."""
    assert w.sync().status == "ok"
    order = pedidos(w)[0]
    contact = contact_of(w, int(order.data["cabecalho"]["codigo_cliente"]))
    invoice(w, order.id)
    assert w.sync("orders").status == "ok"
    assert prop(w, contact, SALES) is None
    found = run_verify(w)
    assert found.mismatched == 1, found.as_dict(items=True)
    run_verify(w, fix=True)
    assert prop(w, contact, SALES) == pytest.approx(total(w, order.id))


def test_a_customer_linked_later_by_tax_id_gets_the_sales_volume_of_its_stored_facts(
        tmp_path: Path) -> None:
    """An ERP customer ponte does not create in the CRM (the mapping creates in the ERP only)
    has an invoiced order: its facts are stored and its mark cleared while it has no partner.
    When a CRM user later enters a contact with its tax id, the sync that links them writes
    the sales volume, without waiting for another order to change, and the link marks the
    customer so its values are worked out again after the orders."""
    world = make_world(f"sqlite:///{tmp_path / 'state.db'}", customers=12, products=6,
                       orders=6, overlap=0.5)
    folder = mappings_with_computed(tmp_path)
    file = folder / "customers.yaml"
    data = yaml.safe_load(file.read_text())
    data["create_in"] = ["erp"]
    file.write_text(yaml.safe_dump(data, allow_unicode=True))
    world.settings.mappings_dir = folder
    assert world.sync().status in ("ok", "partial")
    with world.store() as store:
        linked = {e for _c, e in store.links("customers")}
    alone = next(r for r in world.erp.db["clientes"] if str(r.id) not in linked)
    model = pedidos(world)[0].data
    cab = {k: v for k, v in model["cabecalho"].items() if k in ("data_previsao",
                                                                 "codigo_parcela")}
    order = world.erp.ui_create("pedidos", {
        "cabecalho": {**cab, "codigo_cliente": alone.id, "etapa": "10"},
        **{k: v for k, v in model.items() if k in ("det", "frete", "informacoes_adicionais")}})
    invoice(world, order.id)
    world.sync()
    with world.store() as store:
        assert store.computed_marks("customers") == {}
        assert not store.links("customers", erp_keys=[str(alone.id)])
    tax = "".join(ch for ch in str(alone.data["cnpj_cpf"]) if ch.isdigit())
    company = alone.data.get("pessoa_fisica") != "S"
    contact = world.crm.ui_create("Contacts", {
        "Name": "Entered in the CRM", "TypeId": 1 if company else 2, "Register": tax,
        ("CNPJ" if company else "CPF"): tax})
    report = world.sync("customers")
    assert report.entities["customers"].matched == 1, report.as_dict()
    assert contact_of(world, alone.id) == contact.id
    assert prop(world, contact.id, SALES) == pytest.approx(total(world, order.id))
    # the link marked the customer: the pass after the orders works its values out again
    with world.store() as store:
        assert set(store.computed_marks("customers")) == {str(alone.id)}
    assert world.sync().writes == 0
    with world.store() as store:
        assert store.computed_marks("customers") == {}
    assert prop(world, contact.id, SALES) == pytest.approx(total(world, order.id))
