"""End-to-end: the engine against both simulators through their HTTP APIs and a real state
database. Per entity: changes flow, a second run writes nothing, echoes do not come back,
existing records are matched, conflicts follow the policy, bad records are quarantined."""

from __future__ import annotations

import copy
import re
import shutil
from pathlib import Path

import yaml

from etl.state import Store
from tests.engine.conftest import MAPPINGS, World, make_world


def digits(value: str) -> str:
    return re.sub(r"\D", "", value or "")


def crm_tax_ids(w: World) -> list[str]:
    return [r.data.get("Register", "") for r in w.crm.db["Contacts"]]


def erp_tax_ids(w: World) -> list[str]:
    return [digits(r.data.get("cnpj_cpf", "")) for r in w.erp.db["clientes"]]


def writes(report, side: str, entity: str) -> int:
    c = report.entities[entity].side(side)
    return c.created + c.updated


def test_first_sync_matches_by_tax_id_and_creates_the_rest(world: World) -> None:
    crm_before, erp_before = set(crm_tax_ids(world)), set(erp_tax_ids(world))
    shared = crm_before & erp_before
    assert shared, "the seed must overlap"
    report = world.sync("customers")
    assert report.status == "ok", report.as_dict()
    c = report.entities["customers"]
    assert c.matched == len(shared)
    assert c.erp.created == len(crm_before - erp_before)
    assert c.crm.created == len(erp_before - crm_before)
    # no duplicates on either side, and both sides know every customer
    assert len(crm_tax_ids(world)) == len(set(crm_tax_ids(world)))
    assert len(erp_tax_ids(world)) == len(set(erp_tax_ids(world)))
    assert set(crm_tax_ids(world)) == set(erp_tax_ids(world)) == crm_before | erp_before


def test_second_run_writes_nothing_and_echoes_do_not_flow_back(world: World) -> None:
    first = world.sync()
    assert first.status == "ok", first.as_dict()
    assert first.writes > 0
    before = world.write_requests()
    second = world.sync()
    assert second.status == "ok", second.as_dict()
    assert second.writes == 0, second.as_dict(with_changes=True)
    assert world.write_requests() == before
    assert second.api_calls["crm"]["write"] == 0 and second.api_calls["erp"]["write"] == 0
    # the records ponte wrote in run 1 were read back in run 2 (inside the lookback) as unchanged
    assert second.entities["customers"].erp.unchanged > 0


def test_a_change_on_each_side_appears_on_the_other(world: World) -> None:
    world.sync()
    contact = next(r for r in world.crm.db["Contacts"] if r.data.get("Register"))
    tax = contact.data["Register"]
    world.crm.ui_update("Contacts", contact.id, {"Email": "novo.email@exemplo.com.br"})
    cliente = next(r for r in world.erp.db["clientes"]
                   if digits(r.data["cnpj_cpf"]) != tax)
    world.erp.ui_update("clientes", cliente.id, {"telefone1_ddd": "21",
                                                 "telefone1_numero": "2555-0101"})
    report = world.sync("customers")
    assert report.status == "ok", report.as_dict()
    assert report.entities["customers"].erp.updated == 1
    assert report.entities["customers"].crm.updated == 1
    erp_match = next(r for r in world.erp.db["clientes"] if digits(r.data["cnpj_cpf"]) == tax)
    assert erp_match.data["email"] == "novo.email@exemplo.com.br"
    crm_match = next(r for r in world.crm.db["Contacts"]
                     if r.data.get("Register") == digits(cliente.data["cnpj_cpf"]))
    assert crm_match.data["Phones"][0]["PhoneNumber"] == "(21) 2555-0101"
    assert world.sync("customers").writes == 0


def test_erp_owned_field_never_flows_from_the_crm(world: World) -> None:
    world.sync("customers")
    contact = next(r for r in world.crm.db["Contacts"] if r.data.get("TypeId") == 1)
    tax = contact.data["Register"]
    world.crm.ui_update("Contacts", contact.id, {"LegalName": "Outro Nome Jurídico SA"})
    report = world.sync("customers")
    assert report.entities["customers"].erp.updated == 0
    erp_match = next(r for r in world.erp.db["clientes"] if digits(r.data["cnpj_cpf"]) == tax)
    assert erp_match.data["razao_social"] != "Outro Nome Jurídico SA"
    # the owner's value is put back in the CRM, so both sides agree again
    assert report.entities["customers"].crm.updated == 1
    assert world.crm.db["Contacts"].get(contact.id).data["LegalName"] == erp_match.data["razao_social"]
    assert world.sync("customers").writes == 0


