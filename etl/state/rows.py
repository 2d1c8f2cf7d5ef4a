"""The rows the state store reads and writes, and the page of writes one checkpoint commits."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

BACKOFF_BASE = timedelta(minutes=1)
BACKOFF_CAP = timedelta(hours=6)
DROPPED = "dropped"  # quarantine kind of an entry the operator dropped
NEVER = datetime(9999, 12, 31, tzinfo=UTC)  # the next retry of a dropped entry


@dataclass
class SnapshotRow:
    system: str
    entity: str
    key: str
    h1: int
    h2: int
    data: dict[str, Any]
    natural_key: str | None = None
    source_updated: datetime | None = None


@dataclass
class QuarantineEntry:
    entity: str
    system: str  # the side the record comes from
    key: str
    kind: str  # invalid | rejected | conflict
    reason: str
    field: str | None = None
    payload: dict[str, Any] | None = None


@dataclass
class QuarantineRow:
    id: int
    entity: str
    system: str
    key: str
    kind: str
    reason: str
    field: str | None
    payload: dict[str, Any] | None
    attempts: int
    first_seen: datetime
    last_seen: datetime
    next_retry_at: datetime
    run_id: str | None


@dataclass
class IntentRow:
    id: int
    entity: str
    target_system: str
    source_key: str
    external_id: str
    payload: dict[str, Any]
    created_at: datetime


@dataclass
class WatermarkRow:
    entity: str
    system: str
    value: datetime | None
    updated_at: datetime


@dataclass(frozen=True)
class BindingRow:
    """The system one side of the state was built with: kind and normalized base URL (safe to
    show) and a salted hash of the account credential (``salt`` hex; never the credential)."""

    side: str
    kind: str
    base_url: str
    account_hash: str
    salt: str
    bound_at: datetime


@dataclass
class RunRow:
    id: str
    kind: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    entities: list[str]
    report: dict[str, Any]


@dataclass
class Checkpoint:
    """Everything one page of one entity commits, in one transaction."""

    entity: str
    snapshots: list[SnapshotRow] = field(default_factory=list)  # upsert by (system, entity, key)
    links: list[tuple[str, str]] = field(default_factory=list)  # (crm_key, erp_key), if absent
    quarantine: list[QuarantineEntry] = field(default_factory=list)  # upsert, attempts += 1
    clear_quarantine: list[tuple[str, str]] = field(default_factory=list)  # (system, key)
    clear_intents: list[tuple[str, str]] = field(default_factory=list)  # (target_system, key)
    watermarks: dict[str, datetime] = field(default_factory=dict)  # system -> new value
    # deletes carried out (``ponte verify --fix``), committed with the rest of the page:
    drop_snapshots: list[tuple[str, str]] = field(default_factory=list)  # (system, key)
    drop_links: list[tuple[str, str]] = field(default_factory=list)  # (crm_key, erp_key)
    tombstones: list[tuple[str, str, str]] = field(default_factory=list)  # (crm, erp, side)
    # records linked by this page whose computed fields must be worked out (keys of the side
    # that computes them); marked only when facts of theirs are stored
    computed_marks: list[str] = field(default_factory=list)


def quarantine_backoff(attempts: int) -> timedelta:
    """Wait before the next retry after ``attempts`` failures: 1 min, 2, 4, ... capped at 6 h."""
    if attempts < 1:
        return timedelta(0)
    if attempts > 20:  # 2**19 minutes is far past the cap; avoid huge numbers
        return BACKOFF_CAP
    return min(BACKOFF_BASE * (1 << (attempts - 1)), BACKOFF_CAP)
