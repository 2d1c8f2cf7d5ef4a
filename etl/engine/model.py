"""What the pipeline's parts hand each other: run options, records read, units, the plan so far,
and the job (one entity's run: its mapping, systems, state and report)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from etl import watermark as wm
from etl.connectors.base import Connector, Record
from etl.engine.report import EntityReport
from etl.engine.resolve import Values
from etl.errors import RecordError
from etl.mapping import EntityMapping, MapContext
from etl.mapping.computed import ComputedSource
from etl.mapping.models import Side
from etl.state import SnapshotRow, Store

CHUNK = 100  # records per write-and-checkpoint step
READ_CHUNK = 2000  # records read from a side before they go through the pipeline
#: the first chunk of a window is this small (whole pages still), so that the first writes
#: start after a page or two is read and diffed, not twenty (10,000 new customers: the first
#: create 3.1 -> 2.5 s after the start). A system searched by one scan of its whole list
#: (Omie) is not scanned again by the next batch: the scan is kept (``Answers.keep_scan``)
FIRST_READ_CHUNK = 200
GONE_SEP = "; it was quarantined for: "


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
    read_chunk: int = READ_CHUNK  # records per side that go through the pipeline at a time
    # only the records whose computed fields must be worked out again (marked by facts that
    # changed): no window is read, no watermark moves (see etl/engine/computed.py)
    computed_only: bool = False
    # the reference lists (users, sellers, tags) read by earlier runs of the same session
    # (ponte serve's event runs); None: read once for this run
    references: Any = None
    # a targeted sync (a webhook event): only these keys of each side, read by key; no window
    # is read, no watermark moves, no due quarantine entry is retried
    keys: Mapping[Side, Sequence[str]] | None = None

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
    matched: bool = False  # paired by natural key in this run
    ambiguous: str | None = None  # why its fallback key pairs it with nothing (several partners)

    def key(self, side: Side) -> str | None:
        return self.crm_key if side == "crm" else self.erp_key

    def set_key(self, side: Side, key: str) -> None:
        if side == "crm":
            self.crm_key = key
        else:
            self.erp_key = key

    def current(self, side: Side) -> Values | None:
        """The side's values as read this run, else as last synced."""
        if side in self.seen:
            return self.seen[side].values
        return self.snapshot[side]


@dataclass
class Job:
    """One entity's run: what every part of the pipeline reads from and reports into."""

    m: EntityMapping
    conn: dict[Side, Connector]
    store: Store
    ctx: MapContext
    run_id: str
    now: datetime
    opt: Options
    report: EntityReport
    planned: Planned | None = None  # a dry run's plan so far (None when writing)
    # keys this run wrote into a side whose window is spooled (read whole before any write):
    # the spooled copy of such a record is older than what was written, never processed
    written: dict[Side, set[str]] = field(default_factory=lambda: {"crm": set(), "erp": set()})
    # every key a write of this run landed on, by side, in the order answered: a chunk read
    # while earlier writes were in flight drops its copies of the ones that landed after it
    landed: dict[Side, list[str]] = field(default_factory=lambda: {"crm": [], "erp": []})
    # keys whose write answer shows a field this run did not write changed since it was read
    # or synced (someone edited the record meanwhile), on a side whose listing leaves out
    # ponte's own last changes (it would not list them again): read by key before the end
    reread: dict[Side, set[str]] = field(default_factory=lambda: {"crm": set(), "erp": set()})
    # computed sources that read this entity: (entity computed, source name, source)
    feeds: list[tuple[str, str, ComputedSource]] = field(default_factory=list)
    # the marks of records to compute again read by this run (key -> seq), cleared at its end
    computed_marks: dict[str, int] = field(default_factory=dict)

    @property
    def entity(self) -> str:
        return self.m.entity

    @property
    def columns(self) -> list[str]:
        return self.m.columns()

    def snap(self, side: Side, key: str, values: Values, record: Record | None,
             updated: datetime | None = None) -> SnapshotRow:
        """A snapshot row; its hash is filled in bulk before the checkpoint."""
        nk = values.get(self.m.natural_key) if self.m.natural_key else None
        if updated is None and record is not None:
            try:
                updated = self.conn[side].updated_at(self.entity, record)
            except (KeyError, TypeError, ValueError, RecordError):  # an echo may lack them
                updated = None
        return SnapshotRow(side, self.entity, key, 0, 0, dict(values), nk, updated)


def ordered_by_updated_at(c: Connector) -> bool:
    """Whether the side lists a window in updated-at order (keyset paging): a prefix of the
    listing is then complete up to its last record's updated-at, and records written while it
    is read leave the window instead of shifting its pages."""
    return bool(getattr(c.capabilities, "ordered_by_updated_at", False))


def updated_at(c: Connector, side: Side, entity: str, record: Record) -> datetime:
    """The record's updated-at; a missing, garbled or undated (``None``) one makes the record
    invalid (quarantined with the reason), never the run fail."""
    try:
        at: datetime | None = c.updated_at(entity, record)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise RecordError(f"{side} record has no usable updated-at ({type(exc).__name__}: "
                          f"{exc})", field="updated_at") from None
    if at is None:
        path = getattr(c.capabilities, "updated_at_paths", {}).get(entity, "updated_at")
        raise RecordError(f"{side} record has no usable change time ({path})", field=path)
    return at


def jsonable(record: Record) -> dict[str, Any]:
    return json.loads(json.dumps(record, default=str))  # type: ignore[no-any-return]


def digest(record: Record | None) -> str:
    """A content hash of a native record as stored in the quarantine (JSON, keys sorted)."""
    text = json.dumps(jsonable(record or {}), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()
