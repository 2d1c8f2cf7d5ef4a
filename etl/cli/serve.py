"""``ponte serve`` (the webhook receiver and its worker) and ``ponte webhooks``."""

from __future__ import annotations

from typing import Annotated

import typer

from etl.cli.common import Json, out, ponte, print_doc
from etl.cli.errors import handle_errors
from etl.exitcodes import Exit

webhooks_app = typer.Typer(help="ponte's webhooks in the systems: register them, see them.",
                           no_args_is_help=True)


@handle_errors
def serve(
    host: Annotated[str | None, typer.Option(
        help="Address to listen on (default PONTE_SERVE__HOST).")] = None,
    port: Annotated[int | None, typer.Option(
        help="Port to listen on (default PONTE_SERVE__PORT).")] = None,
    poll: Annotated[bool, typer.Option(
        "--poll", help="Also run the `ponte run` schedules in this process.")] = False,
) -> None:
    """Receive the systems' webhook calls (POST /webhooks/<system>) and sync the records they
    name, until SIGTERM/SIGINT.

    Every accepted event is stored in the state database before it is answered (a redelivery
    stores nothing); a worker in the same process syncs the named records a short while later
    (PONTE_SERVE__DEBOUNCE_S: edits of one record in that time make one sync) and mirrors
    deletions as the mappings' `deletes:` say. Calls without the right secret
    (PONTE_CRM__WEBHOOK_KEY, the ERP's app key) are refused. On SIGTERM/SIGINT the current
    sync finishes and pending events wait for the next start."""
    ponte().serve_events(host=host, port=port, poll=poll)
    raise typer.Exit(Exit.OK)


@webhooks_app.command("register")
@handle_errors
def register(as_json: Json = False) -> None:
    """Create or update ponte's callbacks in the CRM for each mapped entity and action, at
    PONTE_SERVE__PUBLIC_URL with the webhook key; print what to set by hand in a system without
    a registration API. Running it again changes nothing."""
    report = ponte().webhooks_register()
    if as_json:
        print_doc(report.as_dict())
        return
    for c in report.callbacks:
        out.print(f"{c.side} {c.collection} {c.action}: {c.state} ({c.url})", highlight=False,
                  markup=False)
    if report.callbacks and not report.changed:
        out.print("nothing changed: every callback was already registered", highlight=False)
    for m in report.manual:
        out.print(f"{m.system} ({m.side}) has no registration API; set by hand in {m.where}:\n"
                  f"  URL: {m.url}\n  topics: {', '.join(m.topics)}", highlight=False,
                  markup=False)


@webhooks_app.command("status")
@handle_errors
def status(as_json: Json = False) -> None:
    """The callbacks registered at ponte's address, and the local events by status."""
    report = ponte().webhooks_status()
    if as_json:
        print_doc(report.as_dict())
        return
    for c in report.callbacks:
        out.print(f"{c.side} {c.collection} {c.action}: registered, id {c.id} ({c.url})",
                  highlight=False, markup=False)
    if not report.callbacks:
        out.print("no callback registered at PONTE_SERVE__PUBLIC_URL", highlight=False)
    for m in report.manual:
        out.print(f"{m.system} ({m.side}): set by hand, {m.url}", highlight=False,
                  markup=False)
    out.print("events: " + ", ".join(f"{k} {v}" for k, v in report.events.items()),
              highlight=False)
