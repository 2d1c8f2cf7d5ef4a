"""End-to-end: a Ploomes contact's tax id lives in ``Register`` and in ``CNPJ``/``CPF``, and the
simulator keeps them in step or not (knob ``tax_id_in_step``); either way ponte converges and a
third-party reader finds every tax id in ``CNPJ``/``CPF``. Also: an ERP customer without a trade
name reaches the CRM under its legal name, without ping-pong."""

from __future__ import annotations

import re
from typing import Any

import pytest

from etl.sandbox.keys import SANDBOX_USER_KEY
from etl.state import Store
from tests.engine.conftest import World

CNPJ_A, CNPJ_B = "11444777000161", "45723174000110"
CLIENTE = {"razao_social": "Padaria Central Ltda", "nome_fantasia": "Padaria Central",
           "cnpj_cpf": "11.444.777/0001-61", "pessoa_fisica": "N", "inativo": "N",
           "email": "contato@padaria.com.br", "endereco": "Rua A", "endereco_numero": "1",
           "bairro": "Centro", "cidade": "SAO PAULO (SP)", "cidade_ibge": "3550308",
           "estado": "SP", "cep": "01310100", "codigo_pais": "1058"}


def digits(value: Any) -> str:
    return re.sub(r"\D", "", str(value or ""))


def third_party_contacts(w: World) -> list[dict[str, Any]]:
    """What another integration sees: a plain GET of /Contacts with the account's User-Key."""
    crm_client, _ = w.clients()
    response = crm_client.get("/Contacts", params={"$top": "300"},
                              headers={"User-Key": SANDBOX_USER_KEY})
    assert response.status_code == 200, response.text
    return response.json()["value"]


