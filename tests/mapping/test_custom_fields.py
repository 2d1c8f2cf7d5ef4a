"""Custom fields named by label or key: resolved through the system's field list (the Ploomes
simulator's /Fields), each value type written and read back through the simulator."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from starlette.testclient import TestClient

from etl.api import with_custom_fields
from etl.connectors.base import WriteOp
from etl.connectors.generic import GenericConnector
from etl.connectors.http import RetryPolicy
from etl.connectors.registry import get
from etl.connectors.schema import SystemSchema, schema_for
from etl.errors import ConfigError
from etl.mapping import MapContext, build_payload, load_mapping, read_record
from etl.mapping.custom import unresolved
from etl.mapping.loader import unchecked_custom_fields
from etl.mapping.models import EntityMapping, Side
from etl.sandbox.ploomes import PloomesSim, create_app

KEY = "sandbox-custom-fields"
LIMIT = "contact_0B6E2D48-91C3-4F7A-B5E2-7C1D9A3F6B04"  # Limite de crédito (Decimal)
SEGMENT = "contact_9F0D4B61-7A2E-4C35-8E1B-6D3A5C2F7E90"  # Segmento (String)

#: canonical field -> (what the mapping names, a canonical value, the item property it lands in,
#: the native value the simulator stores)
TYPED: dict[str, tuple[str, str, str, Any]] = {
    "code": ("Código no ERP", "ERP-0042", "StringValue", "ERP-0042"),
    "notes": ("Observações internas", "paga em dia; prefere boleto", "BigStringValue",
              "paga em dia; prefere boleto"),
    "branches": ("Número de filiais", "3", "IntegerValue", 3),
    "credit_limit": ("Limite de crédito", "15000.50", "DecimalValue", 15000.5),
    "discount": ("desconto ESPECIAL  (%)", "7.25", "DecimalValue", 7.25),  # case, spacing
    "last_purchase": ("Última compra", "2026-03-10", "DateTimeValue",
                      "2026-03-10T00:00:00-03:00"),
    "vip": ("Cliente VIP", "true", "BoolValue", True),
    "size": ("Porte", "1002", "ObjectValueId", 1002),
    "segment": (SEGMENT, "Atacado", "StringValue", "Atacado"),  # by key
}


def _mapping_file(tmp_path: Path, fields: dict[str, Any]) -> Path:
    doc = {"entity": "customers",
           "systems": {"crm": {"collection": "Contacts"}, "erp": {"collection": "clientes"}},
           "owner": "erp", "create_in": ["crm"],
           "fields": {"name": {"crm": {"path": "Name"}, "erp": {"path": "razao_social"}},
                      **fields}}
    path = tmp_path / "customers.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return path


def _typed_fields() -> dict[str, Any]:
    return {name: {"crm": {"custom": named}, "erp": {"path": "observacao"}}
            for name, (named, *_rest) in TYPED.items()}


@pytest.fixture
def sim() -> PloomesSim:
    return PloomesSim(user_key=KEY, rpm=100_000)


@pytest.fixture
def conn(sim: PloomesSim) -> Iterator[GenericConnector]:
    with TestClient(create_app(sim), base_url="http://ploomes.test") as http:
        yield GenericConnector(get("ploomes").spec, http, system="crm",
                               credentials={"user_key": KEY}, requests_per_minute=100_000,
                               retry=RetryPolicy(attempts=2, base_s=0.0, cap_s=0.0),
                               sleep=lambda _s: None)


def _schemas(conn: GenericConnector, mapping: EntityMapping) -> dict[Side, SystemSchema]:
    declared: dict[Side, SystemSchema] = {"crm": schema_for("ploomes"), "erp": schema_for("omie")}
    return with_custom_fields(declared, {"customers": mapping}, {"crm": conn})


def _load(tmp_path: Path, conn: GenericConnector, fields: dict[str, Any]) -> EntityMapping:
    """Load offline (custom fields left to resolve), then with the simulator's field list."""
    file = _mapping_file(tmp_path, fields)
    offline = load_mapping(file, schemas={"crm": schema_for("ploomes"),
                                          "erp": schema_for("omie")})
    return load_mapping(file, schemas=_schemas(conn, offline))


