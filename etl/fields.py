"""What a mapping can name in one collection of one system: ``ponte fields crm Contacts``.

The declared fields of the collection's schema (:mod:`etl.connectors.schema`), as native paths,
plus its custom fields: the ones the system lists (Ploomes ``/Fields``, one request), each with
its label, key and type (an option field: its option names, which a mapping may write with
``transform: option``), named in a mapping as ``{custom: <label or key>}``; or, for free-form
custom fields with no list (Omie's characteristics), the path pattern that names one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import httpx

from etl.connectors.factory import build_connector
from etl.connectors.schema import CollectionSchema, Obj, schema_for
from etl.errors import ConfigError
from etl.mapping.models import SIDES, Side
from etl.settings import Settings

Kind = Literal["field", "list", "custom"]


@dataclass(frozen=True)
class FieldRow:
    """One thing a mapping can name: ``path`` (a native path, or ``{custom: …}``)."""

    path: str
    kind: Kind
    type: str = ""  # custom fields: the type's name
    label: str = ""
    key: str = ""
    options: tuple[str, ...] = ()  # an option field's option names (``transform: option``)


@dataclass(frozen=True)
class FieldList:
    system: str
    collection: str
    side: Side
    rows: tuple[FieldRow, ...]
    custom_listed: bool  # the system was asked for its custom fields


def _walk(node: Obj, prefix: str, skip: str | None) -> list[FieldRow]:
    rows: list[FieldRow] = []
    for name, child in node.fields.items():
        path = prefix + name
        if child is None:
            rows.append(FieldRow(path, "field"))
        elif child.many:
            rows.append(FieldRow(path, "list"))
            if path != skip:
                rows += _walk(child, f"{path}[0].", None)
        else:
            rows += _walk(child, f"{path}.", None)
    return rows


def _custom_rows(schema: CollectionSchema) -> list[FieldRow]:
    if schema.custom_list is None:
        return []
    if schema.custom_value is not None:  # free-form: any name
        return [FieldRow(f"{schema.custom_list}[{schema.custom_key}=<name>]."
                         f"{schema.custom_value}", "custom", "free-form",
                         "any name (or {custom: <name>})")]
    return [FieldRow(f"{{custom: {f.label}}}", "custom", f.type, f.label, f.key,
                     tuple(name for _id, name in f.options or ()))
            for f in schema.custom_fields or ()]


def list_fields(settings: Settings, side: str, collection: str, *,
                client: httpx.Client | None = None) -> FieldList:
    """The fields of ``collection`` on ``side`` (``crm``/``erp``), with the custom fields the
    system lists (asked once, when its connector can list them)."""
    if side not in SIDES:
        raise ConfigError(f"unknown side {side!r} (valid: {', '.join(SIDES)})")
    s: Side = "crm" if side == "crm" else "erp"
    system = schema_for((settings.crm if s == "crm" else settings.erp).kind)
    schema = system.collection(collection)
    listed = False
    if collection in system.custom_entity_ids:
        conn = build_connector(s, settings.crm if s == "crm" else settings.erp, client)
        try:
            fetch = getattr(conn, "custom_fields", None)
            if fetch is not None:
                schema = schema.with_custom(fetch(system.custom_entity_ids[collection]))
                listed = True
        finally:
            conn.close()
    rows = _walk(schema.root, "", schema.custom_list) + _custom_rows(schema)
    return FieldList(system.system, collection, s, tuple(rows), listed)
