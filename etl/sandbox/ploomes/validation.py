"""Writes checked as the vendor checks them: a POST/PATCH body's fields, their types and the
records they point at; and a contact's documents (``Register``/``CNPJ``/``CPF``) kept in step."""

from __future__ import annotations

import copy
import re
from typing import Any

from etl.sandbox.core import BRT
from etl.sandbox.odata import FilterError, to_instant
from etl.sandbox.ploomes.custom import CustomValueError, check_items
from etl.sandbox.ploomes.schema import (
    DOCUMENT_BY_TYPE,
    DOCUMENT_FIELDS,
    LOOKUPS,
    NAV,
    READ_ONLY,
    REQUIRED,
    SCHEMA,
    B,
    D,
    I,
    L,
    N,
    S,
)
from etl.sandbox.tables import Database


class BadRequest(Exception):
    def __init__(self, message: str, *, status: int = 400, code: str = "BadRequest") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def validate(db: Database, table: str, body: Any, *, partial: bool) -> dict[str, Any]:
    """Native fields of a POST/PATCH body, type-checked; raises :class:`BadRequest`."""
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    schema = SCHEMA[table]
    out: dict[str, Any] = {}
    for name, value in body.items():
        if name in READ_ONLY:
            continue
        if name in NAV[table]:
            fk = NAV[table][name][0]
            raise BadRequest(f"navigation property '{name}' cannot be written; send '{fk}'")
        if name not in schema:
            raise BadRequest(f"The property '{name}' does not exist on type "
                             f"'{table}'. Make sure to only use property names that are "
                             "defined by the type.")
        out[name] = _coerce(table, name, schema[name], value)
        if name == "OtherProperties" and out[name] is not None:
            try:
                out[name] = check_items(table, out[name])
            except CustomValueError as exc:
                raise BadRequest(str(exc)) from None
    if not partial:
        for name in REQUIRED.get(table, ()):
            if out.get(name) in (None, ""):
                raise BadRequest(f"{table}: field '{name}' is required")
    for name, (fk, target, _) in NAV[table].items():
        value = out.get(fk)
        if value is None:
            continue
        known = (any(x["Id"] == value for x in LOOKUPS[target]) if target in LOOKUPS
                 else db[target].get(value) is not None)
        if not known:
            raise BadRequest(f"{table}: {fk} {value} does not exist ({name})")
    if table == "Orders":
        for line in out.get("Products") or []:
            pid = line.get("ProductId")
            if not isinstance(pid, int) or db["Products"].get(pid) is None:
                raise BadRequest(f"Orders: product line ProductId {pid!r} does not exist")
    if table == "Contacts":
        for tag in out.get("Tags") or []:
            tid = tag.get("TagId")
            if not isinstance(tid, int) or db["Tags"].get(tid) is None:
                raise BadRequest(f"Contacts: field 'Tags' names TagId {tid!r}, which does not "
                                 "exist")
            tag.pop("Tag", None)  # the navigation is shown, never stored
    return out


def documents_in_step(current: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """``changes`` to a contact holding ``current``, with ``Register``/``CNPJ``/``CPF`` kept in
    step by ``TypeId`` (the fields written win, in that order; clearing them clears the
    document)."""
    touched = [f for f in DOCUMENT_FIELDS if f in changes]
    if not touched and "TypeId" not in changes:
        return changes
    merged = {**current, **changes}
    source = touched or list(DOCUMENT_FIELDS)
    doc = next((str(merged[f]) for f in source if str(merged.get(f) or "").strip()), None)
    chosen = DOCUMENT_BY_TYPE.get(merged.get("TypeId"))
    if doc is None and ("Register" not in touched and chosen not in touched):
        return changes  # no document, or only the field of the other type was cleared
    digits = re.sub(r"\D", "", doc) if doc is not None else None
    out = {**changes, "Register": digits or None}
    if chosen is not None:
        for name in DOCUMENT_BY_TYPE.values():
            out[name] = (digits or None) if name == chosen else None
    return out


def _coerce(table: str, name: str, kind: str, value: Any) -> Any:
    if value is None:
        return None
    bad = BadRequest(f"{table}: field '{name}' must be {kind}, got {value!r}")
    if kind == I:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and value.strip().isdigit():
            return int(value)
        raise bad
    if kind == N:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, int | float):
            return value
        try:
            return float(value)
        except (TypeError, ValueError):
            raise bad from None
    if kind == S:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise bad
        return str(value)
    if kind == B:
        if not isinstance(value, bool):
            raise bad
        return value
    if kind == L:
        if not isinstance(value, list) or not all(isinstance(x, dict) for x in value):
            raise BadRequest(f"{table}: field '{name}' must be a list of objects")
        return copy.deepcopy(value)
    if kind == D:
        try:
            return to_instant(value).astimezone(BRT).isoformat(timespec="seconds")
        except (FilterError, TypeError):
            raise bad from None
    raise bad
