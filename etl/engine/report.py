"""Run reports: what a run read, wrote, matched and quarantined, per entity and side."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Status = Literal["ok", "partial", "failed", "stopped", "aborted"]
KEEP_CHANGES = 500  # field-by-field changes a writing run keeps for its report, per entity


@dataclass
class SideCounts:
    read: int = 0  # records read from this side
    created: int = 0  # records created in this side
    updated: int = 0  # records updated in this side
    unchanged: int = 0  # records read that had not changed since their snapshot
    quarantined: int = 0  # records from this side put in quarantine
    skipped: int = 0  # changed records with nowhere to go (e.g. not created by the mapping),
    # or dropped from the quarantine and unchanged since
    out_of_scope: int = 0  # records read and left out by the mapping's pilot scope


@dataclass
class Change:
    """One planned or performed write, field by field (old -> new)."""

    entity: str
    target: str
    action: str  # create | update
    key: str | None
    source_key: str
    fields: dict[str, tuple[Any, Any]]
    # why a planned write can go ahead although a record it depends on is not synced yet
    # (a dry run: "would be created after its customer: customers 58 (created ... by this plan)")
    note: str | None = None


@dataclass
class Problem:
    entity: str
    side: str
    key: str
    kind: str
    reason: str


@dataclass
class EntityReport:
    crm: SideCounts = field(default_factory=SideCounts)
    erp: SideCounts = field(default_factory=SideCounts)
    matched: int = 0
    conflicts: int = 0
    changes: list[Change] = field(default_factory=list)
    changes_omitted: int = 0  # changes written but not kept (see :meth:`add_changes`)
    problems: list[Problem] = field(default_factory=list)
    watermarks: dict[str, str | None] = field(default_factory=dict)
    # the pilot scope the entity finished under (recorded when its watermarks moved: the next
    # run compares its own with it), and whether this run re-read every side for a widened one
    scope: dict[str, Any] | None = None
    scope_done: bool = False
    rescanned: bool = False

    def add_changes(self, changes: list[Change], *, keep_all: bool) -> None:
        """Keep the changes for the report; past :data:`KEEP_CHANGES` of a run that writes
        only count them, so a backfill's memory does not grow with what it writes (a plan
        keeps every change: showing them is its purpose)."""
        room = len(changes) if keep_all else max(0, KEEP_CHANGES - len(self.changes))
        self.changes.extend(changes[:room])
        self.changes_omitted += len(changes) - min(room, len(changes))

    def side(self, side: str) -> SideCounts:
        return self.crm if side == "crm" else self.erp

    def as_dict(self) -> dict[str, Any]:
        out = {"crm": asdict(self.crm), "erp": asdict(self.erp), "matched": self.matched,
               "conflicts": self.conflicts}
        if self.scope_done:
            out["scope"] = self.scope
        if self.rescanned:
            out["rescanned"] = True
        return out


@dataclass
class RunReport:
    run_id: str
    kind: str  # sync | plan | backfill | verify
    status: Status = "ok"
    entities: dict[str, EntityReport] = field(default_factory=dict)
    api_calls: dict[str, dict[str, int]] = field(default_factory=dict)
    # per side: retries, got_429, got_5xx, timeouts, dropped (the HTTP layer's counts)
    retries: dict[str, dict[str, int]] = field(default_factory=dict)
    duration_s: float = 0.0
    error: str | None = None
    dry_run: bool = False
    # stopped because a system asked to wait this long (WaitAsked): when to try again
    retry_after_s: float | None = None

    @property
    def quarantined(self) -> int:
        return sum(e.crm.quarantined + e.erp.quarantined for e in self.entities.values())

    @property
    def writes(self) -> int:
        return sum(
            e.crm.created + e.crm.updated + e.erp.created + e.erp.updated
            for e in self.entities.values()
        )

    def as_dict(self, *, with_changes: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "run_id": self.run_id,
            "kind": self.kind,
            "status": self.status,
            "dry_run": self.dry_run,
            "entities": {name: e.as_dict() for name, e in self.entities.items()},
            "api_calls": self.api_calls,
            "retries": self.retries,
            "duration_s": round(self.duration_s, 3),
        }
        if self.error:
            out["error"] = self.error
        if with_changes:
            out["changes"] = [
                {**asdict(c), "fields": {k: list(v) for k, v in c.fields.items()}}
                for e in self.entities.values() for c in e.changes
            ]
        problems = [asdict(p) for e in self.entities.values() for p in e.problems]
        if problems:
            out["problems"] = problems
        return out
