"""Never drop what is not mapped: a CRM contact keeps the phones beyond the ERP's two slots
whichever way its phones flow (both simulators through their HTTP APIs, a real state database).
"""

from __future__ import annotations

import re
from typing import Any

from tests.engine.conftest import World

CNPJ = "11.444.777/0001-61"
CLIENTE = {"razao_social": "Padaria Central Ltda", "nome_fantasia": "Padaria Central",
           "cnpj_cpf": CNPJ, "pessoa_fisica": "N", "inativo": "N",
           "email": "contato@padaria.com.br", "endereco": "Rua A", "endereco_numero": "1",
           "bairro": "Centro", "cidade": "SAO PAULO (SP)", "cidade_ibge": "3550308",
           "estado": "SP", "cep": "01310100", "codigo_pais": "1058",
           "telefone1_ddd": "11", "telefone1_numero": "3456-7890",
           "telefone2_ddd": "11", "telefone2_numero": "98765-4321"}
PHONE_1, PHONE_2 = "(11) 3456-7890", "(11) 98765-4321"
THIRD = {"PhoneNumber": "+55 21 2222-3333", "TypeId": 3, "CountryId": 76}  # a CRM-only phone


def digits(value: str) -> str:
    return re.sub(r"\D", "", value or "")


def phones(w: World, contact_id: int) -> list[dict[str, Any]]:
    """The contact's phones as the CRM's API shows them (with their ids)."""
    crm, _ = w.clients()
    got = crm.get(f"/Contacts({contact_id})?$expand=Phones",
                  headers={"User-Key": w.crm.user_key})
    assert got.status_code == 200, got.text
    return list(got.json()["value"][0]["Phones"])


def national(number: str) -> str:
    """Digits with the area code, the country code 55 dropped."""
    d = digits(number)
    return d[2:] if d.startswith("55") and len(d) in (12, 13) else d


def numbers(w: World, contact_id: int) -> list[str]:
    return [national(p["PhoneNumber"]) for p in phones(w, contact_id)]


def erp_phones(w: World) -> list[str]:
    c = next(iter(w.erp.db["clientes"])).data
    return [digits(c.get(f"telefone{i}_ddd", "") + c.get(f"telefone{i}_numero", ""))
            for i in (1, 2)]


def writes(report: Any, side: str) -> int:
    c = report.entities["customers"].side(side)
    return int(c.created + c.updated)


def linked_with_three_phones(w: World) -> int:
    """An ERP customer with two phones, copied to the CRM, whose user then adds a third phone
    there: that change alone writes nothing to the ERP."""
    w.erp.ui_create("clientes", dict(CLIENTE))
    first = w.sync("customers")
    assert first.status == "ok", first.as_dict()
    assert first.entities["customers"].crm.created == 1
    contact = next(iter(w.crm.db["Contacts"]))
    assert numbers(w, contact.id) == ["1134567890", "11987654321"]
    w.crm.ui_update("Contacts", contact.id, {"Phones": [*phones(w, contact.id), dict(THIRD)]})
    report = w.sync("customers")
    assert report.status == "ok", report.as_dict()
    assert report.writes == 0, report.as_dict(with_changes=True)
    assert len(phones(w, contact.id)) == 3
    return int(contact.id)


def test_an_erp_edit_keeps_the_crm_phones_it_does_not_map(empty_world: World) -> None:
    w = empty_world
    cid = linked_with_three_phones(w)
    before = phones(w, cid)
    cliente = next(iter(w.erp.db["clientes"]))
    w.erp.ui_update("clientes", cliente.id, {"telefone1_ddd": "11",
                                             "telefone1_numero": "3000-1111"})
    report = w.sync("customers")
    assert report.status == "ok", report.as_dict()
    assert (writes(report, "crm"), writes(report, "erp")) == (1, 0)
    after = phones(w, cid)
    assert [national(p["PhoneNumber"]) for p in after] == ["1130001111", "11987654321",
                                                           "2122223333"]
    assert after[0]["TypeId"] == before[0]["TypeId"]  # the item kept its other attributes
    assert after[1:] == before[1:]  # the second (mapped, unchanged) and third kept as they were
    again = w.sync("customers")
    assert again.writes == 0, again.as_dict(with_changes=True)
    assert phones(w, cid) == after


def test_a_change_of_only_the_third_crm_phone_writes_nothing(empty_world: World) -> None:
    w = empty_world
    cid = linked_with_three_phones(w)
    erp_before = dict(next(iter(w.erp.db["clientes"])).data)
    items = phones(w, cid)
    items[2] = {**items[2], "PhoneNumber": "(31) 3333-4444"}
    w.crm.ui_update("Contacts", cid, {"Phones": items})
    report = w.sync("customers")
    assert report.status == "ok", report.as_dict()
    assert report.writes == 0, report.as_dict(with_changes=True)
    assert next(iter(w.erp.db["clientes"])).data == erp_before
    assert numbers(w, cid)[2] == "3133334444"


