"""Pairing: the changed records of a chunk become units (one real-world record each), by their
links, then by natural key before anything is created.

The two pure steps, :func:`link_units` and :func:`match`, only use what the two fetches
(:func:`fetch_links`, :func:`fetch_matches`) got beforehand from the state and the systems, so
they can be tested with plain data.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import cast

from etl.connectors.base import Record
from etl.engine import fallback
from etl.engine.model import Job, Seen, Unit
from etl.engine.resolve import Values
from etl.errors import RecordError
from etl.mapping import EntityMapping, read_record
from etl.mapping.models import SIDES, Side, other


@dataclass
class Links:
    """The state's view of a chunk's keys: links, tombstones of linked pairs, snapshots."""

    partner: dict[tuple[Side, str], str] = field(default_factory=dict)  # (side, key) -> key
    tombstones: dict[tuple[str, str], Side] = field(default_factory=dict)  # (crm, erp) -> side
    snapshots: dict[Side, dict[str, Values]] = field(
        default_factory=lambda: {"crm": {}, "erp": {}})


@dataclass
class Candidates:
    """Partners by natural key on each side, for records that are not linked yet: what ponte
    has seen of that side before (``known``, and which of those are linked already) and what
    a search of the side itself found (``remote``, unlinked records only)."""

    known: dict[Side, dict[str, tuple[str, Values]]] = field(
        default_factory=lambda: {"crm": {}, "erp": {}})
    known_linked: dict[Side, set[str]] = field(default_factory=lambda: {"crm": set(), "erp": set()})
    remote: dict[Side, dict[str, Seen]] = field(default_factory=lambda: {"crm": {}, "erp": {}})
    # by the fallback key, for records whose natural key is empty (:mod:`etl.engine.fallback`)
    by_fallback: fallback.Found = field(default_factory=lambda: {"crm": {}, "erp": {}})


def fetch_links(job: Job, changes: Mapping[Side, Sequence[Seen]]) -> Links:
    """Links of the changed keys, tombstones of the linked pairs and snapshots of every key
    involved (changed keys and their partners)."""
    out = Links()
    for side in SIDES:
        keys = [s.key for s in changes.get(side, [])]
        if not keys:
            continue
        for ck, ek in job.store.links(job.entity, **{f"{side}_keys": keys}):
            if side == "crm":
                out.partner[("crm", ck)] = ek
            else:
                out.partner[("erp", ek)] = ck
    crm_linked = sorted({k if side == "crm" else p for (side, k), p in out.partner.items()})
    if crm_linked:
        out.tombstones = {pair: cast(Side, side) for pair, side in
                          job.store.tombstones(job.entity, crm_keys=crm_linked).items()}
    for side in SIDES:
        involved = {s.key for s in changes.get(side, [])}
        involved |= {p for (s, _k), p in out.partner.items() if s == other(side)}
        if involved:
            frame = job.store.snapshots(side, job.entity, sorted(involved))
            out.snapshots[side] = dict(zip(frame["key"], frame["data"], strict=True))
    return out


def link_units(changes: Mapping[Side, Sequence[Seen]], links: Links) -> list[Unit]:
    """One unit per real-world record: a changed record and its linked partner's (changed in
    this chunk too, or as last synced) go together."""
    units: list[Unit] = []
    by_key: dict[tuple[Side, str], Unit] = {}
    for side in SIDES:
        for s in changes.get(side, []):
            partner = links.partner.get((side, s.key))
            unit = by_key.get((side, s.key))
            if unit is None and partner is not None:
                unit = by_key.get((other(side), partner))
            if unit is None:
                unit = Unit()
                units.append(unit)
            unit.set_key(side, s.key)
            unit.seen[side] = s
            by_key[(side, s.key)] = unit
            if partner is not None:
                unit.set_key(other(side), partner)
                unit.linked = True
                by_key[(other(side), partner)] = unit
    for u in units:
        if u.linked and u.crm_key is not None and u.erp_key is not None:
            u.tombstone = links.tombstones.get((u.crm_key, u.erp_key))
        for side in SIDES:
            key = u.key(side)
            if key is not None and key in links.snapshots[side]:
                u.snapshot[side] = links.snapshots[side][key]
    return units


def _lonely(m: EntityMapping, units: Sequence[Unit], side: Side) -> list[Unit]:
    """Units read on ``side`` only, not linked, with a natural key: they need a partner."""
    nk = m.natural_key
    assert nk is not None
    return [u for u in units if not u.linked and side in u.seen and u.key(other(side)) is None
            and u.seen[side].values.get(nk)]


def _index(m: EntityMapping, units: Sequence[Unit], target: Side) -> dict[str, Unit]:
    """The other side's unlinked records of this chunk, by natural key (the first one wins)."""
    nk = m.natural_key
    assert nk is not None
    index: dict[str, Unit] = {}
    for u in units:
        value = u.seen[target].values.get(nk) if target in u.seen and not u.linked else None
        if value:
            index.setdefault(str(value), u)
    return index


