"""``ponte worker``: a Celery worker process running ponte's jobs.

One process, ``concurrency`` threads (Celery's ``threads`` pool): a job spends its time waiting
on the vendors' APIs and their rate limits, not on the CPU, so threads let one process keep
several connections syncing at once. Killing the process (SIGKILL, OOM) kills every job it
runs; their messages, never acknowledged, are delivered to another worker, and their entity
locks, naming this process's pid, are taken over at once by a worker of the same host (within
the worker lease by one of another host: :mod:`etl.distributed.app`).

SIGTERM (warm shutdown): no new job is taken; the runs in progress stop after their current
chunk and their jobs go back to the queue, to be finished by another worker or after restart.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from typing import Any

from etl.distributed.app import PonteCelery
from etl.distributed.jobs import Job

#: standard-library loggers of libraries ponte uses, quiet below WARNING in a worker (ponte's
#: own lines go through loguru)
QUIET_LOGGERS = ("httpx", "httpcore", "alembic", "apscheduler")


class SecretLog:
    """Keeps the log sink redacting every connection's secrets: a job of a connection not
    seen yet by this process adds its secrets (:func:`etl.logging.configure`)."""

    def __init__(self, secrets: list[str], *, fmt: str, level: str) -> None:
        self.secrets, self.fmt, self.level = set(secrets), fmt, level
        self._seen: set[str | None] = set()
        self._lock = threading.Lock()
        self._configure()

    def _configure(self) -> None:
        from etl.logging import configure

        configure(secrets=sorted(self.secrets), fmt=self.fmt, level=self.level)

    def __call__(self, job: Job) -> None:
        if job.connection in self._seen:
            return
        from etl.connections import settings_for

        secrets = set(settings_for(job.connection).secrets())
        with self._lock:
            self._seen.add(job.connection)
            if not secrets <= self.secrets:
                self.secrets |= secrets
                self._configure()


def preload() -> None:
    """Import the engine, the connectors and the state store now, not in the first jobs: a
    worker's first jobs would otherwise each start about a second late (more when several
    workers start on one host at once)."""
    import etl.alerts
    import etl.api
    import etl.connectors.factory
    import etl.engine.run
    import etl.engine.verify
    import etl.ponte
    import etl.state  # noqa: F401 - imported for their side effect: loaded once


def start_worker(app: PonteCelery, *, concurrency: int, loglevel: str = "INFO",
                 hostname: str | None = None) -> int:
    """Run the worker until it is shut down; its exit code."""
    from celery.signals import worker_shutting_down  # type: ignore[import-untyped]

    def stopping(**_: Any) -> None:
        app.stop.set()

    worker_shutting_down.connect(stopping, weak=False)
    preload()
    for quiet in QUIET_LOGGERS:  # Celery's logging would print every request at INFO
        logging.getLogger(quiet).setLevel(logging.WARNING)
    name = hostname or f"ponte-{os.getpid()}@{socket.gethostname()}"
    worker = app.Worker(pool="threads", concurrency=concurrency, queues=[app.queue],
                        loglevel=loglevel, hostname=name, without_gossip=True,
                        without_mingle=True, optimization="fair")
    worker.start()
    return int(worker.exitcode or 0)


__all__ = ["SecretLog", "start_worker"]
