"""Render library results for a terminal (rich tables) or as JSON."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.table import Table

from etl.engine.report import RunReport


def print_json(data: Any, console: Console | None = None) -> None:
    text = json.dumps(data, ensure_ascii=False, indent=2, default=str)
    (console or Console(soft_wrap=True)).print(text, markup=False, highlight=False)


def run_table(report: RunReport, *, title: str | None = None) -> Table:
    table = Table(title=title or f"{report.kind} {report.run_id[:8]} — {report.status}"
                  f"{' (dry run: nothing written)' if report.dry_run else ''}")
    table.add_column("entity")
    table.add_column("side")
    for col in ("read", "created", "updated", "unchanged", "quarantined", "skipped"):
        table.add_column(col, justify="right")
    table.add_column("matched", justify="right")
    table.add_column("conflicts", justify="right")
    for name, e in report.entities.items():
        for side in ("crm", "erp"):
            c = e.side(side)
            table.add_row(
                name if side == "crm" else "", side, str(c.read), str(c.created), str(c.updated),
                str(c.unchanged), str(c.quarantined), str(c.skipped),
                str(e.matched) if side == "crm" else "", str(e.conflicts) if side == "crm" else "",
            )
    calls = ", ".join(
        f"{side}: {v['read']} read / {v['write']} write" for side, v in report.api_calls.items()
    )
    table.caption = f"API calls — {calls}; {report.duration_s:.2f}s"
    return table


def changes_table(report: RunReport) -> Table | None:
    rows = [c for e in report.entities.values() for c in e.changes]
    if not rows:
        return None
    table = Table(title="changes" if not report.dry_run else "plan: what a sync would write")
    for col in ("entity", "into", "action", "key", "from key", "field", "old", "new"):
        table.add_column(col)
    for c in rows[:500]:
        first = True
        for field_name, (old, new) in c.fields.items():
            table.add_row(
                c.entity if first else "", c.target if first else "",
                c.action if first else "", (c.key or "(new)") if first else "",
                c.source_key if first else "", field_name,
                "" if old is None else str(old), "" if new is None else str(new),
            )
            first = False
    if len(rows) > 500:
        table.caption = f"... and {len(rows) - 500} more records"
    return table


def problems_table(report: RunReport) -> Table | None:
    rows = [p for e in report.entities.values() for p in e.problems]
    if not rows:
        return None
    table = Table(title="quarantined")
    for col in ("entity", "side", "key", "kind", "reason"):
        table.add_column(col)
    for p in rows[:200]:
        table.add_row(p.entity, p.side, p.key, p.kind, p.reason)
    return table


def print_report(report: RunReport, console: Console, *, show_changes: bool = False,
                 title: str | None = None) -> None:
    console.print(run_table(report, title=title))
    if show_changes:
        t = changes_table(report)
        if t is not None:
            console.print(t)
    t = problems_table(report)
    if t is not None:
        console.print(t)
    if report.error:
        console.print(f"[bold red]error:[/] {report.error}", highlight=False)
