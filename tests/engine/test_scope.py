"""The pilot scope: records outside it are neither planned nor written; widening it later
brings the newly included records in on the next run (matched, not duplicated), although the
watermarks had moved past them. Through both simulators and a real state database."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from etl.errors import ConfigError
from etl.mapping import load_mappings
from tests.engine.conftest import MAPPINGS, World, make_world

ANA, INTEG = "ana.souza@example.com.br", "integracao@example.com.br"


def digits(value: str) -> str:
    return re.sub(r"\D", "", value or "")


def scoped(tmp_path: Path, scope: dict | None) -> Path:
    folder = tmp_path / "mappings"
    if not folder.exists():
        shutil.copytree(MAPPINGS, folder)
    file = folder / "customers.yaml"
    data = yaml.safe_load(file.read_text())
    data.pop("scope", None)
    if scope is not None:
        data["scope"] = scope
    file.write_text(yaml.safe_dump(data, allow_unicode=True))
    return folder


def user(w: World, email: str) -> int:
    return next(r.id for r in w.crm.db["Users"] if r.data["Email"].lower() == email)


def seller(w: World, email: str) -> int:
    return next(r.id for r in w.erp.db["vendedores"] if r.data["email"].lower() == email)


def crm_taxes(w: World) -> list[str]:
    return [r.data.get("Register", "") for r in w.crm.db["Contacts"]]


def erp_taxes(w: World) -> list[str]:
    return [digits(r.data.get("cnpj_cpf", "")) for r in w.erp.db["clientes"]]


def pilot_world(tmp_path: Path) -> World:
    """Ana's and the integration user's customers on both sides; one of each is on both."""
    w = make_world(f"sqlite:///{tmp_path / 'state.db'}")
    contact = {"TypeId": 1, "StreetAddressNumber": "1"}
    w.crm.ui_create("Contacts", {**contact, "Name": "Ana 1", "LegalName": "Ana Um Ltda",
                                 "Register": "11222333000181", "OwnerId": user(w, ANA)})
    w.crm.ui_create("Contacts", {**contact, "Name": "Integ 1", "LegalName": "Integ Um Ltda",
                                 "Register": "11444777000161", "OwnerId": user(w, INTEG)})
    w.crm.ui_create("Contacts", {**contact, "Name": "Integ 2", "LegalName": "Integ Dois Ltda",
                                 "Register": "34028316000103", "OwnerId": user(w, INTEG)})
    w.erp.ui_create("clientes", {"razao_social": "Ana Dois Ltda", "cnpj_cpf": "06.990.590/0001-23",
                                 "recomendacoes": {"codigo_vendedor": seller(w, ANA)}})
    # the integration user's customer Integ 2 is already in the ERP: matched once in scope
    w.erp.ui_create("clientes", {"razao_social": "Integ Dois Ltda",
                                 "cnpj_cpf": "34.028.316/0001-03",
                                 "recomendacoes": {"codigo_vendedor": seller(w, INTEG)}})
    w.erp.ui_create("clientes", {"razao_social": "Integ Tres Ltda",
                                 "cnpj_cpf": "45.997.418/0001-53",
                                 "recomendacoes": {"codigo_vendedor": seller(w, INTEG)}})
    return w


def settle(w: World) -> None:
    """Sync, then sync again an hour later: the watermarks are then far past every record
    (beyond the lookback), so the records left out are not read again by themselves."""
    assert w.sync("customers").status == "ok"
    w.tick(3600)
    assert w.sync("customers").writes == 0


def test_records_outside_the_scope_are_neither_planned_nor_written(tmp_path: Path) -> None:
    w = pilot_world(tmp_path)
    w.settings.mappings_dir = scoped(tmp_path, {"field": "owner", "values": [ANA.upper()]})
    plan = w.sync("customers", dry_run=True)
    assert {c.source_key for c in plan.entities["customers"].changes} == \
        {str(next(r.id for r in w.crm.db["Contacts"] if r.data["Name"] == "Ana 1")),
         str(next(r.id for r in w.erp.db["clientes"] if r.data["razao_social"] == "Ana Dois Ltda"))}
    report = w.sync("customers")
    c = report.entities["customers"]
    assert report.status == "ok", report.as_dict()
    assert (c.erp.created, c.crm.created, c.matched) == (1, 1, 0)
    assert (c.crm.out_of_scope, c.erp.out_of_scope) == (2, 2)
    assert sorted(crm_taxes(w)) == ["06990590000123", "11222333000181", "11444777000161",
                                    "34028316000103"]
    assert sorted(erp_taxes(w)) == ["06990590000123", "11222333000181", "34028316000103",
                                    "45997418000153"]
    assert w.sync("customers").writes == 0
    status = w.ponte().status()
    entity = next(e for e in status.entities if e.entity == "customers")
    assert entity.scope == f"owner in {ANA.upper()}" and not entity.scope_widened


def test_widening_the_scope_brings_the_new_records_in_once(tmp_path: Path) -> None:
    w = pilot_world(tmp_path)
    w.settings.mappings_dir = scoped(tmp_path, {"field": "owner", "values": [ANA]})
    settle(w)
    assert w.sync("customers").entities["customers"].crm.read == 0  # not re-read by itself
    w.settings.mappings_dir = scoped(tmp_path, {"field": "owner", "values": [ANA, INTEG]})
    entity = next(e for e in w.ponte().status().entities if e.entity == "customers")
    assert entity.scope_widened
    report = w.sync("customers")
    c = report.entities["customers"]
    assert report.status == "ok", report.as_dict()
    assert c.rescanned
    # Integ 1 -> ERP, Integ 3 -> CRM, Integ 2 matched on both sides by its tax id
    assert (c.erp.created, c.crm.created, c.matched) == (1, 1, 1), report.as_dict()
    assert len(crm_taxes(w)) == len(set(crm_taxes(w))) == 5
    assert len(erp_taxes(w)) == len(set(erp_taxes(w))) == 5
    assert set(crm_taxes(w)) == set(erp_taxes(w))
    after = w.sync("customers")
    assert after.writes == 0 and not after.entities["customers"].rescanned
    assert not next(e for e in w.ponte().status().entities if e.entity == "customers"
                    ).scope_widened


def test_an_owner_moved_out_of_the_pilot_is_moved_on_the_other_side_once(
        tmp_path: Path) -> None:
    w = pilot_world(tmp_path)
    w.settings.mappings_dir = scoped(tmp_path, {"field": "owner", "values": [ANA]})
    settle(w)
    contact = next(r for r in w.crm.db["Contacts"] if r.data["Name"] == "Ana 1")
    w.crm.ui_update("Contacts", contact.id, {"OwnerId": user(w, INTEG)})
    report = w.sync("customers")
    assert report.entities["customers"].erp.updated == 1, report.as_dict(with_changes=True)
    cliente = next(r.data for r in w.erp.db["clientes"]
                   if digits(r.data["cnpj_cpf"]) == "11222333000181")
    assert cliente["recomendacoes"]["codigo_vendedor"] == seller(w, INTEG)
    # now outside on both sides: a later change is left alone
    w.crm.ui_update("Contacts", contact.id, {"Name": "Ana 1 renamed"})
    later = w.sync("customers")
    assert later.writes == 0 and later.entities["customers"].crm.out_of_scope == 1


def test_removing_the_scope_also_brings_everything_in(tmp_path: Path) -> None:
    w = pilot_world(tmp_path)
    w.settings.mappings_dir = scoped(tmp_path, {"field": "owner", "values": [ANA]})
    settle(w)
    w.settings.mappings_dir = scoped(tmp_path, None)
    report = w.sync("customers")
    assert report.entities["customers"].rescanned
    assert set(crm_taxes(w)) == set(erp_taxes(w)) and len(set(crm_taxes(w))) == 5


def test_narrowing_the_scope_reads_nothing_again(tmp_path: Path) -> None:
    w = pilot_world(tmp_path)
    w.settings.mappings_dir = scoped(tmp_path, {"field": "owner", "values": [ANA, INTEG]})
    settle(w)
    w.settings.mappings_dir = scoped(tmp_path, {"field": "owner", "values": [ANA]})
    report = w.sync("customers")
    assert not report.entities["customers"].rescanned
    assert report.entities["customers"].crm.read == 0


def test_scope_field_must_be_mapped_on_both_sides(tmp_path: Path) -> None:
    folder = scoped(tmp_path, {"field": "ownr", "values": [ANA]})
    with pytest.raises(ConfigError, match=r"scope\.field: 'ownr' is not a field mapped on both"):
        load_mappings(folder)
