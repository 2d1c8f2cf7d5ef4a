from __future__ import annotations

import re
from pathlib import Path

import pytest

from etl.errors import ConfigError, RecordError
from etl.mapping import MapContext, build_payload, load_mapping, load_mappings, read_record
from etl.mapping.transforms import REGISTRY
from tests.shipped import shipped_mappings

MAPPINGS = Path(__file__).resolve().parents[2] / "mappings" / "ploomes_omie"


@pytest.fixture(scope="module")
def maps():
    return shipped_mappings()  # custom fields resolved, as a run against the sandbox has them


def test_shipped_mappings_load_in_dependency_order(maps) -> None:
    assert list(maps) == ["customers", "products", "orders"]
    assert maps["customers"].sources() == ["crm", "erp"]
    assert maps["products"].sources() == ["erp"]
    assert maps["orders"].sources() == ["crm", "erp"]


@pytest.mark.parametrize(("renamed", "expected"), [
    ({}, ["customers", "products", "orders"]),
    # a name outside the three known ones still comes before what depends on it
    ({"customers": "zz_clients"}, ["zz_clients", "products", "orders"]),
    ({"products": "aa_items"}, ["customers", "aa_items", "orders"]),
])
def test_entities_load_after_what_they_depend_on(tmp_path: Path, renamed: dict[str, str],
                                                 expected: list[str]) -> None:
    for file in MAPPINGS.glob("*.yaml"):
        text = file.read_text()
        for old, new in renamed.items():
            text = re.sub(rf"\b{old}\b", new, text)
        (tmp_path / file.name).write_text(text)
    assert list(load_mappings(tmp_path)) == expected


def test_a_dependency_cycle_is_named(tmp_path: Path) -> None:
    for file in MAPPINGS.glob("*.yaml"):
        text = file.read_text()
        if file.stem == "customers":
            text = text.replace("entity: customers", "entity: customers\ndepends_on: [orders]")
        (tmp_path / file.name).write_text(text)
    with pytest.raises(ConfigError, match="depends_on forms a cycle: customers -> orders -> "
                                          "customers"):
        load_mappings(tmp_path)


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
         "give exactly one of 'path', 'paths', 'custom' or 'computed'"),
        ("entity: x\nsystems: {}\nfields: {a: {crm: {paths: []}}}\n",
         "fields.a.crm: Value error, 'paths' needs at least one native path"),
        ("entity: x\nsystems: {}\nfields: {a: {crm: {path: A, fallback: []}}}\n",
         "'fallback' must list native paths, got []"),
        ("entity: x\nsystems: {}\nfields: {a: {crm: {paths: [A, B], fallback: C}}}\n",
         "'fallback' works with 'path', not with 'paths'"),
        ("entity: x\nsystems: {}\nfields: {a: {crm: {path: A, fallback: 7}}}\n",
         "fields.a.crm.fallback"),
        ("entity: x\nsystems: {}\nfields: {a: {crm: {path: A, also_write: {by: k, map: {}}}}}\n",
         "'map' needs at least one canonical value: native path"),
        (("entity: x\nsystems: {}\nfields: {a: {crm: {path: A, also_write: {by: k, map: {x: A}}}}, "
         "k: {crm: {path: K}}}\n"), "'also_write' maps to 'A', the field's own path"),
        ("entity: x\nsystems: {}\nfields: {a: {crm: {path: A, also_write: {map: {x: B}}}}}\n",
         "fields.a.crm.also_write.by: Field required"),
        (("entity: x\nsystems: {}\nfields: {a: {crm: {path: A, also_write: {by: kind, map: {x: B}}}}, "
         "k: {crm: {path: K}}}\n"),
         "fields.a.crm.also_write.by: 'kind' is not another field mapped on crm (valid: k)"),
        (("entity: x\nsystems: {}\nfields: {a: {crm: {path: A, also_write: {by: k, map: {x: B}}}}, "
         "k: {erp: {path: K}}}\n"), "fields.a.crm.also_write.by: 'k' is not another field mapped on crm"),
        (("entity: x\nsystems: {}\nfields: {a: {crm: {path: A, also_write: {by: k, "
         "map: {firm: B}}}}, k: {crm: {path: K, transform: value_map, args: {map: {1: company}}}}}\n"),
         "fields.a.crm.also_write.map: 'firm' is not a canonical value of 'k' (valid: company)"),
        ("entity: x\nsystems: {}\nfields: {a: {erp: {paths: [A, B], transform: phone_pairs}}}\n",
         "fields.a.erp.args.area_digits: required by the transform 'phone_pairs'"),
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
    computed = m.computed_fields("erp")  # the engine fills these from the ERP's orders
    assert set(computed) == {"sales_12m", "last_purchase"} and not set(computed) & set(erp)
    assert {k: v for k, v in crm.items() if k not in computed} == erp
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


@pytest.mark.parametrize(
    ("fields", "tax_id"),
    [
        ({"Register": "11444777000161", "CNPJ": "", "CPF": None}, "11444777000161"),
        ({"Register": None, "CNPJ": "11.444.777/0001-61"}, "11444777000161"),
        ({"Register": "  ", "CNPJ": None, "CPF": "123.456.789-09"}, "12345678909"),
        ({"Register": "", "CNPJ": "", "CPF": "12345678909", "TypeId": 2}, "12345678909"),
        # Register wins when the three disagree: it is the field ponte writes and matches on
        ({"Register": "11444777000161", "CNPJ": "11222333000181"}, "11444777000161"),
    ],
)
def test_tax_id_is_read_from_register_then_cnpj_then_cpf(maps, fields, tax_id) -> None:
    record = {k: v for k, v in PLOOMES_CONTACT.items() if k != "Register"}
    values = read_record(maps["customers"], "crm", {**record, **fields}, MapContext())
    assert values["tax_id"] == tax_id


