"""Transforms over reference lists: a record points by id into a small list of its own system
(the CRM's users, the ERP's sellers, tags) and the canonical value is what both systems share
(the user's e-mail, the tag's name). The lists come from the engine through
:class:`~etl.mapping.apply.MapContext` (``ctx.tables()``), read once per run.

* ``reference``: one id <-> one value (``OwnerId`` <-> the owner's e-mail). A value the other
  system's list lacks cannot be written: the record is quarantined with a reason that names
  the value and the system that lacks it.
* ``tag_list``: a list of tags <-> the sorted names as JSON. Tags are either named inline
  (``args.name``: Omie ``tags: [{tag: ...}]``) or by id (``args.table`` + ``args.key``:
  Ploomes ``Tags: [{TagId: ...}]``); a name the list lacks is created there when written.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from etl.errors import RecordError
from etl.mapping.transforms import Canon, Raw, _empty, _text, items_of, register

if TYPE_CHECKING:
    from etl.mapping.apply import MapContext


def _fold(value: str, args: dict[str, Any]) -> str:
    value = " ".join(value.split())
    return value.lower() if args.get("fold") == "lower" else value


def _native(key: str, args: dict[str, Any]) -> Any:
    return int(key) if args.get("as") == "int" and key.lstrip("-").isdigit() else key


def _value_of(ctx: MapContext, table: str, key: str) -> str | None:
    """The value of ``key`` in the list; a key missing from the run's copy re-reads it once
    (an item added since it was read)."""
    tables = ctx.tables()
    rows = tables.rows(ctx.side, table)
    if key not in rows:
        rows = tables.rows(ctx.side, table, fresh=True)
    return rows.get(key)


def _key_of(ctx: MapContext, table: str, value: str, args: dict[str, Any]) -> str | None:
    """The key of the item whose value is ``value``. Missing from a copy an earlier command
    read (kept while its system refuses to list it again), the list is read anew once: an
    item may have been added since. Missing from this run's own reading, it is missing."""
    tables = ctx.tables()

    def find(rows: dict[str, str]) -> str | None:
        return next((k for k, v in rows.items() if v and _fold(v, args) == value), None)

    key = find(tables.rows(ctx.side, table))
    if key is None and tables.borrowed(ctx.side, table):
        key = find(tables.rows(ctx.side, table, fresh=True))
    return key


@register("reference", "an id in a reference list of the same system (args.table, from the "
          "connector spec's references) <-> the item's value (the user's e-mail); args.fold: "
          "lower; args.as: int; args.none: the native value of 'nobody' (0)",
          required=("table",))
class _Reference:
    @staticmethod
    def read(raw: Raw, args: dict[str, Any], ctx: MapContext) -> Canon:
        if _empty(raw) or raw == 0 or (args.get("none") is not None and raw == args["none"]):
            return None
        value = _value_of(ctx, args["table"], str(raw))
        if value is None or not value.strip():
            what = ctx.tables().describe(ctx.side, args["table"])
            raise RecordError(f"{raw} is not a {what} (or has no value to match by)")
        return _fold(value, args)

    @staticmethod
    def write(value: Canon, args: dict[str, Any], ctx: MapContext) -> Raw:
        if value is None:
            return args.get("none")
        key = _key_of(ctx, args["table"], value, args)
        if key is None:
            what = ctx.tables().describe(ctx.side, args["table"])
            raise RecordError(f"{value} has no {what}; create one with that e-mail (or name) "
                              f"there, or give the record another owner that has one")
        return _native(key, args)


@register("tag_list", "tags -> their sorted names as JSON; args.name: the path of the name in "
          "an item (names inline), or args.table + args.key: the id in an item, looked up in "
          "that reference list (a missing name is created when written); args.as: int")
class _TagList:
    @staticmethod
    def read(raw: Raw, args: dict[str, Any], ctx: MapContext) -> Canon:
        from etl.mapping.apply import get_path

        raw = items_of(raw, "tags")
        if raw is None:
            return None
        names: set[str] = set()
        for i, item in enumerate(raw, start=1):
            if args.get("table"):
                key = get_path(item, args.get("key", "Id")) if isinstance(item, dict) else item
                if _empty(key):
                    raise RecordError(f"tag {i} has no {args.get('key', 'Id')}")
                name = _value_of(ctx, args["table"], str(key))
                if name is None:
                    what = ctx.tables().describe(ctx.side, args["table"])
                    raise RecordError(f"tag {i} ({key}) is not a {what}")
            else:
                name = get_path(item, args.get("name", "name")) if isinstance(item, dict) \
                    else item
            text = _text(name, "a tag name")
            if text is not None:
                names.add(text)
        return json.dumps(sorted(names), ensure_ascii=False) if names else None

    @staticmethod
    def write(value: Canon, args: dict[str, Any], ctx: MapContext) -> Raw:
        from etl.mapping.apply import set_path

        out: list[Any] = []
        for name in json.loads(value) if value else []:
            item: dict[str, Any] = {}
            if args.get("table"):
                key = _key_of(ctx, args["table"], name, args)
                if key is None:
                    key = ctx.tables().create(ctx.side, args["table"], name)
                set_path(item, args.get("key", "Id"), _native(key, args))
            else:
                set_path(item, args.get("name", "name"), name)
            out.append(item)
        return out
