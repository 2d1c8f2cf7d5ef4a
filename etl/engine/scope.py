"""The pilot scope (``scope:`` in an entity's mapping): records outside it are dropped where
they are read, before pairing, so they are neither planned nor written. Each side judges its
own records by the scope field's canonical value (the owner's e-mail, read through that side's
users or sellers), so an ERP record is in scope when its seller's e-mail is.

A record whose last synced values were in the scope stays in it for one more change, so an
owner moved out of the pilot on one side is moved on the other too.

A sync run that finished an entity records the scope it ran with in its report. A run whose
scope takes in records that the last recorded one left out (values added, the field changed,
or the scope removed) reads that entity's sides from the beginning instead of from the
watermarks: the newly included records were read and dropped under watermarks that have
moved past them. They are then matched by natural key like any first sync, not duplicated.
"""

from __future__ import annotations

import json
from typing import Any

from etl.connectors.base import Record
from etl.errors import RecordError
from etl.mapping import EntityMapping, MapContext, read_record
from etl.mapping.models import Scope, Side
from etl.state import Store

SCAN = 500  # newest runs searched for the scope last recorded


def scope_dict(scope: Scope | None) -> dict[str, Any] | None:
    return None if scope is None else {"field": scope.field, "values": list(scope.values)}


def holds(scope: Scope, value: str | None) -> bool:
    """Does a canonical value (one value, or a JSON list of them) fall in the scope?"""
    if value is None:
        return False
    items: list[Any] = [value]
    if value.startswith("["):
        try:
            parsed = json.loads(value)
            items = parsed if isinstance(parsed, list) else items
        except ValueError:
            pass
    wanted = scope.wanted()
    return any(str(i).strip().casefold() in wanted for i in items)


class ScopeFilter:
    """Tells whether a native record is in the mapping's scope (always, without one)."""

    def __init__(self, mapping: EntityMapping, ctx: MapContext) -> None:
        self.scope = mapping.scope
        self.ctx = ctx
        self.one: EntityMapping | None = None
        if self.scope is not None:
            only = {self.scope.field: mapping.fields[self.scope.field]}
            self.one = mapping.model_copy(update={"fields": only})

    def includes(self, side: Side, record: Record) -> bool:
        if self.scope is None or self.one is None:
            return True
        try:
            value = read_record(self.one, side, record, self.ctx).get(self.scope.field)
        except RecordError:  # no owner that can be told: not one of the scope's
            return False
        return holds(self.scope, value)

    def were_inside(self, store: Store, side: Side, entity: str, keys: list[str]) -> set[str]:
        """Those of ``keys`` whose last synced values (their snapshot) were in the scope: a
        record that leaves the pilot (its owner changed to someone outside) takes that change
        to the other side once, instead of the two sides drifting apart."""
        if self.scope is None or not keys:
            return set()
        snap = store.snapshots(side, entity, keys)
        return {str(k) for k, data in zip(snap["key"], snap["data"], strict=True)
                if isinstance(data, dict) and holds(self.scope, data.get(self.scope.field))}


def recorded(store: Store, entity: str) -> tuple[bool, dict[str, Any] | None]:
    """The scope the newest run that finished ``entity`` and moved its watermarks ran with
    (only those record one): (found, scope or None = everything)."""
    for limit in (10, SCAN):  # the newest few runs nearly always hold it
        runs = store.runs(limit=limit)
        for run in runs:
            counts = (run.report or {}).get("entities", {}).get(entity)
            if isinstance(counts, dict) and "scope" in counts:
                return True, counts["scope"]
        if len(runs) < limit:
            break
    return False, None


def widened(before: dict[str, Any] | None, now: Scope | None) -> bool:
    """Does ``now`` take in records that ``before`` (None = everything) left out?"""
    if before is None:
        return False
    if now is None or now.field != before.get("field"):
        return True
    old = {str(v).strip().casefold() for v in before.get("values") or []}
    return bool(now.wanted() - old)
