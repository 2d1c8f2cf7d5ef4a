"""The ``ponte`` command. Thin: parse arguments, build Settings, call one library function,
render its result. Library errors become exit codes in one place (:mod:`etl.exitcodes`)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import click
import typer

from etl import __version__
from etl.errors import ConfigError, EtlError
from etl.exitcodes import HELP as EXIT_HELP
from etl.exitcodes import Exit, for_error, for_status
from etl.render import make_console

app = typer.Typer(
    name="ponte",
    help=f"Keeps a CRM and an ERP in agreement (Ploomes <-> Omie first).\n\n{EXIT_HELP}",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)
mappings_app = typer.Typer(help="Mapping files.", no_args_is_help=True)
db_app = typer.Typer(help="The state database.", no_args_is_help=True)
app.add_typer(mappings_app, name="mappings")
app.add_typer(db_app, name="db")

out = make_console()  # full width when stdout is not a terminal (cron logs, pipes)
err = make_console(stderr=True, soft_wrap=True)
F = TypeVar("F", bound=Callable[..., Any])


def settings_or_exit() -> Any:
    """Settings from the environment and ``.env``, or the reasons they are wrong and exit 2."""
    from etl.logging import configure
    from etl.settings import Settings

    settings = Settings()  # raises ConfigError naming each bad variable (exit 2 via handle_errors)
    configure(secrets=settings.secrets(), fmt=settings.log_format, level=settings.log_level)
    return settings


def handle_errors(fn: F) -> F:
    """Every way a command can fail -> one clear line on stderr (and, with ``--json``, exactly
    one JSON object on stdout: ``{"status", "error", "exit_code"}``) and the documented exit
    code. Library errors map through :func:`etl.exitcodes.for_error`; a stop (Ctrl-C, SIGTERM)
    exits 3; anything else is a bug: exit 5, the traceback at DEBUG."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        as_json = bool(kwargs.get("as_json"))
        try:
            return fn(*args, **kwargs)
        except EtlError as exc:
            from etl.engine.entity import Stopped

            status = "stopped" if isinstance(exc, Stopped) else "failed"
            label = "bad configuration" if isinstance(exc, ConfigError) else \
                "stopped" if status == "stopped" else "error"
            _fail(label, str(exc), for_error(exc), as_json, status=status)
        except KeyboardInterrupt as exc:  # Aborted: a second Ctrl-C/SIGTERM; or one unhandled
            _fail("aborted", str(exc) or "interrupted", Exit.FAILED, as_json, status="aborted")
        except (typer.Exit, typer.Abort, click.exceptions.Exit, click.ClickException,
                click.exceptions.Abort):
            raise
        except Exception as exc:  # noqa: BLE001 - not ponte's own: a bug, reported as one
            import traceback

            from loguru import logger

            logger.debug("internal error, traceback:\n{}",
                         "".join(traceback.format_exception(exc)).rstrip())
            one_line = " ".join(str(exc).split())
            _fail("internal error", f"{type(exc).__name__}: {one_line} — this is a bug in ponte, "
                  "please report it (PONTE_LOG_LEVEL=DEBUG shows the traceback)",
                  Exit.INTERNAL, as_json)

    return wrapper  # type: ignore[return-value]


def _fail(label: str, text: str, code: Exit, as_json: bool, *, status: str = "failed") -> None:
    """Print the one-line message (secrets masked) and exit with ``code``."""
    from etl.logging import Redactor, redact

    text = redact(text)
    try:
        from etl.settings import Settings

        text = Redactor(Settings().secrets())(text)
    except ConfigError:
        pass
    err.print(f"{label}:{'' if text.startswith(chr(10)) else ' '}{text}", highlight=False,
              markup=False)
    if as_json:
        import json

        typer.echo(json.dumps({"status": status, "error": text.strip(), "exit_code": int(code)},
                              ensure_ascii=False))
    raise typer.Exit(code)


def announce(message: str) -> None:
    err.print(message, highlight=False, markup=False)


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
) -> None:
    """ponte: CRM <-> ERP sync middleware."""


def _finish_run(report: Any, as_json: bool, *, show_changes: bool) -> None:
    from etl.render import print_json, print_report

    if as_json:
        print_json(report.as_dict(with_changes=show_changes), out)
    else:
        print_report(report, out, show_changes=show_changes)
    raise typer.Exit(for_status(report.status))


Entities = Annotated[list[str] | None, typer.Argument(help="customers, products, orders (default: all).")]
Json = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


@app.command()
@handle_errors
def sync(
    entities: Entities = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Plan only: write nothing.")] = False,
    as_json: Json = False,
) -> None:
    """One incremental sync of ENTITY... (what cron or the systemd timer calls). Shows live
    progress (records read per entity and side, written) on a terminal. Ctrl-C or SIGTERM stops
    it after the current chunk (recorded as stopped, exit 3); a second Ctrl-C aborts at once."""
    from etl import api
    from etl.cli_ops import terminal_progress
    from etl.interrupt import stop_on_signals

    settings = settings_or_exit()
    with stop_on_signals(announce) as stop, \
            terminal_progress(settings, enabled=not as_json) as progress:
        report = api.sync(settings, entities, dry_run=dry_run, progress=progress,
                          should_stop=stop)
    _finish_run(report, as_json, show_changes=dry_run)


