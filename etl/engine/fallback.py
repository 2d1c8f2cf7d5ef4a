"""Pairing by the fallback natural key (``natural_key_fallback``, e.g. the name): only records
whose natural key (e.g. the tax id) is empty, and only with a partner whose natural key is empty
too, so a record that has one is never paired with a record whose one differs.

The value must be equal after the field's transform (canonical) on both sides. When a value
names more than one candidate on a side (this chunk's unlinked records and what a search of
each system found), nothing is paired by it: the lonely records carry the reason
(:attr:`Unit.ambiguous`) and are quarantined instead of created.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from etl.engine.model import Job, Seen, Unit
from etl.mapping import EntityMapping
from etl.mapping.models import SIDES, Side, other

Found = dict[Side, dict[str, list[Seen]]]  # side -> canonical fallback value -> records


def lonely(m: EntityMapping, units: Sequence[Unit]) -> dict[Side, dict[str, list[Unit]]]:
    """Unlinked units read on one side only, with an empty natural key and a fallback value,
    by side and canonical fallback value."""
    out: dict[Side, dict[str, list[Unit]]] = {"crm": {}, "erp": {}}
    fb, nk = m.natural_key_fallback, m.natural_key
    if fb is None or nk is None:
        return out
    for u in units:
        if u.linked or len(u.seen) != 1:
            continue
        side = next(iter(u.seen))
        values = u.seen[side].values
        if u.key(other(side)) is None and not values.get(nk) and values.get(fb):
            out[side].setdefault(str(values[fb]), []).append(u)
    return out


def fetch(job: Job, units: Sequence[Unit]) -> Found:
    """Each side's unlinked records without a natural key holding one of the lonely units'
    fallback values (both sides are searched: a second candidate on the lonely unit's own side
    makes the value ambiguous too)."""
    from etl.engine.pairing import search_unlinked  # pairing imports this module

    m = job.m
    groups = lonely(m, units)
    values = sorted(set(groups["crm"]) | set(groups["erp"]))
    out: Found = {"crm": {}, "erp": {}}
    if not values or m.natural_key_fallback is None or m.natural_key is None:
        return out
    fb, nk = m.natural_key_fallback, m.natural_key
    for side in SIDES:
        field_name = m.systems[side].natural_key_fallback_field
        if not field_name:
            continue
        for seen in search_unlinked(job, side, field_name, values):
            value = seen.values.get(fb)
            if not seen.values.get(nk) and value and str(value) in values:
                out[side].setdefault(str(value), []).append(seen)
    return out


def match(m: EntityMapping, units: list[Unit], found: Mapping[Side, Mapping[str, list[Seen]]]
          ) -> int:
    """Pair each fallback value's one lonely record with the other side's one candidate;
    merges units in place, marks the ambiguous ones; returns how many were matched."""
    groups = lonely(m, units)
    matched = 0
    for value in sorted(set(groups["crm"]) | set(groups["erp"])):
        cands: dict[Side, dict[str, Unit | Seen]] = {}
        for side in SIDES:
            by_key: dict[str, Unit | Seen] = {}
            for u in groups[side].get(value, []):
                key = u.key(side)
                assert key is not None
                by_key[key] = u
            for s in found.get(side, {}).get(value, []):
                by_key.setdefault(s.key, s)
            cands[side] = by_key
        if not cands["crm"] or not cands["erp"]:
            continue  # no partner anywhere: created as usual
        if len(cands["crm"]) > 1 or len(cands["erp"]) > 1:
            reason = (f"its {m.natural_key} is empty and its {m.natural_key_fallback} {value!r} "
                      f"names {len(cands['crm'])} crm and {len(cands['erp'])} erp records "
                      f"without one: ambiguous, so it is paired with none and not created — "
                      f"give them a {m.natural_key} or distinct {m.natural_key_fallback}s")
            for side in SIDES:
                for u in groups[side].get(value, []):
                    u.ambiguous = reason
            continue
        matched += _pair(units, cands["crm"].popitem()[1], cands["erp"].popitem()[1])
    return matched


def _pair(units: list[Unit], crm: Unit | Seen, erp: Unit | Seen) -> int:
    if isinstance(crm, Unit) and isinstance(erp, Unit):
        keep, gone = crm, erp
        assert erp.erp_key is not None
        keep.set_key("erp", erp.erp_key)
        keep.seen["erp"] = gone.seen["erp"]
        keep.snapshot["erp"] = gone.snapshot["erp"]
        units.remove(gone)
    elif isinstance(crm, Unit) and isinstance(erp, Seen):
        keep = crm
        keep.set_key("erp", erp.key)
        keep.seen["erp"] = erp
    elif isinstance(erp, Unit) and isinstance(crm, Seen):
        keep = erp
        keep.set_key("crm", crm.key)
        keep.seen["crm"] = crm
    else:
        return 0  # neither was read in this chunk: not this chunk's to pair
    keep.linked = False
    keep.matched = True
    return 1
