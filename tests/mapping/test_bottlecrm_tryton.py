"""The BottleCRM <-> Tryton mappings, applied to records shaped as the real servers answer
(recorded from them): native -> canonical -> native, with no server involved. The end-to-end
behaviour against the real servers is in tests/realsys/test_e2e_sync.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from etl.connectors.schema import schema_for
from etl.mapping import MapContext, build_payload, load_mappings, read_record
from etl.mapping.apply import set_path
from etl.mapping.transforms import REGISTRY

MAPPINGS = Path(__file__).resolve().parents[2] / "mappings" / "bottlecrm_tryton"

ACCOUNT = {"id": "3c6f90cb-d75b-4ae7-96dc-32a8d405d920", "name": "Acme BV",
           "email": "Info@Acme.example", "phone": "+32 2 555 12 34", "address_line": "Rue 1",
           "city": "Gent", "postcode": "9000", "country": "BE", "is_active": True,
           "custom_fields": {"tax_id": "be0897290877"}}
PARTY = {"id": 2, "name": "Acme BV", "active": 1,
         "identifiers": [{"id": 1, "type": "eu_vat", "code": "BE0897290877"}],
         "addresses": [{"id": 1, "street": "Rue 1", "postal_code": "9000", "city": "Gent"}],
         "contact_mechanisms": [{"id": 1, "type": "email", "value": "info@acme.example"},
                                {"id": 2, "type": "phone", "value": "+32 2 555 12 34"}]}


@pytest.fixture(scope="module")
def maps() -> dict[str, Any]:
    # every native path checked against the built-in specs' schemas, as `mappings check` does
    return load_mappings(MAPPINGS, schemas={"crm": schema_for("bottlecrm"),
                                            "erp": schema_for("tryton")})


def test_an_account_and_its_party_read_the_same(maps: dict[str, Any]) -> None:
    m, ctx = maps["customers"], MapContext()
    assert read_record(m, "crm", ACCOUNT, ctx) == read_record(m, "erp", PARTY, ctx) == {
        "tax_id": "BE0897290877", "name": "Acme BV", "email": "info@acme.example",
        "phone": "+32 2 555 12 34", "street": "Rue 1", "postal_code": "9000", "city": "Gent",
        "active": "true"}
    archived = read_record(m, "erp", {**PARTY, "active": 0}, ctx)
    assert archived["active"] == "false"  # SQLite's 0, not a boolean


def test_a_party_created_from_an_account_carries_its_items(maps: dict[str, Any]) -> None:
    m, ctx = maps["customers"], MapContext()
    values = read_record(m, "crm", ACCOUNT, ctx)
    payload = build_payload(m, "erp", values, ctx, create=True)
    assert payload["identifiers"] == [{"type": "eu_vat", "code": "BE0897290877"}]
    assert payload["addresses"] == [{"street": "Rue 1", "postal_code": "9000", "city": "Gent"}]
    assert payload["contact_mechanisms"] == [{"type": "email", "value": "info@acme.example"},
                                             {"type": "phone", "value": "+32 2 555 12 34"}]


def test_a_template_price_is_read_from_its_tagged_decimal(maps: dict[str, Any]) -> None:
    template = {"id": 1, "code": "WID", "name": "Widget", "active": 1,
                "list_price": {"__class__": "Decimal", "decimal": "19.9"}}
    values = read_record(maps["products"], "erp", template, MapContext())
    assert values == {"code": "WID", "name": "Widget", "price": "19.90", "active": "true"}
    payload = build_payload(maps["products"], "crm", values, MapContext(), create=True)
    assert payload == {"currency": "EUR", "sku": "WID", "name": "Widget", "price": 19.9,
                       "is_active": True}


def test_a_won_deal_becomes_a_sale_with_lines_on_the_variant(maps: dict[str, Any]) -> None:
    m, ctx = maps["orders"], MapContext()
    ctx.add_link("customers", ACCOUNT["id"], "2")
    ctx.add_link("products", "p-uuid", "7")
    deal = {"id": "d-uuid", "name": "Deal 42", "stage": "CLOSED_WON",
            "account": {"id": ACCOUNT["id"], "name": "Acme BV"},
            "line_items": [{"product": {"id": "p-uuid", "sku": "WID"}, "quantity": "2.00",
                            "unit_price": "19.90"}]}
    values = read_record(m, "crm", deal, ctx)
    payload = build_payload(m, "erp", values, ctx, create=True)
    assert payload == {"party": 2, "description": "Deal 42", "lines": [
        {"type": "line", "unit": 1, "product": 7, "quantity": 2.0, "unit_price": 19.9}]}
    sale = {"id": 5, "party": 2, "description": "Deal 42", "state": "draft",
            "reference": "bottlecrm-d-uuid",
            "lines": [{"id": 9, "product": {"id": 7, "template": 7}, "quantity": 2.0,
                       "unit_price": {"__class__": "Decimal", "decimal": "19.90"}}]}
    assert read_record(m, "erp", sale, ctx) == values
    # the deal owns its sale's lines: sent on an update too, never back to the deal
    assert build_payload(m, "erp", {"lines": values["lines"]}, ctx, create=False) == {
        "lines": payload["lines"]}
    assert m.flows("lines", "crm") and not m.flows("lines", "erp")
    cancelled = read_record(m, "erp", {**sale, "state": "cancelled"}, ctx)
    assert build_payload(m, "crm", {"state": cancelled["state"]}, ctx,
                         create=False) == {"stage": "CLOSED_LOST"}


@pytest.mark.parametrize(("path", "expected"), [
    ("a[0].b", {"a": [{"b": 1}]}),
    ("a[2].b", {"a": [{}, {}, {"b": 1}]}),
    ("a[k=v].b", {"a": [{"k": "v", "b": 1}]}),
    ("a.b", {"a": {"b": 1}}),
])
def test_set_path_writes_list_items_by_position_or_selector(path: str,
                                                           expected: dict[str, Any]) -> None:
    record: dict[str, Any] = {}
    set_path(record, path, 1)
    assert record == expected


def test_a_deal_and_its_sale_share_the_external_id_as_natural_key(maps: dict[str, Any]) -> None:
    """The deal's natural key is the external id ponte writes into the sale's reference
    (``bottlecrm-<deal id>``); it is read on both sides and written on neither."""
    m, ctx = maps["orders"], MapContext()
    assert m.natural_key == "reference"
    assert m.systems["erp"].natural_key_field == m.systems["erp"].external_id_field
    ctx.add_link("customers", ACCOUNT["id"], "2")
    ctx.add_link("products", "p-uuid", "7")
    line = {"product": {"id": 7, "template": 7}, "quantity": 1.0, "unit_price": "2.00"}
    deal = {"id": "d-uuid", "name": "Deal 42", "stage": "CLOSED_WON",
            "account": {"id": ACCOUNT["id"]},
            "line_items": [{"product": {"id": "p-uuid"}, "quantity": "1", "unit_price": "2"}]}
    crm = read_record(m, "crm", deal, ctx)
    assert crm["reference"] == "bottlecrm-d-uuid"
    erp = read_record(m, "erp", {"id": 5, "party": 2, "reference": "bottlecrm-d-uuid",
                                 "state": "quotation", "lines": [line]}, ctx)
    assert erp["reference"] == crm["reference"]
    assert "reference" not in build_payload(m, "erp", crm, ctx, create=True)
    assert build_payload(m, "erp", {"reference": "x"}, ctx, create=False) == {}
    assert build_payload(m, "crm", {"reference": "x"}, ctx, create=False) == {}
    assert not m.flows("reference", "crm", create=True) and not m.flows("reference", "erp")
    args = m.fields["reference"].crm.args
    assert REGISTRY["text"].write(crm["reference"], args, ctx) == "d-uuid"
    # a sale typed in Tryton without a reference is read all the same, with no natural key
    assert read_record(m, "erp", {"id": 6, "party": 2, "state": "draft", "lines": [line]},
                       ctx)["reference"] is None
