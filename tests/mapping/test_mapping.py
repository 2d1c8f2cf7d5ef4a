from __future__ import annotations

import re
from pathlib import Path

import pytest

from etl.errors import ConfigError, RecordError
from etl.mapping import MapContext, build_payload, load_mapping, load_mappings, read_record

MAPPINGS = Path(__file__).resolve().parents[2] / "mappings" / "ploomes_omie"


@pytest.fixture(scope="module")
def maps():
    return load_mappings(MAPPINGS)


def test_shipped_mappings_load_in_dependency_order(maps) -> None:
    assert list(maps) == ["customers", "products", "orders"]
    assert maps["customers"].sources() == ["crm", "erp"]
    assert maps["products"].sources() == ["erp"]
    assert maps["orders"].sources() == ["crm", "erp"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("entity: x\nsystems: {}\nfields: {a: {crm: {path: A, transform: nope}}}\n",
         "fields.a.crm.transform: unknown transform 'nope' (valid: "),
        ("entity: x\nsystems: {}\nconflict: sometimes\nfields: {a: {crm: A}}\n",
         "conflict: Input should be 'crm_wins', 'erp_wins', 'newest_wins' or 'manual'"),
        ("entity: x\nsystems: {}\nfields: {a: {crm: {path: A, colour: red}}}\n",
         "fields.a.crm.colour: unknown key"),
        ("entity: x\nsystems: {}\nnatural_key: zz\nfields: {a: {crm: {path: A}, erp: {path: B}}}\n",
         "natural_key: 'zz' is not a mapped field"),
        ("entity: x\nsystems: {}\nfields: {a: {crm: {path: A, paths: [B]}}}\n",
         "give exactly one of 'path' or 'paths'"),
        ("- just\n- a list\n", "must be a YAML object"),
        ("entity: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_mapping_names_file_path_and_valid_values(tmp_path: Path, text: str,
                                                      expected: str) -> None:
    file = tmp_path / "bad.yaml"
    file.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_mapping(file)
    assert str(file) in str(exc.value)
    assert expected in str(exc.value)


def test_unknown_entity_is_named_with_valid_choices() -> None:
    with pytest.raises(ConfigError, match=r"unknown entity invoices \(valid: customers"):
        load_mappings(MAPPINGS, ["invoices"])


PLOOMES_CONTACT = {
    "Id": 7, "TypeId": 1, "Name": "  Padaria   Central ", "LegalName": "Padaria Central Ltda",
    "Register": "11444777000161", "Email": " Contato@Padaria.com.BR ",
    "Phones": [{"PhoneNumber": "(11) 98765-4321"}, {"PhoneNumber": "+55 11 3333-4444"},
               {"PhoneNumber": "(21) 2222-1111"}],
    "StreetAddress": "Rua São Bento", "StreetAddressNumber": "12", "Neighborhood": "Centro",
    "ZipCode": 1010001, "City": {"IBGECode": "3550308"}, "State": {"Short": "sp"}, "StatusId": 1,
}
OMIE_CLIENTE = {
    "codigo_cliente_omie": 99, "razao_social": "Padaria Central Ltda",
    "nome_fantasia": "Padaria Central", "cnpj_cpf": "11.444.777/0001-61", "pessoa_fisica": "N",
    "email": "contato@padaria.com.br", "telefone1_ddd": "11", "telefone1_numero": "98765-4321",
    "telefone2_ddd": "11", "telefone2_numero": "3333-4444", "endereco": "Rua São Bento",
    "endereco_numero": "12", "complemento": "", "bairro": "Centro", "cep": "01010001",
    "cidade_ibge": "3550308", "estado": "SP", "inativo": "N",
}


def test_both_sides_normalize_to_the_same_canonical_values(maps) -> None:
    m = maps["customers"]
    crm = read_record(m, "crm", PLOOMES_CONTACT, MapContext())
    erp = read_record(m, "erp", OMIE_CLIENTE, MapContext())
    assert crm == erp
    assert crm["tax_id"] == "11444777000161"
    assert crm["email"] == "contato@padaria.com.br"
    assert crm["phones"] == "11987654321,1133334444"
    assert crm["zip"] == "01010001"
    assert crm["name"] == "Padaria Central"


@pytest.mark.parametrize(
    ("change", "field", "fragment"),
    [
        ({"Register": "11444777000160"}, "tax_id", "CNPJ 11444777000160 has invalid check digits"),
        ({"Register": "123"}, "tax_id", "has 3 digits; a CNPJ has 14 and a CPF 11"),
        ({"Register": ""}, "tax_id", "is required but empty"),
        ({"Email": "not-an-address"}, "email", "is not a valid e-mail address"),
        ({"Name": "Bad\x07Name"}, "name", "contains control characters"),
        ({"Name": 12345}, "name", "expected text, got int"),
        ({"StatusId": 9}, "inactive", "value 9 is not one of"),
    ],
)
def test_invalid_values_name_the_field_and_the_problem(maps, change, field, fragment) -> None:
    with pytest.raises(RecordError) as exc:
        read_record(maps["customers"], "crm", {**PLOOMES_CONTACT, **change}, MapContext())
    assert exc.value.field == field
    assert fragment in str(exc.value)
    assert f"'{field}'" in str(exc.value)


def test_accents_and_emoji_survive(maps) -> None:
    values = read_record(maps["customers"], "crm",
                         {**PLOOMES_CONTACT, "Name": "Café São João ☕"}, MapContext())
    assert values["name"] == "Café São João ☕"


def test_payload_for_the_erp_uses_its_native_shapes(maps) -> None:
    m = maps["customers"]
    values = read_record(m, "crm", PLOOMES_CONTACT, MapContext())
    payload = build_payload(m, "erp", values, MapContext(), create=True)
    assert payload["cnpj_cpf"] == "11.444.777/0001-61"
    assert payload["telefone1_ddd"] == "11" and payload["telefone1_numero"] == "98765-4321"
    assert payload["telefone2_ddd"] == "11" and payload["telefone2_numero"] == "3333-4444"
    assert payload["codigo_pais"] == "1058"  # create default
    assert payload["pessoa_fisica"] == "N"
    crm_payload = build_payload(m, "crm", values, MapContext(), create=False)
    assert crm_payload["ZipCode"] == 1010001
    assert crm_payload["City"] == {"IBGECode": "3550308"}
    assert crm_payload["Phones"][0]["PhoneNumber"] == "(11) 98765-4321"


def test_overlong_value_is_refused_before_sending(maps) -> None:
    m = maps["customers"]
    with pytest.raises(RecordError, match="has 61 characters; the erp field razao_social allows 60"):
        build_payload(m, "erp", {"legal_name": "x" * 61}, MapContext(), create=False)


def test_order_links_and_lines(maps) -> None:
    m = maps["orders"]
    ctx = MapContext()
    ctx.add_link("customers", "7", "99")
    ctx.add_link("products", "3", "300")
    order = {"Id": 1, "ContactId": 7, "Date": "2026-11-20T10:00:00-03:00", "StageId": 1,
             "Products": [{"ProductId": 3, "Quantity": 2, "UnitPrice": 10.5}]}
    values = read_record(m, "crm", order, ctx)
    assert values["customer"] == "7" and values["date"] == "2026-11-20"
    payload = build_payload(m, "erp", values, ctx, create=True)
    assert payload["cabecalho"]["codigo_cliente"] == 99
    assert payload["cabecalho"]["data_previsao"] == "20/11/2026"
    assert payload["det"][0]["produto"] == {"codigo_produto": 300, "quantidade": 2.0,
                                            "valor_unitario": 10.5}
    assert read_record(m, "erp", payload, ctx)["lines"] == values["lines"]


@pytest.mark.parametrize(
    ("lines", "fragment"),
    [
        ([{"ProductId": 3, "Quantity": 0, "UnitPrice": 10}], "line 1 (product 3) has quantity"),
        ([{"ProductId": 3, "Quantity": 1, "UnitPrice": 0}], "line 1 (product 3) has unit price"),
        ([{"ProductId": 4, "Quantity": 1, "UnitPrice": 1}], "products 4 of the CRM is not synced"),
    ],
)
def test_invalid_order_lines(maps, lines, fragment) -> None:
    ctx = MapContext()
    ctx.add_link("products", "3", "300")
    ctx.add_link("customers", "7", "99")
    order = {"ContactId": 7, "Date": "2026-11-20T10:00:00-03:00", "Products": lines}
    with pytest.raises(RecordError, match=re.escape(fragment)):
        values = read_record(maps["orders"], "crm", order, ctx)
        build_payload(maps["orders"], "erp", values, ctx, create=True)