# --- resolution -----------------------------------------------------------------------------


def test_offline_a_custom_field_waits_for_the_field_list(tmp_path: Path) -> None:
    file = _mapping_file(tmp_path, {"limit": {"crm": {"custom": "Limite de crédito"},
                                              "erp": {"path": "valor_limite_credito"}}})
    schemas = {"crm": schema_for("ploomes"), "erp": schema_for("omie")}
    m = load_mapping(file, schemas=schemas)
    assert unresolved(m) == ["fields.limit.crm"]
    assert unchecked_custom_fields({"customers": m}, schemas) == [
        "customers: fields.limit.crm.custom: Ploomes Contacts custom field 'Limite de crédito'"]
    with pytest.raises(ConfigError, match="not resolved yet"):
        read_record(m, "crm", {"Name": "x"}, MapContext())


def test_labels_and_keys_resolve_to_the_typed_value_property(
        tmp_path: Path, conn: GenericConnector) -> None:
    m = _load(tmp_path, conn, _typed_fields())
    assert unresolved(m) == []
    for name, (_named, _canon, prop, _native) in TYPED.items():
        sf = m.fields[name].crm
        assert sf is not None and sf.path is not None
        assert sf.path.startswith("OtherProperties[FieldKey=contact_") and sf.path.endswith(
            f"].{prop}"), (name, sf.path)
    credit = m.fields["credit_limit"].crm
    assert credit is not None and credit.path == f"OtherProperties[FieldKey={LIMIT}].DecimalValue"
    assert credit.transform == "decimal"
    assert {n: m.fields[n].crm.transform for n in ("code", "branches", "last_purchase", "vip",
                                                   "size")  # type: ignore[union-attr]
            } == {"code": "text", "branches": "int", "last_purchase": "date",
                  "vip": "value_map", "size": "int"}


def test_a_transform_or_value_the_mapping_sets_wins(tmp_path: Path,
                                                    conn: GenericConnector) -> None:
    m = _load(tmp_path, conn, {
        "limit": {"crm": {"custom": "Limite de crédito", "transform": "decimal",
                          "args": {"places": 0}}, "erp": {"path": "valor_limite_credito"}},
        "size": {"crm": {"custom": "Porte", "value": "ObjectValueName", "read_only": True},
                 "erp": {"path": "observacao"}}})
    limit, size = m.fields["limit"].crm, m.fields["size"].crm
    assert limit is not None and limit.args == {"places": 0}
    assert size is not None and size.path is not None and size.path.endswith(
        ".ObjectValueName") and size.transform == "text"


def test_a_missing_label_names_it_the_collection_and_the_nearest(
        tmp_path: Path, conn: GenericConnector) -> None:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, conn, {"limit": {"crm": {"custom": "Limite de credito 2"},
                                         "erp": {"path": "valor_limite_credito"}}})
    text = str(info.value)
    assert "customers.yaml: fields.limit.crm.custom: no custom field labelled " \
           "'Limite de credito 2' in Ploomes Contacts; nearest: 'Limite de crédito'" in text
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, conn, {"x": {"crm": {"custom": "Zzzz"}, "erp": {"path": "observacao"}}})
    assert "(its custom fields: " in str(info.value) and "'Porte'" in str(info.value)


