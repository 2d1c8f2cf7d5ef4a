"""Pure resolution of one real-world record seen on one or both sides.

Given the canonical values each side holds now and what ponte last saw of each (its snapshots),
decide which fields to write where. Field ownership comes first: an owned field only ever takes
its owner's value (a change made on the other side is put back); a field changed on both sides
to different values is a conflict settled by the mapping's policy (``manual`` = quarantine).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from etl.mapping.models import EntityMapping, Side, other

Values = dict[str, str | None]


@dataclass
class Decision:
    writes: dict[Side, Values] = field(default_factory=lambda: {"crm": {}, "erp": {}})
    conflict: list[str] = field(default_factory=list)  # fields in unresolved conflict

    @property
    def is_conflict(self) -> bool:
        return bool(self.conflict)


def _winner(policy: str, updated: dict[Side, datetime | None]) -> Side | None:
    if policy == "crm_wins":
        return "crm"
    if policy == "erp_wins":
        return "erp"
    if policy == "newest_wins":
        crm, erp = updated.get("crm"), updated.get("erp")
        if crm is None or erp is None:
            return "crm" if erp is None else "erp"
        return "crm" if crm >= erp else "erp"
    return None  # manual


def resolve_pair(
    mapping: EntityMapping,
    current: dict[Side, Values],
    snapshot: dict[Side, Values | None],
    *,
    updated: dict[Side, datetime | None] | None = None,
    first_match: bool = False,
) -> Decision:
    """Decide the writes for a record present on both sides.

    ``current[side]`` is what the side holds now; ``snapshot[side]`` what ponte last saw or
    wrote there (``None`` when it never saw it). On a first match there is no common base, so
    differing fields go by owner, then by the mapping's ``on_match`` policy.
    """
    updated = updated or {}
    decision = Decision()
    for name in mapping.fields:
        spec = mapping.fields[name]
        if spec.crm is None or spec.erp is None:
            continue
        crm_v, erp_v = current["crm"].get(name), current["erp"].get(name)
        if crm_v == erp_v:
            continue
        owner = mapping.field_owner(name)
        if first_match:
            source = owner or _winner(mapping.on_match, updated)
        else:
            changed = {
                s: snapshot[s] is None or current[s].get(name) != (snapshot[s] or {}).get(name)
                for s in ("crm", "erp")
            }
            if changed["crm"] and changed["erp"]:
                source = owner or _winner(mapping.conflict, updated)
                if source is None:
                    decision.conflict.append(name)
                    continue
            elif changed["crm"]:
                source = "crm"
            elif changed["erp"]:
                source = "erp"
            else:
                continue  # drift neither side caused now: verify reports it
        if source is None:
            continue
        if owner is not None and source != owner:
            # the other side changed a field the owner masters: the owner's value is put back
            source = owner
        if not mapping.flows(name, source):
            continue
        target = other(source)
        decision.writes[target][name] = current[source].get(name)
    if decision.conflict:
        decision.writes = {"crm": {}, "erp": {}}
    return decision


def values_for_create(mapping: EntityMapping, source: Side, values: Values) -> Values:
    """Every field that seeds a new record in the other side."""
    return {
        name: values.get(name)
        for name in mapping.fields
        if mapping.flows(name, source, create=True) and values.get(name) is not None
    }
