"""Native paths against the systems' field schemas: at load time (every path a mapping names)
and at run time (a mapped path that no record of a listing carries)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from etl.connectors.schema import SCHEMAS, schema_for
from etl.errors import ConfigError
from etl.mapping import load_mapping, load_mappings
from etl.mapping.loader import collection_schemas, unchecked_custom_fields
from etl.mapping.models import EntityMapping, SideField
from etl.mapping.paths import check_paths, mapping_refs, resolve, unsent_paths
from tests.shipped import shipped_mappings

MAPPINGS = Path(__file__).resolve().parents[2] / "mappings" / "ploomes_omie"
PLOOMES, OMIE = schema_for("ploomes"), schema_for("omie")
SYSTEMS = {"crm": PLOOMES, "erp": OMIE}
CUSTOM = "contact_5E1A0C7B-3D2F-4A8B-9C61-2F7D0B9E4A13"


def test_shipped_mappings_name_only_declared_fields() -> None:
    maps = load_mappings(MAPPINGS, schemas=SYSTEMS)
    assert list(maps) == ["customers", "products", "orders"]
    # offline, only the account's own field list can confirm the custom fields named by label
    assert unchecked_custom_fields(maps, SYSTEMS) == [
        f"customers: fields.{name}.crm.custom: Ploomes Contacts custom field {label!r}"
        for name, label in (("credit_limit", "Limite de crédito"),
                            ("special_discount", "Desconto especial (%)"),
                            ("sales_12m", "Volume de vendas 12m"),
                            ("last_purchase", "Última compra"))]
    # with the (simulated) account's list, every one resolves to a value property of its type
    resolved = shipped_mappings()["customers"]
    paths = {n: resolved.fields[n].crm.path for n in ("credit_limit", "last_purchase")
             if resolved.fields[n].crm is not None}
    assert paths["credit_limit"].endswith("].DecimalValue")
    assert paths["last_purchase"].endswith("].DateTimeValue")
    # the built-in specs' (connectors built from other specs add theirs when they are built)
    assert {"ploomes", "omie"} <= set(SCHEMAS)


def _edited(tmp_path: Path, file: str, old: str, new: str) -> Path:
    text = (MAPPINGS / file).read_text()
    assert old in text, old
    out = tmp_path / file
    out.write_text(text.replace(old, new, 1))
    return out


@pytest.mark.parametrize(
    ("file", "old", "new", "expected"),
    [
        ("customers.yaml", "path: Email,", "path: Emial,",
         "fields.email.crm.path: unknown Ploomes Contacts field 'Emial'; did you mean 'Email'?"),
        ("customers.yaml", "path: email,", "path: emial,",
         "fields.email.erp.path: unknown Omie clientes field 'emial'; did you mean 'email'?"),
        ("customers.yaml", "City.IBGECode", "City.IBGECod",
         ("fields.city_ibge.crm.path: unknown Ploomes Contacts field 'City.IBGECod'; "
         "did you mean 'City.IBGECode'?")),
        ("customers.yaml", "State.Short", "Sate.Short",
         "fields.state.crm.path: unknown Ploomes Contacts field 'Sate'; did you mean 'State'?"),
        ("customers.yaml", "paths: [telefone1_ddd,", "paths: [telefone1_dd,",
         ("fields.phones.erp.paths[0]: unknown Omie clientes field 'telefone1_dd'; "
         "did you mean 'telefone1_ddd'?")),
        ("customers.yaml", "fallback: Name", "fallback: Nmae",
         ("fields.legal_name.crm.fallback: unknown Ploomes Contacts field 'Nmae'; "
         "did you mean 'Name'?")),
        ("customers.yaml", "natural_key_field: Register", "natural_key_field: Registro",
         ("systems.crm.natural_key_field: unknown Ploomes Contacts field 'Registro'; "
         "did you mean 'Register'?")),
        ("customers.yaml", "external_id_field: codigo_cliente_integracao",
         "external_id_field: codigo_cliente_integracoa",
         "systems.erp.external_id_field: unknown Omie clientes field 'codigo_cliente_integracoa'"),
        ("customers.yaml", "CountryId: 76", "CountyId: 76",
         ("create_defaults.crm.CountyId: unknown Ploomes Contacts field 'CountyId'; "
         "did you mean 'CountryId'?")),
        ("customers.yaml", "item_defaults: {TypeId: 1,", "item_defaults: {TipeId: 1,",
         ("fields.phones.crm.args.item_defaults.TipeId: unknown Ploomes Contacts field 'TipeId' "
         "in each item of 'Phones'; did you mean 'TypeId'?")),
        ("customers.yaml", "path: Phones", "path: Phones.PhoneNumber",
         "fields.phones.crm.path: 'Phones' of Ploomes Contacts is a list; pick an item"),
        ("customers.yaml", "path: Name,", "path: Name.First,",
         "fields.name.crm.path: 'Name' of Ploomes Contacts holds a value, not an object"),
        ("orders.yaml", "path: cabecalho.etapa", "path: cabecalho.etpa",
         ("fields.stage.erp.path: unknown Omie pedidos field 'cabecalho.etpa'; "
         "did you mean 'cabecalho.etapa'?")),
        ("orders.yaml", "quantity: produto.quantidade", "quantity: produto.quantidad",
         ("fields.lines.erp.args.quantity: unknown Omie pedidos field 'produto.quantidad' in each "
         "item of 'det'; did you mean 'produto.quantidade'?")),
        ("orders.yaml", "price: UnitPrice", "price: UnitPrise",
         ("fields.lines.crm.args.price: unknown Ploomes Orders field 'UnitPrise' in each item of "
         "'Products'; did you mean 'UnitPrice'?")),
        ("orders.yaml", "cabecalho.codigo_parcela:", "cabecalho.codigo_parcel:",
         ("create_defaults.erp.cabecalho.codigo_parcel: unknown Omie pedidos field "
         "'cabecalho.codigo_parcel'; did you mean 'cabecalho.codigo_parcela'?")),
        ("products.yaml", "path: Suspended,", "path: Suspend,",
         ("fields.inactive.crm.path: unknown Ploomes Products field 'Suspend'; "
         "did you mean 'Suspended'?")),
        ("products.yaml", "collection: produtos", "collection: produto",
         "systems: Omie has no collection 'produto' (valid: clientes, pedidos, produtos)"),
    ],
)
def test_unknown_native_path_names_file_where_side_path_and_nearest(
        tmp_path: Path, file: str, old: str, new: str, expected: str) -> None:
    path = _edited(tmp_path, file, old, new)
    load_mapping(path)  # structurally fine: only the schemas know the path is wrong
    with pytest.raises(ConfigError) as exc:
        load_mapping(path, schemas=SYSTEMS)
    assert f"{path}: {expected}" in str(exc.value)


def test_every_bad_path_of_a_file_is_reported_at_once(tmp_path: Path) -> None:
    text = (MAPPINGS / "customers.yaml").read_text()
    path = tmp_path / "customers.yaml"
    path.write_text(text.replace("path: Email,", "path: Emial,").replace("bairro", "bairo"))
    with pytest.raises(ConfigError) as exc:
        load_mapping(path, schemas=SYSTEMS)
    lines = str(exc.value).splitlines()
    assert len(lines) == 2 and all(line.startswith(f"{path}: fields.") for line in lines)


def test_a_fallback_list_is_walked_path_by_path() -> None:
    # ``fallback`` may become a list of paths; every one of them is checked
    m = load_mappings(MAPPINGS)["customers"]
    crm = SideField.model_construct(path="LegalName", paths=None, transform="text", args={},
                                    fallback=["Name", "Nmae"], max_length=None, read_only=False)
    spec = m.fields["legal_name"].model_copy(update={"crm": crm})
    edited = m.model_copy(update={"fields": {**m.fields, "legal_name": spec}})
    refs = [r for r in mapping_refs(edited) if r.field == "legal_name" and r.side == "crm"]
    assert [(r.where, r.path) for r in refs] == [
        ("fields.legal_name.crm.path", "LegalName"),
        ("fields.legal_name.crm.fallback[0]", "Name"),
        ("fields.legal_name.crm.fallback[1]", "Nmae"),
    ]
    problems = check_paths(edited, collection_schemas(edited, SYSTEMS)).problems
    assert problems == [("fields.legal_name.crm.fallback[1]: unknown Ploomes Contacts field "
                        "'Nmae'; did you mean 'Name'?")]


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        (f"OtherProperties[FieldKey={CUSTOM}].StringValue", None),
        ("Phones[0].PhoneNumber", None),
        ("Phones[0].PhoneNumbr", "unknown Ploomes Contacts field 'Phones[0].PhoneNumbr'"),
        ("Email[0]", "'Email' of Ploomes Contacts is not a list"),
        (f"OtherProperties[FieldKy={CUSTOM}].StringValue", "did you mean 'FieldKey'?"),
        ("OtherProperties[FieldKey=contact_nope].StringValue",
         "unknown Ploomes Contacts custom field 'contact_nope' (not in its /Fields)"),
        (f"OtherProperties[FieldKey={CUSTOM[:-2]}].StringValue", f"did you mean '{CUSTOM}'?"),
        (f"OtherProperties[FieldKey={CUSTOM}].StringValu", ("did you mean "
         f"'OtherProperties[FieldKey={CUSTOM}].StringValue'?")),
        ("Emai l", "is not a native path"),
    ],
)
def test_custom_fields_and_list_items(path: str, problem: str | None) -> None:
    schema = PLOOMES.collection("Contacts").with_custom({CUSTOM, "contact_other"})
    found = resolve(schema, path)
    if problem is None:
        assert found.problem is None and found.custom_key is None
    else:
        assert found.problem is not None and problem in found.problem


def test_offline_a_custom_field_is_left_for_the_system_to_confirm() -> None:
    found = resolve(PLOOMES.collection("Contacts"), f"OtherProperties[FieldKey={CUSTOM}].BoolValue")
    assert found.problem is None and found.custom_key == CUSTOM


# --- run time ------------------------------------------------------------------------------


def _mapping(crm_path: str, *, erp_path: str = "email", extra: dict[str, Any] | None = None
             ) -> EntityMapping:
    return EntityMapping.model_validate({
        "entity": "customers",
        "systems": {"crm": {"collection": "Contacts"}, "erp": {"collection": "clientes"}},
        "fields": {"email": {"crm": {"path": crm_path}, "erp": {"path": erp_path}},
                   **(extra or {})},
    })


LINES = {"lines": {"crm": {"path": "Products", "transform": "lines",
                           "args": {"product": "ProductId", "quantity": "Quantity",
                                    "price": "UnitPrice", "product_entity": "products"}}}}


@pytest.mark.parametrize(
    ("crm_path", "records", "unsent"),
    [
        ("Email", [{"Id": 1}, {"Id": 2}], ["Email"]),  # no record carries the key
        ("Email", [{"Id": 1}, {"Id": 2, "Email": None}], []),  # one carries it (null)
        ("Email", [{"Id": 1, "Email": ""}], []),  # empty is a value, not an absence
        ("Email", [], []),  # nothing read: nothing to judge
        ("City.IBGECode", [{"City": None}, {"City": None}], []),  # null parent: cannot tell
        ("City.IBGECode", [{"City": {"Id": 1}}, {"City": {"Id": 2}}], ["City.IBGECode"]),
        ("City.IBGECode", [{"Id": 1}], ["City.IBGECode"]),  # City itself never sent
        ("City.IBGECode", [{"City": {"Id": 1}}, {"City": {"IBGECode": 5}}], []),
        ("Phones[0].PhoneNumber", [{"Phones": []}], []),  # no item: cannot tell
        (f"OtherProperties[FieldKey={CUSTOM}].StringValue", [{"OtherProperties": []}], []),
    ],
)
def test_a_path_no_record_carries_is_unsent(crm_path: str, records: list[dict[str, Any]],
                                            unsent: list[str]) -> None:
    m = _mapping(crm_path)
    found = unsent_paths(m, "crm", records, PLOOMES.collection("Contacts"))
    assert [r.path for r in found] == unsent


def test_line_paths_are_judged_over_every_item_of_every_record() -> None:
    m = _mapping("Email", extra=LINES)
    line = {"ProductId": 1, "Quantity": 2, "UnitPrice": 3.0}
    records = [{"Email": "", "Products": [line]}, {"Email": "", "Products": []}]
    assert unsent_paths(m, "crm", records) == []
    no_price = {"ProductId": 1, "Quantity": 2, "Price": 3.0}
    records = [{"Email": "", "Products": [no_price, no_price]}, {"Email": ""}]
    assert [(r.where, r.path) for r in unsent_paths(m, "crm", records)] == [
        ("fields.lines.crm.args.price", "UnitPrice")]
    assert unsent_paths(m, "crm", [{"Email": "", "Products": []}]) == []  # no item at all


def test_only_paths_every_record_carries_are_judged() -> None:
    records = [{"codigo_cliente_omie": 1}, {"codigo_cliente_omie": 2}]
    clientes = OMIE.collection("clientes")
    m = _mapping("Email", erp_path="complemento")  # Omie leaves out a tag never filled
    assert not clientes.always_carries("complemento")
    assert unsent_paths(m, "erp", records, clientes) == []
    m = _mapping("Email", erp_path="razao_social")  # required: every record carries it
    assert [r.path for r in unsent_paths(m, "erp", records, clientes)] == ["razao_social"]
    pedidos = OMIE.collection("pedidos")
    assert pedidos.always_carries("det.produto.quantidade")
    assert not pedidos.always_carries("det.inf_adic.peso_bruto")
    contacts = PLOOMES.collection("Contacts")  # OData sends every property, null when empty
    assert contacts.always_carries("Email") and contacts.always_carries("Phones[0].TypeId")


# --- custom fields through the mapping -----------------------------------------------------


def test_a_custom_field_is_read_and_written_by_its_field_key() -> None:
    from etl.mapping import MapContext, build_payload, read_record

    m = EntityMapping.model_validate({
        "entity": "customers",
        "systems": {"crm": {"collection": "Contacts"}, "erp": {"collection": "clientes"}},
        "fields": {"segment": {
            "crm": {"path": f"OtherProperties[FieldKey={CUSTOM}].StringValue"},
            "erp": {"path": "observacao"}}},
    })
    record = {"OtherProperties": [{"FieldKey": "contact_other", "StringValue": "no"},
                                  {"FieldKey": CUSTOM, "StringValue": " Varejo "}]}
    assert read_record(m, "crm", record, MapContext()) == {"segment": "Varejo"}
    assert read_record(m, "crm", {"OtherProperties": []}, MapContext()) == {"segment": None}
    payload = build_payload(m, "crm", {"segment": "Atacado"}, MapContext(), create=False)
    assert payload == {"OtherProperties": [{"FieldKey": CUSTOM, "StringValue": "Atacado"}]}
