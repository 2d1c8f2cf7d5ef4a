"""Commands for setting ponte up and trying it: ``mappings check``, ``fields``, ``demo`` and
``sandbox``."""

from __future__ import annotations

from typing import Annotated

import typer

from etl.cli.common import Json, out, ponte
from etl.cli.errors import handle_errors

mappings_app = typer.Typer(help="Mapping files.", no_args_is_help=True)


@mappings_app.command("check")
@handle_errors
def mappings_check(
    directory: Annotated[str | None, typer.Argument(help="Folder of mapping files.")] = None,
    online: Annotated[bool, typer.Option(
        "--online", help="Also ask the systems for their custom fields (Ploomes /Fields); "
                         "needs the credentials. Without it nothing is sent anywhere.")] = False,
) -> None:
    """Validate the mapping files without running anything: structure, transforms, and every
    native path against the fields each system declares (sync, plan, backfill and verify run
    the same check, and ask the CRM for its custom fields when a mapping names one)."""
    from pathlib import Path

    result = ponte().check_mappings(Path(directory) if directory else None, online=online)
    for name, m in result.mappings.items():
        out.print(f"{name}: ok — {len(m.fields)} fields, sources {', '.join(m.sources())}, "
                  f"creates in {', '.join(m.create_in) or 'none'}, conflict policy {m.conflict}",
                  highlight=False)
    if result.unchecked:
        out.print("not checked offline (run `ponte mappings check --online` to ask the system):",
                  highlight=False)
        for line in result.unchecked:
            out.print(f"  {line}", highlight=False, markup=False)


@handle_errors
def fields(
    side: Annotated[str, typer.Argument(help="crm or erp.")],
    collection: Annotated[str, typer.Argument(help="Native collection: Contacts, clientes, …")],
    as_json: Json = False,
) -> None:
    """What a mapping can name in one collection: the declared native paths and the custom
    fields (label, key, type, an option field's options) the system lists — Ploomes /Fields
    is asked once (and its options list, when a field has options)."""
    import json

    from rich.markup import escape
    from rich.table import Table

    result = ponte().fields(side, collection)
    if as_json:
        typer.echo(json.dumps({"system": result.system, "collection": result.collection,
                               "custom_listed": result.custom_listed,
                               "fields": [vars(r) for r in result.rows]}, ensure_ascii=False))
        return
    table = Table("map as", "kind", "type", "label", "key", "options",
                  title=f"{result.system} {result.collection} ({result.side})")
    for r in result.rows:
        table.add_row(*(escape(x) for x in (r.path, r.kind, r.type, r.label, r.key,
                                            ", ".join(r.options))))
    out.print(table)


@handle_errors
def demo(
    customers: Annotated[int, typer.Option(help="Customers to seed.")] = 60,
    products: Annotated[int, typer.Option(help="Products to seed.")] = 20,
    orders: Annotated[int, typer.Option(help="Orders to seed.")] = 12,
    state: Annotated[str, typer.Option(help="State database of the demo (recreated).")] = "ponte-demo.db",
    as_json: Json = False,
) -> None:
    """Start the sandbox in-process, sync, edit both sides as users would, sync, sync again."""
    from etl.demo import run_demo
    from etl.logging import configure

    configure(level="WARNING")
    run_demo(customers=customers, products=products, orders=orders, state_path=state,
             console=out, as_json=as_json)


def sandbox(
    host: Annotated[str, typer.Option(help="Loopback address to listen on.")] = "127.0.0.1",
    crm_port: Annotated[int, typer.Option(help="Ploomes simulator port.")] = 8701,
    erp_port: Annotated[int, typer.Option(help="Omie simulator port.")] = 8702,
    customers: Annotated[int, typer.Option(help="Customers to seed.")] = 200,
    products: Annotated[int, typer.Option(help="Products to seed.")] = 50,
    orders: Annotated[int, typer.Option(help="Orders to seed.")] = 30,
    seed: Annotated[int, typer.Option(help="Seed of the generated data.")] = 42,
    db: Annotated[str | None, typer.Option(help="SQLite file that keeps the data.")] = None,
    ploomes_rpm: Annotated[int, typer.Option(help="Ploomes requests/minute per key.")] = 120,
    omie_rpm: Annotated[int, typer.Option(help="Omie calls/minute per key and method.")] = 240,
) -> None:
    """Start the Ploomes and Omie simulators on loopback, seeded."""
    from etl.sandbox.server import serve

    serve(
        host=host, crm_port=crm_port, erp_port=erp_port, customers=customers,
        products=products, orders=orders, seed=seed, db=db, ploomes_rpm=ploomes_rpm,
        omie_rpm=omie_rpm,
    )
