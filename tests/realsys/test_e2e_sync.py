"""BottleCRM <-> Tryton end to end: ``ponte`` as a real process with the mappings of
``mappings/bottlecrm_tryton`` against both real servers, each scenario from pristine databases
(reset, then seeded through the servers' APIs), state in a temporary SQLite file.

The first sync matches the customers and products both sides hold (by tax id, by code = SKU)
instead of duplicating them; changes made on each side flow; a second run writes nothing
although BottleCRM's accounts and deals are read in full; a record archived or deleted follows
the mapping's policy; a SIGKILLed sync converges on the next run; ``ponte verify`` finds no
drift. Figures of the seeded company's first sync are written to ``e2e_figures.json`` in the
test's temporary folder and printed (``-s``).
"""

from __future__ import annotations

import json
import signal
import sqlite3
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e_support import (
    PonteProcess,
    crm_accounts,
    crm_list,
    duplicates,
    ponte_env,
    reset_servers,
    tryton_all,
    writes,
)
from realsys_servers import BottleCrm, Tryton, b64
from seed_company import (
    Party,
    Seeded,
    be_vat,
    create_crm_account,
    create_crm_deal,
    create_tryton_product,
    seed_company,
)

pytestmark = pytest.mark.timeout(1800)

SMALL = {"tryton_only": 4, "shared": 3, "crm_only": 4, "products": 6, "crm_products": 3,
         "won_deals": 3, "open_deals": 1}
# the seeded company of the issue: 300 parties (100 on both sides), 100 products (30 in the
# CRM too), 50 deals (40 won)
FULL = {"tryton_only": 100, "shared": 100, "crm_only": 100, "products": 100, "crm_products": 30,
        "won_deals": 40, "open_deals": 10}
# the company's own party in Tryton (no tax id): synced as one more account, never matched
OWN_PARTY = 1


