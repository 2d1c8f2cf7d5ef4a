"""Render library results for a terminal (rich tables) or as JSON."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from etl.engine.report import RunReport


#: Width used when the output is not a terminal (cron logs, pipes, files). rich would assume 80
#: columns there, wrapping lines and cutting table cells with "…"; logs keep every character.
UNBOUNDED_WIDTH = 100_000


def make_console(*, stderr: bool = False, soft_wrap: bool = False) -> Console:
    """A console that fits the window on a terminal and never cuts or wraps anywhere else."""
    console = Console(stderr=stderr, soft_wrap=soft_wrap)
    if not console.is_terminal:
        console.width = UNBOUNDED_WIDTH
    return console


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
    for name, e in report.entities.items():
        for side in ("crm", "erp"):
            c = e.side(side)
            first = side == "crm"
            table.add_row(
                f"{name} {side}", str(c.read), str(c.created), str(c.updated), str(c.unchanged),
                str(c.quarantined), str(e.matched) if first else "",
                str(e.conflicts) if first else "",
            )
    return table


def run_notes(report: RunReport) -> list[str]:
    """The lines under the run table: what the columns mean, API calls, duration. Printed as
    lines of their own (not a table caption) so that a log keeps each one whole."""
    skipped = [f"{name} {side}: {e.side(side).skipped}" for name, e in report.entities.items()
               for side in ("crm", "erp") if e.side(side).skipped]
    calls = ", ".join(
        f"{side} {v['read']} read / {v['write']} write" for side, v in report.api_calls.items()
    )
    note = f"; skipped (nowhere to go): {', '.join(skipped)}" if skipped else ""
    legend = ("read = records read from the side; created/updated = written into it; "
              f"same = unchanged since last seen; quar. = quarantined{note}")
    return [legend, f"API calls: {calls}; {report.duration_s:.2f}s"]


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
    more = max(0, len(rows) - limit) + sum(e.changes_omitted for e in report.entities.values())
    if more:
        lines.append(f"  ... and {more} more records")
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
    for line in run_notes(report):
        console.print(line, style="dim", highlight=False, markup=False, soft_wrap=True)
    if show_changes:
        for line in changes_lines(report):
            console.print(line, highlight=False, markup=False, soft_wrap=True)
    t = problems_table(report)
    if t is not None:
        console.print(t)
    if report.error:
        # a stop the operator asked for is not an error: say what it is
        label = report.status if report.status in ("stopped", "aborted") else "error"
        console.print(f"[bold red]{label}:[/] {report.error}", highlight=False)


# ----------------------------------------------------------------------------- one stored run


def local_time(value: datetime | None) -> str:
    """A timestamp in the server's local zone, as the operator reads it next to cron logs."""
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z") if value else "-"


_SIDE_COLS = (("read", "read"), ("created", "created"), ("updated", "updated"),
              ("unchanged", "same"), ("quarantined", "quar."), ("skipped", "skipped"))
_VERIFY_COLS = ("drift", "mismatched", "missing_in_crm", "missing_in_erp", "unlinked",
                "duplicates", "vanished", "invalid", "fixed")
#: Keys of a stored report shown in the summary or a table; any other key is printed as is.
_SHOWN = {"run_id", "kind", "status", "dry_run", "entities", "api_calls", "retries",
          "duration_s", "error", "summary", "problems", "watermarks", "fix", "drift"}


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def _entities_table(entities: dict[str, Any]) -> Table | None:
    """Per-entity counts: a sync/plan/backfill's sides, or a verify's drift."""
    if not entities:
        return None
    table = Table(title="per entity", box=box.SIMPLE_HEAD, title_justify="left")
    rows = list(entities.items())
    if all(isinstance(e, dict) and ("crm" in e or "erp" in e) for _, e in rows):
        table.add_column("entity side", no_wrap=True)
        for _, label in _SIDE_COLS:
            table.add_column(label, justify="right")
        table.add_column("matched", justify="right")
        table.add_column("confl.", justify="right")
        for name, e in rows:
            for side in ("crm", "erp"):
                counts = e.get(side) or {}
                first = side == "crm"
                table.add_row(f"{name} {side}", *(str(counts.get(k, "-")) for k, _ in _SIDE_COLS),
                              str(e.get("matched", "-")) if first else "",
                              str(e.get("conflicts", "-")) if first else "")
        return table
    cols = [c for c in _VERIFY_COLS if any(c in (e or {}) for _, e in rows)]
    cols += sorted({k for _, e in rows for k in (e or {})} - set(cols))
    table.add_column("entity", no_wrap=True)
    for c in cols:
        table.add_column(c.replace("_", " "), justify="right")
    for name, e in rows:
        table.add_row(name, *(_cell((e or {}).get(c)) for c in cols))
    return table


def _rows_table(title: str, rows: list[Any]) -> Table | None:
    """A list of flat records (problems, watermark changes) as a table of their keys."""
    dicts = [r for r in rows if isinstance(r, dict)]
    if not dicts:
        return None
    keys = list(dict.fromkeys(k for r in dicts for k in r))
    table = Table(title=f"{title} ({len(dicts)})", box=box.SIMPLE_HEAD, title_justify="left")
    for k in keys:
        table.add_column(k.replace("_", " "))
    for r in dicts:
        table.add_row(*(_cell(r.get(k)) for k in keys))
    return table


def print_run(row: Any, console: Console) -> None:
    """One stored run (``ponte runs show``): what it was, how it ended, when, what it did.

    ``row`` is a state-store run row (id, kind, status, started_at, finished_at, entities,
    report); the report is the dict stored when the run finished, whatever its kind.
    """
    rep: dict[str, Any] = row.report or {}
    finished = row.finished_at
    took = rep.get("duration_s")
    if not isinstance(took, int | float):
        took = (finished - row.started_at).total_seconds() if finished else None
    lines = [
        ("run", row.id),
        ("kind", f"{row.kind}{' (dry run: nothing written)' if rep.get('dry_run') else ''}"),
        ("status", row.status if finished else f"{row.status} (not finished)"),
        ("entities", ", ".join(row.entities) or "-"),
        ("started", local_time(row.started_at)),
        ("finished", local_time(finished) + (f" (took {took:.1f}s)" if took is not None else "")),
    ]
    calls = rep.get("api_calls") or {}
    if calls:
        lines.append(("API calls", "; ".join(
            f"{side} {v.get('read', 0)} read / {v.get('write', 0)} write"
            for side, v in calls.items())))
    retries = {side: {k: n for k, n in v.items() if n}
               for side, v in (rep.get("retries") or {}).items()}
    if any(retries.values()):
        lines.append(("retries", "; ".join(
            f"{side} " + ", ".join(f"{k} {n}" for k, n in v.items())
            for side, v in retries.items() if v)))
    if "drift" in rep:
        lines.append(("drift", str(rep["drift"])))
    if rep.get("summary"):
        lines.append(("summary", str(rep["summary"])))
    for key in sorted(set(rep) - _SHOWN):
        lines.append((key.replace("_", " "), _cell(rep[key])))
    if rep.get("error"):
        lines.append(("error", str(rep["error"])))
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        style = "bold red" if key == "error" else None
        console.print(f"{key:<{width}}  {value}", style=style, highlight=False, markup=False,
                      soft_wrap=True)
    for table in (_entities_table(rep.get("entities") or {}),
                  _rows_table("watermark changes", rep.get("watermarks") or []),
                  _rows_table("quarantined", rep.get("problems") or [])):
        if table is not None:
            console.print(table)
