"""One run of one entity: extract -> map -> diff -> resolve -> load -> checkpoint.

The engine sequences pure pieces (mapping, diff, resolution, watermark rules) around I/O
(connectors, store). It never knows which vendor a side is.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
from loguru import logger

from etl import watermark as wm
from etl.connectors.base import Connector, Record, WriteOp, WriteResult
from etl.connectors.schema import SCHEMAS
from etl.diff import diff, hash_frame
from etl.engine.report import Change, EntityReport, Problem
from etl.engine.resolve import Values, resolve_pair, values_for_create
from etl.errors import EtlError, RecordError, UnsentField, WatermarkAhead
from etl.mapping import EntityMapping, MapContext, build_payload, read_record
from etl.mapping.models import SIDES, Side, other
from etl.mapping.paths import unsent_paths
from etl.state.store import Checkpoint, QuarantineEntry, QuarantineRow, SnapshotRow, Store

CHUNK = 100  # records per write-and-checkpoint step
GONE_SEP = "; it was quarantined for: "


class Stopped(EtlError):
    """The run was asked to stop (SIGTERM/SIGINT) and did so between chunks."""


class LockLost(EtlError):
    """Another run took this entity's lock (our lease expired): stop before writing more."""


@dataclass
class Options:
    dry_run: bool = False
    lookback: timedelta = timedelta(minutes=5)
    safety_lag: timedelta = timedelta(seconds=5)
    # backfill: an explicit window that neither reads nor moves the stored watermark
    window: wm.Window | None = None
    sides: tuple[Side, ...] | None = None
    lease_s: float = 900.0
    progress: Callable[[str, int], None] | None = None  # (phase, records) callback
    # asked between pages and chunks; True ends the run (status "stopped"):
    # whole chunks stay committed, the watermark does not move
    should_stop: Callable[[], bool] | None = None

    def stop_requested(self) -> bool:
        return self.should_stop is not None and self.should_stop()


@dataclass
class Planned:
    """What a dry run has planned so far, for the later entities of the same plan: nothing is
    written, so an order whose customer this plan would create or match must not be reported
    as quarantined for a customer that "is not synced yet"."""

    # (entity, crm key) -> (the CRM record's values after the planned writes, what happens)
    records: dict[tuple[str, str], tuple[Values, str]] = field(default_factory=dict)
    # (entity, crm key, erp key): links the plan would make; a key still to be created is a
    # negative placeholder (no system uses negative keys), never sent anywhere
    links: list[tuple[str, str, str]] = field(default_factory=list)
    _last: int = 0

    def placeholder(self) -> str:
        self._last -= 1
        return str(self._last)


@dataclass
class Seen:
    """A changed record read from one side this run."""

    side: Side
    key: str
    values: Values
    updated: datetime | None
    h1: int
    h2: int
    record: Record


@dataclass
class Unit:
    """One real-world record: what each side holds now and last held."""

    crm_key: str | None = None
    erp_key: str | None = None
    seen: dict[Side, Seen] = field(default_factory=dict)
    snapshot: dict[Side, Values | None] = field(default_factory=lambda: {"crm": None, "erp": None})
    linked: bool = False
    tombstone: Side | None = None  # the side this linked record was deleted from
    duplicate_of: str | None = None  # the other side's key its natural key already links to

    def key(self, side: Side) -> str | None:
        return self.crm_key if side == "crm" else self.erp_key

    def set_key(self, side: Side, key: str) -> None:
        if side == "crm":
            self.crm_key = key
        else:
            self.erp_key = key


