"""The ``ponte serve`` process: a Starlette app (the webhook receiver, plus any
``extra_routes`` such as the status page) served by uvicorn, and the event worker in a thread
of the same process.

SIGTERM/SIGINT stop uvicorn (no new calls are accepted), then the worker after its current
sync; pending events stay pending for the next start.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import uvicorn
from loguru import logger
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Route

from etl.interrupt import stop_on_signals
from etl.mapping import EntityMapping
from etl.serve.receiver import Receiver, endpoints, unconfigured
from etl.serve.worker import Runner, Worker
from etl.settings import Settings
from etl.state import Store


def build_app(settings: Settings, store: Store, mappings: dict[str, EntityMapping], *,
              now: Callable[[], datetime], extra_routes: Sequence[BaseRoute] = ()
              ) -> Starlette:
    """The app: ``POST /webhooks/{path}`` for each system whose spec describes its webhooks,
    and ``extra_routes``. Refusing sides (their secret not set) are logged here."""
    found = endpoints(settings, mappings)
    for problem in unconfigured(settings, found):
        logger.warning(problem)
    receiver = Receiver(store, found, debounce_s=settings.serve.debounce_s, now=now)
    routes: list[BaseRoute] = [Route("/webhooks/{path}", receiver.handle, methods=["POST"]),
                               *extra_routes]
    return Starlette(routes=routes)


@dataclass(frozen=True)
class ServeResult:
    """Where ``ponte serve`` listened, and what its worker did."""

    host: str
    port: int
    endpoints: tuple[str, ...]


def run(settings: Settings, runner: Runner, mappings: dict[str, EntityMapping], *,
        now: Callable[[], datetime], host: str | None = None, port: int | None = None,
        extra_routes: Sequence[BaseRoute] = (),
        also: Callable[[Callable[[], bool]], object] | None = None) -> ServeResult:
    """Serve until SIGTERM/SIGINT. ``also(should_stop)``: more work in a thread of this
    process (the polling schedules of ``--poll``), told to stop with the rest."""
    import threading

    host = host or settings.serve.host
    port = port or settings.serve.port
    with settings.open_state() as store:
        app = build_app(settings, store, mappings, now=now, extra_routes=extra_routes)
        paths = tuple(f"/webhooks/{p}" for p in endpoints(settings, mappings))
        server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_config=None,
                                               access_log=False, lifespan="off"))
        worker = Worker(runner, store, now=now)

        def stop_server() -> None:
            server.should_exit = True

        with stop_on_signals(logger.info, abort_on_second=False, on_first=stop_server) as stop:
            extra = None
            if also is not None:
                extra = threading.Thread(target=also, args=(stop.is_set,), name="ponte-poll",
                                         daemon=True)
                extra.start()
            worker.start()
            logger.info("ponte serve listening on http://{}:{} ({})", host, port,
                        ", ".join(paths) or "no webhook endpoints")
            try:
                server.run()
            finally:
                stop.set()
                worker.stop()
                if extra is not None:
                    extra.join()
        logger.info("ponte serve stopped; pending events wait for the next start")
    return ServeResult(host, port, paths)


__all__ = ["ServeResult", "build_app", "run"]