def test_tax_id_problems_name_the_native_field_it_came_from(maps) -> None:
    contact = {**PLOOMES_CONTACT, "Register": None, "CNPJ": "11.444.777/0001-60"}
    with pytest.raises(RecordError, match=r"'tax_id' \(crm CNPJ\): CNPJ 11444777000160 has invalid"):
        read_record(maps["customers"], "crm", contact, MapContext())
    empty = {**PLOOMES_CONTACT, "Register": "", "CNPJ": None, "CPF": ""}
    with pytest.raises(RecordError, match=r"'tax_id' \(crm Register or CNPJ or CPF\) is required"):
        read_record(maps["customers"], "crm", empty, MapContext())


@pytest.mark.parametrize(
    ("values", "record", "expected"),
    [
        # create: the whole record is in values
        ({"tax_id": "11444777000161", "kind": "company", "name": "A"}, None,
         {"Register": "11444777000161", "CNPJ": "11444777000161", "CPF": None}),
        ({"tax_id": "12345678909", "kind": "person", "name": "B"}, None,
         {"Register": "12345678909", "CPF": "12345678909", "CNPJ": None}),
        # update of the tax id alone: the kind comes from the rest of the record
        ({"tax_id": "12345678909"}, {"kind": "person", "name": "B"},
         {"Register": "12345678909", "CPF": "12345678909", "CNPJ": None}),
        # the kind changes, the tax id does not: the document moves to the other field
        ({"kind": "company"}, {"tax_id": "11444777000161", "kind": "person"},
         {"TypeId": 1, "CNPJ": "11444777000161", "CPF": None}),
        # neither is written: nothing extra
        ({"email": "a@b.com.br"}, {"tax_id": "11444777000161", "kind": "company"},
         {"Email": "a@b.com.br"}),
        # the kind is unknown: only Register
        ({"tax_id": "11444777000161"}, {"kind": None},
         {"Register": "11444777000161"}),
    ],
)
def test_tax_id_is_also_written_to_cnpj_or_cpf_by_kind(maps, values, record, expected) -> None:
    payload = build_payload(maps["customers"], "crm", values, MapContext(), create=False,
                            record=record)
    assert {k: payload[k] for k in expected} == expected
    if "Register" not in expected:
        assert "Register" not in payload
    if set(expected) <= {"Register", "Email"}:
        assert "CNPJ" not in payload and "CPF" not in payload


def test_the_erp_name_falls_back_to_the_legal_name(maps) -> None:
    m = maps["customers"]
    cliente = {**OMIE_CLIENTE, "nome_fantasia": ""}
    values = read_record(m, "erp", cliente, MapContext())
    assert values["name"] == "Padaria Central Ltda"
    payload = build_payload(m, "crm", values, MapContext(), create=True)
    assert payload["Name"] == "Padaria Central Ltda"


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


PHONES = [{"PhoneNumber": "+55 11 3333-4444"}, {"PhoneNumber": "+1 212 555 0100"}]


@pytest.mark.parametrize(("args", "read", "written"), [
    # no region given: digits as they are, written as they are
    ({}, "551133334444,12125550100", "551133334444"),
    # a Brazilian mapping: 55 dropped before a 10/11-digit number, a 2-digit area code
    ({"country_code": "55", "national_digits": [10, 11], "area_digits": 2},
     "1133334444,12125550100", "(55) 113333-4444"),
    # a North American one: 1 dropped before 10 digits, a 3-digit area code
    ({"country_code": "1", "national_digits": [10], "area_digits": 3},
     "551133334444,2125550100", "(551) 13333-4444"),
])
def test_phone_region_comes_from_the_mapping_args(args, read, written) -> None:
    phones = REGISTRY["phone_list"]
    ctx = MapContext()
    assert phones.read(PHONES, args, ctx) == read
    assert phones.write("551133334444", args, ctx) == [{"PhoneNumber": written}]


def test_phone_pairs_split_at_the_area_code_the_mapping_gives() -> None:
    pairs, ctx = REGISTRY["phone_pairs"], MapContext()
    assert pairs.write("2125550100", {"area_digits": 3, "slots": 1}, ctx) == ["212", "555-0100"]
    assert pairs.write("1133334444", {"area_digits": 2, "slots": 1}, ctx) == ["11", "3333-4444"]
    assert pairs.read(["+55 11", "3333-4444"], {"area_digits": 2, "country_code": "55"},
                      ctx) == "1133334444"


@pytest.mark.parametrize(("args", "written"), [
    ({}, "2026-11-20T00:00:00+00:00"),
    ({"offset": "-03:00"}, "2026-11-20T00:00:00-03:00"),
])
def test_date_offset_comes_from_the_mapping_args(args, written) -> None:
    assert REGISTRY["date"].write("2026-11-20", args, MapContext()) == written


def test_the_shipped_orders_mapping_writes_brasilia_midnight(maps) -> None:
    payload = build_payload(maps["orders"], "crm", {"date": "2026-11-20"}, MapContext(),
                            create=False)
    assert payload["Date"] == "2026-11-20T00:00:00-03:00"
