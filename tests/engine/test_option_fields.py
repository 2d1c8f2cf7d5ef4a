"""Option fields named by the option's name, through both simulators: a Ploomes option field
("Porte", options Pequeno/Médio/Grande) mapped to an Omie characteristic holding the name.
ponte writes the option's id, reads the id back as the name, and quarantines a name with no
option, naming the field and the nearest options."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from etl.errors import ConfigError
from etl.mapping import load_mappings
from etl.sandbox.ploomes.custom import FIELDS as FIELDS_SEEDED
from etl.sandbox.ploomes.custom import OPTIONS
from tests.engine.conftest import MAPPINGS, World, make_world
from tests.engine.test_computed_e2e import contact_of

PORTE = next(f["Key"] for f in FIELDS_SEEDED if f["Name"] == "Porte")
OPTION = {o["Name"]: o["Id"] for o in OPTIONS}


def mappings_with_size(tmp_path: Path, owner: str) -> Path:
    folder = tmp_path / "mappings"
    shutil.copytree(MAPPINGS, folder)
    file = folder / "customers.yaml"
    data = yaml.safe_load(file.read_text())
    data["fields"]["size"] = {
        "owner": owner,
        "crm": {"custom": "Porte", "transform": "option"},
        "erp": {"path": "caracteristicas[campo=PORTE].conteudo", "transform": "text"}}
    file.write_text(yaml.safe_dump(data, allow_unicode=True))
    return folder


def world_with_size(tmp_path: Path, owner: str) -> World:
    world = make_world(f"sqlite:///{tmp_path / 'state.db'}", customers=6, overlap=1.0)
    world.settings.mappings_dir = mappings_with_size(tmp_path, owner)
    first = world.sync("customers")
    assert first.status == "ok", first.as_dict()
    return world


def option_id(w: World, contact: int) -> Any:
    for item in w.crm.db["Contacts"].get(contact).data.get("OtherProperties") or []:
        if item.get("FieldKey") == PORTE:
            return item.get("ObjectValueId")
    return None


def characteristic(w: World, cliente: int) -> Any:
    for item in w.erp.db["clientes"].get(cliente).data.get("caracteristicas") or []:
        if item.get("campo") == "PORTE":
            return item.get("conteudo")
    return None


def fields_requests(w: World) -> dict[str, int]:
    return {e: n for (e, _s), n in w.crm.requests.counts.items() if e.startswith("GET /Fields")}


def test_a_name_written_into_an_option_field_is_sent_as_its_id(tmp_path: Path) -> None:
    w = world_with_size(tmp_path, "erp")
    cliente = next(iter(w.erp.db["clientes"])).id
    contact = contact_of(w, cliente)
    w.erp.ui_update("clientes", cliente, {"caracteristicas": [
        {"campo": "PORTE", "conteudo": "médio"}]})
    before = fields_requests(w)
    report = w.sync("customers")
    assert report.status == "ok", report.as_dict()
    assert option_id(w, contact) == OPTION["Médio"]
    # the options are listed once per run, with the custom fields (one listing each: a
    # page, and the empty one that ends the listing)
    after = fields_requests(w)
    options = "GET /Fields@OptionsTables@Options"
    assert after[options] - before[options] == after["GET /Fields"] - before["GET /Fields"] == 2
    assert w.sync("customers").writes == 0


def test_a_name_with_no_option_is_quarantined_naming_the_field_and_the_nearest(
        tmp_path: Path) -> None:
    w = world_with_size(tmp_path, "erp")
    cliente = next(iter(w.erp.db["clientes"])).id
    contact = contact_of(w, cliente)
    w.erp.ui_update("clientes", cliente, {"caracteristicas": [
        {"campo": "PORTE", "conteudo": "Grandee"}]})
    report = w.sync("customers")
    problems = [p for p in report.entities["customers"].problems if p.key == str(cliente)]
    assert problems, report.as_dict()
    reason = problems[0].reason
    assert "'Porte'" in reason and "'Grandee'" in reason and "nearest: 'Grande'" in reason
    assert option_id(w, contact) is None
    with w.store() as store:
        assert store.quarantined_keys("customers", "erp") == {str(cliente)}
    # fixed in the ERP: the next sync writes the option and clears the entry
    w.erp.ui_update("clientes", cliente, {"caracteristicas": [
        {"campo": "PORTE", "conteudo": "Grande"}]})
    w.tick(3600)
    w.sync("customers")
    assert option_id(w, contact) == OPTION["Grande"]
    with w.store() as store:
        assert store.quarantined_keys("customers", "erp") == set()


def test_an_option_chosen_in_the_crm_reaches_the_erp_by_its_name(tmp_path: Path) -> None:
    w = world_with_size(tmp_path, "crm")
    cliente = next(iter(w.erp.db["clientes"])).id
    contact = contact_of(w, cliente)
    w.crm.ui_update("Contacts", contact, {"OtherProperties": [
        {"FieldKey": PORTE, "ObjectValueId": OPTION["Pequeno"]}]})
    report = w.sync("customers")
    assert report.status == "ok", report.as_dict()
    assert characteristic(w, cliente) == "Pequeno"
    assert w.sync("customers").writes == 0


def test_option_on_a_plain_path_or_a_field_that_has_no_options_stops_before_any_write(
        tmp_path: Path) -> None:
    folder = mappings_with_size(tmp_path, "erp")
    file = folder / "customers.yaml"
    data = yaml.safe_load(file.read_text())
    data["fields"]["size"]["crm"] = {"path": f"OtherProperties[FieldKey={PORTE}].ObjectValueId",
                                     "transform": "option"}
    file.write_text(yaml.safe_dump(data, allow_unicode=True))
    with pytest.raises(ConfigError, match=r"fields\.size\.crm\.transform: 'option' reads"):
        load_mappings(folder)
    data["fields"]["size"]["crm"] = {"custom": "Segmento", "transform": "option"}
    file.write_text(yaml.safe_dump(data, allow_unicode=True))
    w = make_world(f"sqlite:///{tmp_path / 'state.db'}", customers=2, overlap=1.0)
    w.settings.mappings_dir = folder
    with pytest.raises(ConfigError, match="'Segmento'.* not an option field"):
        w.sync("customers")
    assert w.write_requests() == 0