@app.command()
@handle_errors
def plan(entities: Entities = None, as_json: Json = False) -> None:
    """What a sync would write, field by field (old -> new); writes nothing anywhere."""
    from etl import api
    from etl.cli_ops import terminal_progress
    from etl.interrupt import stop_on_signals

    settings = settings_or_exit()
    with stop_on_signals(announce) as stop, \
            terminal_progress(settings, enabled=not as_json) as progress:
        report = api.sync(settings, entities, dry_run=True, progress=progress, should_stop=stop)
    _finish_run(report, as_json, show_changes=True)


@app.command()
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

    from etl import api

    settings = settings_or_exit()
    result = api.check_mappings(settings, Path(directory) if directory else None, online=online)
    for name, m in result.mappings.items():
        out.print(f"{name}: ok — {len(m.fields)} fields, sources {', '.join(m.sources())}, "
                  f"creates in {', '.join(m.create_in) or 'none'}, conflict policy {m.conflict}",
                  highlight=False)
    if result.unchecked:
        out.print("not checked offline (run `ponte mappings check --online` to ask the system):",
                  highlight=False)
        for line in result.unchecked:
            out.print(f"  {line}", highlight=False, markup=False)


@db_app.command("upgrade")
@handle_errors
def db_upgrade() -> None:
    """Apply the state database migrations (also done on first use)."""
    from etl.state.store import Store

    settings = settings_or_exit()
    with Store.open(settings.state_url, migrate=False) as store:
        store.upgrade()
    out.print("state database is up to date")


@db_app.command("rebind")
@handle_errors
def db_rebind(
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    as_json: Json = False,
) -> None:
    """Bind the state database to the configured CRM and ERP (kind, base URL, account), e.g.
    after a system moved to a new address or got a new key. Only for the SAME systems: a state
    used with other systems would pair unrelated records — give those a new PONTE_STATE_URL.
    Asks first unless --yes; refuses without a terminal. Recorded in `ponte runs`."""
    from datetime import UTC, datetime

    from etl import binding
    from etl.cli_ops import _confirm
    from etl.render import print_json
    from etl.state.store import Store

    settings = settings_or_exit()
    with Store.open(settings.state_url) as store:
        changes = binding.rebind_plan(store, settings)
        if not changes:
            if as_json:
                print_json({"run_id": None, "changes": []}, out)
            else:
                out.print("the state is already bound to the configured systems; nothing to do",
                          highlight=False)
            return
        for line in changes:
            err.print(line, highlight=False, markup=False)
        _confirm(f"rebind the state {store.safe_url} to the configured systems? Its links, "
                 "snapshots and watermarks will be used with them", yes)
        result = binding.rebind(store, settings, now=datetime.now(UTC))
    if as_json:
        print_json(result.as_dict(), out)
    else:
        out.print(f"rebound (recorded as run {result.run_id[:8]}): " + "; ".join(result.changes),
                  highlight=False, markup=False)


@app.command()
@handle_errors
def verify(
    entities: Entities = None,
    fix: Annotated[bool, typer.Option("--fix", help="Repair what the mappings allow.")] = False,
    as_json: Json = False,
) -> None:
    """Read both systems in full and report every drift: mismatched fields of linked records,
    records on one side only, unlinked natural keys, duplicates, vanished records. Exit 0 when
    there is no drift (or --fix repaired it all), 1 when drift remains."""
    from rich import box
    from rich.table import Table

    from etl import api
    from etl.interrupt import stop_on_signals
    from etl.render import print_json

    settings = settings_or_exit()
    with stop_on_signals(announce) as stop:
        report = api.verify(settings, entities, fix=fix, should_stop=stop)
    if as_json:
        print_json(report.as_dict(items=True), out)
    else:
        table = Table(title=f"verify{' --fix' if fix else ''}: {report.drift} drift",
                      box=box.SIMPLE_HEAD, title_justify="left")
        cols = ("drift", "mismatched", "missing_in_crm", "missing_in_erp", "unlinked",
                "duplicates", "vanished", "invalid", "fixed")
        table.add_column("entity")
        for col in cols:
            table.add_column(col.replace("_", " "), justify="right")
        for name, e in report.entities.items():
            d = e.as_dict()
            table.add_row(name, *(str(d[c]) for c in cols))
        out.print(table)
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


@app.command()
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


from etl.cli_ops import register

register(app)


connectors_app = typer.Typer(help="Connector specs: the systems ponte can talk to.",
                              no_args_is_help=True)
app.add_typer(connectors_app, name="connectors")


@connectors_app.command("list")
@handle_errors
def connectors_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON array.")] = False,
) -> None:
    """Every connector ponte knows: built-in, from installed packages (entry point group
    ponte.connectors) and from PONTE_CONNECTORS_DIR; with its side (crm, erp or any) and the
    collections it serves."""
    import json

    from etl.connectors.registry import listing
    from etl.settings import connectors_dir_setting

    rows = listing(connectors_dir_setting())
    if as_json:
        print(json.dumps(rows, ensure_ascii=False))
        return
    from rich.table import Table

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
    from pathlib import Path

    from etl.connectors.registry import check_file

    spec = check_file(Path(file))
    out.print(f"{file}: ok — {spec.title} ({spec.kind}), entities "
              f"{', '.join(spec.entities)}, auth {spec.auth.type}", highlight=False, markup=False)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
