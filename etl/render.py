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


def changes_lines(report: RunReport, *, limit: int = 500) -> list[str]:
    """What was (or, for a plan, would be) written, record by record, field by field."""
    rows = [c for e in report.entities.values() for c in e.changes]
    if not rows:
        return []
    other = {"crm": "erp", "erp": "crm"}
    lines = ["plan: what a sync would write" if report.dry_run else "changes written"]
    for c in rows[:limit]:
        where = f"{c.target} {c.key}" if c.key else f"in the {c.target}"
        lines.append(f"  {c.entity}: {c.action} {where} (from {other.get(c.target, '?')} "
                     f"{c.source_key})")
        if c.note:
            lines.append(f"      ({c.note})")
        for field_name, (old, new) in c.fields.items():
            before = "—" if old is None else _short(old, 40)
            lines.append(f"      {field_name}: {before} → {'—' if new is None else _short(new, 60)}")
    if len(rows) > limit:
        lines.append(f"  ... and {len(rows) - limit} more records")
    return lines


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
        for line in changes_lines(report):
            console.print(line, highlight=False, markup=False, soft_wrap=True)
    t = problems_table(report)
    if t is not None:
        console.print(t)
    if report.error:
        console.print(f"[bold red]error:[/] {report.error}", highlight=False)
