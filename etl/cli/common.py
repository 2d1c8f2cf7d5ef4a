"""What every command module of :mod:`etl.cli` shares: the consoles, the settings, the
façade, confirmation, plain JSON output and the argument types used by several commands."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import click
import typer

from etl.exitcodes import Exit
from etl.render import make_console
from etl.settings import Settings

if TYPE_CHECKING:
    from etl.ponte import Ponte

out = make_console()  # full width when stdout is not a terminal (cron logs, pipes)
err = make_console(stderr=True, soft_wrap=True)

Entities = Annotated[list[str] | None, typer.Argument(help="customers, products, orders (default: all).")]
Json = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


#: ``ponte --connection NAME`` (set by the root command; None: PONTE_CONNECTION or none)
CONNECTION: list[str | None] = [None]


def current_settings() -> Settings:
    """The settings of the connection this command runs for (``--connection``, else
    ``PONTE_CONNECTION``, else the single-connection settings of the environment and ``.env``).
    A :class:`ConfigError` names each bad variable (exit 2 via ``handle_errors``)."""
    from etl.connections import selected, settings_for

    return settings_for(selected(CONNECTION[0]))


def settings_or_exit() -> Settings:
    """:func:`current_settings`, with logging configured from them."""
    from etl.logging import configure

    settings = current_settings()
    configure(secrets=settings.secrets(), fmt=settings.log_format, level=settings.log_level)
    return settings


def ponte() -> Ponte:
    """The library façade for the configured settings (:class:`etl.ponte.Ponte`)."""
    from etl.ponte import Ponte

    return Ponte(settings_or_exit())


def announce(message: str) -> None:
    err.print(message, highlight=False, markup=False)


def confirm(question: str, yes: bool) -> None:
    """Ask, unless ``--yes``. No answer (stdin closed) or no -> nothing changes, exit 2."""
    if yes:
        return
    try:
        ok = typer.confirm(question, default=False, err=True)
    except (click.exceptions.Abort, typer.Abort):
        err.print("\nrefused: no confirmation (stdin is closed or not a terminal); nothing "
                  "changed — pass --yes to confirm non-interactively", highlight=False)
        raise typer.Exit(Exit.CONFIG) from None
    if not ok:
        err.print("not confirmed; nothing changed", highlight=False)
        raise typer.Exit(Exit.CONFIG)


def print_doc(data: Any) -> None:
    """One JSON document on stdout, never wrapped (a rich console wraps at its width)."""
    from etl.render import print_json

    print_json(data)