def test_both_sides_edited_in_one_run_keep_the_third_phone(empty_world: World) -> None:
    """The contact was read this run (its e-mail changed): the phones merge into that copy."""
    w = empty_world
    cid = linked_with_three_phones(w)
    w.crm.ui_update("Contacts", cid, {"Email": "novo@padaria.com.br"})
    cliente = next(iter(w.erp.db["clientes"]))
    w.erp.ui_update("clientes", cliente.id, {"telefone2_ddd": "11",
                                             "telefone2_numero": "97777-0000"})
    report = w.sync("customers")
    assert report.status == "ok", report.as_dict()
    assert numbers(w, cid) == ["1134567890", "11977770000", "2122223333"]
    assert next(iter(w.erp.db["clientes"])).data["email"] == "novo@padaria.com.br"
    assert w.sync("customers").writes == 0


def test_a_number_cleared_in_the_erp_lets_the_third_move_up_and_nothing_is_lost(
        empty_world: World) -> None:
    """The ERP clears telefone2: that CRM phone goes (the mapping owns it); the CRM's third
    phone moves up into the second place and is copied to telefone2. Ploomes' listing leaves
    out ponte's own last changes, so the contact ponte just wrote is read again by key in the
    same run (the moved-up phone is not what ponte wrote): one run, not two."""
    w = empty_world
    cid = linked_with_three_phones(w)
    cliente = next(iter(w.erp.db["clientes"]))
    w.erp.ui_update("clientes", cliente.id, {"telefone2_ddd": "", "telefone2_numero": ""})
    report = w.sync("customers")
    assert numbers(w, cid) == ["1134567890", "2122223333"]
    assert (writes(report, "crm"), writes(report, "erp")) == (1, 1)
    assert erp_phones(w) == ["1134567890", "2122223333"]
    final = w.sync("customers")
    assert final.writes == 0, final.as_dict(with_changes=True)
    assert numbers(w, cid) == ["1134567890", "2122223333"]


def test_existing_records_matched_by_tax_id_lose_nothing_either_way(empty_world: World) -> None:
    """An ERP customer with two phones and its CRM contact with three, matched on the first
    run (the ERP wins on match): the CRM keeps its third phone; a later CRM edit of its second
    phone reaches the ERP and the CRM still has three."""
    w = empty_world
    w.erp.ui_create("clientes", {**CLIENTE, "telefone1_numero": "3456-0000"})
    contact = w.crm.ui_create("Contacts", {
        "TypeId": 1, "Name": "Padaria Central", "LegalName": "Padaria Central Ltda",
        "Register": digits(CNPJ), "CNPJ": digits(CNPJ), "Email": "contato@padaria.com.br",
        "Phones": [{"PhoneNumber": PHONE_1, "TypeId": 1, "CountryId": 76},
                   {"PhoneNumber": PHONE_2, "TypeId": 2, "CountryId": 76}, dict(THIRD)],
        "StatusId": 1})
    report = w.sync("customers")
    assert report.status == "ok", report.as_dict()
    assert report.entities["customers"].matched == 1
    assert numbers(w, contact.id) == ["1134560000", "11987654321", "2122223333"]
    items = phones(w, contact.id)
    assert {k: items[2][k] for k in THIRD} == THIRD
    items[1] = {**items[1], "PhoneNumber": "(11) 96666-5555"}
    w.crm.ui_update("Contacts", contact.id, {"Phones": items})
    report = w.sync("customers")
    assert (writes(report, "crm"), writes(report, "erp")) == (0, 1)
    assert erp_phones(w) == ["1134560000", "11966665555"]
    assert numbers(w, contact.id) == ["1134560000", "11966665555", "2122223333"]
    assert w.sync("customers").writes == 0


def test_first_match_with_fewer_erp_phones_moves_the_crm_one_up_in_the_same_run(
        empty_world: World) -> None:
    """The ERP has one phone, the CRM three: the ERP wins the first two places on match, the
    CRM's second goes (the mapping owns it), its third moves up and reaches telefone2 in the
    same run; nothing else is written afterwards."""
    w = empty_world
    w.erp.ui_create("clientes", {**CLIENTE, "telefone2_ddd": "", "telefone2_numero": ""})
    contact = w.crm.ui_create("Contacts", {
        "TypeId": 1, "Name": "Padaria Central", "LegalName": "Padaria Central Ltda",
        "Register": digits(CNPJ), "CNPJ": digits(CNPJ), "Email": "contato@padaria.com.br",
        "Phones": [{"PhoneNumber": PHONE_1, "TypeId": 1, "CountryId": 76},
                   {"PhoneNumber": PHONE_2, "TypeId": 2, "CountryId": 76}, dict(THIRD)],
        "StatusId": 1})
    report = w.sync("customers")
    assert report.status == "ok", report.as_dict()
    assert (writes(report, "crm"), writes(report, "erp")) == (1, 1)
    assert numbers(w, contact.id) == ["1134567890", "2122223333"]
    assert erp_phones(w) == ["1134567890", "2122223333"]
    assert w.sync("customers").writes == 0