def _lonely_sides(m: EntityMapping, units: Sequence[Unit]
                  ) -> Iterator[tuple[Side, Side, list[Unit], dict[str, Unit]]]:
    """Each side that has lonely units: the side, the other one, its lonely units and the other
    side's unlinked records by natural key. Lazy: a side is looked at after the caller is done
    with the one before (:func:`match` merges units in between)."""
    for side in SIDES:
        target = other(side)
        lonely = _lonely(m, units, side)
        if lonely:
            yield side, target, lonely, _index(m, units, target)


def fetch_matches(job: Job, units: Sequence[Unit], *, search: bool = True) -> Candidates:
    """What :func:`match` may pair lonely units with: the other side's snapshots by natural
    key, and a search of the other side itself for keys found nowhere else — a record there
    may not have been read (that side is not read each run, or its record lies outside this
    window: a clock ahead of ours, a failed earlier write, a later chunk of this run).
    ``search=False`` leaves the search to :func:`search_lonely`, write chunk by write chunk."""
    m, out = job.m, Candidates()
    nk = m.natural_key
    if nk is None:
        return out
    for side, target, lonely, index in _lonely_sides(m, units):
        wanted = [str(u.seen[side].values[nk]) for u in lonely]
        snap = job.store.snapshots_by_natural_key(target, job.entity, wanted)
        out.known[target] = {nkv: (key, data) for key, nkv, data in
                             zip(snap["key"], snap["natural_key"], snap["data"], strict=True)}
        if len(snap):
            pairs = job.store.links(job.entity, **{f"{target}_keys": snap["key"].tolist()})
            out.known_linked[target] = {p[1] if target == "erp" else p[0] for p in pairs}
        field_name = m.systems[target].natural_key_field
        still = [v for v in wanted if v not in index and v not in out.known[target]]
        if field_name and still and search:
            out.remote[target] = _search(job, target, field_name, still)
    out.by_fallback = fallback.fetch(job, units)
    return out


Wanted = dict[Side, tuple[str, list[str]]]  # target -> (native field, natural-key values)


def lonely_wanted(job: Job, units: Sequence[Unit]) -> Wanted:
    """What to search the other side for, by natural key, for the units that :func:`match`
    left lonely (nothing in their chunk or in ponte's snapshots has their key)."""
    nk, out = job.m.natural_key, Wanted()
    if nk is None:
        return out
    for side in SIDES:
        target = other(side)
        field_name = job.m.systems[target].natural_key_field
        values = [str(u.seen[side].values[nk]) for u in _lonely(job.m, units, side)
                  if u.duplicate_of is None and u.ambiguous is None]
        if field_name and values:
            out[target] = (field_name, list(dict.fromkeys(values)))
    return out


def find_wanted(job: Job, wanted: Wanted) -> dict[Side, list[Record]]:
    """The search itself (requests only, safe on another thread): the records found."""
    return {target: job.conn[target].find_by(job.entity, field_name, values,
                                             unlinked_only=True)
            for target, (field_name, values) in wanted.items()}


