"""Commands that run against both systems: ``sync``, ``plan``, ``backfill``, ``verify`` and the
daemon ``run``. Each parses its arguments, makes one call into :class:`etl.ponte.Ponte` (under
:func:`etl.interrupt.stop_on_signals`), renders the result and exits with its code."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from etl.cli.common import Entities, Json, announce, err, out, ponte
from etl.cli.errors import handle_errors
from etl.exitcodes import Exit, for_status


def _finish_run(report: Any, as_json: bool, *, show_changes: bool) -> None:
    from etl.render import print_json, print_report

    if as_json:
        print_json(report.as_dict(with_changes=show_changes), out)
    else:
        print_report(report, out, show_changes=show_changes)
    raise typer.Exit(for_status(report.status))


@handle_errors
def sync(
    entities: Entities = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Plan only: write nothing.")] = False,
    as_json: Json = False,
) -> None:
    """One incremental sync of ENTITY... (what cron or the systemd timer calls). Shows live
    progress (records read per entity and side, written) on a terminal. Ctrl-C or SIGTERM stops
    it after the current chunk and the writes already sent (recorded as stopped, exit 3); a
    second Ctrl-C aborts at once."""
    from etl.cli.progress import terminal_progress
    from etl.interrupt import stop_on_signals

    p = ponte()
    with stop_on_signals(announce) as stop, \
            terminal_progress(p.settings, enabled=not as_json) as progress:
        report = p.sync(entities, dry_run=dry_run, progress=progress, should_stop=stop)
    _finish_run(report, as_json, show_changes=dry_run)


@handle_errors
def plan(entities: Entities = None, as_json: Json = False) -> None:
    """What a sync would write, field by field (old -> new); writes nothing anywhere."""
    from etl.cli.progress import terminal_progress
    from etl.interrupt import stop_on_signals

    p = ponte()
    with stop_on_signals(announce) as stop, \
            terminal_progress(p.settings, enabled=not as_json) as progress:
        report = p.plan(entities, progress=progress, should_stop=stop)
    _finish_run(report, as_json, show_changes=True)


@handle_errors
def backfill(
    entity: Annotated[str, typer.Argument(help="customers, products or orders.")],
    since: Annotated[str | None, typer.Option(
        help="Window start, inclusive: ISO 8601 (no offset = UTC) or a span ago (7d, 6h). "
             "Default: the beginning.")] = None,
    until: Annotated[str | None, typer.Option(
        help="Window end, exclusive (same forms). Default: now.")] = None,
    side: Annotated[str | None, typer.Option(
        help="Read only this side: crm or erp (default: every source side).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Plan only: write nothing.")] = False,
    as_json: Json = False,
) -> None:
    """Re-sync ENTITY over an explicit window: the same pipeline as sync, but the stored
    watermark is neither read nor moved. Safe to interrupt (Ctrl-C stops after the current
    chunk) and to re-run: records already synced are found unchanged. Shows a progress bar
    (records, rate) on a terminal, log lines otherwise."""
    from etl.cli.progress import RunProgress
    from etl.interrupt import stop_on_signals

    p = ponte()
    with stop_on_signals(announce, hint="; re-run the same backfill to finish") as stop, \
            RunProgress(live=out.is_terminal and not as_json, settings=p.settings) as progress:
        report = p.backfill(entity, since=since, until=until,
                            sides=(side,) if side is not None else None, dry_run=dry_run,
                            progress=progress, should_stop=stop.is_set)
    _finish_run(report, as_json, show_changes=dry_run)


@handle_errors
def verify(
    entities: Entities = None,
    fix: Annotated[bool, typer.Option("--fix", help="Repair what the mappings allow.")] = False,
    as_json: Json = False,
) -> None:
    """Read both systems in full and report every drift: mismatched fields of linked records,
    records on one side only, unlinked natural keys, duplicates, vanished records. Exit 0 when
    there is no drift (or --fix repaired it all), 1 when drift remains."""
    from etl.cli.render import verify_table
    from etl.interrupt import stop_on_signals
    from etl.render import print_json

    p = ponte()
    with stop_on_signals(announce) as stop:
        report = p.verify(entities, fix=fix, should_stop=stop)
    if as_json:
        print_json(report.as_dict(items=True), out)
    else:
        out.print(verify_table(report, fix=fix))
        for name, e in report.entities.items():
            if e.blocked:
                err.print(f"{name}: {e.blocked}", highlight=False, markup=False)
            for item in e.items[:20]:
                fields = "; ".join(f"{f}: crm={v[0]!r} erp={v[1]!r}" for f, v in item.fields.items())
                out.print(f"  {name} {item.kind} crm={item.crm_key} erp={item.erp_key} "
                          f"{item.detail}{fields}", highlight=False, markup=False)
    remaining = report.drift if not fix else sum(
        max(0, e.drift - e.fixed) for e in report.entities.values())
    raise typer.Exit(Exit.OK if remaining == 0 else Exit.QUARANTINED)


@handle_errors
def run(
    entities: Annotated[list[str] | None, typer.Argument(
        help="Entities to schedule (default: all mapped).")] = None,
    run_now: Annotated[bool, typer.Option(
        "--now", help="Also run each entity once right away.")] = False,
    misfire_grace: Annotated[int, typer.Option(
        help="Seconds a late run may still start; later, it waits for the next time.")] = 600,
) -> None:
    """Run as a daemon: sync each entity on its own schedule until SIGTERM/SIGINT.

    Schedules come from PONTE_SCHEDULE__<ENTITY> (PONTE_SCHEDULE__CUSTOMERS, ...; defaults:
    customers and orders every 5 minutes, products every 15): a 5-field crontab expression in
    server local time ('*/5 * * * *') or an interval 'every:SECONDS' ('every:300'). Runs never overlap (one at a time, max one instance per entity, missed
    runs coalesced). On SIGTERM/SIGINT the current run stops after its current chunk (whole
    chunks committed, watermark not moved; the next run picks up from there) and ponte exits
    0. Writes PONTE_METRICS_FILE after each run when set."""
    ponte().serve(entities, run_now=run_now, misfire_grace_s=misfire_grace)
    raise typer.Exit(Exit.OK)
