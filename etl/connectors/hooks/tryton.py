"""Tryton facts a spec cannot say as data.

* A one2many field is written with commands, not a list of records: ``[["create", [{...}]],
  ["write", [id], {...}]]``. Mappings speak of the list as read back (records, each with its
  ``id`` once it exists): an item with an ``id`` becomes a ``write`` of that record, the others
  one ``create``. Items left out are kept (Tryton deletes only on a ``delete`` command).
* A sale line names a product variant (``product.product``) while products sync as templates:
  ``tryton_sale`` writes each line with the first variant of its linked template, read by key.
* A unit price is sent as a class-tagged decimal (Tryton refuses the float 19.9, whose exact
  value has more than 4 decimals).
* Lines of an existing sale (an update), given as the deal's whole list (no line ids), are
  sent as the fewest commands against the sale's current lines, read by key: paired by product
  template (then position), a ``write`` of the ones whose quantity or price changed, a
  ``create`` of the new ones, a ``delete`` of the rest; kept lines keep their ids.
* Only a draft or a quotation is updated. A quotation is read-only: it is put back to draft
  (the spec's ``then`` step quotes it again). Tryton refuses ``draft`` on a draft, and would
  put a confirmed or cancelled sale back to draft too (un-confirming it): the update of a
  sale in any other state is refused, naming it.
* A quotation needs an invoice address, which the REST create does not fill from the party (no
  on_change runs): ``tryton_sale`` sends the party's first address as invoice and shipment
  address when the payload names the party but no address.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from etl.connectors.base import Record, WriteOp
from etl.connectors.hooks import hook
from etl.connectors.spec import Request
from etl.errors import RecordError

READ_ONLY = ("id", "__name__", "rec_name")  # what a read adds to an item; never written
CONFIRMED = ("confirmed", "processing", "done")
UPDATED = ("draft", "quotation")  # the only states of a sale an update changes


def _values(item: Record) -> Record:
    return commands({k: v for k, v in item.items() if k not in READ_ONLY})


def commands(payload: Record) -> Record:
    """Every list of records in ``payload`` (nested ones too) as one2many commands."""
    out: Record = {}
    for field, value in payload.items():
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            steps: list[Any] = [["write", [int(v["id"])], _values(v)] for v in value
                                if v.get("id") is not None]
            new = [_values(v) for v in value if v.get("id") is None]
            out[field] = steps + ([["create", new]] if new else [])
        else:
            out[field] = value
    return out


@hook("tryton_one2many")
def one2many(conn: Any, entity: str, payload: Record) -> Record:
    return commands(payload)


@hook("tryton_sale", with_op=True)
def sale(conn: Any, entity: str, payload: Record, op: WriteOp | None = None) -> Record:
    current = (_current(conn, entity, op.key, "lines" in payload)
               if op and op.action == "update" and op.key else None)
    lines = [ln for ln in payload.get("lines") or () if isinstance(ln, dict) and ln.get("product")]
    templates = {str(ln["product"]) for ln in lines}
    variants = {conn.key_of("products", t): t.get("products") or []
                for t in conn.read_by_keys("products", sorted(templates))} if templates else {}
    for line in lines:
        found = variants.get(str(line["product"]))
        if not found:
            raise RecordError(f"Tryton sale line: product template {line['product']} has no "
                              "variant", field="lines")
        line["template"], line["product"] = line["product"], int(found[0]["id"])
        if isinstance(line.get("unit_price"), float):  # as a float 19.9 is 19.89999...: refused
            line["unit_price"] = {"__class__": "Decimal", "decimal": repr(line["unit_price"])}
    party = payload.get("party")
    if party and not payload.get("invoice_address"):
        parties = conn.read_by_keys("customers", [str(party)])
        addresses = parties[0].get("addresses") or [] if parties else []
        if addresses:
            payload["invoice_address"] = addresses[0]["id"]
            payload.setdefault("shipment_address", addresses[0]["id"])
    if current is not None and "lines" in payload and not any(
            isinstance(ln, dict) and "id" in ln for ln in payload["lines"] or ()):
        # the deal's whole list (no line ids): the commands that make the sale's lines it
        payload["lines"] = line_commands(current.get("lines") or [], lines)
    for line in lines:
        line.pop("template", None)
    if current is not None and current.get("state") == "quotation":
        _to_draft(conn, entity, str(op.key if op else ""))
    return commands(payload)


def _to_draft(conn: Any, entity: str, key: str) -> None:
    update = conn.spec.entities[entity].update
    step = Request(method="POST", path=f"{update.path}/draft", headers=update.headers,
                   encode=update.encode)
    call = conn._call(step, {"key": key})
    outcome, _, _ = conn._send(call, "write")
    if outcome.action != "ok":
        raise RecordError(f"Tryton: the sale {key} could not be put back to draft: HTTP "
                          f"{outcome.status}: {outcome.message}", kind="rejected")


def _current(conn: Any, entity: str, key: str, lines: bool) -> Record | None:
    """The sale as Tryton holds it; a :class:`RecordError` unless a draft or quotation."""
    found = conn.read_by_keys(entity, [key])
    if not found:
        return None  # gone: the update itself says so
    sale = found[0]
    state = sale.get("state")
    if state not in UPDATED:
        kind = "confirmed" if state in CONFIRMED else str(state)
        what = f"lines of a {kind} sale are" if lines else f"a {kind} sale is"
        raise RecordError(f"the Tryton sale {sale.get('number') or key} is {state}; {what} not "
                          "changed (change it in Tryton itself)",
                          field="lines" if lines else None, kind="rejected")
    return dict(sale)


def line_commands(current: list[Record], wanted: list[Record]) -> list[Any]:
    """Commands turning the sale's ``current`` lines (as read) into the ``wanted`` ones (each
    with its ``template``): lines are paired by template, then position."""
    have: dict[str, list[Record]] = {}
    for line in current:
        product = line.get("product")
        if line.get("type", "line") == "line" and isinstance(product, dict):
            have.setdefault(str(product.get("template")), []).append(line)
    steps: list[Any] = []
    new: list[Record] = []
    for item in wanted:
        pool = have.get(str(item["template"])) or []
        if not pool:
            new.append({k: v for k, v in item.items() if k != "template"})
            continue
        old = pool.pop(0)
        changed = {f: item[f] for f in ("quantity", "unit_price")
                   if f in item and _number(item[f]) != _number(old.get(f))}
        if changed:
            steps.append(["write", [int(old["id"])], changed])
    gone = sorted(int(ln["id"]) for pool in have.values() for ln in pool)
    return steps + ([["create", new]] if new else []) + ([["delete", gone]] if gone else [])


def _number(value: Any) -> Decimal | None:
    """A quantity or price as read (a class-tagged decimal, a float, text) or sent."""
    if isinstance(value, dict):
        value = value.get("decimal")
    try:
        return None if value is None else Decimal(str(value))
    except InvalidOperation:
        return None