def match_found(job: Job, units: Sequence[Unit], found: Mapping[Side, list[Record]],
                claimed: set[tuple[Side, str]]) -> int:
    """Pair the lonely units with what :func:`find_wanted` found, just before they are
    planned. A record found is the partner of one unit only (``claimed``: the keys taken so
    far, kept by the caller across the chunks that are not checkpointed yet); those linked
    already are no partners. Returns how many were matched."""
    nk = job.m.natural_key
    if nk is None:
        return 0
    matched = 0
    for target, records in found.items():
        side = other(target)
        by_value = {str(s.values[nk]): s for s in unlinked(job, target, records)
                    if s.values.get(nk) and (target, s.key) not in claimed}
        for u in _lonely(job.m, units, side):
            if u.duplicate_of is not None or u.ambiguous is not None:
                continue
            s = by_value.pop(str(u.seen[side].values[nk]), None)
            if s is None:
                continue
            claimed.add((target, s.key))
            u.set_key(target, s.key)
            u.seen[target] = s
            u.linked, u.matched = False, True
            matched += 1
    return matched


def _search(job: Job, target: Side, field_name: str, values: list[str]) -> dict[str, Seen]:
    nk = job.m.natural_key
    assert nk is not None
    return {str(s.values[nk]): s for s in search_unlinked(job, target, field_name, values)
            if s.values.get(nk)}


def search_unlinked(job: Job, target: Side, field_name: str, values: list[str]) -> list[Seen]:
    """The side's records whose native ``field_name`` holds one of ``values``, less those
    linked already (partners of other records) and those that cannot be read."""
    return unlinked(job, target, job.conn[target].find_by(job.entity, field_name, values,
                                                          unlinked_only=True))


def unlinked(job: Job, target: Side, found: Sequence[Record]) -> list[Seen]:
    """Records found on ``target`` less those linked already (partners of other records) and
    those that cannot be read."""
    c = job.conn[target]
    keys = [c.key_of(job.entity, r) for r in found]
    taken = {p[1] if target == "erp" else p[0] for p in job.store.links(
        job.entity, **{f"{target}_keys": keys})} if keys else set()
    out: list[Seen] = []
    for rec, key in zip(found, keys, strict=True):
        if key in taken:
            continue  # linked to another record: not a partner for this one
        try:
            vals = read_record(job.m, target, rec, job.ctx)
        except RecordError:
            continue
        out.append(Seen(target, key, vals, _updated(job, target, rec), 0, 0, rec))
    return out


def _updated(job: Job, side: Side, record: Record) -> datetime | None:
    try:
        return job.conn[side].updated_at(job.entity, record)
    except (KeyError, TypeError, ValueError, AttributeError, RecordError):
        return None


def match(m: EntityMapping, units: list[Unit], cand: Candidates) -> int:
    """Pair lonely units with a partner by natural key, before anything is created: a record
    of the other side read in this chunk, one ponte synced before, or one the search found.
    A partner already linked to another record makes this one a duplicate (``duplicate_of``),
    never copied across. Then records without a natural key, by the fallback key (see
    :mod:`etl.engine.fallback`). Merges units in place; returns how many were matched."""
    nk = m.natural_key
    if nk is None:
        return 0
    matched = 0
    for side, target, lonely, index in _lonely_sides(m, units):
        known = cand.known[target]
        linked_other = set(cand.known_linked[target])
        remote = dict(cand.remote[target])
        for u in lonely:
            value = str(u.seen[side].values[nk])
            partner = index.get(value)
            if partner is not None and partner is not u and partner.key(side) is None:
                partner_key = partner.key(target)
                assert partner_key is not None
                u.set_key(target, partner_key)
                u.seen[target] = partner.seen[target]
                u.snapshot[target] = partner.snapshot[target]
                units.remove(partner)
                index.pop(value)
            elif value in known and known[value][0] not in linked_other:
                key, data = known[value]
                linked_other.add(key)  # one partner for one record, even with duplicates
                u.set_key(target, key)
                u.snapshot[target] = data
            elif value in known:
                # the other side's record with this key is linked to another one already:
                # this is a duplicate on the source side, never copied across
                u.duplicate_of = known[value][0]
                continue
            elif value in remote:
                found = remote.pop(value)
                u.set_key(target, found.key)
                u.seen[target] = found
            else:
                continue
            u.linked = False
            u.matched = True
            matched += 1
    return matched + fallback.match(m, units, cand.by_fallback)
