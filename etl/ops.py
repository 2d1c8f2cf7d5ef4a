"""Operations on the state database behind ``ponte status | watermark | runs | quarantine``.

Internal to :class:`etl.ponte.Ponte`: each function takes what it needs (a :class:`Store`, the
mappings, the instant ``now`` read once from the façade's clock) and returns a result
dataclass. Watermark changes take the entity's run lock (a change while a sync runs would be
overwritten by it) and are recorded in the run history as runs of kind ``watermark`` whose
report says old -> new.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from loguru import logger

from etl import binding
from etl import watermark as wm
from etl.engine import scope
from etl.engine.run import lock_name
from etl.errors import ConfigError, LockHeld
from etl.mapping import EntityMapping
from etl.mapping.models import SIDES, Side
from etl.metrics import last_runs
from etl.scheduler import next_run
from etl.settings import Settings, schedule_var
from etl.state import QuarantineRow, RunRow, Store
from etl.state.rows import DROPPED

# --------------------------------------------------------------------------------- time input

_RELATIVE = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_time(text: str, *, now: datetime, option: str = "time") -> datetime:
    """ISO 8601 date or date-time (no offset = UTC), or a span ago: ``30m``, ``6h``, ``7d``."""
    value = text.strip()
    m = _RELATIVE.match(value)
    if m:
        return now - timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
    try:
        parsed = datetime.fromisoformat(value)  # 3.11+: "Z" too
    except ValueError:
        raise ConfigError(f"{option}: {text!r} is not a time; use ISO 8601 (2024-05-01, "
                          "2024-05-01T12:00:00-03:00; no offset = UTC) or a span ago "
                          "(30m, 6h, 7d)") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def entity_mapping(mappings: dict[str, EntityMapping], entity: str) -> EntityMapping:
    if entity not in mappings:
        raise ConfigError(f"unknown entity {entity!r}; mapped entities: "
                          f"{', '.join(sorted(mappings))}")
    return mappings[entity]


def parse_side(value: str) -> Side:
    if value not in SIDES:
        raise ConfigError(f"--side: {value!r} is not a side; use crm or erp")
    return value


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


# --------------------------------------------------------------------------------- status


@dataclass(frozen=True)
class SideStatus:
    side: str
    watermark: datetime | None
    lag_s: float | None  # now - watermark (negative: the watermark is in the future)
    quarantined: int
    # seconds the watermark is past now minus the safety lag: the entity's runs fail until
    # the watermark is set or reset (None: not ahead)
    ahead_s: float | None = None


@dataclass(frozen=True)
class LastRun:
    id: str
    kind: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    counts: dict[str, dict[str, int]]  # side -> read/created/updated/unchanged/quarantined
    error: str | None


@dataclass(frozen=True)
class EntityStatus:
    entity: str
    schedule: str | None
    next_run: datetime | None
    sides: list[SideStatus]
    last_run: LastRun | None
    running: str | None  # run id holding the entity's lock, if any
    # the mapping's pilot scope ("owner in a@x.com, b@x.com"; None = every record), and
    # whether it takes in records the last sync left out (the next sync re-reads them)
    scope: str | None = None
    scope_widened: bool = False


@dataclass(frozen=True)
class StatusReport:
    now: datetime
    entities: list[EntityStatus]
    # the state's binding against the configured systems (etl.binding.BindingStatus.as_dict):
    # status still answers when they differ — it reads only the state — and says so here
    binding: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        def conv(v: Any) -> Any:
            if isinstance(v, datetime):
                return v.isoformat()
            if isinstance(v, dict):
                return {k: conv(x) for k, x in v.items()}
            if isinstance(v, list):
                return [conv(x) for x in v]
            return v

        out: dict[str, Any] = conv({"now": self.now,
                                    "entities": [asdict(e) for e in self.entities],
                                    "binding": self.binding})
        return out


def status(store: Store, mappings: dict[str, EntityMapping], settings: Settings, *,
           now: datetime) -> StatusReport:
    """Per entity and side: watermark and lag, last run, quarantine, next scheduled run."""
    names = list(mappings)
    runs = last_runs(store, names)
    marks = {(w.entity, w.system): w.value for w in store.watermarks()}
    quarantine: dict[tuple[str, str], int] = {}
    for q in store.quarantine():
        quarantine[(q.entity, q.system)] = quarantine.get((q.entity, q.system), 0) + 1
    out: list[EntityStatus] = []
    for name in names:
        m = mappings[name]
        sides = []
        for side in SIDES:
            if side not in m.sources() and (name, side) not in marks:
                continue
            mark = marks.get((name, side))
            ahead = wm.ahead_of(mark, now - timedelta(seconds=settings.safety_lag_s))
            sides.append(SideStatus(side, mark, (now - mark).total_seconds() if mark else None,
                                    quarantine.get((name, side), 0),
                                    ahead.total_seconds() if ahead is not None else None))
        run = runs.get(name)
        last = None
        if run is not None:
            counts = run.report.get("entities", {}).get(name, {})
            last = LastRun(run.id, run.kind, run.status, run.started_at, run.finished_at,
                           {s: dict(counts.get(s, {})) for s in SIDES}, run.report.get("error"))
        spec = settings.schedule_of(name)
        upcoming = None
        if spec:
            upcoming = next_run(spec, now, setting=schedule_var(name).removeprefix("PONTE_"),
                                last_run=run.started_at if run else None)
        running = store.live_lock_holder(lock_name(name), now=now)
        found, before = scope.recorded(store, name)
        out.append(EntityStatus(name, spec, upcoming, sides, last, running,
                                m.scope.describe() if m.scope else None,
                                found and scope.widened(before, m.scope)))
    return StatusReport(now, out, binding.compare(store, settings).as_dict())


# --------------------------------------------------------------------------------- watermarks


@dataclass(frozen=True)
class WatermarkView:
    entity: str
    side: str
    value: datetime | None
    updated_at: datetime | None
    lag_s: float | None

    def as_dict(self) -> dict[str, Any]:
        return {"entity": self.entity, "side": self.side, "watermark": _iso(self.value),
                "updated_at": _iso(self.updated_at), "lag_s": self.lag_s}


@dataclass(frozen=True)
class WatermarkChange:
    entity: str
    side: str
    old: datetime | None
    new: datetime | None  # None = reset: the next sync reads from the beginning

    def describe(self) -> str:
        return (f"{self.entity} {self.side}: {_iso(self.old) or '(none)'} -> "
                f"{_iso(self.new) or '(none: read from the beginning)'}")

    def as_dict(self) -> dict[str, Any]:
        return {"entity": self.entity, "side": self.side, "old": _iso(self.old),
                "new": _iso(self.new)}


@dataclass(frozen=True)
class WatermarkResult:
    run_id: str
    changes: list[WatermarkChange]

    def as_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "changes": [c.as_dict() for c in self.changes]}


def watermarks(store: Store, mappings: dict[str, EntityMapping], entity: str | None = None,
               *, now: datetime) -> list[WatermarkView]:
    """Every source side of every (or one) entity, with its stored watermark or none."""
    names = [entity_mapping(mappings, entity).entity] if entity else list(mappings)
    stored = {(w.entity, w.system): w for w in store.watermarks()}
    out = []
    for name in names:
        sides = [s for s in SIDES if s in mappings[name].sources() or (name, s) in stored]
        for side in sides:
            row = stored.get((name, side))
            value = row.value if row else None
            out.append(WatermarkView(name, side, value, row.updated_at if row else None,
                                     (now - value).total_seconds() if value else None))
    return out


def check_not_future(entity: str, side: str, to: datetime, *, now: datetime,
                     safety_lag: timedelta) -> None:
    """A watermark after ``now - safety_lag`` (where a run starting now stops reading) would
    make every later run skip that side's changes: refuse it."""
    limit = now - safety_lag
    if to > limit:
        raise ConfigError(
            f"--to {to.isoformat()} is in the future for {entity} {side}: a watermark must not "
            f"be after now minus the safety lag ({limit.isoformat()}, PONTE_SAFETY_LAG_S="
            f"{int(safety_lag.total_seconds())}), or no change made on {side} before that time "
            "would ever be read; give an earlier time (e.g. --to 1h), or `ponte watermark "
            f"reset {entity} --side {side}` to re-read from the beginning")


