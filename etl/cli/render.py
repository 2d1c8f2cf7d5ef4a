"""Tables and short forms of times that the operator commands print (rich); reports of runs
are printed by :mod:`etl.render`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from rich import box
from rich.table import Table


def ago(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    sign = "-" if s < 0 else ""
    s = abs(s)
    d, rem = divmod(s, 86400)
    h, rem = divmod(rem, 3600)
    m, sec = divmod(rem, 60)
    parts = [f"{d}d"] * bool(d) + [f"{h}h"] * bool(h) + [f"{m}m"] * bool(m and not d)
    parts += [f"{sec}s"] * bool(not d and not h)
    return sign + " ".join(parts)


def ts(value: datetime | None) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z") if value else "-"


def short(value: datetime | None) -> str:
    return value.astimezone().strftime("%m-%d %H:%M:%S") if value else "-"


def verify_table(report: Any, *, fix: bool) -> Table:
    table = Table(title=f"verify{' --fix' if fix else ''}: {report.drift} drift",
                  box=box.SIMPLE_HEAD, title_justify="left")
    cols = ("drift", "mismatched", "missing_in_crm", "missing_in_erp", "unlinked",
            "duplicates", "vanished", "invalid", "fixed")
    table.add_column("entity")
    for col in cols:
        table.add_column(col.replace("_", " "), justify="right")
    for name, e in report.entities.items():
        d = e.as_dict()
        table.add_row(name, *(str(d[c]) for c in cols))
    return table


STATUS_COLUMNS = ("entity", "side", "watermark (lag)", "last run", "read/new/upd", "quar.",
                  "next run")


def _status_columns(table: Table, columns: Sequence[str]) -> None:
    for col in columns:
        table.add_column(col, justify="right" if col in ("read/new/upd", "quar.") else "left")


def status_rows(report: Any) -> list[list[str]]:
    """The rows of ``ponte status``: one per entity and side."""
    rows = []
    for e in report.entities:
        last = e.last_run
        for i, s in enumerate(e.sides or []):
            counts = last.counts.get(s.side, {}) if last else {}
            first = i == 0
            when = ""
            if first:
                when = (f"{short(last.finished_at or last.started_at)} {last.kind} "
                        f"{last.status}" if last else "never")
                when += " (running now)" if e.running else ""
            mark = f"{short(s.watermark)} ({ago(s.lag_s)})" if s.watermark else "none"
            if s.ahead_s is not None:
                mark = f"{ts(s.watermark)} (AHEAD {ago(s.ahead_s)})"
            rows.append([
                e.entity if first else "", s.side, mark,
                when,
                "/".join(str(counts.get(k, "-")) for k in ("read", "created", "updated"))
                if last else "-",
                str(s.quarantined),
                f"{short(e.next_run)} ({e.schedule})" if first and e.schedule else "",
            ])
    return rows


def status_table(report: Any) -> Table:
    table = Table(title=f"ponte status — {ts(report.now)}")
    _status_columns(table, STATUS_COLUMNS)
    for row in status_rows(report):
        table.add_row(*row)
    scoped = [f"{e.entity}: {e.scope}" + (" (widened: the next sync re-reads it from the "
                                          "beginning)" if e.scope_widened else "")
              for e in report.entities if getattr(e, "scope", None)]
    if scoped:
        table.caption = "pilot scope — " + "; ".join(scoped)
    return table


def fleet_table(fleet: Any) -> Table:
    """``ponte status --all``: the rows of ``ponte status`` of every connection."""
    table = Table(title=f"ponte status --all — {ts(fleet.now)}")
    _status_columns(table, ("connection", *STATUS_COLUMNS))
    for c in fleet.connections:
        rows = status_rows(c.report) if c.report is not None else []
        if not rows:
            table.add_row(c.name, "ERROR (below)" if c.error else "(no entities)",
                          *[""] * (len(STATUS_COLUMNS) - 1))
        for i, row in enumerate(rows):
            table.add_row(c.name if i == 0 else "", *row)
        table.add_section()
    return table


def watermarks_table(rows: Sequence[Any]) -> Table:
    table = Table(title="watermarks")
    for col in ("entity", "side", "watermark (UTC)", "lag", "changed at"):
        table.add_column(col)
    for r in rows:
        table.add_row(r.entity, r.side, r.value.isoformat() if r.value else "(none: from the "
                      "beginning)", ago(r.lag_s), ts(r.updated_at))
    return table


def runs_table(rows: Sequence[Any]) -> Table:
    table = Table(title="runs (newest first)")
    for col in ("id", "kind", "status", "started", "duration", "entities", "writes",
                "quarantined", "note"):
        table.add_column(col)
    for r in rows:
        rep = r.report
        writes = sum(e.get(s, {}).get(k, 0) for e in rep.get("entities", {}).values()
                     for s in ("crm", "erp") for k in ("created", "updated"))
        quar = sum(e.get(s, {}).get("quarantined", 0) for e in rep.get("entities", {}).values()
                   for s in ("crm", "erp"))
        dur = rep.get("duration_s")
        if not isinstance(dur, int | float):
            dur = (r.finished_at - r.started_at).total_seconds() if r.finished_at else None
        table.add_row(r.id[:8], r.kind, r.status, ts(r.started_at),
                      f"{dur:.1f}s" if dur is not None else "-", ",".join(r.entities),
                      str(writes) if r.kind != "watermark" else "",
                      str(quar) if r.kind != "watermark" else "",
                      rep.get("error") or rep.get("summary") or "")
    return table


def quarantine_table(rows: Sequence[Any]) -> Table:
    table = Table(title=f"quarantine ({len(rows)})")
    for col in ("id", "entity", "side", "key", "kind", "attempts", "next retry", "reason"):
        table.add_column(col)
    for r in rows:
        table.add_row(str(r.id), r.entity, r.system, r.key, r.kind, str(r.attempts),
                      ts(r.next_retry_at), r.reason)
    return table