@dataclass
class Company:
    seeded: Seeded
    ponte: PonteProcess
    tryton: httpx.Client
    crm: httpx.Client
    tax_field: str

    # --- what each server holds, by natural key --------------------------------------------

    def parties(self) -> dict[str, dict[str, Any]]:
        rows = tryton_all(self.tryton, "party.party", [
            "name", "active", "identifiers.code", "email", "phone", "addresses.city"],
            archived=True)
        by_tax: dict[str, dict[str, Any]] = {}
        for row in rows:
            for ident in row["identifiers"]:
                assert ident["code"] not in by_tax, f"two parties with tax id {ident['code']}"
                by_tax[ident["code"]] = row
        return by_tax

    def accounts(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for account in crm_accounts(self.crm):
            tax = account.get("custom_fields", {}).get(self.tax_field)
            if tax:
                assert tax not in out, f"two accounts with tax id {tax}"
                out[tax] = account
        return out

    def crm_products(self) -> dict[str, dict[str, Any]]:
        rows = crm_list(self.crm, "/invoices/products/", "results")
        dup = duplicates([r["sku"] for r in rows])
        assert not dup, f"products duplicated by SKU in BottleCRM: {dup}"
        return {r["sku"]: r for r in rows}

    def sales(self) -> list[dict[str, Any]]:
        return tryton_all(self.tryton, "sale.sale", [
            "reference", "state", "party", "description", "lines.product.code",
            "lines.quantity", "lines.unit_price"])


@pytest.fixture
def company_factory(tryton: Tryton, bottlecrm: BottleCrm, realsys_env: dict[str, str],
                    tmp_path: Path) -> Iterator[Any]:
    clients: list[httpx.Client] = []

    def make(size: dict[str, int]) -> Company:
        reset_servers()
        t, c = tryton.client(), bottlecrm.client()
        clients.extend([t, c])
        tax_field = realsys_env["BOTTLECRM_TAX_ID_FIELD"]
        seeded = seed_company(t, c, tax_field=tax_field, run=uuid.uuid4().hex[:6], **size)
        return Company(seeded, PonteProcess(ponte_env(tryton, bottlecrm, tmp_path), tmp_path),
                       t, c, tax_field)

    yield make
    for client in clients:
        client.close()


def counts(report: dict[str, Any], entity: str) -> dict[str, Any]:
    e = report["entities"][entity]
    return {"matched": e["matched"], "crm_created": e["crm"]["created"],
            "erp_created": e["erp"]["created"], "crm_updated": e["crm"]["updated"],
            "erp_updated": e["erp"]["updated"], "crm_read": e["crm"]["read"],
            "erp_read": e["erp"]["read"], "quarantined": e["crm"]["quarantined"]
            + e["erp"]["quarantined"]}


def assert_no_writes(report: dict[str, Any]) -> None:
    assert writes(report) == 0, json.dumps({"entities": report["entities"],
                                            "api_calls": report["api_calls"],
                                            "problems": report.get("problems")})


def assert_converged(co: Company) -> None:
    """Every customer once on each side, every product once in the CRM, one sale per won deal
    with the deal's lines, and ``ponte verify`` finding no drift."""
    s = co.seeded
    parties, accounts = co.parties(), co.accounts()
    every = set(s.tryton_parties) | set(s.crm_accounts)
    assert every <= set(parties) and every <= set(accounts)
    assert set(s.tryton_products) <= set(co.crm_products())
    sales = co.sales()
    refs = [sale["reference"] for sale in sales]
    assert not duplicates(refs), duplicates(refs)
    assert {f"bottlecrm-{d}" for d in s.won_deals} == set(refs)
    for deal_id in s.won_deals:
        deal = co.crm.get(f"/opportunities/{deal_id}/").json()["opportunity_obj"]
        sale = next(x for x in sales if x["reference"] == f"bottlecrm-{deal_id}")
        assert sorted((li["product"]["sku"], float(li["quantity"])) for li in deal["line_items"]) \
            == sorted((ln["product"]["code"], float(ln["quantity"])) for ln in sale["lines"])
        assert sale["party"] == parties[deal_account_tax(co, deal)]["id"]
    report = co.ponte.verify()
    assert report["drift"] == 0, json.dumps(report["entities"], indent=1)


def deal_account_tax(co: Company, deal: dict[str, Any]) -> str:
    account = co.crm.get(f"/accounts/{deal['account']['id']}/").json()["account_obj"]
    return str(account["custom_fields"][co.tax_field])


def test_first_sync_of_a_seeded_company_matches_by_natural_key_then_writes_nothing(
        company_factory: Any, tmp_path: Path) -> None:
    started = time.monotonic()
    co: Company = company_factory(FULL)
    seeded_s = time.monotonic() - started
    s = co.seeded

    first = co.ponte.sync()
    first_s = co.ponte.runs[-1].seconds
    customers, products, orders = (counts(first, e) for e in ("customers", "products", "orders"))
    assert customers["matched"] == FULL["shared"]
    assert customers["erp_created"] == FULL["crm_only"]
    # and the company's own party, which has no tax id: created as an account, never matched
    assert customers["crm_created"] == FULL["tryton_only"] + OWN_PARTY
    assert products["matched"] == FULL["crm_products"]
    assert products["crm_created"] == FULL["products"] - FULL["crm_products"]
    assert orders["erp_created"] == FULL["won_deals"]
    assert all(c["quarantined"] == 0 for c in (customers, products, orders)), first["problems"]
    # the shared customers took Tryton's values (on_match: erp_wins): the CRM phone was put back
    accounts = co.accounts()
    parties = co.parties()
    for tax in s.shared_tax_ids:
        assert accounts[tax]["phone"] == parties[tax]["phone"]

    second = co.ponte.sync()
    assert_no_writes(second)
    # BottleCRM has no changed-since filter: every account and won deal is read again, and the
    # snapshot diff keeps them from being written; Tryton is read through its domain filter
    assert second["entities"]["customers"]["crm"]["read"] == s.customers + OWN_PARTY
    assert second["entities"]["orders"]["crm"]["read"] == FULL["won_deals"]
    assert second["entities"]["customers"]["erp"]["read"] < s.customers
    third = co.ponte.sync()  # nothing changed anywhere since the second run
    assert_no_writes(third)
    assert third["entities"]["customers"]["crm"]["read"] == s.customers + OWN_PARTY
    assert third["entities"]["customers"]["erp"]["read"] == 0

    alone = co.ponte.sync("customers")  # the customers alone: their reads and time
    assert_no_writes(alone)
    assert_converged(co)
    figures = {
        "customers_alone": {"crm_read": alone["entities"]["customers"]["crm"]["read"],
                            "erp_read": alone["entities"]["customers"]["erp"]["read"],
                            "api_calls": alone["api_calls"], "duration_s": alone["duration_s"]},
        "reads_by_hand": read_costs(co),
        "seed_s": round(seeded_s, 1), "first_sync_s": round(first_s, 1),
        "first": {"customers": customers, "products": products, "orders": orders},
        "first_api_calls": first["api_calls"],
        "second_writes": writes(second), "second_s": round(co.ponte.runs[1].seconds, 1),
        "second": {e: counts(second, e) for e in ("customers", "products", "orders")},
        "second_api_calls": second["api_calls"], "second_duration_s": second["duration_s"],
        "third": {e: counts(third, e) for e in ("customers", "products", "orders")},
        "third_api_calls": third["api_calls"], "third_duration_s": third["duration_s"],
    }
    (tmp_path / "e2e_figures.json").write_text(json.dumps(figures, indent=1))
    print("\ne2e figures:", json.dumps(figures, indent=1))


def read_costs(co: Company) -> dict[str, Any]:
    """What one poll of the customers costs on each side, read as ponte reads them: BottleCRM's
    accounts in full (no filter exists), Tryton's parties through the changed-since domain
    (nothing changed) and, for scale, in full."""
    def timed(fn: Any) -> dict[str, Any]:
        started = time.monotonic()
        records, requests = fn()
        return {"records": records, "requests": requests,
                "seconds": round(time.monotonic() - started, 3)}

    def crm_full() -> tuple[int, int]:
        records = requests = 0
        while True:
            page = co.crm.get("/accounts/", params={"is_active": "true", "limit": 200,
                                                    "offset": records}).json()
            got, requests = len(page["active_accounts"]["open_accounts"]), requests + 1
            records += got
            if records >= page["active_accounts"]["open_accounts_count"] or not got:
                return records, requests

    def tryton(domain: Any) -> tuple[int, int]:
        records = requests = 0
        while True:
            got = co.tryton.get("/model/party.party", params={
                "f": ["name", "identifiers.code", "email", "phone", "addresses.street",
                      "create_date", "write_date"],
                "d": b64(domain), "s": 100, "p": records}).json()
            records, requests = records + len(got), requests + 1
            if len(got) < 100:
                return records, requests

    now = datetime.now(UTC)
    since = {"__class__": "datetime", "year": now.year, "month": now.month, "day": now.day,
             "hour": now.hour, "minute": now.minute, "second": now.second, "microsecond": 0}
    changed = ["OR", [["write_date", ">=", since]], [["create_date", ">=", since]]]
    return {"bottlecrm_accounts_full": timed(crm_full),
            "tryton_parties_changed_since": timed(lambda: tryton(changed)),
            "tryton_parties_full": timed(lambda: tryton([]))}


def test_a_change_on_each_side_flows_and_only_it(company_factory: Any) -> None:
    co: Company = company_factory(SMALL)
    s = co.seeded
    co.ponte.sync()

    # CRM: an account renamed (the name flows both ways); Tryton: a party's phone changed
    # (Tryton masters the contact data) and a product's price
    crm_tax, erp_tax = s.shared_tax_ids[0], next(iter(s.tryton_parties))
    renamed = f"Renamed {uuid.uuid4().hex[:6]} NV"
    assert co.crm.patch(f"/accounts/{s.crm_accounts[crm_tax]}/",
                        json={"name": renamed}).status_code == 200
    party = co.parties()[erp_tax]
    phone = next(m for m in co.tryton.get(f"/model/party.party/{party['id']}", params={
        "f": ["contact_mechanisms.type", "contact_mechanisms.value"]}).json()[
        "contact_mechanisms"] if m["type"] == "phone")
    assert co.tryton.put(f"/model/party.party/{party['id']}", json={
        "contact_mechanisms": [["write", [phone["id"]], {"value": "+32 9 999 99 99"}]]},
        ).status_code == 200
    code = next(iter(s.tryton_products))
    template = co.tryton.get("/model/product.template", params={
        "f": ["code"], "d": b64([["code", "=", code]])}).json()[0]
    assert co.tryton.put(f"/model/product.template/{template['id']}",
                         json={"list_price": "123.45"}).status_code == 200

    report = co.ponte.sync()
    c, p = counts(report, "customers"), counts(report, "products")
    assert (c["erp_updated"], c["crm_updated"], c["erp_created"], c["crm_created"]) == (1, 1, 0, 0)
    assert (p["crm_updated"], p["crm_created"]) == (1, 0)
    assert co.parties()[crm_tax]["name"] == renamed
    assert co.accounts()[erp_tax]["phone"] == "+32 9 999 99 99"
    assert co.crm_products()[code]["price"] == "123.45"
    # BottleCRM: full read of the accounts, yet only the real change was written
    assert c["crm_read"] == s.customers + OWN_PARTY
    assert_no_writes(co.ponte.sync())
    assert_converged(co)


def test_tryton_traps_a_never_written_template_and_a_sale_line_edit_are_seen(
        company_factory: Any) -> None:
    co: Company = company_factory(SMALL)
    co.ponte.sync()
    # a quotation's lines are read-only: one sale back to draft (a write of the sale, read by
    # the next run, which writes nothing: draft and quotation are both a won deal)
    sale = co.sales()[0]
    assert co.tryton.post(f"/model/sale.sale/{sale['id']}/draft").status_code == 200
    drafted = co.tryton.get(f"/model/sale.sale/{sale['id']}", params={"f": ["write_date"]})
    assert drafted.json()["write_date"] is not None
    assert_no_writes(co.ponte.sync())  # reads the first run's writes back (echoes) once

    # a template never written after its create has write_date NULL: the OR with create_date
    # lists it
    code = f"NEW{uuid.uuid4().hex[:6].upper()}"
    create_tryton_product(co.tryton, code, "Never written", "7.50")
    written = co.tryton.get("/model/product.template", params={
        "f": ["write_date"], "d": b64([["code", "=", code]])}).json()[0]
    assert written["write_date"] is None
    # a sale line edited in Tryton does not bump its sale: the sale is still read (by its
    # lines' stamps) and, the deal owning its sale's lines, the deal's line is put back
    fields = {"f": ["lines.id", "lines.quantity"]}
    before = co.tryton.get(f"/model/sale.sale/{sale['id']}", params=fields).json()["lines"]
    line = before[0]
    edited = co.tryton.put(f"/model/sale.line/{line['id']}", json={"quantity": 9})
    assert edited.status_code == 200, edited.text[:300]
    stamp = co.tryton.get(f"/model/sale.sale/{sale['id']}", params={"f": ["write_date"]}).json()
    assert stamp["write_date"] == drafted.json()["write_date"]

    report = co.ponte.sync()
    p, o = counts(report, "products"), counts(report, "orders")
    assert (p["erp_read"], p["crm_created"]) == (1, 1)
    assert code in co.crm_products()
    assert (o["erp_read"], o["erp_updated"], o["crm_updated"]) == (1, 1, 0), json.dumps(o)
    after = co.tryton.get(f"/model/sale.sale/{sale['id']}", params=fields).json()["lines"]
    assert [(x["id"], float(x["quantity"])) for x in after] \
        == [(x["id"], float(x["quantity"])) for x in before]  # the same lines, the deal's again
    assert_no_writes(co.ponte.sync())
    assert_converged(co)  # the deal's lines, and no drift


def test_a_deal_line_edited_after_its_sale_exists_flows_to_the_sale(
        company_factory: Any) -> None:
    co: Company = company_factory(SMALL)
    co.ponte.sync()
    deal_id = co.seeded.won_deals[0]
    deal = co.crm.get(f"/opportunities/{deal_id}/").json()["opportunity_obj"]
    sale = next(x for x in co.sales() if x["reference"] == f"bottlecrm-{deal_id}")
    fields = {"f": ["lines.id", "lines.product.code", "lines.quantity"]}
    before = co.tryton.get(f"/model/sale.sale/{sale['id']}", params=fields).json()["lines"]
    item = deal["line_items"][0]
    quantity = float(item["quantity"]) + 3
    edited = co.crm.put(f"/opportunities/{deal_id}/line-items/{item['id']}/",
                        json={"quantity": f"{quantity:.2f}"})
    assert edited.status_code == 200, edited.text[:300]

    report = co.ponte.sync()
    o = counts(report, "orders")
    assert (o["erp_updated"], o["crm_updated"], o["quarantined"]) == (1, 0, 0), json.dumps(o)
    after = co.tryton.get(f"/model/sale.sale/{sale['id']}", params=fields).json()["lines"]
    sku = item["product"]["sku"]
    assert sorted((x["id"], x["product"]["code"]) for x in after) \
        == sorted((x["id"], x["product"]["code"]) for x in before)  # the line ids are kept
    assert [float(x["quantity"]) for x in after if x["product"]["code"] == sku] == [quantity]
    state = co.tryton.get(f"/model/sale.sale/{sale['id']}", params={"f": ["state"]}).json()
    assert state["state"] == "quotation"
    assert_no_writes(co.ponte.sync())
    assert_converged(co)


def test_archived_and_deleted_customers_follow_the_mapping_policy(company_factory: Any) -> None:
    co: Company = company_factory(SMALL)
    s = co.seeded
    co.ponte.sync()

    # archived in Tryton: the account becomes inactive in BottleCRM
    archived_tax = next(iter(s.tryton_parties))
    party = co.parties()[archived_tax]
    assert co.tryton.put(f"/model/party.party/{party['id']}",
                         json={"active": False}).status_code == 200
    # and a product template archived: the CRM product is deactivated (products: ERP -> CRM)
    code = next(iter(s.tryton_products))
    template = co.tryton.get("/model/product.template", params={
        "f": ["code"], "d": b64([["code", "=", code]])}).json()[0]
    assert co.tryton.put(f"/model/product.template/{template['id']}",
                         json={"active": False}).status_code == 200
    report = co.ponte.sync()
    assert counts(report, "customers")["crm_updated"] == 1
    assert counts(report, "products")["crm_updated"] == 1
    account_id = co.accounts()[archived_tax]["id"]
    account = co.crm.get(f"/accounts/{account_id}/").json()["account_obj"]
    assert account["is_active"] is False
    assert co.crm_products()[code]["is_active"] is False
    # the inactive account is still listed (BottleCRM's closed accounts): not vanished
    deactivated = co.ponte.verify()
    assert deactivated["drift"] == 0, json.dumps(deactivated["entities"], indent=1)

    # deleted in BottleCRM: `deletes: deactivate` archives the party (verify --fix), never
    # deletes it nor re-creates the account. Two accounts without deals (the seed gives the
    # first CRM-only account an open deal, later ones none).
    gone = [t for t in s.crm_accounts if t not in s.shared_tax_ids][:2]
    for tax in gone:
        assert co.crm.delete(f"/accounts/{s.crm_accounts[tax]}/").status_code == 200
    found = co.ponte.verify()
    assert found["entities"]["customers"]["vanished"] == 2, json.dumps(found["entities"])
    # 2 of 12 linked customers is more than PONTE_MAX_DELETE_SHARE (10 %): ponte stops and asks
    guarded = co.ponte.verify("--fix")
    assert guarded["entities"]["customers"]["fixed"] == 0
    assert guarded["entities"]["customers"].get("blocked"), json.dumps(guarded["entities"])
    co.ponte.env["PONTE_MAX_DELETE_SHARE"] = "0.5"
    fixed = co.ponte.verify("--fix")
    assert fixed["entities"]["customers"]["fixed"] == 2, json.dumps(fixed["entities"])
    parties, accounts = co.parties(), co.accounts()
    for tax in gone:
        assert parties[tax]["active"] in (0, False)
        assert tax not in accounts
    assert_no_writes(co.ponte.sync())
    settled = co.ponte.verify()
    assert settled["drift"] == 0, json.dumps(settled["entities"], indent=1)


def test_a_sigkilled_first_sync_converges_on_the_next_run(company_factory: Any,
                                                          tmp_path: Path) -> None:
    co: Company = company_factory({**SMALL, "tryton_only": 40, "crm_only": 40})
    proc = co.ponte.start("sync")
    state = tmp_path / "state.db"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:  # a chunk of creates committed
        if state.exists() and _links(state) > 0:
            break
        time.sleep(0.2)
    assert proc.poll() is None, (tmp_path / "background.err").read_text()[-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    co.ponte.sync()
    assert_converged(co)
    assert_no_writes(co.ponte.sync())


def _links(state: Path) -> int:
    with sqlite3.connect(f"file:{state}?mode=ro", uri=True, timeout=1) as db:
        try:
            return int(db.execute("select count(*) from links").fetchone()[0])
        except sqlite3.OperationalError:
            return 0


def test_a_crm_account_typed_with_a_tax_id_tryton_already_holds_is_matched(
        company_factory: Any) -> None:
    """An account added in the CRM for a party Tryton already has (same tax id) after the
    first sync: the next sync links them instead of creating a second party."""
    co: Company = company_factory(SMALL)
    co.ponte.sync()
    tax = be_vat(9_999_999)
    party_id = co.tryton.post("/model/party.party", json={
        "name": "Late Party NV",
        "identifiers": [["create", [{"type": "eu_vat", "code": tax}]]]}).json()["id"]
    assert party_id
    create_crm_account(co.crm, Party(tax, "Late Party NV (CRM)", "late@party.example",
                                     "+32 2 000 00 00", "Meir 1", "Antwerpen", "2000"),
                       co.tax_field)
    report = co.ponte.sync()
    assert counts(report, "customers")["matched"] == 1
    assert tax in co.parties() and tax in co.accounts()


def test_a_sale_line_names_the_variant_of_its_template_when_ids_differ(
        company_factory: Any) -> None:
    co: Company = company_factory(SMALL)
    co.ponte.sync()
    # a second variant of a seeded template: from now on a new template's id is not its
    # variant's (the line written with the template id would name that second variant)
    first = min(co.seeded.tryton_products.values())
    extra = co.tryton.post("/model/product.product", json={"template": first, "suffix_code": "B"})
    assert extra.status_code == 200, extra.text[:300]
    code = f"VAR{uuid.uuid4().hex[:6].upper()}"
    variant = create_tryton_product(co.tryton, code, "Variant apart", "3.25")
    template = co.tryton.get(f"/model/product.product/{variant}",
                             params={"f": ["template"]}).json()["template"]
    assert template != variant
    co.ponte.sync("products")
    account = next(iter(co.seeded.crm_accounts.values()))
    deal = create_crm_deal(co.crm, f"Variant deal {code}", account, "CLOSED_WON",
                           [(co.crm_products()[code]["id"], 2, "3.25")])
    co.seeded.won_deals.append(deal)

    report = co.ponte.sync()
    assert counts(report, "orders")["erp_created"] == 1, json.dumps(report["entities"])
    sale = next(s for s in tryton_all(co.tryton, "sale.sale", ["reference", "lines.product"])
                if s["reference"] == f"bottlecrm-{deal}")
    assert [ln["product"] for ln in sale["lines"]] == [variant]
    assert_converged(co)


def test_sales_become_quotations_with_the_address_of_their_party(company_factory: Any) -> None:
    co: Company = company_factory(SMALL)
    report = co.ponte.sync()
    assert counts(report, "orders")["erp_created"] == len(co.seeded.won_deals)
    parties = {p["id"]: p for p in tryton_all(co.tryton, "party.party", ["addresses"])}
    sales = tryton_all(co.tryton, "sale.sale", ["state", "number", "party", "invoice_address",
                                                "shipment_address"])
    assert len(sales) == len(co.seeded.won_deals)
    for sale in sales:
        address = parties[sale["party"]]["addresses"][0]
        assert (sale["state"], sale["invoice_address"], sale["shipment_address"]) == (
            "quotation", address, address), sale
        assert sale["number"]
    assert_no_writes(co.ponte.sync())
    assert_converged(co)


def test_a_new_state_database_matches_each_won_deal_with_its_sale_by_reference(
        company_factory: Any, tmp_path: Path) -> None:
    """A state database lost (or a second install) pointed at systems an earlier one synced:
    each won deal is matched with the sale whose reference is its external id
    (``bottlecrm-<deal id>``), none is created again, the company's own party (no tax id) is
    matched with its account by name, and the next run writes nothing."""
    co: Company = company_factory(SMALL)
    won = co.seeded.won_deals
    assert counts(co.ponte.sync(), "orders")["erp_created"] == len(won)
    sales_before = sorted((s["id"], s["reference"]) for s in co.sales())
    parties_before = sorted(p["id"] for p in tryton_all(co.tryton, "party.party", ["name"],
                                                         archived=True))

    fresh_dir = tmp_path / "fresh"
    fresh_dir.mkdir()
    fresh = PonteProcess({**co.ponte.env,
                          "PONTE_STATE_URL": f"sqlite:///{fresh_dir / 'state.db'}"}, fresh_dir)
    first = fresh.run("sync", "--json").report
    orders = counts(first, "orders")
    assert orders == {**orders, "matched": len(won), "erp_created": 0, "crm_created": 0,
                      "erp_updated": 0, "crm_updated": 0, "quarantined": 0}, \
        json.dumps(first["entities"])
    assert sorted((s["id"], s["reference"]) for s in co.sales()) == sales_before
    # the customers and products are matched by tax id and code, the company's own party (no
    # tax id) by its name (natural_key_fallback): nothing is created, nothing quarantined
    assert first["status"] == "ok", json.dumps(first.get("problems"))
    assert counts(first, "customers") == {**counts(first, "customers"),
                                          "matched": co.seeded.customers + OWN_PARTY,
                                          "erp_created": 0,
                                          "crm_created": 0, "quarantined": 0}, \
        json.dumps(first["entities"]["customers"])
    assert counts(first, "products")["matched"] == SMALL["products"]
    assert not first.get("problems"), first["problems"]
    assert sorted(p["id"] for p in tryton_all(co.tryton, "party.party", ["name"],
                                              archived=True)) == parties_before

    second = fresh.sync()
    assert_no_writes(second)
    assert counts(second, "orders")["crm_read"] == len(won)
    report = fresh.verify("orders")
    assert report["drift"] == 0, json.dumps(report["entities"], indent=1)