def plan_watermark(store: Store, mappings: dict[str, EntityMapping], entity: str, *,
                   side: str | None, to: datetime | None, now: datetime,
                   safety_lag: timedelta = timedelta(0)) -> list[WatermarkChange]:
    """What ``set`` (``to`` given, one side) or ``reset`` (``to`` None) would change. A ``to``
    after ``now - safety_lag`` is refused (:func:`check_not_future`)."""
    m = entity_mapping(mappings, entity)
    if side is not None:
        s = parse_side(side)
        if s not in m.sources():
            raise ConfigError(f"{entity} is not read from {s} (its sources: "
                              f"{', '.join(m.sources())}); it has no {s} watermark")
        sides: list[str] = [s]
    elif to is not None:
        raise ConfigError("watermark set needs --side crm|erp")
    else:
        sides = sorted({*m.sources(), *(w.system for w in store.watermarks(entity))})
    if to is not None and to.tzinfo is None:
        raise ConfigError("--to must carry a time zone (or be given in UTC)")
    if to is not None:
        check_not_future(entity, sides[0], to, now=now, safety_lag=safety_lag)
    return [WatermarkChange(entity, s, store.watermark(entity, s), to) for s in sides]


def apply_watermark(store: Store, changes: Sequence[WatermarkChange], *, now: datetime,
                    lease_s: float = 60.0,
                    safety_lag: timedelta = timedelta(0)) -> WatermarkResult:
    """Write the changes under the entity's lock and record them as a ``watermark`` run."""
    if not changes:
        raise ConfigError("nothing to change")
    for c in changes:
        if c.new is not None:
            check_not_future(c.entity, c.side, c.new, now=now, safety_lag=safety_lag)
    entity = changes[0].entity
    run_id = store.start_run("watermark", [entity], now=now)
    if not store.acquire_lock(lock_name(entity), run_id, lease_s=lease_s, now=now):
        holder = store.lock_holder(lock_name(entity))
        msg = (f"a ponte run holds the lock of {entity!r} (run "
               f"{holder[0][:8] if holder else '?'}); watermark not changed — try again when "
               "it finishes")
        store.finish_run(run_id, "failed", {"error": msg}, now=now)
        raise LockHeld(msg)
    done: list[WatermarkChange] = []
    try:
        for c in changes:
            current = WatermarkChange(c.entity, c.side, store.watermark(c.entity, c.side), c.new)
            store.set_watermark(c.entity, c.side, c.new, now=now)
            done.append(current)
            logger.bind(run_id=run_id[:8], entity=c.entity, side=c.side).warning(
                "watermark changed by an operator: {}", current.describe())
    finally:
        store.release_lock(lock_name(entity), run_id)
        store.finish_run(run_id, "ok", {
            "watermarks": [c.as_dict() for c in done],
            "summary": "; ".join(c.describe() for c in done),
        }, now=now)
    return WatermarkResult(run_id, done)


