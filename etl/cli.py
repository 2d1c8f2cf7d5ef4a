"""The ``ponte`` command. Thin: parse arguments, build Settings, call one library function,
render its result. Library errors become exit codes in one place (:mod:`etl.exitcodes`)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from etl import __version__

app = typer.Typer(
    name="ponte",
    help="Keeps a CRM and an ERP in agreement (Ploomes <-> Omie first).",
    no_args_is_help=True,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ponte {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        Optional[bool],
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = None,
) -> None:
    """ponte: CRM <-> ERP sync middleware."""


@app.command()
def sandbox(
    host: Annotated[str, typer.Option(help="Loopback address to listen on.")] = "127.0.0.1",
    crm_port: Annotated[int, typer.Option(help="Ploomes simulator port.")] = 8701,
    erp_port: Annotated[int, typer.Option(help="Omie simulator port.")] = 8702,
    customers: Annotated[int, typer.Option(help="Customers to seed.")] = 200,
    products: Annotated[int, typer.Option(help="Products to seed.")] = 50,
    orders: Annotated[int, typer.Option(help="Orders to seed.")] = 30,
    seed: Annotated[int, typer.Option(help="Seed of the generated data.")] = 42,
    db: Annotated[Optional[str], typer.Option(help="SQLite file that keeps the data.")] = None,
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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