def _mappings_with(tmp_path: Path, entity: str, **changes: object) -> Path:
    folder = tmp_path / "mappings"
    shutil.copytree(MAPPINGS, folder)
    file = folder / f"{entity}.yaml"
    data = yaml.safe_load(file.read_text())
    data.update(changes)
    file.write_text(yaml.safe_dump(data, allow_unicode=True))
    return folder


def _name_edited_on_both_sides(tmp_path: Path, **mapping_changes: object) -> tuple[World, int]:
    """A synced world in which a CRM user and an ERP user then rename the same customer."""
    w = make_world(f"sqlite:///{tmp_path / 's.db'}", customers=20, overlap=1.0)
    if mapping_changes:
        w.settings.mappings_dir = _mappings_with(tmp_path, "customers", **mapping_changes)
    assert w.sync("customers").status == "ok"
    contact = next(iter(w.crm.db["Contacts"]))
    tax = contact.data["Register"]
    cliente = next(r for r in w.erp.db["clientes"] if digits(r.data["cnpj_cpf"]) == tax)
    w.crm.ui_update("Contacts", contact.id, {"Name": "Nome do CRM"})
    w.erp.ui_update("clientes", cliente.id, {"nome_fantasia": "Nome do ERP"})
    return w, contact.id


def test_conflict_policy_manual_quarantines_as_conflict(tmp_path: Path) -> None:
    w, _ = _name_edited_on_both_sides(tmp_path, conflict="manual")
    report = w.sync("customers")
    assert report.status == "partial"
    assert report.entities["customers"].conflicts == 1
    assert report.writes == 0
    with Store.open(w.settings.state_url) as store:
        rows = store.quarantine("customers")
    assert [(q.kind, q.field) for q in rows] == [("conflict", "name")]
    assert "changed on both sides" in rows[0].reason


def test_conflict_policy_erp_wins(tmp_path: Path) -> None:
    w, contact_id = _name_edited_on_both_sides(tmp_path)
    report = w.sync("customers")
    assert report.status == "ok"
    assert w.crm.db["Contacts"].get(contact_id).data["Name"] == "Nome do ERP"
    assert w.sync("customers").writes == 0


def test_products_flow_erp_to_crm_and_match_existing_codes(world: World) -> None:
    codes_erp = {r.data["codigo"] for r in world.erp.db["produtos"]}
    codes_crm_before = {r.data["Code"] for r in world.crm.db["Products"]}
    report = world.sync("products")
    assert report.status == "ok", report.as_dict()
    p = report.entities["products"]
    assert p.matched == len(codes_crm_before & codes_erp)
    assert p.crm.created == len(codes_erp - codes_crm_before)
    assert p.erp.created == p.erp.updated == 0
    codes_crm = [r.data["Code"] for r in world.crm.db["Products"]]
    assert len(codes_crm) == len(set(codes_crm)) and set(codes_crm) >= codes_erp
    produto = next(iter(world.erp.db["produtos"]))
    world.erp.ui_update("produtos", produto.id, {"valor_unitario": 4321.5})
    report = world.sync("products")
    assert report.entities["products"].crm.updated == 1
    crm = next(r for r in world.crm.db["Products"] if r.data["Code"] == produto.data["codigo"])
    assert crm.data["UnitPrice"] == 4321.5
    # a change made in the CRM to an ERP-owned product does not flow back
    world.crm.ui_update("Products", crm.id, {"UnitPrice": 1.0})
    assert world.sync("products").writes == 0
    assert world.erp.db["produtos"].get(produto.id).data["valor_unitario"] == 4321.5


