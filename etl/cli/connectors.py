"""``ponte connectors list|check``: the systems ponte can talk to, described by connector specs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from etl.cli.common import out
from etl.cli.errors import handle_errors

connectors_app = typer.Typer(help="Connector specs: the systems ponte can talk to.",
                             no_args_is_help=True)


@connectors_app.command("list")
@handle_errors
def connectors_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON array.")] = False,
) -> None:
    """Every connector ponte knows: built-in, from installed packages (entry point group
    ponte.connectors) and from PONTE_CONNECTORS_DIR; with its side (crm, erp or any) and the
    collections it serves."""
    from rich.table import Table

    from etl.connectors.registry import listing
    from etl.settings import connectors_dir_setting

    rows = listing(connectors_dir_setting())
    if as_json:
        typer.echo(json.dumps(rows, ensure_ascii=False))
        return
    table = Table("name", "kind", "source", "collections", "from")
    for r in rows:
        table.add_row(str(r["name"]), str(r["kind"]), str(r["source"]),
                      ", ".join(r["collections"]), str(r["origin"]))
    out.print(table)


@connectors_app.command("check")
@handle_errors
def connectors_check(
    file: Annotated[str, typer.Argument(help="The connector spec file (YAML).")],
) -> None:
    """Validate one connector spec file: every error names the file, the path in it, the bad
    value and the valid choices (exit 2). Nothing is sent anywhere."""
    from etl.connectors.registry import check_file

    spec = check_file(Path(file))
    out.print(f"{file}: ok — {spec.title} ({spec.kind}), entities "
              f"{', '.join(spec.entities)}, auth {spec.auth.type}", highlight=False, markup=False)
