"""Plan: one unit -> resolution -> the writes it needs and the field changes they make.

:class:`Planner` is pure: the records units depend on (an order's customer) are fetched per
chunk beforehand (:func:`fetch_dependencies`), and what it decides comes back as a
:class:`UnitPlan` for the load step to carry out (or, in a dry run, to count).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from etl.connectors.base import WriteOp
from etl.engine.model import Job, Planned, Unit
from etl.engine.report import Change
from etl.engine.resolve import Values, resolve_pair, values_for_create
from etl.errors import RecordError
from etl.mapping import (
    EntityMapping,
    MapContext,
    build_payload,
    kept_fields,
    merge_kept,
    read_kept,
)
from etl.mapping.models import SIDES, Side, other

#: (entity, CRM key) -> the CRM record's values as last synced
Dependencies = Mapping[tuple[str, str], Values]


@dataclass
class Write:
    op: WriteOp
    unit: Unit
    values: Values  # the canonical values written
    # the payload has list fields that keep the target's other items, and the target's
    # record was not read this run: it is read by key and merged in before the write
    needs_current: bool = False


@dataclass
class UnitPlan:
    writes: dict[Side, list[Write]] = field(default_factory=lambda: {"crm": [], "erp": []})
    changes: list[Change] = field(default_factory=list)
    link: tuple[str, str] | None = None  # a pair matched in this run, to link
    skipped: list[Side] = field(default_factory=list)  # sides whose record goes nowhere
    conflict: bool = False
    error: RecordError | None = None  # the unit cannot be synced: quarantine it


def fetch_dependencies(job: Job, units: Sequence[Unit]) -> dict[tuple[str, str], Values]:
    """The last synced values of every record the units' preconditions name."""
    out: dict[tuple[str, str], Values] = {}
    for pre in job.m.preconditions:
        refs = sorted({str(v) for u in units for side in SIDES
                       if (v := (u.current(side) or {}).get(pre.field))})
        if not refs:
            continue
        frame = job.store.snapshots("crm", pre.entity, refs)
        for key, data in zip(frame["key"], frame["data"], strict=True):
            if data is not None:
                out[(pre.entity, str(key))] = data
    return out


