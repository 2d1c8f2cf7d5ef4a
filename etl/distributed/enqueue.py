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
from etl.errors import ConfigError, SystemUnavailable


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
    sent: list[tuple[Job, ...]] = []
    for jobs in chains:
        if not jobs:
            continue
        sigs = [app.signature(TASK, kwargs={"job": j.as_dict()}, immutable=True, **options)
                for j in jobs]
        try:
            (sigs[0] if len(sigs) == 1 else chain(*sigs)).apply_async()
        except Exception as exc:  # noqa: BLE001 - sorted by broker_error (a bug stays itself)
            raise broker_error(app, exc, sent) from None
        sent.append(tuple(jobs))
    return Enqueued(app.queue, tuple(sent))


def broker_error(app: PonteCelery, exc: Exception, sent: Sequence[Sequence[Job]]) -> Exception:
    """What the operator is told when the broker cannot take the jobs: a refused login is bad
    configuration, a broker down or unreachable is a system unavailable; both name
    ``PONTE_BROKER_URL`` (its password hidden) and what was sent before. Anything else is
    ``exc`` itself (a bug, reported as one)."""
    from amqp.exceptions import AccessRefused, AMQPError  # type: ignore[import-untyped]
    from kombu.exceptions import OperationalError

    from etl.settings import shown

    url = shown(app.conf.broker_url, secret=False, quote=False)
    reason = " ".join(str(exc).split())
    done = (f"; {len(sent)} chain(s) were sent before it, the others were not"
            if sent else "; nothing was sent")
    if isinstance(exc, AccessRefused) or "ACCESS_REFUSED" in reason:
        return ConfigError(f"PONTE_BROKER_URL={url}: the broker refused the login ({reason}); "
                           f"check the user, password and vhost{done}")
    if isinstance(exc, OperationalError | AMQPError | OSError):
        return SystemUnavailable("broker", f"PONTE_BROKER_URL={url}: cannot send the jobs "
                                 f"({reason}); is the broker running?{done}")
    return exc


__all__ = ["Enqueued", "broker_error", "plan_jobs", "send"]
