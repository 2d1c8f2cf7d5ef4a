"""Commands that read or change only the state database: ``status``, ``watermark``, ``runs``,
``quarantine`` and ``db``. Each makes one call into :class:`etl.ponte.Ponte` and renders the
result (rich tables, or ``--json``); changes are confirmed first unless ``--yes``."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from etl.cli.common import Json, Yes, confirm, err, out, ponte, print_doc
from etl.cli.errors import handle_errors

watermark_app = typer.Typer(
    help="Show, set or reset the per-entity, per-side watermarks (changes are confirmed, "
         "logged and recorded in `ponte runs`).", no_args_is_help=True)
runs_app = typer.Typer(help="The run history (sync, backfill, watermark changes).")
quarantine_app = typer.Typer(
    help="Records that could not be synced: list, show, retry, drop.", no_args_is_help=True)
db_app = typer.Typer(help="The state database.", no_args_is_help=True)


# ------------------------------------------------------------------------------------- status


@handle_errors
def status(
    as_json: Json = False,
    every: Annotated[bool, typer.Option(
        "--all", help="Every connection of PONTE_CONNECTIONS_DIR in one table (exit 2 when "
                      "one cannot be read; the others are still shown).")] = False,
) -> None:
    """Per entity and side: watermark and its lag behind now, the last run (when, status,
    counts), quarantined records, the next scheduled run."""
    from etl.cli.render import ago, status_table

    if every:
        status_all(as_json)
        return
    report = ponte().status()
    if as_json:
        print_doc(report.as_dict())
        return
    out.print(status_table(report))
    for e in report.entities:
        for s in e.sides:
            if s.ahead_s is not None and s.watermark is not None:
                err.print(f"{e.entity} {s.side}: the watermark {s.watermark.isoformat()} is "
                          f"ahead of now (minus the safety lag) by {ago(s.ahead_s)}: runs of "
                          f"{e.entity} fail until `ponte watermark set {e.entity} --side "
                          f"{s.side} --to T` or `ponte watermark reset {e.entity} --side "
                          f"{s.side}`", highlight=False, markup=False)
    if report.binding and not report.binding["matches"]:
        err.print("this state was built with other systems than the configured ones — sync, "
                  "plan, backfill, verify and state changes refuse to run (see `ponte db "
                  "rebind --help`):\n  " + "\n  ".join(report.binding["differences"]),
                  highlight=False, markup=False)


def status_all(as_json: bool) -> None:
    """``ponte status --all``: :func:`etl.fleet.status_all` over every connection."""
    from etl.cli.common import CONNECTION
    from etl.cli.render import fleet_table
    from etl.errors import ConfigError
    from etl.exitcodes import Exit
    from etl.fleet import load, status_all
    from etl.logging import configure
    from etl.settings import Settings

    if CONNECTION[0] is not None:
        raise ConfigError(f"--all shows every connection: leave out --connection "
                          f"{CONNECTION[0]!r} (or drop --all)")
    loaded = load()
    secrets = [v for s in loaded.values() if isinstance(s, Settings) for v in s.secrets()]
    configure(secrets=secrets)
    fleet = status_all(loaded)
    if as_json:
        print_doc(fleet.as_dict())
    else:
        out.print(fleet_table(fleet))
        for c in fleet.connections:
            if c.error:
                err.print(f"{c.name}: {c.error}", highlight=False, markup=False)
            binding = c.report.binding if c.report else None
            if binding and not binding["matches"]:
                err.print(f"{c.name}: its state was built with other systems than the "
                          "configured ones (see `ponte status --connection "
                          f"{c.name}`)", highlight=False, markup=False)
    if any(c.error for c in fleet.connections):
        raise typer.Exit(Exit.CONFIG)


# ------------------------------------------------------------------------------------- watermark


@watermark_app.command("show")
@handle_errors
def watermark_show(
    entity: Annotated[str | None, typer.Argument(help="One entity (default: all).")] = None,
    as_json: Json = False,
) -> None:
    """The stored watermarks: up to when each side's changes are fully processed."""
    from etl.cli.render import watermarks_table

    result = ponte().watermarks(entity)
    if as_json:
        print_doc(result.as_list())
        return
    out.print(watermarks_table(result.watermarks))


def _ask_watermarks(yes: bool, *, reset: bool) -> Any:
    """The ``confirm`` callback of a watermark change: print old -> new, then ask."""

    def ask(changes: list[Any]) -> None:
        for c in changes:
            err.print(c.describe(), highlight=False, markup=False)
        what = "reset" if reset else "set"
        note = " (the next sync re-reads everything; nothing is duplicated: unchanged " \
               "records diff as unchanged)" if reset else ""
        confirm(f"{what} {len(changes)} watermark(s){note}?", yes)

    return ask


def _print_watermark_result(result: Any, as_json: bool) -> None:
    if as_json:
        print_doc(result.as_dict())
    else:
        out.print(f"done (recorded as run {result.run_id[:8]}): "
                  + "; ".join(c.describe() for c in result.changes), highlight=False)


@watermark_app.command("set")
@handle_errors
def watermark_set(
    entity: Annotated[str, typer.Argument(help="customers, products or orders.")],
    side: Annotated[str, typer.Option(help="crm or erp.")],
    to: Annotated[str, typer.Option(
        help="New value: ISO 8601 (no offset = UTC) or a span ago (2h, 7d).")],
    yes: Yes = False,
    as_json: Json = False,
) -> None:
    """Set one side's watermark: the next sync reads that side's changes from there (minus the
    lookback). Asks first unless --yes; refuses without a terminal."""
    result = ponte().set_watermark(entity, side=side, to=to,
                                   confirm=_ask_watermarks(yes, reset=False))
    _print_watermark_result(result, as_json)