@pytest.mark.parametrize(("side_field", "expected"), [
    ({"custom": "X", "path": "Name"}, "'custom' stands for the native path: drop 'path'"),
    ({"path": "Name", "value": "StringValue"}, "'value' goes with 'custom'"),
    ({"custom": " "}, "'custom' names a custom field by its label or key"),
])
def test_custom_is_validated_at_load(tmp_path: Path, side_field: dict[str, Any],
                                     expected: str) -> None:
    file = _mapping_file(tmp_path, {"x": {"crm": side_field, "erp": {"path": "observacao"}}})
    with pytest.raises(ConfigError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        load_mapping(file)


def test_omie_characteristics_are_named_freely(tmp_path: Path) -> None:
    file = _mapping_file(tmp_path, {"color": {"crm": {"path": "Note"},
                                              "erp": {"custom": "Cor preferida"}}})
    m = load_mapping(file, schemas={"crm": schema_for("ploomes"), "erp": schema_for("omie")})
    erp = m.fields["color"].erp
    assert erp is not None and erp.path == "caracteristicas[campo=Cor preferida].conteudo"
    record = {"caracteristicas": [{"campo": "Outra", "conteudo": "x"},
                                  {"campo": "Cor preferida", "conteudo": "Azul"}]}
    assert read_record(m, "erp", record, MapContext())["color"] == "Azul"


# --- values through the simulator -----------------------------------------------------------


def _contact(conn: GenericConnector, key: str) -> dict[str, Any]:
    (record,) = conn.read_by_keys("customers", [key])
    return record


def test_each_type_is_written_and_read_back(tmp_path: Path, conn: GenericConnector) -> None:
    m = _load(tmp_path, conn, _typed_fields())
    values = {"name": "Cliente tipado", **{n: canon for n, (_, canon, _p, _v) in TYPED.items()}}
    payload = build_payload(m, "crm", values, MapContext(), create=True)
    (created,) = conn.write_batch("customers", [WriteOp("create", payload)])
    assert created.key is not None
    record = _contact(conn, created.key)
    stored = {x["FieldKey"]: x for x in record["OtherProperties"]}
    for name, (_named, _canon, prop, native) in TYPED.items():
        sf = m.fields[name].crm
        assert sf is not None and sf.path is not None
        key = sf.path.split("=", 1)[1].split("]", 1)[0]
        assert stored[key][prop] == native, name
    size = next(x for x in record["OtherProperties"] if x["ObjectValueId"] == 1002)
    assert size["ObjectValueName"] == "Médio"
    assert read_record(m, "crm", record, MapContext()) == {"name": "Cliente tipado",
                                                           "discount": "7.25", **{
        n: canon for n, (_, canon, _p, _v) in TYPED.items() if n != "discount"}}


def test_writing_one_custom_field_keeps_the_others(tmp_path: Path,
                                                   conn: GenericConnector) -> None:
    m = _load(tmp_path, conn, _typed_fields())
    values = {"name": "Cliente", **{n: canon for n, (_, canon, _p, _v) in TYPED.items()}}
    (created,) = conn.write_batch("customers", [
        WriteOp("create", build_payload(m, "crm", values, MapContext(), create=True))])
    assert created.key is not None
    update = build_payload(m, "crm", {"credit_limit": "99.90"}, MapContext(), create=False)
    assert update == {"OtherProperties": [{"FieldKey": LIMIT, "DecimalValue": 99.9}]}
    conn.write_batch("customers", [WriteOp("update", update, key=created.key)])
    after = read_record(m, "crm", _contact(conn, created.key), MapContext())
    assert after == {**{k: v for k, v in values.items()}, "credit_limit": "99.90"}


def test_the_simulator_refuses_a_value_in_another_property(conn: GenericConnector) -> None:
    (bad,) = conn.write_batch("customers", [WriteOp("create", {
        "Name": "X", "OtherProperties": [{"FieldKey": LIMIT, "StringValue": "muito"}]})])
    assert bad.key is None and bad.error is not None
    assert "takes DecimalValue, not StringValue" in str(bad.error)


def test_a_blank_value_clears_a_custom_field_of_any_type(tmp_path: Path,
                                                         conn: GenericConnector) -> None:
    m = _load(tmp_path, conn, _typed_fields())
    values = {"name": "Cliente", **{n: canon for n, (_, canon, _p, _v) in TYPED.items()}}
    (created,) = conn.write_batch("customers", [
        WriteOp("create", build_payload(m, "crm", values, MapContext(), create=True))])
    assert created.key is not None
    blank = dict.fromkeys(TYPED)
    update = build_payload(m, "crm", blank, MapContext(), create=False)
    assert all(set(x) == {"FieldKey", TYPED[n][2]} and x[TYPED[n][2]] is None
               for n, x in zip(TYPED, update["OtherProperties"], strict=True))
    (done,) = conn.write_batch("customers", [WriteOp("update", update, key=created.key)])
    assert done.ok, done.error
    record = _contact(conn, created.key)
    assert record["OtherProperties"] == []
    assert read_record(m, "crm", record, MapContext()) == {"name": "Cliente", **blank}
