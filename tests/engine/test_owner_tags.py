"""Owner <-> seller (vendedor) by e-mail and tags <-> marcadores by name, end to end through
both simulators' HTTP APIs and a real state database."""

from __future__ import annotations

import re
from datetime import timedelta

from etl.state import Store
from tests.engine.conftest import World


def digits(value: str) -> str:
    return re.sub(r"\D", "", value or "")


def user_id(w: World, email: str) -> int:
    return next(r.id for r in w.crm.db["Users"] if r.data["Email"].lower() == email.lower())


def seller_id(w: World, email: str) -> int:
    return next(r.id for r in w.erp.db["vendedores"] if r.data["email"].lower() == email.lower())


def tag_names(w: World, contact: dict) -> list[str]:
    names = {t.id: t.data["Name"] for t in w.crm.db["Tags"]}
    return sorted(names[t["TagId"]] for t in contact.get("Tags") or [])


def new_contact(w: World, **fields: object) -> int:
    data = {"TypeId": 1, "Name": "Padaria Pilot", "LegalName": "Padaria Pilot Ltda",
            "Register": "11222333000181", "StreetAddressNumber": "10", **fields}
    return w.crm.ui_create("Contacts", data).id


def erp_by_tax(w: World, tax: str) -> dict:
    return next(r.data for r in w.erp.db["clientes"] if digits(r.data["cnpj_cpf"]) == tax)


def crm_by_tax(w: World, tax: str) -> dict:
    return next(r.data for r in w.crm.db["Contacts"] if r.data.get("Register") == tax)


def test_owner_becomes_the_seller_with_the_same_email(empty_world: World) -> None:
    w = empty_world
    ana = user_id(w, "ana.souza@example.com.br")
    new_contact(w, OwnerId=ana)
    report = w.sync("customers")
    assert report.status == "ok", report.as_dict()
    cliente = erp_by_tax(w, "11222333000181")
    # the Omie seller's e-mail is typed in capitals: matched without case
    assert cliente["recomendacoes"]["codigo_vendedor"] == seller_id(w, "ana.souza@example.com.br")
    # each list read once in the run, however many records point into it
    assert [c for (e, _), c in w.erp.requests.counts.items() if "ListarVendedores" in e] == [1]
    assert w.sync("customers").writes == 0


def test_seller_changed_in_the_erp_moves_the_owner_in_the_crm(empty_world: World) -> None:
    w = empty_world
    contact = new_contact(w, OwnerId=user_id(w, "ana.souza@example.com.br"))
    assert w.sync("customers").status == "ok"
    row = next(r for r in w.erp.db["clientes"] if digits(r.data["cnpj_cpf"]) == "11222333000181")
    w.erp.ui_update("clientes", row.id, {"recomendacoes": {
        "codigo_vendedor": seller_id(w, "integracao@example.com.br")}})
    report = w.sync("customers")
    assert report.entities["customers"].crm.updated == 1, report.as_dict(with_changes=True)
    assert w.crm.db["Contacts"].get(contact).data["OwnerId"] == \
        user_id(w, "integracao@example.com.br")
    assert w.sync("customers").writes == 0


def test_owner_without_a_seller_is_quarantined_naming_the_email_and_the_side(
        empty_world: World) -> None:
    w = empty_world
    bia = w.crm.ui_create("Users", {"Name": "Bia Lima", "Email": "bia.lima@example.com.br"}).id
    new_contact(w, OwnerId=bia)
    new_contact(w, Register="11444777000161", Name="Outra", LegalName="Outra SA",
                OwnerId=user_id(w, "ana.souza@example.com.br"))
    report = w.sync("customers")
    assert report.status == "partial"
    assert report.entities["customers"].erp.created == 1  # the other record flows
    with Store.open(w.settings.state_url) as store:
        rows = store.quarantine("customers")
    assert len(rows) == 1
    reason = rows[0].reason
    assert "bia.lima@example.com.br" in reason and "Omie seller (vendedor)" in reason, reason
    assert rows[0].field == "owner"
    # the seller is created in Omie: the retry goes through
    w.erp.ui_create("vendedores", {"nome": "Bia Lima", "email": "bia.lima@example.com.br"})
    with Store.open(w.settings.state_url) as store:
        store.quarantine_make_due(None, w.now())  # `ponte quarantine retry`
    again = w.sync("customers")
    assert again.entities["customers"].erp.created == 1, again.as_dict()
    assert erp_by_tax(w, "11222333000181")["recomendacoes"]["codigo_vendedor"] == \
        seller_id(w, "bia.lima@example.com.br")


def test_seller_without_a_crm_user_is_quarantined(empty_world: World) -> None:
    w = empty_world
    caio = w.erp.ui_create("vendedores", {"nome": "Caio", "email": "caio@example.com.br"}).id
    w.erp.ui_create("clientes", {"razao_social": "Loja do Caio Ltda", "cnpj_cpf": "11.222.333/0001-81",
                                 "recomendacoes": {"codigo_vendedor": caio}})
    report = w.sync("customers")
    assert report.status == "partial"
    problem = report.entities["customers"].problems[0]
    assert "caio@example.com.br" in problem.reason and "Ploomes user" in problem.reason
    assert not list(w.crm.db["Contacts"])


