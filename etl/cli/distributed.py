"""``ponte worker``, ``ponte schedule`` and ``ponte enqueue``: ponte on Celery (RabbitMQ or
Redis as the broker, ``PONTE_BROKER_URL``), for deployments of many connections
(:mod:`etl.distributed`). Each command builds the app and makes one library call."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from etl.cli.common import CONNECTION, Entities, Json, out, print_doc
from etl.cli.errors import handle_errors
from etl.errors import ConfigError
from etl.exitcodes import Exit

if TYPE_CHECKING:
    from etl.distributed.app import PonteCelery
    from etl.settings import Settings

Queue = Annotated[str, typer.Option(
    "--queue", help="The broker queue (one deployment, one queue; default: ponte).")]
#: loguru's levels Celery does not know
_CELERY_LEVEL = {"TRACE": "DEBUG", "SUCCESS": "INFO"}


def _deployment() -> Settings:
    """The deployment's settings (environment and .env): broker, state, logging."""
    from etl.connections import settings_for

    return settings_for(None)


def _connections(every: bool) -> list[str | None]:
    from etl.connections import names, selected

    if every:
        if CONNECTION[0] is not None:
            raise ConfigError("--all and --connection: give one of them")
        found: list[str | None] = list(names())
        if not found:
            raise ConfigError("--all: PONTE_CONNECTIONS_DIR holds no connection file")
        return found
    return [selected(CONNECTION[0])]


def _deployment_connections() -> list[str | None]:
    """Every named connection when PONTE_CONNECTIONS_DIR is set, else the single one."""
    from etl.connections import connections_dir, names

    return list(names()) if connections_dir() is not None else [None]


def _app(settings: Settings, queue: str, lease_s: float | None = None) -> PonteCelery:
    from etl.distributed.app import WORKER_LEASE_S, make_app

    return make_app(settings.broker_url, queue=queue,
                    lease_s=WORKER_LEASE_S if lease_s is None else lease_s)


@handle_errors
def worker(
    concurrency: Annotated[int, typer.Option(
        min=1, help="Jobs this process runs at once (threads).")] = 5,
    queue: Queue = "ponte",
    lease: Annotated[float, typer.Option(
        min=10, help="Seconds the entity locks of this worker's runs are leased for (renewed "
                     "every third): how long a job redelivered from a dead host waits.")] = 60,
) -> None:
    """A Celery worker: runs the jobs on the queue (one sync, backfill or verify of one entity
    of one connection each), CONCURRENCY at a time. Jobs are acknowledged after they ran: a
    worker killed mid-run has its jobs redelivered to another. SIGTERM: runs in progress stop
    after their current chunk and go back to the queue."""
    from etl.connections import settings_for
    from etl.distributed.worker import SecretLog, start_worker

    settings = _deployment()
    secrets = list(settings.secrets())
    for name in _deployment_connections():  # a bad connection file stops the worker here
        secrets += settings_for(name).secrets()
    log = SecretLog(secrets, fmt=settings.log_format, level=settings.log_level)
    app = _app(settings, queue, lease)
    app.before_job = log
    code = start_worker(app, concurrency=concurrency,
                        loglevel=_CELERY_LEVEL.get(settings.log_level, settings.log_level))
    raise typer.Exit(code)


@handle_errors
def schedule(
    queue: Queue = "ponte",
    run_now: Annotated[bool, typer.Option(
        "--now", help="Also enqueue every entity once when this scheduler takes the lead.")
    ] = False,
) -> None:
    """Enqueue every connection's syncs on its schedules (PONTE_SCHEDULE__<ENTITY> in its file,
    or the defaults) for the workers. One scheduler leads at a time (a lease in the state
    database); another waits as standby and takes over when the first dies. Runs until
    SIGTERM/SIGINT."""
    from loguru import logger

    from etl.distributed.schedule import entries, run_scheduler
    from etl.interrupt import stop_on_signals
    from etl.logging import configure

    settings = _deployment()
    configure(secrets=settings.secrets(), fmt=settings.log_format, level=settings.log_level)
    entries(_deployment_connections())  # bad settings stop here, before the lease is taken
    app = _app(settings, queue)
    with stop_on_signals(logger.info, abort_on_second=False) as stop:
        run_scheduler(app, settings, _deployment_connections, should_stop=stop.is_set,
                      run_now=run_now)
    raise typer.Exit(Exit.OK)


@handle_errors
def enqueue(
    entities: Entities = None,
    every: Annotated[bool, typer.Option(
        "--all", help="Every connection of PONTE_CONNECTIONS_DIR.")] = False,
    kind: Annotated[str, typer.Option(help="sync, backfill or verify.")] = "sync",
    since: Annotated[str | None, typer.Option(
        help="backfill: window start (ISO 8601 or a span ago: 7d).")] = None,
    until: Annotated[str | None, typer.Option(help="backfill: window end.")] = None,
    side: Annotated[str | None, typer.Option(help="backfill: only this side (crm|erp).")
                    ] = None,
    fix: Annotated[bool, typer.Option("--fix", help="verify: repair the drift.")] = False,
    queue: Queue = "ponte",
    as_json: Json = False,
) -> None:
    """Put jobs on the queue for the workers: one per entity (default: all, each connection's
    in dependency order) of the connection (--connection, PONTE_CONNECTION) or of --all.
    Returns once they are queued; `ponte --connection NAME runs` shows them once run."""
    from etl.distributed.enqueue import plan_jobs, send
    from etl.distributed.jobs import KINDS

    if kind not in KINDS:
        raise ConfigError(f"--kind {kind!r}: must be one of {', '.join(KINDS)}")
    if kind != "backfill" and (since or until or side):
        raise ConfigError("--since, --until and --side are for --kind backfill")
    if fix and kind != "verify":
        raise ConfigError("--fix is for --kind verify")
    if side is not None and side not in ("crm", "erp"):
        raise ConfigError(f"--side {side!r}: must be crm or erp")
    settings = _deployment()
    chains = plan_jobs(_connections(every), entities, kind=kind, since=since, until=until,
                       side=side, fix=fix)
    done = send(_app(settings, queue), chains)
    if as_json:
        print_doc(done.as_dict())
    else:
        out.print(f"{done.jobs} job(s) queued on {done.queue}: " + "; ".join(
            f"{c[0].connection or '(default)'}: {', '.join(j.entity for j in c)} {kind}"
            for c in done.chains), highlight=False, markup=False)
    raise typer.Exit(Exit.OK)