# --------------------------------------------------------------------------------- runs


def runs(store: Store, limit: int = 20) -> list[RunRow]:
    if limit < 1:
        raise ConfigError("--limit must be at least 1")
    return store.runs(limit=limit)


def run(store: Store, run_id: str) -> RunRow:
    found = store.run(run_id)
    if found is None:
        raise ConfigError(f"no run {run_id!r} (see `ponte runs`)")
    return found


def run_dict(row: RunRow) -> dict[str, Any]:
    return {"id": row.id, "kind": row.kind, "status": row.status,
            "started_at": _iso(row.started_at), "finished_at": _iso(row.finished_at),
            "entities": row.entities, "report": row.report}


# --------------------------------------------------------------------------------- quarantine


def quarantine(store: Store, entity: str | None = None) -> list[QuarantineRow]:
    return store.quarantine(entity)


def quarantine_entry(store: Store, qid: int) -> QuarantineRow:
    row = store.quarantine_get(qid)
    if row is None:
        raise ConfigError(f"no quarantine entry {qid} (see `ponte quarantine list`)")
    if row.kind == DROPPED:
        raise ConfigError(f"quarantine entry {qid} was dropped: its record ({row.entity} "
                          f"{row.system} {row.key}) is ignored until it changes, then the next "
                          "sync processes it again")
    return row


def quarantine_retry(store: Store, qid: int | None, *, now: datetime) -> int:
    """Make one entry (or all) due now: the next sync re-reads those records by key."""
    if qid is not None:
        quarantine_entry(store, qid)
    n = store.quarantine_make_due(qid, now)
    logger.info("quarantine: {} entr{} made due; the next sync re-reads {}", n,
                "y" if n == 1 else "ies", "it" if n == 1 else "them")
    return n


def quarantine_drop(store: Store, qid: int) -> QuarantineRow:
    """Drop an entry: its record is ignored while it stays as it was read, and processed
    again (synced, or quarantined anew) once it changes."""
    row = quarantine_entry(store, qid)
    store.quarantine_drop(qid)
    logger.warning("quarantine: dropped entry {} ({} {} {}: {}); ignored until it changes",
                   qid, row.entity, row.system, row.key, row.reason)
    return row


def quarantine_dict(row: QuarantineRow, *, payload: bool = False) -> dict[str, Any]:
    d = {k: (_iso(v) if isinstance(v, datetime) else v) for k, v in asdict(row).items()}
    if not payload:
        d.pop("payload", None)
    return d
