"""The built-in BottleCRM spec (etl/connectors/specs/bottlecrm.yaml) against the real server,
through the connector ponte builds from its settings: listing to the end in small pages (closed
accounts too, from the second list of the same answer), updated-at kept client-side, reads by
key, the tax id found in its custom field over the full listing, writes read back (the custom
field really stored), products updated without PATCH, and the error answers classified.

Every test makes its own records with unique names, SKUs and tax ids, and looks only for those:
someone else may use (or reset) the same server at the same time."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from realsys_servers import ROOT, BottleCrm
from typer.testing import CliRunner

from etl.cli import app
from etl.connectors.base import WriteOp
from etl.connectors.factory import build_connector
from etl.connectors.generic import GenericConnector
from etl.errors import SystemUnavailable
from etl.settings import SideSettings
from etl.watermark import Window

SPEC = Path("etl/connectors/specs/bottlecrm.yaml")


def unique(prefix: str) -> str:
    return f"{prefix} {uuid.uuid4().hex[:10]}"


def tax_id() -> str:
    return "BE0" + str(uuid.uuid4().int)[:9]


def connector(server: BottleCrm, *, token: str | None = None, page_size: int | None = None
              ) -> GenericConnector:
    conf = SideSettings(kind="bottlecrm", base_url=server.url,
                        credentials={"token": SecretStr(token or server.token)},
                        **({"page_size": page_size} if page_size else {}))
    conn = build_connector("crm", conf.resolve("crm", None))
    assert isinstance(conn, GenericConnector)
    return conn


@pytest.fixture
def crm(bottlecrm: BottleCrm) -> GenericConnector:
    return connector(bottlecrm)


def make_account(client: httpx.Client, **fields: object) -> str:
    answer = client.post("/accounts/", json={"name": unique("Conn Corp"), **fields})
    assert answer.status_code == 200, answer.text[:300]
    return str(answer.json()["id"])


def make_product(client: httpx.Client, **fields: object) -> dict[str, object]:
    answer = client.post("/invoices/products/", json={
        "name": unique("Widget"), "sku": unique("SKU").replace(" ", "-"), "price": "19.90",
        "currency": "EUR", **fields})
    assert answer.status_code == 201, answer.text[:300]
    product: dict[str, object] = answer.json()["product"]
    return product


def make_deal(client: httpx.Client, account: str, stage: str) -> str:
    # a won deal must say what it was worth and when it closed
    answer = client.post("/opportunities/", json={
        "name": unique("Deal"), "account": account, "stage": stage, "currency": "EUR",
        "amount": "10.00", "closed_on": "2026-12-01"})
    assert answer.status_code == 200, answer.text[:300]
    return str(answer.json()["id"])


def close_account(client: httpx.Client, account: str) -> None:
    answer = client.patch(f"/accounts/{account}/", json={"is_active": False})
    assert answer.status_code == 200, answer.text[:300]


def account_counts(client: httpx.Client) -> tuple[int, int]:
    """How many accounts are open and closed (one answer holds both lists and counts)."""
    answer = client.get("/accounts/", params={"limit": 1}).json()
    return (answer["active_accounts"]["open_accounts_count"],
            answer["closed_accounts"]["close_accounts_count"])


def test_accounts_listed_to_the_end_in_small_pages(bottlecrm: BottleCrm,
                                                    bottlecrm_client: httpx.Client) -> None:
    made = {make_account(bottlecrm_client) for _ in range(5)}
    closed = make_account(bottlecrm_client)
    close_account(bottlecrm_client, closed)
    open_n, closed_n = account_counts(bottlecrm_client)
    longest = max(open_n, closed_n)
    size = max(2, -(-longest // 4))  # about four pages, however many accounts others made
    conn = connector(bottlecrm, page_size=size)
    pages = list(conn.list_changed("customers", Window(None)))
    keys = [conn.key_of("customers", r) for page in pages for r in page]
    assert made | {closed} <= set(keys)
    # each page holds up to `size` open and up to `size` closed accounts (one offset)
    assert len(pages) > 1 and all(len(page) <= 2 * size for page in pages)
    assert len(keys) == len(set(keys)) == open_n + closed_n  # every account once
    # the larger count ends the listing: no confirming read past the last page
    assert conn.calls.read == len(pages) == -(-longest // size)
    assert not conn.capabilities.has_changed_since  # read in full, the diff finds changes


def test_a_closed_account_is_listed_and_found_by_tax_id_not_by_name(
        crm: GenericConnector, bottlecrm_client: httpx.Client) -> None:
    name, tax = unique("Closed Corp"), tax_id()
    account = make_account(bottlecrm_client, name=name, custom_fields={"tax_id": tax})
    close_account(bottlecrm_client, account)
    listed = {r["id"]: r for page in crm.list_changed("customers", Window(None)) for r in page}
    assert listed[account]["is_active"] is False
    assert listed[account]["custom_fields"] == {"tax_id": tax}
    assert [a["id"] for a in crm.find_by("customers", "custom_fields.tax_id", [tax])] == [
        account]
    assert crm.find_by("customers", "name", [name]) == []  # a match by name is an open account


def test_products_kept_to_the_window_by_their_updated_at(bottlecrm: BottleCrm,
                                                         bottlecrm_client: httpx.Client) -> None:
    first, second = make_product(bottlecrm_client), make_product(bottlecrm_client)
    conn = connector(bottlecrm)
    since = conn.updated_at("products", second)
    assert since is not None and since.tzinfo is not None
    assert since == datetime.fromisoformat(str(second["updated_at"]))

    def listed(window: Window) -> set[str]:
        return {str(r["id"]) for page in conn.list_changed("products", window) for r in page}

    now = listed(Window(since))
    assert second["id"] in now and first["id"] not in now  # older than the window: left out
    changed = bottlecrm_client.put(f"/invoices/products/{first['id']}/", json={"price": "20.00"})
    assert changed.status_code == 200
    assert first["id"] in listed(Window(since))  # its updated_at moved into the window
    assert second["id"] not in listed(Window(since + timedelta(days=1)))


def test_read_by_keys_on_every_entity(crm: GenericConnector,
                                      bottlecrm_client: httpx.Client) -> None:
    account = make_account(bottlecrm_client, city="Gent")
    product = make_product(bottlecrm_client)
    deal = make_deal(bottlecrm_client, account, "CLOSED_WON")
    missing = str(uuid.uuid4())

    accounts = crm.read_by_keys("customers", [account, missing, "not-a-uuid"])
    assert [(a["id"], a["city"]) for a in accounts] == [(account, "Gent")]
    assert [p["sku"] for p in crm.read_by_keys("products", [str(product["id"]), missing])] == [
        product["sku"]]
    assert [d["id"] for d in crm.read_by_keys("orders", [deal, missing])] == [deal]


def test_won_deals_listed_with_their_line_items(crm: GenericConnector,
                                                bottlecrm_client: httpx.Client) -> None:
    account = make_account(bottlecrm_client)
    product = make_product(bottlecrm_client)
    won, open_ = (make_deal(bottlecrm_client, account, s) for s in ("CLOSED_WON", "PROPOSAL"))
    line = bottlecrm_client.post(f"/opportunities/{won}/line-items/", json={
        "product_id": product["id"], "name": "Widget", "quantity": "3", "unit_price": "19.90"})
    assert line.status_code == 201, line.text[:300]

    deals = {d["id"]: d for page in crm.list_changed("orders", Window(None)) for d in page}
    assert won in deals and open_ not in deals  # won deals only
    lines = deals[won]["line_items"]
    assert [(li["product"]["sku"], li["quantity"], li["total"]) for li in lines] == [
        (product["sku"], "3.00", "59.70")]
    assert crm.updated_at("orders", deals[won]) is not None


def test_find_by_tax_id_in_the_custom_field(crm: GenericConnector,
                                            bottlecrm_client: httpx.Client) -> None:
    tax = tax_id()
    account = make_account(bottlecrm_client, custom_fields={"tax_id": tax})
    make_account(bottlecrm_client, custom_fields={"tax_id": tax_id()})
    found = crm.find_by("customers", "custom_fields.tax_id", [tax, tax_id()])
    assert [(a["id"], a["custom_fields"]["tax_id"]) for a in found] == [(account, tax)]


def test_find_products_by_sku_and_accounts_by_name(crm: GenericConnector,
                                                   bottlecrm_client: httpx.Client) -> None:
    product = make_product(bottlecrm_client)
    sku = str(product["sku"])
    make_product(bottlecrm_client, sku=sku + "-2")  # `search` matches it too: not kept
    assert [p["id"] for p in crm.find_by("products", "sku", [sku])] == [product["id"]]
    name = unique("Named Corp")
    account = make_account(bottlecrm_client, name=name)
    make_account(bottlecrm_client, name=name + " bis")
    assert [a["id"] for a in crm.find_by("customers", "name", [name])] == [account]


def test_account_create_and_update_are_read_back(crm: GenericConnector,
                                                 bottlecrm_client: httpx.Client) -> None:
    name, tax = unique("Write Corp"), tax_id()
    [created] = crm.write_batch("customers", [WriteOp("create", {
        "name": name, "city": "Gent", "country": "BE", "custom_fields": {"tax_id": tax}})])
    assert created.ok, created.error
    assert created.record is not None  # the answer held only the id: read back
    assert (created.record["name"], created.record["custom_fields"]) == (name, {"tax_id": tax})
    key = str(created.key)

    new_tax = tax_id()  # an update sends only what changed: PATCH keeps the rest
    [updated] = crm.write_batch("customers", [WriteOp("update", {
        "city": "Brugge", "custom_fields": {"tax_id": new_tax}}, key=key)])
    assert updated.ok, updated.error
    assert updated.record is not None and updated.key == key
    stored = bottlecrm_client.get(f"/accounts/{key}/").json()["account_obj"]
    assert (stored["name"], stored["city"], stored["country"]) == (name, "Brugge", "BE")
    assert stored["custom_fields"] == {"tax_id": new_tax} == updated.record["custom_fields"]


def test_a_custom_field_the_org_has_not_defined_is_refused_unsent(
        crm: GenericConnector) -> None:
    # BottleCRM itself would answer success and drop the value (test_quirks.py)
    name, tax = unique("Undefined Corp"), tax_id()
    refused, written = crm.write_batch("customers", [
        WriteOp("create", {"name": name, "custom_fields": {"vat_number": "BE0897290877"}}),
        WriteOp("create", {"name": unique("Defined Corp"), "custom_fields": {"tax_id": tax}})])
    assert refused.error is not None and refused.error.field == "custom_fields.vat_number"
    assert "the org defines no such Account field (defined: tax_id)" in str(refused.error)
    assert written.ok and written.record is not None, written.error
    assert written.record["custom_fields"] == {"tax_id": tax}
    assert crm.calls.as_dict() == {"read": 2, "write": 1}  # the definitions once, one read-back
    assert crm.find_by("customers", "name", [name]) == []  # never sent


def test_product_update_uses_put_and_answers_the_record(crm: GenericConnector,
                                                        bottlecrm_client: httpx.Client) -> None:
    sku = unique("SKU").replace(" ", "-")
    [created] = crm.write_batch("products", [WriteOp("create", {
        "name": "Gadget", "sku": sku, "price": "5.00", "currency": "EUR"})])
    assert created.ok and created.record is not None, created.error
    before = crm.updated_at("products", created.record)
    reads = crm.calls.read

    [updated] = crm.write_batch("products", [WriteOp("update", {"price": "7.50"},
                                                     key=str(created.key))])
    assert updated.ok and updated.record is not None, updated.error
    assert (updated.record["name"], updated.record["sku"], updated.record["price"]) == (
        "Gadget", sku, "7.50")  # partial PUT: the rest kept
    after = crm.updated_at("products", updated.record)
    assert before is not None and after is not None and after > before
    assert crm.calls.read == reads  # the answer carried the record: nothing read back
    stored = bottlecrm_client.get(f"/invoices/products/{created.key}/").json()
    assert stored["price"] == "7.50"


def test_rejected_records_name_the_field(crm: GenericConnector) -> None:
    bad_email, bad_price = crm.write_batch("customers", [
        WriteOp("create", {"name": unique("Bad Corp"), "email": "not-an-email"})]) + \
        crm.write_batch("products", [WriteOp("create", {
            "name": "Bad", "sku": unique("SKU").replace(" ", "-"), "price": "abc"})])
    for result, field in ((bad_email, "email"), (bad_price, "price")):
        assert result.error is not None and result.error.kind == "rejected"
        assert result.error.field == field
        assert "HTTP 400" in str(result.error)


def test_a_bad_token_is_refused_credentials(bottlecrm: BottleCrm) -> None:
    secret = "bcrm_pat_" + uuid.uuid4().hex
    conn = connector(bottlecrm, token=secret)
    with pytest.raises(SystemUnavailable) as caught:
        list(conn.list_changed("products", Window(None)))
    message = str(caught.value)
    assert "refused the credentials (HTTP 403)" in message
    assert "PONTE_CRM__CREDENTIALS__TOKEN" in message and secret not in message
    assert conn.calls.read == 1  # never retried


def test_the_token_carries_its_org_an_org_header_changes_nothing(
        bottlecrm_client: httpx.Client) -> None:
    # why the spec sends no org header: BottleCRM takes the org from the token alone
    product = make_product(bottlecrm_client)
    params = {"search": product["sku"]}
    plain = bottlecrm_client.get("/invoices/products/", params=params)
    foreign = bottlecrm_client.get("/invoices/products/", params=params,
                                   headers={"org": str(uuid.uuid4())})
    assert plain.status_code == foreign.status_code == 200
    assert [p["id"] for p in foreign.json()["results"]] == [product["id"]]


def test_the_spec_checks_and_is_listed() -> None:
    runner = CliRunner()
    checked = runner.invoke(app, ["connectors", "check", str(ROOT / SPEC)])
    assert checked.exit_code == 0, checked.output
    assert "ok — BottleCRM (crm), entities customers, products, orders" in checked.output
    listed = runner.invoke(app, ["connectors", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    assert '"bottlecrm"' in listed.output and "accounts" in listed.output