def test_orders_flow_to_the_erp_and_bad_ones_are_quarantined(world: World) -> None:
    orders = sorted(world.crm.db["Orders"], key=lambda r: r.id)
    bad = orders[0]
    lines = copy.deepcopy(bad.data["Products"])
    lines[0]["Quantity"] = 0
    world.crm.ui_update("Orders", bad.id, {"Products": lines})
    report = world.sync()
    o = report.entities["orders"]
    assert report.status == "partial"
    assert o.crm.quarantined == 1
    assert o.erp.created == len(orders) - 1
    with Store.open(world.settings.state_url) as store:
        rows = store.quarantine("orders")
    assert len(rows) == 1 and rows[0].key == str(bad.id) and rows[0].field == "lines"
    assert "quantity" in rows[0].reason and "greater than 0" in rows[0].reason
    # the ERP order carries the linked customer and products
    pedido = next(iter(world.erp.db["pedidos"]))
    assert pedido.data["det"] and pedido.data["cabecalho"]["codigo_cliente"]
    # the ERP's stage flows back to the CRM order
    cab = copy.deepcopy(pedido.data["cabecalho"])
    cab["etapa"] = "50"
    world.erp.ui_update("pedidos", pedido.id, {"cabecalho": cab})
    report = world.sync("orders")
    assert report.entities["orders"].crm.updated == 1
    crm_order = world.crm.db["Orders"].get(int(pedido.data["cabecalho"]["codigo_pedido_integracao"].split("-")[-1]))
    assert crm_order is not None and crm_order.data["StageId"] == 3  # Faturada
    # fixing the bad order lets it through on the next run
    lines[0]["Quantity"] = 3
    world.crm.ui_update("Orders", bad.id, {"Products": lines})
    report = world.sync("orders")
    assert report.entities["orders"].erp.created == 1 and report.status == "ok"
    with Store.open(world.settings.state_url) as store:
        assert store.quarantine("orders") == []


def test_order_of_customer_without_address_number_is_quarantined(world: World) -> None:
    erp_taxes = set(erp_tax_ids(world))
    order = next(o for o in world.crm.db["Orders"]
                 if world.crm.db["Contacts"].get(o.data["ContactId"]).data["Register"]
                 not in erp_taxes)  # a CRM-only customer: the ERP cannot fill the number in
    world.crm.ui_update("Contacts", order.data["ContactId"], {"StreetAddressNumber": ""})
    report = world.sync()
    rows = Store.open(world.settings.state_url).quarantine("orders")
    assert any(r.key == str(order.id) and "number" in r.reason for r in rows), report.as_dict()


def test_plan_writes_nothing_anywhere(world: World) -> None:
    report = world.sync(dry_run=True)
    assert report.dry_run and report.writes > 0  # it planned work ...
    assert world.write_requests() == 0  # ... and sent none of it
    assert report.api_calls["crm"]["write"] == 0 and report.api_calls["erp"]["write"] == 0
    with Store.open(world.settings.state_url) as store:
        assert store.runs() == []
        assert store.watermarks() == []
        assert store.count_snapshots("crm", "customers") == 0
    changes = [c for e in report.entities.values() for c in e.changes]
    assert any(c.action == "create" and c.fields for c in changes)


def test_duplicates_on_one_side_are_not_copied(empty_world: World) -> None:
    """Two ERP clientes with one CNPJ (the ERP allows it with its uniqueness knob off): one is
    created in the CRM, the other is quarantined with a reason; nothing is duplicated."""
    w = empty_world
    w.erp.faults.update({"unique_cnpj_cpf": False})
    base = {"razao_social": "Padaria Duplicada Ltda", "nome_fantasia": "Padaria",
            "cnpj_cpf": "11.444.777/0001-61", "pessoa_fisica": "N", "inativo": "N",
            "email": "a@padaria.com.br", "endereco": "Rua A", "endereco_numero": "1",
            "bairro": "Centro", "cidade": "SAO PAULO (SP)", "cidade_ibge": "3550308",
            "estado": "SP", "cep": "01310100", "codigo_pais": "1058"}
    w.erp.ui_create("clientes", dict(base))
    w.erp.ui_create("clientes", {**base, "email": "b@padaria.com.br"})
    report = w.sync("customers")
    assert report.entities["customers"].crm.created == 1
    assert report.entities["customers"].erp.quarantined == 1
    assert len(w.crm.db["Contacts"]) == 1
    assert w.sync("customers").entities["customers"].crm.created == 0
