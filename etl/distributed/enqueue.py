"""Jobs onto the queue: ``ponte enqueue`` (by hand: backfills, a verify of every company, a
sync now) and the scheduler's runs.

Several entities of one connection go as one Celery chain in dependency order (customers and
products before orders), so an order never waits for a customer another worker has not
created yet; different connections run in parallel on as many worker slots as there are.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from celery import chain  # type: ignore[import-untyped]

from etl.distributed.app import TASK, PonteCelery
from etl.distributed.jobs import Job


@dataclass(frozen=True)
class Enqueued:
    """What was put on the queue: the jobs, one tuple per chain (a connection)."""

    queue: str
    chains: tuple[tuple[Job, ...], ...]

    @property
    def jobs(self) -> int:
        return sum(len(c) for c in self.chains)

    def as_dict(self) -> dict[str, object]:
        return {"queue": self.queue, "jobs": self.jobs,
                "chains": [[j.as_dict() for j in c] for c in self.chains]}


def plan_jobs(connections: Sequence[str | None], entities: Sequence[str] | None, *,
              kind: str = "sync", since: str | None = None, until: str | None = None,
              side: str | None = None, fix: bool = False, origin: str = "hand"
              ) -> list[list[Job]]:
    """One list of jobs per connection, its entities (default: every mapped one) in dependency
    order. Each connection's settings and mappings are read first: a bad one stops everything
    (:class:`~etl.errors.ConfigError`) before any job is sent."""
    from etl.connections import settings_for
    from etl.mapping import load_mappings

    out = []
    for name in connections:
        settings = settings_for(name)
        names = list(load_mappings(settings.mappings_dir, list(entities) if entities else None))
        out.append([Job(name, kind, e, since=since, until=until, side=side, fix=fix,
                        origin=origin) for e in names])
    return out


def send(app: PonteCelery, chains: Sequence[Sequence[Job]], *,
         expires_s: float | None = None) -> Enqueued:
    """Publish each list of jobs as one chain on the app's queue (``expires_s``: a job still
    queued that long after it was sent is dropped — a scheduled run the next one replaces)."""
    options: dict[str, object] = {"queue": app.queue}
    if expires_s is not None:
        options["expires"] = expires_s
    sent = []
    for jobs in chains:
        if not jobs:
            continue
        sigs = [app.signature(TASK, kwargs={"job": j.as_dict()}, immutable=True, **options)
                for j in jobs]
        (sigs[0] if len(sigs) == 1 else chain(*sigs)).apply_async()
        sent.append(tuple(jobs))
    return Enqueued(app.queue, tuple(sent))


__all__ = ["Enqueued", "plan_jobs", "send"]