def test_tags_flow_by_name_and_a_missing_tag_is_created_in_ploomes(empty_world: World) -> None:
    w = empty_world
    vip = w.crm.ui_create("Tags", {"Name": "VIP", "EntityId": 1}).id
    contact = new_contact(w, Tags=[{"TagId": vip}])
    assert w.sync("customers").status == "ok"
    cliente = erp_by_tax(w, "11222333000181")
    assert cliente["tags"] == [{"tag": "VIP"}]
    row = next(r for r in w.erp.db["clientes"] if digits(r.data["cnpj_cpf"]) == "11222333000181")
    w.erp.ui_update("clientes", row.id, {"tags": [{"tag": "VIP"}, {"tag": "Atacado"}]})
    report = w.sync("customers")
    assert report.entities["customers"].crm.updated == 1, report.as_dict(with_changes=True)
    assert tag_names(w, w.crm.db["Contacts"].get(contact).data) == ["Atacado", "VIP"]
    assert sorted(t.data["Name"] for t in w.crm.db["Tags"]) == ["Atacado", "VIP"]
    assert ("POST /Tags", 200) in w.crm.requests.counts
    assert w.sync("customers").writes == 0


def test_a_plan_creates_no_tag(empty_world: World) -> None:
    w = empty_world
    w.erp.ui_create("clientes", {"razao_social": "Loja Nova Ltda", "cnpj_cpf": "11.222.333/0001-81",
                                 "tags": [{"tag": "Novo"}]})
    report = w.sync("customers", dry_run=True)
    assert report.entities["customers"].crm.created == 1
    assert not list(w.crm.db["Tags"]) and not list(w.crm.db["Contacts"])


def vendedores_reads(w: World) -> int:
    return sum(c for (e, _), c in w.erp.requests.counts.items() if "ListarVendedores" in e)


def test_a_command_right_after_another_takes_the_seller_list_from_the_state(
        empty_world: World) -> None:
    """Omie refuses an identical listing repeated within 60 s: a verify (or a sync) started
    within that minute takes the seller list the previous command read, kept in the state,
    instead of waiting for it; a minute later the list is read again."""
    w = empty_world
    new_contact(w, OwnerId=user_id(w, "ana.souza@example.com.br"))
    assert w.sync("customers").status == "ok"
    assert vendedores_reads(w) == 1
    w.tick(30)
    assert w.ponte().verify(["customers"]).drift == 0
    assert vendedores_reads(w) == 1  # the sync's copy
    with Store.open(w.settings.state_url) as store:
        kept = store.kept_reference("erp", "sellers", since=w.now() - timedelta(seconds=60))
    assert kept is not None and "ana.souza@example.com.br" in {v.lower() for v in kept[0].values()}
    w.tick(31)  # 61 s after the sync's read
    assert w.ponte().verify(["customers"]).drift == 0
    assert vendedores_reads(w) == 2


def test_a_seller_the_kept_list_lacks_makes_it_be_read_anew(empty_world: World) -> None:
    """A seller added in Omie right after a command read the list: the next command's copy
    from the state lacks it, so the list is read again (once) before the record is mapped."""
    w = empty_world
    new_contact(w, OwnerId=user_id(w, "ana.souza@example.com.br"))
    assert w.sync("customers").status == "ok"
    w.tick(5)
    w.erp.ui_create("vendedores", {"nome": "Bia Lima", "email": "bia.lima@example.com.br"})
    bia = w.crm.ui_create("Users", {"Name": "Bia Lima", "Email": "bia.lima@example.com.br"}).id
    new_contact(w, Register="11444777000161", Name="Outra", LegalName="Outra SA", OwnerId=bia)
    w.tick(5)
    report = w.sync("customers")
    assert report.status == "ok", report.as_dict()
    assert erp_by_tax(w, "11444777000161")["recomendacoes"]["codigo_vendedor"] == \
        seller_id(w, "bia.lima@example.com.br")
    assert vendedores_reads(w) == 2


def test_a_seller_without_a_user_in_the_runs_own_list_does_not_read_it_again(
        empty_world: World) -> None:
    """A list this run read itself is not read again for a value it lacks (written to the
    other side): the value most likely has no item, and the record is quarantined at once."""
    w = empty_world
    caio = w.erp.ui_create("vendedores", {"nome": "Caio", "email": "caio@example.com.br"}).id
    w.erp.ui_create("clientes", {"razao_social": "Loja do Caio Ltda",
                                 "cnpj_cpf": "11.222.333/0001-81",
                                 "recomendacoes": {"codigo_vendedor": caio}})
    report = w.sync("customers")
    assert report.entities["customers"].erp.quarantined == 1, report.as_dict()
    # one listing of the users: a page, and the empty page after it that ends a keyset listing
    assert sum(c for (e, _), c in w.crm.requests.counts.items() if e == "GET /Users") == 2
