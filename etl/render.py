"""Render library results for a terminal (rich tables) or as JSON."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from etl.engine.report import RunReport


def print_json(data: Any, console: Console | None = None) -> None:
    """One JSON document on stdout, never wrapped or styled (machines read it)."""
    text = json.dumps(data, ensure_ascii=False, indent=2, default=str)
    if console is None:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    else:
        console.print(text, markup=False, highlight=False, soft_wrap=True)


def run_table(report: RunReport, *, title: str | None = None) -> Table:
    table = Table(title=title or f"{report.kind} {report.run_id[:8]} — {report.status}"
                  f"{' (dry run: nothing written)' if report.dry_run else ''}",
                  box=box.SIMPLE_HEAD, title_justify="left")
    table.add_column("entity side", no_wrap=True)
    for col in ("read", "created", "updated", "same", "quar.", "matched", "confl."):
        table.add_column(col, justify="right", no_wrap=True)
    skipped = []
    for name, e in report.entities.items():
        for side in ("crm", "erp"):
            c = e.side(side)
            first = side == "crm"
            table.add_row(
                f"{name} {side}", str(c.read), str(c.created), str(c.updated), str(c.unchanged),
                str(c.quarantined), str(e.matched) if first else "",
                str(e.conflicts) if first else "",
            )
            if c.skipped:
                skipped.append(f"{name} {side}: {c.skipped}")
    calls = ", ".join(
        f"{side} {v['read']} read / {v['write']} write" for side, v in report.api_calls.items()
    )
    note = f"; skipped (nowhere to go): {', '.join(skipped)}" if skipped else ""
    table.caption = (f"read = records read from the side; created/updated = written into it; "
                     f"same = unchanged since last seen; quar. = quarantined{note}\n"
                     f"API calls: {calls}; {report.duration_s:.2f}s")
    table.caption_justify = "left"
    return table


def _short(value: object, width: int = 28) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def changes_table(report: RunReport) -> Table | None:
    rows = [c for e in report.entities.values() for c in e.changes]
    if not rows:
        return None
    table = Table(title="changes" if not report.dry_run else "plan: what a sync would write",
                  box=box.SIMPLE_HEAD, title_justify="left")
    for col in ("entity", "into", "action", "key", "from", "field", "old", "new"):
        table.add_column(col, no_wrap=col not in ("old", "new"))
    for c in rows[:500]:
        first = True
        for field_name, (old, new) in c.fields.items():
            table.add_row(
                c.entity if first else "", c.target if first else "",
                c.action if first else "", (c.key or "(new)") if first else "",
                c.source_key if first else "", field_name,
                _short(old), _short(new),
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