@watermark_app.command("reset")
@handle_errors
def watermark_reset(
    entity: Annotated[str, typer.Argument(help="customers, products or orders.")],
    side: Annotated[str | None, typer.Option(help="crm or erp (default: both).")] = None,
    yes: Yes = False,
    as_json: Json = False,
) -> None:
    """Forget ENTITY's watermark(s): the next sync re-reads from the beginning. Records that
    did not change are found unchanged by the snapshot diff, so nothing is duplicated. Only
    this entity is touched. Asks first unless --yes."""
    result = ponte().reset_watermark(entity, side=side,
                                     confirm=_ask_watermarks(yes, reset=True))
    _print_watermark_result(result, as_json)


# ------------------------------------------------------------------------------------- runs


@runs_app.callback(invoke_without_command=True)
@handle_errors
def runs_list(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(help="How many runs.")] = 20,
    as_json: Json = False,
) -> None:
    """The latest runs, newest first (`ponte runs show RUN_ID` for one; a prefix is enough)."""
    if ctx.invoked_subcommand is not None:
        return
    from etl.cli.render import runs_table

    result = ponte().runs(limit)
    if as_json:
        print_doc(result.as_list())
    else:
        out.print(runs_table(result.runs))


@runs_app.command("show")
@handle_errors
def runs_show(
    run_id: Annotated[str, typer.Argument(help="A run id or a unique prefix of it.")],
    as_json: Json = False,
) -> None:
    """One run: kind, status, times, API calls, per-entity counts, quarantined records and
    the error, if any (--json: the stored record as is)."""
    from etl.ops import run_dict
    from etl.render import print_run

    row = ponte().run(run_id)
    if as_json:
        print_doc(run_dict(row))
        return
    print_run(row, out)


# ------------------------------------------------------------------------------------- quarantine


@quarantine_app.command("list")
@handle_errors
def quarantine_list(
    entity: Annotated[str | None, typer.Argument(help="One entity (default: all).")] = None,
    as_json: Json = False,
) -> None:
    """Quarantined records: why, how many attempts, when they are retried next."""
    from etl.cli.render import quarantine_table

    result = ponte().quarantine_list(entity)
    if as_json:
        print_doc(result.as_list())
        return
    out.print(quarantine_table(result.entries))


@quarantine_app.command("show")
@handle_errors
def quarantine_show(qid: Annotated[int, typer.Argument(help="Entry id.")],
                    as_json: Json = False) -> None:
    """One entry, with the record as it was read."""
    from etl.cli.render import ts
    from etl.ops import quarantine_dict

    row = ponte().quarantine_entry(qid)
    if not as_json:
        out.print(f"entry {row.id}: {row.entity} {row.system} {row.key} — {row.kind}, "
                  f"{row.attempts} attempt(s), next retry {ts(row.next_retry_at)}\n"
                  f"reason: {row.reason}", highlight=False, markup=False)
    print_doc(quarantine_dict(row, payload=True))


@quarantine_app.command("retry")
@handle_errors
def quarantine_retry(
    qid: Annotated[int | None, typer.Argument(help="Entry id.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every entry.")] = False,
) -> None:
    """Make entries due now: the next `ponte sync` re-reads those records by key and syncs
    them if they are fixed (they leave the quarantine), or keeps them with a new reason."""
    from etl.errors import ConfigError

    if (qid is None) == (not all_):
        raise ConfigError("give an entry id or --all (not both)")
    n = ponte().quarantine_retry(None if all_ else qid).due
    out.print(f"{n} entr{'y' if n == 1 else 'ies'} due now: the next `ponte sync` re-reads "
              f"{'it' if n == 1 else 'them'}", highlight=False)


@quarantine_app.command("drop")
@handle_errors
def quarantine_drop(qid: Annotated[int, typer.Argument(help="Entry id.")],
                    yes: Yes = False) -> None:
    """Drop an entry: its record is ignored until it changes, then processed again. Asks
    first."""

    def ask(row: Any) -> None:
        confirm(f"drop quarantine entry {qid} ({row.entity} {row.system} {row.key}: "
                f"{row.reason[:80]})?", yes)

    ponte().quarantine_drop(qid, confirm=ask)
    out.print(f"dropped entry {qid}", highlight=False)


# ------------------------------------------------------------------------------------- db


@db_app.command("upgrade")
@handle_errors
def db_upgrade() -> None:
    """Apply the state database migrations (also done on first use)."""
    ponte().upgrade_db()
    out.print("state database is up to date")


@db_app.command("rebind")
@handle_errors
def db_rebind(
    yes: Yes = False,
    as_json: Json = False,
) -> None:
    """Bind the state database to the configured CRM and ERP (kind, base URL, account), e.g.
    after a system moved to a new address or got a new key. Only for the SAME systems: a state
    used with other systems would pair unrelated records — give those a new PONTE_STATE_URL.
    Asks first unless --yes; refuses without a terminal. Recorded in `ponte runs`."""
    from etl.render import print_json

    def ask(changes: list[str], state: str) -> None:
        for line in changes:
            err.print(line, highlight=False, markup=False)
        confirm(f"rebind the state {state} to the configured systems? Its links, "
                "snapshots and watermarks will be used with them", yes)

    result = ponte().rebind(confirm=ask)
    if as_json:
        print_json(result.as_dict(), out)
    elif result.run_id is None:
        out.print("the state is already bound to the configured systems; nothing to do",
                  highlight=False)
    else:
        out.print(f"rebound (recorded as run {result.run_id[:8]}): " + "; ".join(result.changes),
                  highlight=False, markup=False)
