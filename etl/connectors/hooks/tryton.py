"""Tryton facts a spec cannot say as data.

* A one2many field is written with commands, not a list of records: ``[["create", [{...}]],
  ["write", [id], {...}]]``. Mappings speak of the list as read back (records, each with its
  ``id`` once it exists): an item with an ``id`` becomes a ``write`` of that record, the others
  one ``create``. Items left out are kept (Tryton deletes only on a ``delete`` command).
* A sale line names a product variant (``product.product``) while products sync as templates:
  ``tryton_sale`` writes each line with the first variant of its linked template, read by key.
* A quotation needs an invoice address, which the REST create does not fill from the party (no
  on_change runs): ``tryton_sale`` sends the party's first address as invoice and shipment
  address when the payload names the party but no address.
"""

from __future__ import annotations

from typing import Any

from etl.connectors.base import Record
from etl.connectors.hooks import hook
from etl.errors import RecordError

READ_ONLY = ("id", "__name__", "rec_name")  # what a read adds to an item; never written


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


@hook("tryton_sale")
def sale(conn: Any, entity: str, payload: Record) -> Record:
    lines = [ln for ln in payload.get("lines") or () if isinstance(ln, dict) and ln.get("product")]
    templates = {str(ln["product"]) for ln in lines}
    variants = {conn.key_of("products", t): t.get("products") or []
                for t in conn.read_by_keys("products", sorted(templates))} if templates else {}
    for line in lines:
        found = variants.get(str(line["product"]))
        if not found:
            raise RecordError(f"Tryton sale line: product template {line['product']} has no "
                              "variant", field="lines")
        line["product"] = int(found[0]["id"])
    party = payload.get("party")
    if party and not payload.get("invoice_address"):
        parties = conn.read_by_keys("customers", [str(party)])
        addresses = parties[0].get("addresses") or [] if parties else []
        if addresses:
            payload["invoice_address"] = addresses[0]["id"]
            payload.setdefault("shipment_address", addresses[0]["id"])
    return commands(payload)
