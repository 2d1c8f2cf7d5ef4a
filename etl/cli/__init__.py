"""The ``ponte`` command (console script ``ponte = "etl.cli:main"``).

Thin: each command parses its arguments, makes one call into the library façade
(:class:`etl.ponte.Ponte`), renders the result and exits with the documented code. Errors
become exit codes in one place (:mod:`etl.cli.errors`). The command modules import only
:mod:`etl.cli.common` and :mod:`etl.cli.errors`, never this package's ``__init__``: all the
wiring is below, one line per command or command group, in the order ``--help`` lists them.
"""

from __future__ import annotations

from typing import Annotated

import click
import typer

from etl import __version__
from etl.cli import alerts, common, connectors, distributed, serve, state, sync, tools
from etl.exitcodes import HELP as EXIT_HELP

app = typer.Typer(
    name="ponte",
    help=f"Keeps a CRM and an ERP in agreement (Ploomes <-> Omie first).\n\n{EXIT_HELP}",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ponte {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool | None,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = None,
    connection: Annotated[
        str | None,
        typer.Option("--connection", metavar="NAME",
                     help="The named connection (a company's file NAME.env in "
                          "PONTE_CONNECTIONS_DIR) to run for; default: PONTE_CONNECTION, else "
                          "the settings of the environment and .env. Also accepted after the "
                          "command."),
    ] = None,
) -> None:
    """ponte: CRM <-> ERP sync middleware."""
    common.CONNECTION[0] = connection


# Commands, in the order `ponte --help` lists them (groups after single commands); a new
# command module adds its lines here.
app.command("sync")(sync.sync)  # etl/cli/sync.py: runs against both systems
app.command("plan")(sync.plan)
app.command("demo")(tools.demo)  # etl/cli/tools.py: set-up and trying it out
app.command("verify")(sync.verify)
app.command("sandbox")(tools.sandbox)
app.command("fields")(tools.fields)
app.command("run")(sync.run)
app.command("serve")(serve.serve)  # etl/cli/serve.py: webhooks
app.command("backfill")(sync.backfill)
app.command("status")(state.status)  # etl/cli/state.py: the state database
app.command("worker")(distributed.worker)  # etl/cli/distributed.py: Celery workers
app.command("schedule")(distributed.schedule)
app.command("enqueue")(distributed.enqueue)
app.add_typer(tools.mappings_app, name="mappings")
app.add_typer(state.db_app, name="db")
app.add_typer(state.watermark_app, name="watermark")
app.add_typer(state.runs_app, name="runs")
app.add_typer(state.quarantine_app, name="quarantine")
app.add_typer(serve.webhooks_app, name="webhooks")
app.add_typer(connectors.connectors_app, name="connectors")  # etl/cli/connectors.py
app.add_typer(alerts.alerts_app, name="alerts")  # etl/cli/alerts.py


def hoist_connection(argv: list[str]) -> list[str]:
    """``ponte sync --connection acme`` means ``ponte --connection acme sync``: every command
    takes the option, which the root command reads (arguments after ``--`` are left alone)."""
    args, front, i = [], [], 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            args += argv[i:]
            break
        if arg == "--connection":
            if i + 1 == len(argv) or argv[i + 1].startswith("-"):
                raise click.UsageError("option '--connection' needs a NAME (a file NAME.env in "
                                       "PONTE_CONNECTIONS_DIR)")
            front += argv[i:i + 2]
            i += 2
            continue
        if arg.startswith("--connection="):
            front.append(arg)
        else:
            args.append(arg)
        i += 1
    return front + args


def main() -> None:
    import sys

    try:
        args = hoist_connection(sys.argv[1:])
    except click.UsageError as exc:
        exc.show()
        sys.exit(exc.exit_code)
    app(args=args, prog_name="ponte")


__all__ = ["app", "main"]
