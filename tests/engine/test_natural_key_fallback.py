"""End-to-end through the simulators: a mapping's ``natural_key_fallback`` matches, on a first
sync, a record whose natural key (the tax id) is empty with the other side's record of the same
canonical fallback value (here the legal name), instead of creating a duplicate; it never pairs
such a record with one that has a tax id, and a name that two records hold pairs nothing and
says why."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from etl.errors import ConfigError
from etl.mapping import load_mappings
from etl.state import Store
from tests.engine.conftest import MAPPINGS, World

EDITS = [
    # a customer without a tax id is no longer refused by the mapping
    ("    required: true\n    # Ploomes carries", "    # Ploomes carries"),
    ("    natural_key_field: Register ",
     "    natural_key_fallback_field: LegalName\n    natural_key_field: Register "),
    ("    natural_key_field: cnpj_cpf\n",
     "    natural_key_field: cnpj_cpf\n    natural_key_fallback_field: razao_social\n"),
    ("natural_key: tax_id ", "natural_key_fallback: legal_name\nnatural_key: tax_id "),
]
NO_TAX_ID = {"razao_social": "Casa Sem Documento Ltda", "nome_fantasia": "Casa Sem Documento",
             "cnpj_cpf": "", "pessoa_fisica": "N", "inativo": "N", "codigo_pais": "1058",
             "cidade": "SAO PAULO (SP)", "estado": "SP"}
WITH_TAX_ID = {**NO_TAX_ID, "razao_social": "Outra Casa Ltda", "nome_fantasia": "Outra Casa",
               "cnpj_cpf": "11.444.777/0001-61"}


def with_fallback(tmp_path: Path, edits: list[tuple[str, str]] = EDITS) -> Path:
    folder = tmp_path / "mappings"
    shutil.copytree(MAPPINGS, folder)
    text = (folder / "customers.yaml").read_text()
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new, 1)
    (folder / "customers.yaml").write_text(text)
    return folder


def contact(w: World, legal_name: str) -> int:
    row = w.crm.ui_create("Contacts", {"TypeId": 1, "Name": legal_name.removesuffix(" Ltda"),
                                       "LegalName": legal_name, "StatusId": 1})
    return int(row.id)


def test_a_record_without_tax_id_is_matched_by_name_not_duplicated(
        empty_world: World, tmp_path: Path) -> None:
    w = empty_world
    w.settings.mappings_dir = with_fallback(tmp_path)
    cliente = w.erp.ui_create("clientes", dict(NO_TAX_ID))
    taxed = w.erp.ui_create("clientes", dict(WITH_TAX_ID))
    crm_id = contact(w, "Casa Sem Documento Ltda")
    # same name as the cliente that has a tax id, but none itself: never paired with it
    other_id = contact(w, "Outra Casa Ltda")
    report = w.sync("customers")
    c = report.entities["customers"]
    assert c.matched == 1, report.as_dict()
    links = dict(Store.open(w.settings.state_url).links(
        "customers", crm_keys=[str(crm_id), str(other_id)]))
    assert links[str(crm_id)] == str(cliente.id)
    assert links.get(str(other_id)) != str(taxed.id)
    assert [r.id for r in w.erp.db["clientes"]
            if r.data["razao_social"] == "Casa Sem Documento Ltda"] == [cliente.id]
    assert [r.id for r in w.crm.db["Contacts"]
            if r.data.get("LegalName") == "Casa Sem Documento Ltda"] == [crm_id]
    # linked: an ERP edit reaches that contact, and nothing else moves
    w.erp.ui_update("clientes", cliente.id, {"email": "casa@exemplo.com.br"})
    again = w.sync("customers")
    assert again.entities["customers"].crm.updated == 1, again.as_dict()
    assert w.crm.db["Contacts"].get(crm_id).data["Email"] == "casa@exemplo.com.br"


def test_an_ambiguous_name_pairs_nothing_and_says_why(empty_world: World, tmp_path: Path
                                                       ) -> None:
    w = empty_world
    w.settings.mappings_dir = with_fallback(tmp_path)
    w.erp.ui_create("clientes", dict(NO_TAX_ID))
    w.erp.ui_create("clientes", {**NO_TAX_ID, "nome_fantasia": "Casa 2"})
    crm_id = contact(w, "Casa Sem Documento Ltda")
    report = w.sync("customers")
    c = report.entities["customers"]
    assert c.matched == 0, report.as_dict()
    assert (c.crm.created, c.erp.created) == (0, 0), report.as_dict()
    held = {(q.system, q.key): q for q in Store.open(w.settings.state_url).quarantine("customers")}
    assert ("crm", str(crm_id)) in held, held
    assert "ambiguous" in held[("crm", str(crm_id))].reason
    assert "Casa Sem Documento Ltda" in held[("crm", str(crm_id))].reason
    assert held[("crm", str(crm_id))].field == "legal_name"
    assert len(held) == 3  # the two clientes too: none of them is created across
    assert len(w.crm.db["Contacts"]) == 1 and len(w.erp.db["clientes"]) == 2


@pytest.mark.parametrize(("edit", "says"), [
    (("    natural_key_fallback_field: razao_social\n", ""),
     "systems.erp.natural_key_fallback_field"),
    (("natural_key_fallback: legal_name", "natural_key_fallback: nope"), "'nope' is not a mapped"),
])
def test_a_fallback_key_is_checked_at_load(tmp_path: Path, edit: tuple[str, str], says: str
                                           ) -> None:
    folder = with_fallback(tmp_path)
    text = (folder / "customers.yaml").read_text()
    (folder / "customers.yaml").write_text(text.replace(*edit, 1))
    with pytest.raises(ConfigError, match=says):
        load_mappings(folder)


def test_the_search_finds_a_partner_outside_the_window_by_name(empty_world: World,
                                                                tmp_path: Path) -> None:
    """The contact was last changed before the watermark, so this run does not read it: the
    search by legal name before creating finds it instead of copying the cliente across."""
    w = empty_world
    w.settings.mappings_dir = with_fallback(tmp_path)
    assert w.sync("customers").status == "ok"  # watermarks set
    w.crm.clock.advance(-86400)
    crm_id = contact(w, "Casa Sem Documento Ltda")
    w.crm.clock.advance(86400)
    cliente = w.erp.ui_create("clientes", dict(NO_TAX_ID))
    report = w.sync("customers")
    c = report.entities["customers"]
    assert (c.crm.read, c.matched, c.crm.created) == (0, 1, 0), report.as_dict()
    links = dict(Store.open(w.settings.state_url).links("customers", crm_keys=[str(crm_id)]))
    assert links == {str(crm_id): str(cliente.id)}
    assert len(w.crm.db["Contacts"]) == 1
