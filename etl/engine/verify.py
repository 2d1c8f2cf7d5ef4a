"""``ponte verify``: read both systems in full and report every drift between them through the
mappings; ``--fix`` repairs what the mappings allow.

Drift kinds, per entity:

* ``mismatched``: a linked pair whose mapped fields differ (computed fields included: the
  value aggregated from the stored facts against the one the other side holds), or whose
  record on one side lacks a copy its mapping's ``also_write`` asks for (item kind
  ``incomplete``: e.g. a CRM contact with its tax id in ``Register`` but not in ``CNPJ``);
  ``--fix`` writes the copy;
* ``missing_in_crm`` / ``missing_in_erp``: a record on one side only, where the mapping would
  create it on the other (``create_in``);
* ``unlinked``: the same natural key on both sides, not linked yet (a sync links them);
* ``duplicates``: records sharing a natural key on one side (never fixed automatically);
* ``vanished``: a linked record that no longer exists on one side. The mapping's ``deletes``
  policy applies: ``ignore`` (report), ``deactivate`` (the other side's connector deactivates it
  when its spec says how, else the mapping's ``deactivate`` fields are written there) or
  ``delete`` (delete it there). Never inferred from an empty or failed read, and a fix
  that would touch more than ``max_delete_share`` of the linked records stops and explains.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from etl.connectors.base import Connector, WriteOp, stops_waits
from etl.engine.deletes import apply_deletes
from etl.engine.entity import EntitySync
from etl.engine.model import Options, Seen, Unit
from etl.engine.pairing import fetch_matches, match
from etl.engine.report import EntityReport
from etl.engine.run import Heartbeat, build_context, lock_name
from etl.errors import EtlError, LockHeld, RecordError, Stopped
from etl.logging import redact
from etl.mapping import EntityMapping, also_write_gaps, build_payload
from etl.mapping.models import SIDES, Side, other
from etl.state import Store
from etl.watermark import Window

LEASE_S = 900.0  # verify --fix's lease on each entity's lock, renewed while it runs


@dataclass
class DriftItem:
    kind: str
    crm_key: str | None
    erp_key: str | None
    detail: str = ""
    fields: dict[str, list[Any]] = field(default_factory=dict)


@dataclass
class EntityVerify:
    mismatched: int = 0
    missing_in_crm: int = 0
    missing_in_erp: int = 0
    unlinked: int = 0
    duplicates: int = 0
    vanished: int = 0
    invalid: int = 0
    fixed: int = 0
    blocked: str | None = None
    items: list[DriftItem] = field(default_factory=list)
    sync: EntityReport | None = None

    @property
    def drift(self) -> int:
        return (self.mismatched + self.missing_in_crm + self.missing_in_erp + self.unlinked
                + self.duplicates + self.vanished)

    def as_dict(self, *, items: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "drift": self.drift, "missing_in_crm": self.missing_in_crm,
            "missing_in_erp": self.missing_in_erp, "mismatched": self.mismatched,
            "duplicates": self.duplicates, "unlinked": self.unlinked, "vanished": self.vanished,
            "invalid": self.invalid, "fixed": self.fixed,
        }
        if self.blocked:
            out["blocked"] = self.blocked
        if items:
            out["items"] = [asdict(i) for i in self.items]
        return out


@dataclass
class VerifyReport:
    run_id: str
    fix: bool
    entities: dict[str, EntityVerify] = field(default_factory=dict)

    @property
    def drift(self) -> int:
        return sum(e.drift for e in self.entities.values())

    def as_dict(self, *, items: bool = False) -> dict[str, Any]:
        return {"run_id": self.run_id, "fix": self.fix, "drift": self.drift,
                "entities": {n: e.as_dict(items=items) for n, e in self.entities.items()}}


def verify(
    *,
    store: Store,
    connectors: dict[Side, Connector],
    mappings: dict[str, EntityMapping],
    entities: list[str] | None = None,
    fix: bool = False,
    max_delete_share: float = 0.1,
    now: datetime | None = None,
    should_stop: Callable[[], bool] | None = None,
    lease_s: float = LEASE_S,
) -> VerifyReport:
    """Every drift of ``entities``; with ``fix``, repaired as a recorded run under the entities'
    locks, whose lease (``lease_s``) is renewed while it runs. ``should_stop`` is asked between
    pages and chunks: :class:`Stopped` is raised (the run recorded as ``stopped``, whole chunks
    kept). The run row is always finished: aborted on a second signal, failed on any other
    exception (re-raised)."""
    now = now or datetime.now(UTC)
    started = time.monotonic()
    names = list(entities or mappings)
    # recorded either way: the status page and the alerts show the last verify's drift
    run_id = store.start_run("verify-fix" if fix else "verify", names, now=now)
    report = VerifyReport(run_id, fix)
    held: list[str] = []
    heartbeat: Heartbeat | None = None
    status: str | None = None
    error: str | None = None
    try:
        if fix:
            for name in names:
                if not store.acquire_lock(lock_name(name), run_id, lease_s=lease_s, now=now):
                    raise LockHeld(f"another ponte run holds the lock of {name!r}; "
                                   "nothing was written — try again when it finishes")
                held.append(name)
            # a full read of big systems can outlast the lease: renew it while verify runs
            heartbeat = Heartbeat(store, held, run_id, lease_s=lease_s, now=lambda: now + (
                timedelta(seconds=time.monotonic() - started)))
            heartbeat.start()
        with stops_waits(connectors.values(), should_stop):  # a read's stated wait gives way too
            for name in names:
                report.entities[name] = _verify_entity(
                    mappings[name], connectors, store, run_id=run_id, now=now, fix=fix,
                    max_delete_share=max_delete_share, should_stop=should_stop,
                    lease_s=lease_s)
    except Stopped as exc:
        status, error = "stopped", str(exc)
        raise
    except EtlError as exc:
        status, error = "failed", str(exc)
        raise
    except KeyboardInterrupt as exc:
        status, error = "aborted", str(exc) or "interrupted"
        raise
    except BaseException as exc:
        status, error = "failed", redact(f"internal error: {type(exc).__name__}: {exc}")
        raise
    finally:
        if heartbeat is not None:
            heartbeat.stop()
        for name in held:
            store.release_lock(lock_name(name), run_id)
        if status is None:
            status = "ok" if report.drift == 0 or fix and all(
                e.fixed >= e.drift - e.duplicates for e in report.entities.values()) \
                else "partial"
        result = report.as_dict()
        if error:
            result["error"] = error
        store.finish_run(run_id, status, result, now=datetime.now(UTC))
    return report


def _verify_entity(m: EntityMapping, connectors: dict[Side, Connector], store: Store, *,
                   run_id: str, now: datetime, fix: bool, max_delete_share: float,
                   should_stop: Callable[[], bool] | None = None,
                   lease_s: float = LEASE_S) -> EntityVerify:
    out = EntityVerify()
    sync_report = EntityReport()
    ctx = build_context(store, connectors, dry_run=not fix, now=lambda: now)
    sync = EntitySync(m, connectors, store, ctx, run_id=run_id, now=now,
                      options=Options(dry_run=not fix, window=Window(None, None),
                                      should_stop=should_stop, lease_s=lease_s),
                      report=sync_report, lock_name=lock_name(m.entity))
    if fix:
        sync.load.recover_intents()
    seen: dict[Side, dict[str, Seen]] = {}
    present: dict[Side, set[str]] = {}
    for side in SIDES:
        records = sync.extract.read(side, Window(None, None))
        present[side] = set(records)
        seen[side] = {s.key: s for s in sync.extract.normalize(side, records, quarantine=False)}
        out.invalid += len(records) - len(seen[side])
    links = store.links(m.entity)
    linked = {"crm": {c for c, _ in links}, "erp": {e for _, e in links}}
    shared = compared_fields(m)
    nk = m.natural_key

    # duplicates by natural key on each side
    if nk:
        for side in SIDES:
            counts = Counter(s.values.get(nk) for s in seen[side].values() if s.values.get(nk))
            for value, n in counts.items():
                if n > 1:
                    out.duplicates += n - 1
                    keys = [k for k, s in seen[side].items() if s.values.get(nk) == value]
                    joined = ",".join(keys)
                    out.items.append(DriftItem(
                        "duplicate", joined if side == "crm" else None,
                        joined if side == "erp" else None,
                        detail=f"{nk} {value} appears {n} times in the {side}"))

    units: list[Unit] = []
    vanished: list[tuple[str, str, Side]] = []  # (crm_key, erp_key, side it vanished from)
    incomplete: list[tuple[Seen, dict[str, str]]] = []  # records missing an also_write copy
    tombstones = store.tombstones(m.entity)
    for crm_key, erp_key in links:
        if (crm_key, erp_key) in tombstones:
            continue  # deleted on one side on purpose; the other side keeps its record
        a, b = seen["crm"].get(crm_key), seen["erp"].get(erp_key)
        if a is None or b is None:
            # gone only when absent from a read that returned records (never from an empty
            # read); a record that is present but invalid is not a deletion
            for gone, key in (("crm", crm_key), ("erp", erp_key)):
                if present[gone] and key not in present[gone]:  # type: ignore[index]
                    vanished.append((crm_key, erp_key, gone))  # type: ignore[arg-type]
                    break
            continue
        diff = {f: [a.values.get(f), b.values.get(f)] for f in shared
                if a.values.get(f) != b.values.get(f)}
        if diff:
            out.mismatched += 1
            out.items.append(DriftItem("mismatched", crm_key, erp_key, fields=diff))
            unit = Unit(crm_key, erp_key, seen={"crm": a, "erp": b}, linked=False)
            unit.snapshot = {"crm": None, "erp": None}
            units.append(unit)
        for s in (a, b):
            # a field both sides agree on, whose copy (also_write) is missing on this side
            gaps = {f: p for f, p in also_write_gaps(m, s.side, s.record, s.values,
                                                     sync.job.ctx).items() if f not in diff}
            if gaps:
                out.mismatched += 0 if diff else 1
                out.items.append(DriftItem("incomplete", crm_key, erp_key, detail="; ".join(
                    f"{s.side} {f} {s.values[f]} is not in {p}" for f, p in gaps.items())))
                incomplete.append((s, gaps))

    # records on one side only
    lonely: dict[Side, list[Seen]] = {
        side: [s for k, s in seen[side].items() if k not in linked[side]] for side in SIDES}
    other_nk: dict[Side, set[str]] = {
        side: {str(s.values[nk]) for s in lonely[side] if nk and s.values.get(nk)}
        for side in SIDES}
    for side in SIDES:
        target = other(side)
        for s in lonely[side]:
            value = s.values.get(nk) if nk else None
            if value is not None and value in other_nk[target]:
                if side == "crm":
                    out.unlinked += 1
                    out.items.append(DriftItem("unlinked", s.key, None,
                                               detail=f"{nk} {value} on both sides, not linked"))
                    units.append(Unit(crm_key=s.key, seen={"crm": s}))
                else:
                    units.append(Unit(erp_key=s.key, seen={"erp": s}))
                continue
            if target in m.create_in:
                if target == "crm":
                    out.missing_in_crm += 1
                else:
                    out.missing_in_erp += 1
                out.items.append(DriftItem(f"missing_in_{target}",
                                           s.key if side == "crm" else None,
                                           s.key if side == "erp" else None))
                units.append(Unit(crm_key=s.key, seen={"crm": s}) if side == "crm"
                             else Unit(erp_key=s.key, seen={"erp": s}))

    out.vanished = len(vanished)
    for crm_key, erp_key, gone in vanished:
        out.items.append(DriftItem(f"vanished_from_{gone}", crm_key, erp_key,
                                   detail=f"deletes policy: {m.deletes}"))

    if fix:
        before = sync_report.crm.created + sync_report.crm.updated + sync_report.erp.created \
            + sync_report.erp.updated
        if units:
            unpaired = [u for u in units if not u.linked and (u.crm_key is None
                                                              or u.erp_key is None)]
            candidates = fetch_matches(sync.job, unpaired)
            before_match = list(unpaired)
            sync_report.matched += match(m, unpaired, candidates)
            merged = {id(u) for u in before_match} - {id(u) for u in unpaired}
            # a unit matched into another is that one's partner now: never processed alone
            sync.process([u for u in units if id(u) not in merged])
        out.fixed += (sync_report.crm.created + sync_report.crm.updated
                      + sync_report.erp.created + sync_report.erp.updated - before)
        out.fixed += _fill_gaps(m, connectors, sync, incomplete, out)
        deleted = apply_deletes(m, connectors, store, sync.job.ctx, vanished, len(links),
                                max_delete_share=max_delete_share, run_id=run_id, now=now)
        out.blocked = deleted.blocked
        for crm_key, erp_key, error in deleted.failed:
            out.items.append(DriftItem("delete_failed", crm_key, erp_key, detail=error))
        out.fixed += deleted.done
        out.sync = sync_report
    return out


def compared_fields(m: EntityMapping) -> list[str]:
    """The fields verify compares: those both sides hold and may write, and the computed ones
    (their expected value is aggregated from the stored facts when the record is read, the
    same way a sync works it out, and compared with what the other side holds)."""
    out: list[str] = []
    for name, spec in m.fields.items():
        if spec.crm is None or spec.erp is None:
            continue
        if all(not sf.read_only or sf.computed is not None for sf in (spec.crm, spec.erp)):
            out.append(name)
    return out


def _fill_gaps(m: EntityMapping, connectors: dict[Side, Connector], sync: EntitySync,
               incomplete: list[tuple[Seen, dict[str, str]]], out: EntityVerify) -> int:
    """Write the missing ``also_write`` copies: each field again with the value its record
    already holds (both sides agree on it), so the copy lands where the mapping says."""
    done = 0
    for side in SIDES:
        todo = [(s, gaps) for s, gaps in incomplete if s.side == side]
        if not todo:
            continue
        ops: list[WriteOp] = []
        for s, gaps in todo:
            try:
                ops.append(WriteOp("update", build_payload(
                    m, side, {f: s.values[f] for f in gaps}, sync.job.ctx, create=False,
                    record=s.values), key=s.key))
            except RecordError as exc:
                _fix_failed(out, side, s.key, exc)
        sent = [s for s, _ in todo if any(op.key == s.key for op in ops)]
        for s, result in zip(sent, connectors[side].write_batch(m.entity, ops), strict=True):
            if result.error is not None:
                _fix_failed(out, side, s.key, result.error)
                continue
            done += 1
    return done


def _fix_failed(out: EntityVerify, side: Side, key: str, error: Exception) -> None:
    out.items.append(DriftItem("fix_failed", key if side == "crm" else None,
                               key if side == "erp" else None, detail=str(error)))
