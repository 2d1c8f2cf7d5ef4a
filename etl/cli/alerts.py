"""``ponte alerts``: the alert conditions in force, and a test message to every channel."""

from __future__ import annotations

from typing import Annotated

import typer
from rich import box
from rich.table import Table

from etl.cli.common import Json, err, out, ponte, print_doc
from etl.cli.errors import handle_errors
from etl.errors import ConfigError
from etl.exitcodes import Exit

alerts_app = typer.Typer(
    help="Alert conditions (a run failed, quarantine over its threshold, drift, lag, a stalled "
         "webhook backlog), announced once when they start and once when they clear.")


@alerts_app.callback(invoke_without_command=True)
@handle_errors
def alerts_list(
    ctx: typer.Context,
    show_all: Annotated[bool, typer.Option("--all", help="Cleared conditions too.")] = False,
    as_json: Json = False,
) -> None:
    """The alert conditions in force: what, since when, whether it was announced, and what
    to run. Conditions are worked out after every run (and by `ponte serve`)."""
    if ctx.invoked_subcommand is not None:
        return
    from etl.alerts import alert_dict
    from etl.cli.render import ts

    rows = [r for r in ponte().alerts() if show_all or r.active]
    if as_json:
        print_doc([alert_dict(r) for r in rows])
        return
    if not rows:
        out.print("no alert condition in force", highlight=False)
        return
    table = Table(box=box.SIMPLE_HEAD, show_lines=False)
    for col in ("condition", "state", "since", "announced", "detail"):
        table.add_column(col, overflow="fold")
    for r in rows:
        state = "active" if r.active else f"cleared {ts(r.cleared_at)}"
        table.add_row(r.condition, state, ts(r.since),
                      ts(r.notified_at) if r.notified_at else "not yet", r.detail)
    out.print(table)


@alerts_app.command("test")
@handle_errors
def alerts_test() -> None:
    """Send one test message to every configured channel (PONTE_ALERTS__WEBHOOK_URL,
    PONTE_ALERTS__SMTP_URL) and say which took it. Exit 3 when one did not."""
    results = ponte().test_alerts()
    if not results:
        raise ConfigError("no alert channel configured: set PONTE_ALERTS__WEBHOOK_URL (a chat "
                          "tool's incoming webhook) and/or PONTE_ALERTS__SMTP_URL with "
                          "PONTE_ALERTS__EMAIL_TO")
    for r in results:
        line = f"{r.channel}: sent" if r.ok else f"{r.channel}: NOT sent: {r.error}"
        (out if r.ok else err).print(line, highlight=False, markup=False)
    if not all(r.ok for r in results):
        raise typer.Exit(Exit.FAILED)
