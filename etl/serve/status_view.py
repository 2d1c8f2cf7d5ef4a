"""The status page's figures as the template shows them: human ages ("3 min"), UTC times, one
line per run with its counts summed over entities and sides, the first line of an error.

Formatting only; the figures come from :mod:`etl.serve.status_data` unchanged, so the page and
``ponte status --json`` agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from jinja2 import Environment

from etl.fleet import ConnectionStatus
from etl.serve.status_data import PageData
from etl.state import RunRow

COUNT_KINDS = ("read", "created", "updated", "unchanged", "quarantined")
SIDES = ("crm", "erp")


def age(seconds: float | None) -> str:
    """A span for people: "12 s", "3 min", "2 h 5 min", "4 d 3 h"; a negative one (a time in
    the future) reads "in 3 min"."""
    if seconds is None:
        return "—"
    s = int(abs(seconds))
    if s < 60:
        text = f"{s} s"
    elif s < 3600:
        text = f"{s // 60} min"
    elif s < 86400:
        text = f"{s // 3600} h" + (f" {s % 3600 // 60} min" if s % 3600 // 60 else "")
    else:
        text = f"{s // 86400} d" + (f" {s % 86400 // 3600} h" if s % 86400 // 3600 else "")
    return f"in {text}" if seconds < 0 else text


def duration(seconds: float | None) -> str:
    """A run's duration: tenths of a second under a minute ("0.4 s"), else as :func:`age`."""
    if seconds is None:
        return "running"
    return f"{seconds:.1f} s" if seconds < 60 else age(seconds)


def when(value: datetime | None) -> str:
    """A UTC time to the second, or a dash."""
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value is not None else "—"


def first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else ""


def install_filters(env: Environment) -> None:
    env.filters.update(age=age, duration=duration, when=when, first_line=first_line)


@dataclass(frozen=True)
class SideLine:
    """One row of the per entity x side table."""

    entity: str
    side: str
    first: bool  # first side of its entity (the entity's name and last run are shown once)
    watermark: datetime | None
    lag_s: float | None
    ahead_s: float | None
    quarantined: int
    counts: dict[str, int] | None  # this side's counts in the entity's last run
    last_run: Any  # etl.ops.LastRun | None
    running: str | None
    next_run: datetime | None


@dataclass(frozen=True)
class RunLine:
    id: str
    kind: str
    status: str
    entities: list[str]
    started_at: datetime
    duration_s: float | None
    counts: dict[str, int] | None  # created/updated/quarantined over entities and sides
    error: str


def run_counts(report: dict[str, Any]) -> dict[str, int] | None:
    """Created, updated and quarantined over every entity and side of a sync or backfill
    report; None for runs that count nothing of the kind (verify, watermark changes)."""
    total = {"created": 0, "updated": 0, "quarantined": 0}
    found = False
    for counts in (report.get("entities") or {}).values():
        for side in SIDES:
            figures = counts.get(side) if isinstance(counts, dict) else None
            if isinstance(figures, dict):
                found = True
                for k in total:
                    total[k] += int(figures.get(k, 0))
    return total if found else None


def run_line(row: RunRow) -> RunLine:
    duration = row.report.get("duration_s")
    if duration is None and row.finished_at is not None:
        duration = (row.finished_at - row.started_at).total_seconds()
    error = row.report.get("error") or row.report.get("summary") if row.status != "ok" else ""
    return RunLine(row.id[:8], row.kind, row.status, list(row.entities), row.started_at,
                   float(duration) if duration is not None else None,
                   run_counts(row.report), first_line(error))


@dataclass(frozen=True)
class ConnectionLine:
    """One row of the connections' summary."""

    name: str
    current: bool  # the connection this page is of
    entities: int
    last_run: Any  # the newest etl.ops.LastRun of its entities, or None
    max_lag_s: float | None
    quarantined: int
    failing: list[str]  # entities whose last run did not end ok
    error: str


def connection_line(c: ConnectionStatus, current: str | None) -> ConnectionLine:
    runs = [e.last_run for e in c.report.entities if e.last_run] if c.report else []
    last = max(runs, key=lambda r: r.finished_at or r.started_at, default=None)
    return ConnectionLine(c.name, c.name == current,
                          len(c.report.entities) if c.report else 0, last, c.max_lag_s,
                          c.quarantined, c.failing, first_line(c.error))


class PageView:
    """What the template iterates over, built from one :class:`PageData`."""

    def __init__(self, data: PageData) -> None:
        self.sides: list[SideLine] = []
        for e in data.status.entities:
            last = e.last_run
            for i, s in enumerate(e.sides):
                counts = last.counts.get(s.side) if last else None
                self.sides.append(SideLine(
                    e.entity, s.side, i == 0, s.watermark, s.lag_s, s.ahead_s, s.quarantined,
                    {k: int(counts.get(k, 0)) for k in COUNT_KINDS} if counts else None,
                    last, e.running, e.next_run))
        self.runs = [run_line(r) for r in data.runs]
        self.binding_differences: list[str] = list(
            (data.status.binding or {}).get("differences") or [])
        self.connections = [connection_line(c, data.connection) for c in data.connections]