@dataclass
class Planner:
    m: EntityMapping
    ctx: MapContext
    kinds: Mapping[Side, str]  # the systems' kinds, for external ids ("ploomes-42")
    dependencies: Dependencies = field(default_factory=dict)
    planned: Planned | None = None  # a dry run's plan so far
    # natural keys being created in each target by this run (duplicates on the source side)
    creating: dict[Side, set[str]] = field(default_factory=lambda: {"crm": set(), "erp": set()})

    @property
    def entity(self) -> str:
        return self.m.entity

    def plan(self, u: Unit) -> UnitPlan:
        out = UnitPlan()
        try:
            if u.tombstone is not None:
                # deleted on one side (see `ponte verify`): nothing flows into it any more
                out.skipped.extend(u.seen)
            elif u.crm_key is not None and u.erp_key is not None:
                self._pair(u, out)
            else:
                self._create(u, out)
        except RecordError as exc:
            out.error = exc  # writes planned before it still go (an ERP stage flowing back)
        return out

    def _pair(self, u: Unit, out: UnitPlan) -> None:
        assert u.crm_key is not None and u.erp_key is not None
        current = {s: u.current(s) or {} for s in SIDES}
        first = not u.linked
        decision = resolve_pair(
            self.m, current, {s: (None if first else u.snapshot[s]) for s in SIDES},
            updated={s: (u.seen[s].updated if s in u.seen else None) for s in SIDES},
            first_match=first,
        )
        if decision.is_conflict:
            out.conflict = True
            raise RecordError(
                f"{self.entity} crm {u.crm_key} / erp {u.erp_key}: changed on both sides "
                f"since the last sync ({', '.join(decision.conflict)}); the mapping's conflict "
                "policy is 'manual' — make both sides agree, then `ponte quarantine retry`",
                kind="conflict",
                field=decision.conflict[0],
            )
        if not u.linked:
            out.link = (u.crm_key, u.erp_key)
        writes_to = {s: dict(decision.writes[s]) for s in SIDES}
        # a side whose list fields keep items goes first: what it will hold may add to the other
        for target in sorted(SIDES, key=lambda s: not kept_fields(self.m, s, writes_to[s])):
            writes = writes_to[target]
            if not writes:
                continue
            note = None
            if target in self.m.create_in:
                note = self.check_preconditions({**current[other(target)], **writes},
                                                "updated")
            key = u.key(target)
            old = current[target]
            payload = build_payload(self.m, target, writes, self.ctx, create=False,
                                    record={**old, **writes})
            needs_current = False
            if kept_fields(self.m, target, writes):
                if target in u.seen:
                    payload = merge_kept(self.m, target, payload, u.seen[target].record)
                    self._moved_up(target, payload, writes, current, writes_to)
                else:
                    needs_current = True
            out.writes[target].append(Write(WriteOp("update", payload, key=key), u, writes,
                                            needs_current))
            out.changes.append(Change(
                self.entity, target, "update", key, u.key(other(target)) or "",
                {f: (old.get(f), v) for f, v in writes.items()}, note))

    def _moved_up(self, target: Side, payload: Mapping[str, object], writes: dict[str, str | None],
                  current: Mapping[Side, Values], writes_to: dict[Side, dict[str, str | None]]
                  ) -> None:
        """A merged list reads back more than was written when the target's own items moved
        into what the mapping owns (fewer items written than it owns: a number cleared on the
        other side, or fewer there when first matched). The target will hold that, and the
        other side gets it in this same run (unless the target may not send that field)."""
        source = other(target)
        for name, held in read_kept(self.m, target, payload, self.ctx).items():
            if held == writes[name]:
                continue
            writes[name] = held
            sf = self.m.fields[name].side(source)
            if sf is not None and not sf.read_only and current[source].get(name) != held \
                    and self.m.field_owner(name) in (None, target):
                writes_to[source][name] = held

    def _create(self, u: Unit, out: UnitPlan) -> None:
        """Present on one side only: create it on the other, where the mapping allows."""
        side: Side = "crm" if u.crm_key is not None else "erp"
        target = other(side)
        if target not in self.m.create_in:
            out.skipped.append(side)
            return
        nk = self.m.natural_key
        if u.duplicate_of is not None:
            raise RecordError(
                f"{self.entity} {side} {u.key(side)}: its {nk} "
                f"{u.seen[side].values.get(nk or '')} is already linked to {target} record "
                f"{u.duplicate_of} through another {side} record; duplicates on the {side} side "
                f"are not copied — merge them there", field=nk, kind="invalid")
        if u.ambiguous is not None:
            raise RecordError(f"{self.entity} {side} {u.key(side)}: {u.ambiguous}",
                              field=self.m.natural_key_fallback, kind="invalid")
        values = values_for_create(self.m, side, u.seen[side].values)
        value = values.get(nk) if nk else None
        if value:
            if value in self.creating[target]:
                raise RecordError(
                    f"{self.entity} {side} {u.key(side)}: another {side} record with {nk} "
                    f"{value} is being created in the {target} in this run; duplicates on "
                    f"the {side} side are not copied — merge them there",
                    field=nk, kind="invalid")
            self.creating[target].add(value)
        note = self.check_preconditions(u.seen[side].values)
        payload = build_payload(self.m, target, values, self.ctx, create=True)
        ext = f"{self.kinds[side]}-{u.key(side)}"
        out.writes[target].append(Write(WriteOp("create", payload, external_id=ext), u, values))
        out.changes.append(Change(
            self.entity, target, "create", None, u.key(side) or "",
            {f: (None, v) for f, v in values.items()}, note))
        self._blank_computed(u, side, out)

    def _blank_computed(self, u: Unit, side: Side, out: UnitPlan) -> None:
        """A record created in the other side computes nothing yet (no record of the source
        points at it), nor holds the fields its owner alone may set (``seed: false``): those
        fields are put back to blank on ``side``, where a user may have typed a value the
        create cannot carry. Without this the pair is snapshotted as it stands and the typed
        value stays until the owner's one changes."""
        target = other(side)
        held = u.seen[side].values
        back: dict[str, str | None] = {}
        for name, spec in self.m.fields.items():
            sf, tf = spec.side(side), spec.side(target)
            if tf is None or sf is None or sf.read_only or (tf.computed is None and spec.seed):
                continue
            if self.m.field_owner(name) == target and held.get(name) is not None:
                back[name] = None
        if not back:
            return
        payload = build_payload(self.m, side, back, self.ctx, create=False,
                                record={**held, **back})
        if kept_fields(self.m, side, back):
            payload = merge_kept(self.m, side, payload, u.seen[side].record)
        key = u.key(side)
        out.writes[side].append(Write(WriteOp("update", payload, key=key), u, back))
        out.changes.append(Change(self.entity, side, "update", key, "",
                                  {f: (held.get(f), None) for f in back}, None))

    def check_preconditions(self, values: Values, action: str = "created") -> str | None:
        """Raise when a record this one depends on is not synced or lacks what the target
        requires; in a dry run, one this plan would sync first is good enough, and the note
        returned says so."""
        note = None
        for pre in self.m.preconditions:
            ref = values.get(pre.field)
            if ref is None:
                raise RecordError(f"{self.entity} has no {pre.field}", field=pre.field)
            data = self.dependencies.get((pre.entity, ref))
            if data is None and self.planned is not None:
                data, how = self.planned.records.get((pre.entity, ref), (None, ""))
                if data is not None:
                    note = f"would be {action} after its {pre.field}: {pre.entity} {ref} ({how})"
            if data is None:
                raise RecordError(
                    f"{pre.entity} {ref} is not synced yet (check its quarantine)", field=pre.field)
            missing = [f for f in pre.require if not data.get(f)]
            if missing:
                raise RecordError(
                    pre.message or f"{pre.entity} {ref} lacks {', '.join(missing)}, which the "
                    f"other system requires before it accepts this {self.entity} record",
                    field=pre.field,
                )
        return note

    def note_planned(self, u: Unit, plan: UnitPlan) -> None:
        """Dry run: remember what this unit would become, for later entities of the plan."""
        if self.planned is None or u.tombstone is not None or plan.error is not None:
            return
        crm_key, erp_key = u.crm_key, u.erp_key
        how = "synced by this plan"
        if plan.writes["erp"] and plan.writes["erp"][0].op.action == "create":
            erp_key, how = self.planned.placeholder(), "created in the erp by this plan"
        elif plan.writes["crm"] and plan.writes["crm"][0].op.action == "create":
            crm_key, how = self.planned.placeholder(), "created in the crm by this plan"
        elif not u.linked and crm_key is not None and erp_key is not None:
            how = "matched in the erp by this plan"
        if crm_key is None:
            return
        if erp_key is not None:
            self.planned.links.append((self.entity, crm_key, erp_key))
            self.ctx.add_link(self.entity, crm_key, erp_key)
        if u.crm_key is None:
            return  # created in the CRM by this plan: nothing of the CRM refers to it yet
        values = dict(u.current("crm") or {})
        for w in plan.writes["crm"]:
            values.update(w.values)
        self.planned.records[(self.entity, crm_key)] = (values, how)
