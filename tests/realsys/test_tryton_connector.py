"""The built-in ``tryton`` spec against a real Tryton server, through the connector ponte builds
from settings (``PONTE_ERP__KIND=tryton``). Every test makes its own records (unique names,
codes and tax ids) and looks for those: other runs share the server and may reset it."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from realsys_servers import Tryton
from stdnum.be import vat as be_vat
from typer.testing import CliRunner

from etl.cli import app
from etl.connectors.base import Connector, Record, WriteOp
from etl.connectors.factory import build_connector
from etl.connectors.spec import TimeFormat
from etl.connectors.templates import parse_instant
from etl.errors import ConfigError, SystemUnavailable
from etl.settings import SideSettings
from etl.watermark import Window

Make = Callable[..., Connector]
SPEC = Path(__file__).resolve().parents[2] / "etl" / "connectors" / "specs" / "tryton.yaml"


@pytest.fixture
def make(tryton: Tryton) -> Iterator[Make]:
    clients: list[httpx.Client] = []

    def build(*, key: str | None = None, **sizes: int) -> Connector:
        conf = SideSettings(kind="tryton", base_url=tryton.url, **sizes,
                            credentials={"key": SecretStr(key or tryton.key),
                                         "database": SecretStr(tryton.database),
                                         "company": SecretStr(str(tryton.company))})
        conf = conf.resolve("erp", None)
        client = httpx.Client(base_url=conf.base_url + "/", timeout=conf.timeout_s)
        clients.append(client)
        return build_connector("erp", conf, client, sleep=lambda _: None)

    yield build
    for client in clients:
        client.close()


def unique(prefix: str) -> str:
    return f"{prefix} {uuid.uuid4().hex[:10]}"


def new_vat() -> str:
    """A valid Belgian VAT number no other test uses."""
    base = random.randrange(10_000_000, 19_999_999)
    number = f"BE{base:08d}{97 - base % 97:02d}"
    assert be_vat.is_valid(number)
    return number


def listed(conn: Connector, entity: str, since: datetime) -> list[Record]:
    window = Window(since, datetime.now(UTC) + timedelta(seconds=5))
    return [r for page in conn.list_changed(entity, window) for r in page]


def create(conn: Connector, entity: str, payload: Record) -> Record:
    result, = conn.write_batch(entity, [WriteOp("create", payload)])
    assert result.ok, result.error
    assert result.record is not None
    return result.record


def a_party(vat: str | None = None) -> Record:
    return {"name": unique("Acme"),
            "identifiers": [{"type": "eu_vat", "code": vat or new_vat()}],
            "addresses": [{"street": "Rue de la Loi 16", "postal_code": "1000",
                           "city": "Brussels"}],
            "contact_mechanisms": [{"type": "email", "value": "info@acme.example"}]}


def a_template(code: str) -> Record:
    return {"name": unique("Widget"), "code": code, "type": "goods", "default_uom": 1,
            "salable": True, "sale_uom": 1, "list_price": "19.90",
            "products": [{}]}  # a REST create adds no variant by itself


def test_create_update_and_read_back_a_customer(make: Make) -> None:
    conn = make()
    vat = new_vat()
    party = create(conn, "customers", a_party(vat))
    key = conn.key_of("customers", party)
    assert party["tax_identifier"]["code"] == vat
    assert party["email"] == "info@acme.example"
    assert [a["city"] for a in party["addresses"]] == ["Brussels"]
    assert conn.updated_at("customers", party) is not None

    address = party["addresses"][0]["id"]
    email = party["contact_mechanisms"][0]["id"]
    result, = conn.write_batch("customers", [WriteOp("update", key=key, payload={
        "name": "Acme renamed", "addresses": [{"id": address, "city": "Bruxelles"}],
        "contact_mechanisms": [{"id": email, "value": "sales@acme.example"},
                               {"type": "phone", "value": "+32 2 555 12 34"}]})])
    assert result.ok, result.error
    assert result.record is not None and result.record["name"] == "Acme renamed"
    again, = conn.read_by_keys("customers", [key])
    assert again["name"] == "Acme renamed"
    assert (again["email"], again["phone"]) == ("sales@acme.example", "+32 2 555 12 34")
    assert [(a["id"], a["city"]) for a in again["addresses"]] == [(address, "Bruxelles")]

    # email/phone are set on create only: later they change through contact_mechanisms
    refused, = conn.write_batch("customers", [WriteOp("update", key=key, payload={
        "phone": "+32 2 555 99 99"})])
    assert refused.error is not None and refused.error.field == "Phone"


def test_read_by_keys_and_find_by_natural_keys(make: Make) -> None:
    conn = make()
    vat = new_vat()
    first = create(conn, "customers", a_party(vat))
    second = create(conn, "customers", a_party())
    keys = [conn.key_of("customers", r) for r in (first, second)]
    found = conn.read_by_keys("customers", [*keys, "999999999", "not-a-key"])
    assert sorted(conn.key_of("customers", r) for r in found) == sorted(keys)

    by_vat = conn.find_by("customers", "tax_identifier.code", [vat])
    assert [conn.key_of("customers", r) for r in by_vat] == [keys[0]]

    code = uuid.uuid4().hex[:8].upper()
    template = create(conn, "products", a_template(code))
    assert template["list_price"] == {"__class__": "Decimal", "decimal": "19.90"}
    assert [p["code"] for p in template["products"]] == [code]  # the variant Tryton adds
    by_code = conn.find_by("products", "code", [code, "NO-SUCH-CODE"])
    assert [r["id"] for r in by_code] == [template["id"]]


def test_changes_since_a_watermark_include_a_never_written_record(
        make: Make, tryton_client: httpx.Client) -> None:
    conn = make()
    before = create(conn, "products", a_template(uuid.uuid4().hex[:8].upper()))
    mark = datetime.now(UTC)
    code = uuid.uuid4().hex[:8].upper()
    raw = {**a_template(code), "products": [["create", [{}]]]}  # as Tryton takes it
    created = tryton_client.post("/model/product.template", json=raw,
                                 params={"f": ["write_date"]})
    assert created.status_code == 200
    assert created.json()["write_date"] is None  # never written: only create_date is set
    rewritten = tryton_client.put(f"/model/product.template/{before['id']}",
                                  json={"name": unique("Renamed")})
    assert rewritten.status_code == 200

    changed = {r["id"]: r for r in listed(conn, "products", mark)}
    assert created.json()["id"] in changed
    assert before["id"] in changed
    fresh = changed[created.json()["id"]]
    assert fresh["code"] == code
    assert conn.updated_at("products", fresh) is not None
    assert conn.updated_at("products", fresh) >= mark - timedelta(seconds=1)


def test_paging_to_the_end_with_a_small_page(make: Make) -> None:
    conn = make(page_size=2)
    mark = datetime.now(UTC)
    made = [create(conn, "customers", {"name": unique("Paged")})["id"] for _ in range(5)]
    reads = conn.calls.read
    changed = listed(conn, "customers", mark)
    assert set(made) <= {r["id"] for r in changed}
    assert conn.calls.read - reads >= 3  # 5 records, 2 a page


def test_an_edit_of_a_sale_line_is_seen_through_its_sale(
        make: Make, tryton_client: httpx.Client) -> None:
    conn = make()
    party = create(conn, "customers", a_party())
    code = uuid.uuid4().hex[:8].upper()
    template = create(conn, "products", a_template(code))
    address = party["addresses"][0]["id"]
    deal = f"crm:{uuid.uuid4().hex[:12]}"
    result, = conn.write_batch("orders", [WriteOp("create", external_id=deal, payload={
        "party": party["id"], "invoice_address": address, "shipment_address": address,
        "description": unique("Deal"),
        "lines": [{"type": "line", "product": template["id"], "quantity": 2,
                   "unit": 1, "unit_price": "19.90", "description": "Widget"}]})])
    assert result.ok, result.error
    sale = result.record
    assert sale is not None and sale["state"] == "quotation" and sale["number"]
    assert sale["reference"] == deal  # ponte's external id: a lost create is found by it
    assert [r["id"] for r in conn.find_by("orders", "reference", [deal])] == [sale["id"]]
    assert sale["lines"][0]["quantity"] == 2
    # a line is written with a template, and names its variant (hook tryton_sale)
    assert sale["lines"][0]["product"]["id"] == template["products"][0]["id"]

    line = sale["lines"][0]["id"]
    # a quotation's lines are read-only: back to draft (a write of the sale), then the mark
    assert tryton_client.post(f"/model/sale.sale/{sale['id']}/draft").status_code == 200
    mark = datetime.now(UTC)
    edited = tryton_client.put(f"/model/sale.line/{line}", json={"quantity": 3})
    assert edited.status_code == 200
    direct = tryton_client.get(f"/model/sale.sale/{sale['id']}", params={"f": ["write_date"]})
    written = parse_instant(direct.json()["write_date"], TimeFormat(format="tagged"))
    assert written is not None and written < mark  # the line edit did not bump the sale

    changed = {r["id"]: r for r in listed(conn, "orders", mark)}
    assert sale["id"] in changed
    assert changed[sale["id"]]["lines"][0]["quantity"] == 3
    at = conn.updated_at("orders", changed[sale["id"]])
    assert at is not None and at >= mark - timedelta(seconds=1)


def test_a_quotation_is_put_back_to_draft_for_an_update(make: Make) -> None:
    conn = make()
    party = create(conn, "customers", a_party())
    template = create(conn, "products", a_template(uuid.uuid4().hex[:8].upper()))
    address = party["addresses"][0]["id"]
    sale = create(conn, "orders", {
        "party": party["id"], "invoice_address": address, "shipment_address": address,
        "lines": [{"type": "line", "product": template["id"], "quantity": 1,
                   "unit": 1, "unit_price": "19.90"}]})
    assert sale["state"] == "quotation"
    line = sale["lines"][0]["id"]
    result, = conn.write_batch("orders", [WriteOp("update", key=str(sale["id"]), payload={
        "description": "two now", "lines": [{"id": line, "quantity": 2}]})])
    assert result.ok, result.error
    assert result.record is not None
    assert (result.record["state"], result.record["description"]) == ("quotation", "two now")
    assert [x["quantity"] for x in result.record["lines"]] == [2]

    no_address = create(conn, "orders", {"party": party["id"]})  # quote refused: kept as draft
    assert no_address["state"] == "draft"


def a_line(template: Record, quantity: float) -> Record:
    """A sale line as the orders mapping writes it (the template; the hook picks its variant)."""
    return {"type": "line", "unit": 1, "product": template["id"], "quantity": quantity,
            "unit_price": 19.9}


def test_an_update_sends_the_deal_lines_as_the_fewest_commands(
        make: Make, tryton_client: httpx.Client) -> None:
    conn = make()
    party = create(conn, "customers", a_party())
    kept, changed, dropped, added = (create(conn, "products", a_template(
        uuid.uuid4().hex[:8].upper())) for _ in range(4))
    sale = create(conn, "orders", {"party": party["id"], "lines": [
        a_line(kept, 1), a_line(changed, 2), a_line(dropped, 3)]})
    assert sale["state"] == "quotation"
    ids = {ln["product"]["template"]: ln["id"] for ln in sale["lines"]}

    result, = conn.write_batch("orders", [WriteOp("update", key=str(sale["id"]), payload={
        "lines": [a_line(kept, 1), a_line(changed, 5), a_line(added, 4)]})])
    assert result.ok, result.error
    after = conn.read_by_keys("orders", [str(sale["id"])])[0]
    assert after["state"] == "quotation"  # back to draft for the write, quoted again
    assert sorted((ln["product"]["template"], float(ln["quantity"])) for ln in after["lines"]) \
        == sorted([(kept["id"], 1.0), (changed["id"], 5.0), (added["id"], 4.0)])
    now = {ln["product"]["template"]: ln["id"] for ln in after["lines"]}
    assert (now[kept["id"]], now[changed["id"]]) == (ids[kept["id"]], ids[changed["id"]])
    gone = tryton_client.get(f"/model/sale.line/{ids[dropped['id']]}")
    assert gone.status_code == 404, gone.text[:200]

    # a draft (put back by a user) is updated as is (Tryton refuses "draft" on a draft)
    assert tryton_client.post(f"/model/sale.sale/{sale['id']}/draft").status_code == 200
    result, = conn.write_batch("orders", [WriteOp("update", key=str(sale["id"]), payload={
        "lines": [a_line(kept, 1), a_line(changed, 6), a_line(added, 4)]})])
    assert result.ok, result.error
    after = conn.read_by_keys("orders", [str(sale["id"])])[0]
    assert after["state"] == "quotation"
    assert sorted(float(ln["quantity"]) for ln in after["lines"]) == [1.0, 4.0, 6.0]

    # Tryton would put a confirmed sale back to draft (un-confirming it): the update is
    # refused before any write, with a reason to act on
    confirmed = tryton_client.post(f"/model/sale.sale/{sale['id']}/confirm")
    assert confirmed.status_code == 200, confirmed.text[:300]
    result, = conn.write_batch("orders", [WriteOp("update", key=str(sale["id"]), payload={
        "lines": [a_line(kept, 7)]})])
    assert result.error is not None and result.error.kind == "rejected"
    assert f"the Tryton sale {sale['number']} is confirmed; lines of a confirmed sale are " \
        "not changed" in str(result.error)
    still = conn.read_by_keys("orders", [str(sale["id"])])[0]
    assert still["state"] == "confirmed" and len(still["lines"]) == 3


def test_a_bad_key_is_refused_credentials_not_a_retry(make: Make) -> None:
    conn = make(key="0" * 128)
    with pytest.raises(SystemUnavailable) as caught:
        listed(conn, "customers", datetime.now(UTC))
    assert "refused the credentials (HTTP 401)" in str(caught.value)
    assert "PONTE_ERP__CREDENTIALS__KEY" in str(caught.value)
    assert "0" * 16 not in str(caught.value)
    assert conn.calls.read == 1


def test_rejected_records_name_what_is_wrong(make: Make) -> None:
    conn = make()
    bad_vat, no_name = conn.write_batch("customers", [
        WriteOp("create", {"name": unique("Bad VAT"),
                           "identifiers": [{"type": "eu_vat", "code": "BE0123456789"}]})])[0], \
        conn.write_batch("products", [WriteOp("create", {"code": uuid.uuid4().hex[:8],
                                                         "default_uom": 1})])[0]
    assert bad_vat.error is not None and bad_vat.error.kind == "rejected"
    assert "BE0123456789" in str(bad_vat.error) and "not valid" in str(bad_vat.error)
    assert no_name.error is not None and no_name.error.kind == "rejected"
    assert no_name.error.field == "Name"
    assert "HTTP 400" in str(no_name.error)


def test_the_spec_checks_and_is_listed() -> None:
    runner = CliRunner()
    checked = runner.invoke(app, ["connectors", "check", str(SPEC)])
    assert checked.exit_code == 0, checked.output
    listing = runner.invoke(app, ["connectors", "list"])
    assert listing.exit_code == 0, listing.output
    assert "tryton" in listing.output


def test_a_deactivated_record_is_listed_but_not_found_by_its_code(make: Make) -> None:
    conn = make()
    code = uuid.uuid4().hex[:8].upper()
    template = create(conn, "products", a_template(code))
    mark = datetime.now(UTC)
    result, = conn.write_batch("products", [WriteOp("update", key=str(template["id"]),
                                                    payload={"active": False})])
    assert result.ok, result.error
    changed = {r["id"]: r for r in listed(conn, "products", mark)}
    assert changed[template["id"]]["active"] in (False, 0)  # 0 on SQLite
    assert conn.read_by_keys("products", [str(template["id"])])  # archived: still read
    assert conn.find_by("products", "code", [code]) == []  # a new one may take the code
    again, = conn.write_batch("products", [WriteOp("update", key=str(template["id"]),
                                                   payload={"active": True})])
    assert again.ok, again.error  # an archived record can be written (reactivated)


def test_an_unknown_field_is_a_configuration_error_not_a_retry(make: Make) -> None:
    conn = make()
    with pytest.raises(ConfigError, match="HTTP 500"):
        conn.find_by("customers", "no_such_field", ["x"])
    assert conn.calls.read == 1