class EntitySync:
    def __init__(
        self,
        mapping: EntityMapping,
        connectors: dict[Side, Connector],
        store: Store,
        ctx: MapContext,
        *,
        run_id: str,
        now: datetime,
        options: Options,
        report: EntityReport,
        lock_name: str,
        planned: Planned | None = None,
    ) -> None:
        self.m = mapping
        self.entity = mapping.entity
        self.conn = connectors
        self.store = store
        self.ctx = ctx
        self.run_id = run_id
        self.now = now
        self.opt = options
        self.report = report
        self.lock_name = lock_name
        self.columns = mapping.columns()
        self.windows: dict[Side, wm.Window] = {}
        self._started = time.monotonic()
        self._planned_creates: dict[Side, set[str]] = {}
        self.planned = planned if options.dry_run else None
        if self.planned is not None:
            for entity, crm_key, erp_key in self.planned.links:
                ctx.add_link(entity, crm_key, erp_key)

    # --- extract -------------------------------------------------------------------------------

    def extract(self, side: Side) -> list[Seen]:
        """Read the side's window (plus due quarantine entries), normalize, diff; return what
        changed. Invalid records are quarantined right away."""
        c = self.conn[side]
        if self.opt.window is not None:
            window = self.opt.window
        else:
            window = wm.window(
                self.store.watermark(self.entity, side),
                run_start=self.now,
                lookback=self.opt.lookback,
                safety_lag=self.opt.safety_lag,
                precision=c.capabilities.clock_precision,
            )
        self.windows[side] = window
        records = self.read(side, window)
        if self.opt.window is None:
            due = self.store.quarantine_due(self.entity, side, self.now)
            missing = [q.key for q in due if q.key not in records]
            if missing:
                for record in c.read_by_keys(self.entity, missing):
                    records[c.key_of(self.entity, record)] = record
                self._retried_but_gone(side, [q for q in due if q.key not in records])
        self.report.side(side).read += len(records)
        self._ignore_dropped(side, records)
        seen = self.normalize(side, records, quarantine=not self.opt.dry_run)
        if not seen:
            return []
        incoming = pd.DataFrame(
            [{"key": s.key, **{col: s.values.get(col) for col in self.columns}} for s in seen],
            columns=["key", *self.columns], dtype=object,
        )
        snap = self.store.snapshots(side, self.entity, incoming["key"].tolist())
        result = diff(incoming, snap[["key", "h1", "h2"]], columns=self.columns, key="key")
        self.report.side(side).unchanged += len(result.unchanged)
        self._clear_clean(side, [str(k) for k in result.unchanged])
        by_key = {s.key: s for s in seen}
        out: list[Seen] = []
        for frame in (result.new, result.changed):
            for key, h1, h2 in zip(frame["key"], frame["h1"], frame["h2"], strict=True):
                s = by_key[str(key)]
                s.h1, s.h2 = int(h1), int(h2)
                out.append(s)
        return out

    def _clear_clean(self, side: Side, unchanged: list[str]) -> None:
        """Records read exactly as they were last synced are clean: an entry left from a
        failed version in between (fixed back to the synced values) goes."""
        if self.opt.dry_run or not unchanged:
            return
        stale = self.store.quarantined_keys(self.entity, side).intersection(unchanged)
        if stale:
            cp = Checkpoint(self.entity, clear_quarantine=[(side, k) for k in sorted(stale)])
            self.store.checkpoint(cp, now=self.now, run_id=self.run_id)

    def _ignore_dropped(self, side: Side, records: dict[str, Record]) -> None:
        """Records whose quarantine entry was dropped are ignored while they are exactly as
        they were when dropped; once they change they are processed again."""
        if not records:
            return
        dropped = self.store.quarantine_dropped(self.entity, side)
        for key, payload in dropped.items():
            if key in records and _digest(records[key]) == _digest(payload):
                del records[key]
                self.report.side(side).skipped += 1

    def _retried_but_gone(self, side: Side, gone: Sequence[QuarantineRow]) -> None:
        """Due entries whose record the side no longer has: the entry says so and backs off."""
        if self.opt.dry_run or not gone:
            return
        entries = []
        for q in gone:
            first = q.reason.split(GONE_SEP, 1)[-1]
            entries.append(QuarantineEntry(
                self.entity, side, q.key, q.kind,
                f"{self.entity} {side} {q.key} was not found when retried (deleted in the "
                f"{side}?); `ponte quarantine drop {q.id}` forgets it{GONE_SEP}{first}",
                q.field, q.payload))
            logger.bind(entity=self.entity, side=side, key=q.key).warning(
                "quarantined record not found when retried")
        self.store.checkpoint(Checkpoint(self.entity, quarantine=entries), now=self.now,
                              run_id=self.run_id)

    def read(self, side: Side, window: wm.Window) -> dict[str, Record]:
        """Every record of the window, by key (the last version wins)."""
        c = self.conn[side]
        records: dict[str, Record] = {}
        for page in c.list_changed(self.entity, window):
            for record in page:
                records[c.key_of(self.entity, record)] = record
            if self.opt.progress:
                self.opt.progress(f"{self.entity}: read {side}", len(page))
            if self.opt.stop_requested():
                raise Stopped(f"stopped while reading {self.entity} from {side}; nothing written")
        return records

    def check_sent(self, side: Side, records: Iterable[Record]) -> None:
        """Stop the entity when a mapped path is absent from every record the listing
        returned: the system does not send it, and reading it would blank the field on the
        other side. Only paths the system's schema says every record carries are judged (Omie leaves
        out tags that were never filled)."""
        system = SCHEMAS.get(self.conn[side].kind)
        collection = self.m.systems[side].collection if side in self.m.systems else ""
        schema = system.collections.get(collection) if system is not None else None
        records = list(records)
        unsent = unsent_paths(self.m, side, records, schema)
        if not unsent:
            return
        where = f"{system.system if system else self.conn[side].kind} {collection}".strip()
        listed = ", ".join(
            f"{(r.base + '[].' if r.base else '') + r.path!r} ({r.where})" for r in unsent)
        raise UnsentField(self.entity, (
            f"{self.entity}: the {side} ({where}) does not send {listed}: absent from all "
            f"{len(records)} records read, so reading it would blank that field on the other "
            f"side; {self.entity} stopped before writing anything — fix the path in the "
            "mapping file"))

    def normalize(self, side: Side, records: dict[str, Record], *, quarantine: bool) -> list[Seen]:
        """Canonical values of each record; records that fail go to quarantine (when
        ``quarantine``) and into the report's problems with the reason. A mapped path that
        no record carries stops the entity first (:meth:`check_sent`)."""
        self.check_sent(side, records.values())
        c = self.conn[side]
        out: list[Seen] = []
        bad: list[QuarantineEntry] = []
        for key, record in records.items():
            try:
                values = read_record(self.m, side, record, self.ctx)
                updated = _updated_at(c, side, self.entity, record)
            except RecordError as exc:
                bad.append(QuarantineEntry(self.entity, side, key, "invalid", str(exc), exc.field,
                                           _jsonable(record)))
                continue
            out.append(Seen(side, key, values, updated, 0, 0, record))
        if bad:
            self.report.side(side).quarantined += len(bad)
            for q in bad:
                self.report.problems.append(Problem(self.entity, side, q.key, q.kind, q.reason))
                logger.bind(entity=self.entity, side=side, key=q.key).warning(
                    "quarantined: {}", q.reason)
            if quarantine:
                self.store.checkpoint(Checkpoint(self.entity, quarantine=bad), now=self.now,
                                      run_id=self.run_id)
        return out

    # --- pair up -------------------------------------------------------------------------------

    def units(self, seen: dict[Side, list[Seen]]) -> list[Unit]:
        units: list[Unit] = []
        by_key: dict[tuple[Side, str], Unit] = {}
        crm_keys = [s.key for s in seen.get("crm", [])]
        erp_keys = [s.key for s in seen.get("erp", [])]
        links = {}
        if crm_keys:
            for ck, ek in self.store.links(self.entity, crm_keys=crm_keys):
                links[("crm", ck)] = ek
        if erp_keys:
            for ck, ek in self.store.links(self.entity, erp_keys=erp_keys):
                links[("erp", ek)] = ck
        for side in SIDES:
            for s in seen.get(side, []):
                partner = links.get((side, s.key))
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
        linked = [u.crm_key for u in units if u.linked and u.crm_key is not None]
        tombstones = self.store.tombstones(self.entity, crm_keys=linked) if linked else {}
        for u in units:
            if u.linked and u.crm_key is not None and u.erp_key is not None:
                u.tombstone = tombstones.get((u.crm_key, u.erp_key))  # type: ignore[assignment]
        self._load_snapshots(units)
        self._match(units)
        return units

    def _load_snapshots(self, units: Sequence[Unit]) -> None:
        for side in SIDES:
            keys = [u.key(side) for u in units if u.key(side) is not None]
            if not keys:
                continue
            frame = self.store.snapshots(side, self.entity, keys)  # type: ignore[arg-type]
            data = dict(zip(frame["key"], frame["data"], strict=True))
            for u in units:
                k = u.key(side)
                if k is not None and k in data:
                    u.snapshot[side] = data[k]

    def _match(self, units: list[Unit]) -> None:
        """Link unlinked records to the other side by natural key, before anything is created."""
        nk = self.m.natural_key
        if nk is None:
            return
        for side in SIDES:
            target = other(side)
            lonely = [u for u in units if not u.linked and side in u.seen and u.key(target) is None
                      and u.seen[side].values.get(nk)]
            if not lonely:
                continue
            # 1) the other side's records read in this run
            index: dict[str, Unit] = {}
            for u in units:
                if target in u.seen and not u.linked and u.seen[target].values.get(nk):
                    index.setdefault(u.seen[target].values[nk], u)  # type: ignore[index]
            # 2) what ponte has seen of the other side before
            wanted = [u.seen[side].values[nk] for u in lonely]
            snap = self.store.snapshots_by_natural_key(target, self.entity, wanted)  # type: ignore[arg-type]
            known = {nkv: (key, data) for key, nkv, data in
                     zip(snap["key"], snap["natural_key"], snap["data"], strict=True)}
            linked_other = set()
            if len(snap):
                pairs = self.store.links(self.entity, **{f"{target}_keys": snap["key"].tolist()})
                linked_other = {p[1] if target == "erp" else p[0] for p in pairs}
            # 3) the other side itself, before anything is created: a record there may not
            #    have been read this run (that side is not read every run, or its record lies
            #    outside this run's window — a clock ahead of ours, a failed earlier write)
            remote: dict[str, Record] = {}
            if self.m.systems[target].natural_key_field:
                still = [v for v in wanted if v not in index and v not in known]
                if still:
                    field_name = self.m.systems[target].natural_key_field
                    assert field_name is not None
                    found = self.conn[target].find_by(self.entity, field_name, still)
                    keys = [self.conn[target].key_of(self.entity, r) for r in found]
                    taken = {p[1] if target == "erp" else p[0] for p in self.store.links(
                        self.entity, **{f"{target}_keys": keys})} if keys else set()
                    for rec, key in zip(found, keys, strict=True):
                        if key in taken:
                            continue  # linked to another record: not a partner for this one
                        try:
                            vals = read_record(self.m, target, rec, self.ctx)
                        except RecordError:
                            continue
                        if vals.get(nk):
                            remote[vals[nk]] = rec  # type: ignore[index]
            for u in lonely:
                value = u.seen[side].values[nk]
                assert value is not None
                partner = index.get(value)
                if partner is not None and partner is not u and partner.key(side) is None:
                    u.set_key(target, partner.key(target))  # type: ignore[arg-type]
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
                    rec = remote.pop(value)
                    key = self.conn[target].key_of(self.entity, rec)
                    vals = read_record(self.m, target, rec, self.ctx)
                    u.set_key(target, key)
                    u.seen[target] = Seen(target, key, vals,
                                          self.conn[target].updated_at(self.entity, rec), 0, 0, rec)
                else:
                    continue
                u.linked = False
                u.matched = True  # type: ignore[attr-defined]
                self.report.matched += 1

    # --- resolve + load ------------------------------------------------------------------------

    def process(self, units: list[Unit]) -> None:
        for start in range(0, len(units), CHUNK):
            if self.opt.stop_requested():
                raise Stopped(f"stopped after {start} of {len(units)} {self.entity} records "
                              "(whole chunks committed; watermark not moved)")
            self._process_chunk(units[start:start + CHUNK])
            if not self.opt.dry_run:
                self.renew_lock()

    def renew_lock(self) -> None:
        """Extend the lease from the current instant (the run's start plus the time elapsed:
        renewing from the start would not extend it at all); raise :class:`LockLost` when
        another run has taken the lock, so this one writes nothing more."""
        now = self.now + timedelta(seconds=time.monotonic() - self._started)
        if not self.store.renew_lock(self.lock_name, self.run_id, lease_s=self.opt.lease_s,
                                     now=now):
            raise LockLost(f"lost the lock of {self.entity!r} to another run (lease of "
                           f"{self.opt.lease_s:.0f}s expired); stopped without writing more")

    def _current(self, u: Unit, side: Side) -> Values | None:
        if side in u.seen:
            return u.seen[side].values
        return u.snapshot[side]

    def _process_chunk(self, units: Sequence[Unit]) -> None:
        cp = Checkpoint(self.entity)
        ops: dict[Side, list[tuple[WriteOp, Unit, Values]]] = {"crm": [], "erp": []}
        for u in units:
            before = {s: len(ops[s]) for s in SIDES}
            try:
                self._plan_unit(u, cp, ops)
            except RecordError as exc:
                side = next(iter(u.seen))
                self._quarantine(cp, side, u.key(side) or "?", exc, u.seen[side].record)
                continue
            if self.planned is not None:
                self._note_planned(u, {s: ops[s][before[s]:] for s in SIDES})
        for target in SIDES:
            if not ops[target]:
                continue
            if self.opt.dry_run:
                for op, _u, _v in ops[target]:
                    counts = self.report.side(target)
                    if op.action == "create":
                        counts.created += 1
                    else:
                        counts.updated += 1
                continue
            self._record_intents(target, ops[target])
            results = self.conn[target].write_batch(self.entity, [o for o, _, _ in ops[target]])
            for (op, u, written), res in zip(ops[target], results, strict=True):
                self._apply_result(target, op, u, written, res, cp)
        self._snapshot_sources(units, cp)
        if not self.opt.dry_run:
            self.store.checkpoint(self._hash(cp), now=self.now, run_id=self.run_id)
        if self.opt.progress:
            self.opt.progress(f"{self.entity}: write", len(units))

    def _plan_unit(self, u: Unit, cp: Checkpoint, ops: dict[Side, list[Any]]) -> None:
        if u.tombstone is not None:
            # deleted on one side (see `ponte verify`): nothing flows into it any more
            for side in u.seen:
                self.report.side(side).skipped += 1
            return
        if u.crm_key is not None and u.erp_key is not None:
            current = {s: self._current(u, s) or {} for s in SIDES}
            first = not u.linked
            decision = resolve_pair(
                self.m, current, {s: (None if first else u.snapshot[s]) for s in SIDES},
                updated={s: (u.seen[s].updated if s in u.seen else None) for s in SIDES},
                first_match=first,
            )
            if decision.is_conflict:
                self.report.conflicts += 1
                raise RecordError(
                    f"{self.entity} crm {u.crm_key} / erp {u.erp_key}: changed on both sides "
                    f"since the last sync ({', '.join(decision.conflict)}); the mapping's conflict "
                    "policy is 'manual' — make both sides agree, then `ponte quarantine retry`",
                    kind="conflict",
                    field=decision.conflict[0],
                )
            if not u.linked:
                cp.links.append((u.crm_key, u.erp_key))
                self.ctx.add_link(self.entity, u.crm_key, u.erp_key)
            for target in SIDES:
                writes = decision.writes[target]
                if not writes:
                    continue
                note = None
                if target in self.m.create_in:
                    note = self._check_preconditions({**current[other(target)], **writes},
                                                     "updated")
                key = u.key(target)
                old = current[target]
                payload = build_payload(self.m, target, writes, self.ctx, create=False,
                                        record={**old, **writes})
                ops[target].append((WriteOp("update", payload, key=key), u, writes))
                self.report.changes.append(Change(
                    self.entity, target, "update", key, u.key(other(target)) or "",
                    {f: (old.get(f), v) for f, v in writes.items()}, note))
            return
        # present on one side only
        side: Side = "crm" if u.crm_key is not None else "erp"
        target = other(side)
        if target not in self.m.create_in:
            self.report.side(side).skipped += 1
            return
        nk = self.m.natural_key
        if u.duplicate_of is not None:
            raise RecordError(
                f"{self.entity} {side} {u.key(side)}: its {nk} "
                f"{u.seen[side].values.get(nk or '')} is already linked to {target} record "
                f"{u.duplicate_of} through another {side} record; duplicates on the {side} side "
                f"are not copied — merge them there", field=nk, kind="invalid")
        values = values_for_create(self.m, side, u.seen[side].values)
        if nk and values.get(nk):
            planned = self._planned_creates.setdefault(target, set())
            if values[nk] in planned:
                raise RecordError(
                    f"{self.entity} {side} {u.key(side)}: another {side} record with {nk} "
                    f"{values[nk]} is being created in the {target} in this run; duplicates on "
                    f"the {side} side are not copied — merge them there",
                    field=nk, kind="invalid")
            planned.add(values[nk])  # type: ignore[arg-type]
        note = self._check_preconditions(u.seen[side].values)
        payload = build_payload(self.m, target, values, self.ctx, create=True)
        ext = f"{self.conn[side].kind}-{u.key(side)}"
        ops[target].append((WriteOp("create", payload, external_id=ext), u, values))
        self.report.changes.append(Change(
            self.entity, target, "create", None, u.key(side) or "",
            {f: (None, v) for f, v in values.items()}, note))

    def _note_planned(self, u: Unit, ops: dict[Side, list[tuple[WriteOp, Unit, Values]]]
                      ) -> None:
        """Dry run: remember what this unit would become, for later entities of the plan."""
        assert self.planned is not None
        if u.tombstone is not None:
            return
        crm_key, erp_key = u.crm_key, u.erp_key
        how = "synced by this plan"
        if ops["erp"] and ops["erp"][0][0].action == "create":
            erp_key, how = self.planned.placeholder(), "created in the erp by this plan"
        elif ops["crm"] and ops["crm"][0][0].action == "create":
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
        values = dict(self._current(u, "crm") or {})
        for _op, _u, written in ops["crm"]:
            values.update(written)
        self.planned.records[(self.entity, crm_key)] = (values, how)

    def _check_preconditions(self, values: Values, action: str = "created") -> str | None:
        """Raise when a record this one depends on is not synced or lacks what the target
        requires; in a dry run, one this plan would sync first is good enough, and the note
        returned says so."""
        note = None
        for pre in self.m.preconditions:
            ref = values.get(pre.field)
            if ref is None:
                raise RecordError(f"{self.entity} has no {pre.field}", field=pre.field)
            frame = self.store.snapshots("crm", pre.entity, [ref])
            data = frame["data"].iloc[0] if len(frame) else None
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

    def _record_intents(self, target: Side, planned: list[tuple[WriteOp, Unit, Values]]) -> None:
        """Before creates that the target cannot upsert by external id, write down the intent so
        that a crash between 'created' and 'link saved' is resolved next run, not duplicated."""
        if self.conn[target].capabilities.has_external_id_upsert:
            return
        for op, u, values in planned:
            if op.action != "create":
                continue
            field_name, value = self._recovery_key(target, op, values)
            if field_name is None:
                continue
            source = other(target)
            self.store.record_intent(
                self.entity, target, u.key(source) or "", value or "",
                {"field": field_name}, now=self.now)

    def _recovery_key(self, target: Side, op: WriteOp, values: Values) -> tuple[str | None, str | None]:
        spec = self.m.systems[target]
        if spec.external_id_field:
            return spec.external_id_field, op.external_id
        if spec.natural_key_field and self.m.natural_key:
            return spec.natural_key_field, values.get(self.m.natural_key)
        return None, None

    def recover_intents(self) -> None:
        """Finish creates a crashed run left behind: find each record by its external id (or
        natural key) and link it, or forget the intent when the create never landed."""
        for target in SIDES:
            if target not in self.m.create_in:
                continue
            pending = self.store.pending_intents(self.entity, target)
            if not pending:
                continue
            cp = Checkpoint(self.entity)
            by_field: dict[str, list[Any]] = {}
            for intent in pending:
                by_field.setdefault(intent.payload.get("field", ""), []).append(intent)
            c = self.conn[target]
            for field_name, intents in by_field.items():
                found: dict[str, Record] = {}
                if field_name:
                    from etl.mapping.apply import get_path

                    for rec in c.find_by(self.entity, field_name, [i.external_id for i in intents]):
                        found[str(get_path(rec, field_name))] = rec
                for intent in intents:
                    rec = found.get(intent.external_id)
                    if rec is None and field_name == self.m.systems[target].natural_key_field:
                        rec = found.get(intent.external_id.lstrip("0")) or None
                    if rec is not None:
                        key = c.key_of(self.entity, rec)
                        pair = (intent.source_key, key) if target == "erp" else (key, intent.source_key)
                        cp.links.append(pair)
                        self.ctx.add_link(self.entity, *pair)
                        try:
                            vals = read_record(self.m, target, rec, self.ctx)
                            cp.snapshots.append(self._snap(target, key, vals, rec))
                        except RecordError:
                            pass
                        logger.bind(entity=self.entity, side=target).info(
                            "recovered a create interrupted by a crash: {} -> {}",
                            intent.source_key, key)
                    cp.clear_intents.append((target, intent.source_key))
            self.store.checkpoint(self._hash(cp), now=self.now, run_id=self.run_id)

    def _apply_result(self, target: Side, op: WriteOp, u: Unit, written: Values,
                      res: WriteResult, cp: Checkpoint) -> None:
        source = other(target)
        if not res.ok:
            assert res.error is not None
            self._quarantine(cp, source, u.key(source) or "?", res.error,
                             u.seen[source].record if source in u.seen else {"payload": op.payload})
            u.seen.pop(source, None)  # not snapshotted: retried next run
            return
        counts = self.report.side(target)
        key = res.key or op.key
        assert key is not None
        if op.action == "create":
            counts.created += 1
            u.set_key(target, key)
            pair = (u.crm_key, u.erp_key)
            cp.links.append(pair)  # type: ignore[arg-type]
            self.ctx.add_link(self.entity, *pair)  # type: ignore[arg-type]
            cp.clear_intents.append((target, u.key(source) or ""))
        else:
            counts.updated += 1
        echoed: Values | None = None
        if res.record is not None:
            try:
                echoed = read_record(self.m, target, res.record, self.ctx)
            except RecordError:
                echoed = None
        if echoed is None:
            base = dict(self._current(u, target) or {})
            base.update(written)
            echoed = base
        elif op.action == "update":
            # only the fields written take the echo: a field a user changed in the target
            # while this run was writing must still look changed next run, or it never flows
            base = dict(self._current(u, target) or {})
            base.update({f: echoed.get(f) for f in written})
            echoed = base
        cp.snapshots.append(self._snap(target, key, echoed, res.record))
        if source in u.seen:
            cp.clear_quarantine.append((source, u.key(source) or ""))

    def _snapshot_sources(self, units: Sequence[Unit], cp: Checkpoint) -> None:
        """Every record read and handled (written, or needing nothing) gets its snapshot, so the
        next run sees it as unchanged."""
        failed = {(q.system, q.key) for q in cp.quarantine}
        written = {(s.system, s.key) for s in cp.snapshots}
        for u in units:
            for side, s in u.seen.items():
                if (side, s.key) in failed:
                    continue
                if (side, s.key) in written:
                    # read, then written into by this run (an owned field flowing back): its
                    # snapshot is the write's echo, and a quarantine entry it had is done
                    cp.clear_quarantine.append((side, s.key))
                    continue
                if s.h1 == 0 and s.h2 == 0 and side not in self.m.sources():
                    # found by natural key on a side that is not read each run
                    cp.snapshots.append(self._snap(side, s.key, s.values, s.record))
                    continue
                cp.snapshots.append(self._snap(side, s.key, s.values, s.record, s.updated))
                cp.clear_quarantine.append((side, s.key))
            if not u.linked and u.crm_key and u.erp_key and not any(
                (side, u.key(side)) in failed for side in SIDES
            ):
                pair = (u.crm_key, u.erp_key)
                if pair not in cp.links:
                    cp.links.append(pair)
                    self.ctx.add_link(self.entity, *pair)

    def _snap(self, side: Side, key: str, values: Values, record: Record | None,
              updated: datetime | None = None) -> SnapshotRow:
        """A snapshot row; its hash is filled in bulk by :meth:`_hash` before the checkpoint."""
        nk = values.get(self.m.natural_key) if self.m.natural_key else None
        if updated is None and record is not None:
            try:
                updated = self.conn[side].updated_at(self.entity, record)
            except (KeyError, TypeError, ValueError, RecordError):  # an echo may lack them
                updated = None
        return SnapshotRow(side, self.entity, key, 0, 0, dict(values), nk, updated)

    def _hash(self, cp: Checkpoint) -> Checkpoint:
        if cp.snapshots:
            frame = pd.DataFrame([[s.data.get(c) for c in self.columns] for s in cp.snapshots],
                                 columns=self.columns, dtype=object)
            h = hash_frame(frame, self.columns)
            for snap, h1, h2 in zip(cp.snapshots, h["h1"].tolist(), h["h2"].tolist(), strict=True):
                snap.h1, snap.h2 = int(h1), int(h2)
        return cp

    def _quarantine(self, cp: Checkpoint, side: Side, key: str, exc: RecordError,
                    record: Record) -> None:
        kind = exc.kind if exc.kind in ("invalid", "rejected", "conflict") else "invalid"
        cp.quarantine.append(QuarantineEntry(self.entity, side, key, kind, str(exc), exc.field,
                                             _jsonable(record)))
        self.report.side(side).quarantined += 1
        self.report.problems.append(Problem(self.entity, side, key, kind, str(exc)))
        logger.bind(entity=self.entity, side=side, key=key).warning("quarantined: {}", exc)

    # --- the whole entity ----------------------------------------------------------------------

    def check_watermarks(self, sides: Sequence[Side]) -> None:
        """A stored watermark past this run's signpost fails the entity before anything is read
        or written: the window would be empty and the run would say "ok" while that side's
        changes are never read (the state was edited, or this machine's clock went back)."""
        for side in sides:
            stored = self.store.watermark(self.entity, side)
            post = wm.signpost(self.now, safety_lag=self.opt.safety_lag,
                               precision=self.conn[side].capabilities.clock_precision)
            ahead = wm.ahead_of(stored, post)
            if ahead is None:
                continue
            assert stored is not None
            raise WatermarkAhead(
                f"{self.entity} {side}: the stored watermark {stored.isoformat()} is ahead of "
                f"this run's signpost {post.isoformat()} (run start minus the safety lag) by "
                f"{wm.span_text(ahead)} — the state was edited or this machine's clock "
                f"went back, and no {side} change made before the watermark would be read. "
                f"Nothing was read or written for {self.entity}. Fix: `ponte watermark set "
                f"{self.entity} --side {side} --to <a time before the signpost>` or `ponte "
                f"watermark reset {self.entity} --side {side}` (re-reads from the beginning; "
                "nothing is duplicated); if the clock is wrong, correct it first")

    def run(self) -> None:
        sides = [s for s in self.m.sources() if self.opt.sides is None or s in self.opt.sides]
        if self.opt.window is None:  # a backfill neither reads nor moves the watermark
            self.check_watermarks(sides)
        if not self.opt.dry_run:
            self.recover_intents()
        seen = {side: self.extract(side) for side in sides}
        units = self.units(seen)
        self.process(units)
        if self.opt.dry_run or self.opt.window is not None:
            return
        cp = Checkpoint(self.entity)
        for side in sides:
            until = self.windows[side].until
            assert until is not None
            cp.watermarks[side] = wm.advance(self.store.watermark(self.entity, side),
                                             completed_until=until)
            self.report.watermarks[side] = cp.watermarks[side].isoformat()
        self.store.checkpoint(self._hash(cp), now=self.now, run_id=self.run_id)


def _updated_at(c: Connector, side: Side, entity: str, record: Record) -> datetime:
    """The record's updated-at; a missing or garbled one (``None``) makes the record invalid
    (quarantined naming the field), never the run fail."""
    updated = c.updated_at(entity, record)
    if updated is None:
        path = c.capabilities.updated_at_paths.get(entity, "updated_at")
        raise RecordError(f"{side} record has no usable change time ({path})", field=path)
    return updated


def _jsonable(record: Record) -> dict[str, Any]:
    return json.loads(json.dumps(record, default=str))


def _digest(record: Record | None) -> str:
    """A content hash of a native record as stored in the quarantine (JSON, keys sorted)."""
    text = json.dumps(_jsonable(record or {}), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()