def empty_ui_document(contacts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Contacts whose CNPJ (companies) or CPF (persons) does not carry the tax id."""
    return [c for c in contacts
            if not digits(c["CNPJ"] if c["TypeId"] == 1 else c["CPF"])
            or digits(c["CNPJ"] if c["TypeId"] == 1 else c["CPF"]) != digits(c["Register"])]


def erp_documents(w: World) -> set[str]:
    return {digits(r.data["cnpj_cpf"]) for r in w.erp.db["clientes"]}


def no_drift(w: World) -> None:
    report = w.ponte().verify(["customers"])
    assert report.drift == 0, report.as_dict(items=True)


@pytest.mark.parametrize("knob", [True, False], ids=["in_step", "as_written"])
def test_first_sync_fills_cnpj_or_cpf_of_every_contact(world: World, knob: bool) -> None:
    world.crm.faults.update({"tax_id_in_step": knob})
    report = world.sync("customers")
    assert report.status == "ok", report.as_dict()
    assert report.entities["customers"].crm.created > 0
    contacts = third_party_contacts(world)
    assert len(contacts) == len(world.erp.db["clientes"])
    assert empty_ui_document(contacts) == []
    assert {digits(c["CNPJ"] or c["CPF"]) for c in contacts} == erp_documents(world)
    # a company has no CPF and a person no CNPJ
    assert all(not c["CPF"] for c in contacts if c["TypeId"] == 1)
    assert all(not c["CNPJ"] for c in contacts if c["TypeId"] == 2)
    second = world.sync("customers")
    assert second.writes == 0, second.as_dict(with_changes=True)
    no_drift(world)


@pytest.mark.parametrize("knob", [True, False], ids=["in_step", "as_written"])
def test_erp_tax_id_change_reaches_register_and_cnpj(world: World, knob: bool) -> None:
    world.crm.faults.update({"tax_id_in_step": knob})
    assert world.sync("customers").status == "ok"
    cliente = next(r for r in world.erp.db["clientes"] if r.data["pessoa_fisica"] == "N"
                   and digits(r.data["cnpj_cpf"]) != CNPJ_B)
    old = digits(cliente.data["cnpj_cpf"])
    world.erp.ui_update("clientes", cliente.id, {"cnpj_cpf": "45.723.174/0001-10"})
    report = world.sync("customers")
    assert report.status == "ok", report.as_dict()
    assert report.entities["customers"].crm.updated == 1
    contact = next(c for c in third_party_contacts(world) if digits(c["Register"]) == CNPJ_B)
    assert (contact["CNPJ"], contact["CPF"]) == (CNPJ_B, None)
    assert not [c for c in third_party_contacts(world) if old in (c["Register"], c["CNPJ"])]
    assert world.sync("customers").writes == 0
    no_drift(world)


def test_contact_with_only_cnpj_is_synced_not_quarantined(empty_world: World) -> None:
    """A user typed the CNPJ in the UI field; the account does not fill Register for it."""
    w = empty_world
    w.crm.faults.update({"tax_id_in_step": False})
    w.crm.ui_create("Contacts", {"TypeId": 1, "Name": "Só CNPJ", "LegalName": "Só CNPJ Ltda",
                                 "CNPJ": "11.444.777/0001-61", "StatusId": 1})
    w.crm.ui_create("Contacts", {"TypeId": 2, "Name": "Só CPF", "CPF": "123.456.789-09",
                                 "StatusId": 1})
    report = w.sync("customers")
    assert report.status == "ok", report.as_dict()
    c = report.entities["customers"]
    assert (c.crm.quarantined, c.erp.created) == (0, 2)
    assert Store.open(w.settings.state_url).quarantine("customers") == []
    assert erp_documents(w) == {CNPJ_A, "12345678909"}
    assert w.sync("customers").writes == 0
    no_drift(w)


def test_contact_with_only_cnpj_is_matched_not_duplicated(empty_world: World) -> None:
    """The ERP already has the customer: the CNPJ-only contact is linked to it, and a later ERP
    edit reaches that contact instead of creating a second one."""
    w = empty_world
    w.crm.faults.update({"tax_id_in_step": False})
    w.erp.ui_create("clientes", dict(CLIENTE))
    contact = w.crm.ui_create("Contacts", {"TypeId": 1, "Name": "Padaria Central",
                                           "CNPJ": CNPJ_A, "StatusId": 1})
    report = w.sync("customers")
    assert report.status == "ok", report.as_dict()
    assert report.entities["customers"].matched == 1
    assert (len(w.crm.db["Contacts"]), len(w.erp.db["clientes"])) == (1, 1)
    cliente = next(iter(w.erp.db["clientes"]))
    w.erp.ui_update("clientes", cliente.id, {"email": "novo@padaria.com.br"})
    assert w.sync("customers").entities["customers"].crm.updated == 1
    assert w.crm.db["Contacts"].get(contact.id).data["Email"] == "novo@padaria.com.br"
    assert len(w.crm.db["Contacts"]) == 1


def test_erp_customer_without_trade_name_is_created_under_its_legal_name(
        empty_world: World) -> None:
    w = empty_world
    _, erp_client = w.clients()
    response = erp_client.post("http://omie.test/_sandbox/clientes",
                               json={**CLIENTE, "nome_fantasia": ""})
    assert response.status_code == 201, response.text
    report = w.sync("customers")
    assert report.status == "ok", report.as_dict()
    assert report.entities["customers"].crm.created == 1
    (contact,) = third_party_contacts(w)
    assert contact["Name"] == contact["LegalName"] == "Padaria Central Ltda"
    # the ERP snapshot holds the name the ERP shows (its legal name), so nothing flows back
    (snap,) = Store.open(w.settings.state_url).snapshots("erp", "customers", ["1"])["data"]
    assert snap["name"] == "Padaria Central Ltda"
    for _ in range(2):
        again = w.sync("customers")
        assert again.writes == 0, again.as_dict(with_changes=True)
    assert next(iter(w.erp.db["clientes"])).data["nome_fantasia"] == ""
    no_drift(w)
    # a trade name given later in the ERP replaces the legal name in the CRM
    w.erp.ui_update("clientes", 1, {"nome_fantasia": "Padaria"})
    assert w.sync("customers").entities["customers"].crm.updated == 1
    assert third_party_contacts(w)[0]["Name"] == "Padaria"
    assert w.sync("customers").writes == 0


def test_finder_matches_a_contact_outside_the_window_by_its_cnpj(empty_world: World) -> None:
    """The CRM contact was last changed long before the watermark, so this run does not read
    it: the search before creating must still find it through CNPJ, not duplicate it."""
    w = empty_world
    w.crm.faults.update({"tax_id_in_step": False})
    assert w.sync("customers").status == "ok"  # watermarks set
    w.crm.clock.advance(-86400)
    w.crm.ui_create("Contacts", {"TypeId": 1, "Name": "Padaria Central", "CNPJ": CNPJ_A,
                                 "StatusId": 1})
    w.crm.clock.advance(86400)
    w.erp.ui_create("clientes", dict(CLIENTE))
    report = w.sync("customers")
    assert report.status == "ok", report.as_dict()
    c = report.entities["customers"]
    assert (c.crm.read, c.matched, c.crm.created) == (0, 1, 0)
    assert len(w.crm.db["Contacts"]) == 1
    assert w.sync("customers").writes == 0


def test_verify_finds_contacts_without_cnpj_or_cpf_and_fix_fills_them(world: World) -> None:
    """Contacts an earlier ponte created with the tax id in Register only: `verify` reports each
    as incomplete, `verify --fix` fills CNPJ/CPF, and the next sync has nothing to do."""
    world.crm.faults.update({"tax_id_in_step": False})
    assert world.sync("customers").status == "ok"
    written = [r for r in world.crm.db["Contacts"] if (r.data.get("Key") or "").startswith("omie")]
    assert written
    at = world.crm.clock.now()
    for row in written:  # as the earlier version left them: no UI document
        world.crm.db["Contacts"].update(row.id, {"CNPJ": None, "CPF": None}, at)
    assert len(empty_ui_document(third_party_contacts(world))) == len(written)
    report = world.ponte().verify(["customers"])
    c = report.entities["customers"]
    assert (c.drift, c.mismatched) == (len(written), len(written)), c.as_dict(items=True)
    item = next(i for i in c.items if i.kind == "incomplete")
    assert re.fullmatch(r"crm tax_id \d{11,14} is not in (CNPJ|CPF)", item.detail)
    world.tick()
    fixed = world.ponte().verify(["customers"], fix=True)
    assert fixed.entities["customers"].fixed == len(written)
    assert empty_ui_document(third_party_contacts(world)) == []
    assert world.sync("customers").writes == 0
    no_drift(world)
