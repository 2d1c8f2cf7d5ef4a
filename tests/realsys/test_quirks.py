"""Where the real servers answer differently from the reference notes the specs were planned
on (the server wins): pinned here so that a spec or mapping that relies on them finds out when
a release changes them."""

from __future__ import annotations

import uuid

import httpx


def unique(prefix: str) -> str:
    return f"{prefix} {uuid.uuid4().hex[:10]}"


def test_bottlecrm_custom_field_list_filter_is_a_500_on_sqlite(
        bottlecrm_client: httpx.Client) -> None:
    # the notes list `cf_<key>` among the account filters; on SQLite it needs a JSON `contains`
    # lookup the backend lacks: matching accounts by tax id means a full read
    response = bottlecrm_client.get("/accounts/", params={"cf_tax_id": "BE0897290877"})
    assert response.status_code == 500


def test_bottlecrm_account_put_is_partial_but_needs_the_name(
        bottlecrm_client: httpx.Client) -> None:
    name = unique("Put Corp")
    created = bottlecrm_client.post("/accounts/", json={"name": name, "city": "Gent"})
    account_id = created.json()["id"]

    without_name = bottlecrm_client.put(f"/accounts/{account_id}/", json={"city": "Brugge"})
    assert without_name.status_code == 400
    assert without_name.json()["errors"] == {"name": ["This field is required."]}

    with_name = bottlecrm_client.put(f"/accounts/{account_id}/", json={"name": name + " SA"})
    assert with_name.status_code == 200
    account = bottlecrm_client.get(f"/accounts/{account_id}/").json()["account_obj"]
    assert (account["name"], account["city"]) == (name + " SA", "Gent")  # omitted: kept

    patched = bottlecrm_client.patch(f"/accounts/{account_id}/", json={"city": "Brugge"})
    assert patched.status_code == 200


def test_bottlecrm_drops_custom_fields_the_org_has_not_defined(
        bottlecrm_client: httpx.Client) -> None:
    created = bottlecrm_client.post("/accounts/", json={
        "name": unique("Custom Corp"),
        "custom_fields": {"tax_id": "BE0897290877", "not_defined": "x"}})
    assert created.status_code == 200  # no error for the unknown key ...
    account = bottlecrm_client.get(f"/accounts/{created.json()['id']}/").json()["account_obj"]
    assert account["custom_fields"] == {"tax_id": "BE0897290877"}  # ... it is silently dropped


def test_tryton_variant_code_is_the_template_code_plus_a_suffix(
        tryton_client: httpx.Client) -> None:
    code = uuid.uuid4().hex[:8].upper()
    fields = {"f": ["code", "products.code", "list_price", "write_date"]}
    refused = tryton_client.post("/model/product.template", params=fields, json={
        "name": "Widget", "default_uom": 1, "list_price": "19.90",
        "products": [["create", [{"code": f"{code}-001"}]]]})
    assert refused.status_code == 400
    assert 'not allowed to modify the field "Code" of "Product"' in refused.json()["message"]

    created = tryton_client.post("/model/product.template", params=fields, json={
        "name": "Widget", "default_uom": 1, "list_price": "19.90", "code": code,
        "products": [["create", [{"suffix_code": "-001"}]]]})
    assert created.status_code == 200, created.text[:300]
    template = created.json()
    assert [p["code"] for p in template["products"]] == [f"{code}-001"]
    assert template["list_price"] == {"__class__": "Decimal", "decimal": "19.90"}
    assert template["write_date"] is None  # never written since its create
