"""``ponte schedule``: every connection's schedules, as jobs on the queue, one scheduler at a
time.

Each (connection, entity) is an APScheduler job on the connection's own schedule
(``PONTE_SCHEDULE__<ENTITY>`` in its file, or the defaults) that only *enqueues* a sync
(:mod:`etl.distributed.enqueue`); the workers run it. Only the holder of the lease
``scheduler:<queue>`` (:mod:`etl.distributed.lease`, a lock row in the default part of the
state database) enqueues; another ``ponte schedule`` waits as standby and takes over when the
holder dies (at once on the same host, within the lease on another). A scheduled sync still
queued when the next one of its entity is due is dropped (``expires``), so a backlog never
grows while the workers are short-handed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from loguru import logger

from etl.distributed.app import PonteCelery
from etl.distributed.enqueue import send
from etl.distributed.jobs import Job
from etl.distributed.lease import Lease
from etl.errors import ConfigError
from etl.scheduler import EVERY, next_run, trigger_for
from etl.settings import Settings, schedule_var

#: the scheduler's lease: a standby on another host takes over at most this long after the
#: holder died (renewed every third of it)
SCHEDULER_LEASE_S = 30.0


@dataclass(frozen=True)
class Entry:
    """One schedule: a sync of ``entity`` of ``connection`` on ``spec``."""

    connection: str | None
    entity: str
    spec: str

    @property
    def job_id(self) -> str:
        return f"{self.connection or '(default)'}/{self.entity}"


def entries(connections: Sequence[str | None]) -> list[Entry]:
    """Every connection's schedules; a bad connection file or schedule is a
    :class:`ConfigError` naming it, before anything is enqueued."""
    from etl.connections import settings_for
    from etl.mapping import load_mappings

    out = []
    for name in connections:
        settings = settings_for(name)
        for entity in load_mappings(settings.mappings_dir):
            spec = settings.schedule_of(entity)
            if not spec:
                raise ConfigError(f"{name or '(default)'}: no schedule for {entity} (set "
                                  f"{schedule_var(entity)})")
            trigger_for(spec, setting=schedule_var(entity).removeprefix("PONTE_"))
            out.append(Entry(name, entity, spec))
    return out


def period_s(spec: str, now: datetime) -> float:
    """Seconds between two runs of ``spec`` after ``now`` (how long a queued run may wait)."""
    if spec.strip().startswith(EVERY):
        return max(1.0, float(spec.strip()[len(EVERY):]))
    first = next_run(spec, now)  # a crontab's next fire time may be ``now`` itself
    second = next_run(spec, first + timedelta(seconds=1)) if first is not None else None
    if first is None or second is None:
        return 300.0
    return max(1.0, (second - first).total_seconds())


def run_scheduler(app: PonteCelery, deployment: Settings,
                  connections: Callable[[], Sequence[str | None]], *,
                  should_stop: Callable[[], bool], lease_s: float = SCHEDULER_LEASE_S,
                  run_now: bool = False) -> None:
    """Until ``should_stop()``: stand by for the lease, and while holding it enqueue every
    connection's syncs on their schedules. ``connections()`` is read at each takeover (a
    connection added meanwhile is scheduled by the next holder or restart). ``run_now``: each
    entity is also enqueued once when this process takes the lease."""
    with deployment.open_state() as store:
        lease = Lease(store, f"scheduler:{app.queue}", lease_s=lease_s, now=_utcnow)
        waiting = False
        try:
            while not should_stop():
                if not lease.acquire():
                    if not waiting:
                        held = lease.holder()
                        logger.info("standby: another ponte schedule holds the lease{}",
                                    f" (until {held[1].isoformat()})" if held else "")
                        waiting = True
                    _sleep(lease_s / 3, should_stop)
                    continue
                waiting = False
                _lead(app, entries(connections()), lease, should_stop, run_now=run_now)
        finally:
            lease.release()
    logger.info("scheduler stopped")


def _lead(app: PonteCelery, plan: list[Entry], lease: Lease,
          should_stop: Callable[[], bool], *, run_now: bool) -> None:
    """Hold the lease and enqueue on the schedules until stopped or the lease is lost."""
    sched = BackgroundScheduler(executors={"default": ThreadPoolExecutor(max_workers=1)},
                                job_defaults={"max_instances": 1, "coalesce": True,
                                              "misfire_grace_time": 60})

    def enqueue(entry: Entry) -> None:
        try:
            send(app, [[Job(entry.connection, "sync", entry.entity, origin="schedule")]],
                 expires_s=period_s(entry.spec, datetime.now().astimezone()))
            logger.debug("enqueued {} sync", entry.job_id)
        except Exception as exc:  # noqa: BLE001 - a broker down: said, tried at the next time
            logger.error("could not enqueue {} sync: {}", entry.job_id, exc)

    for entry in plan:
        extra = {"next_run_time": datetime.now().astimezone()} if run_now else {}
        sched.add_job(enqueue, trigger_for(entry.spec), args=[entry], id=entry.job_id,
                      name=f"enqueue {entry.job_id}", **extra)
    logger.info("leading: {} schedules of {} connection(s) on queue {}", len(plan),
                len({e.connection for e in plan}), app.queue)
    sched.start()
    try:
        while not should_stop():
            _sleep(lease.lease_s / 3, should_stop)
            if should_stop():
                break
            if not lease.renew():
                logger.warning("lease lost (another ponte schedule took it over): standing by")
                return
    finally:
        sched.shutdown(wait=True)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _sleep(seconds: float, should_stop: Callable[[], bool]) -> None:
    deadline = time.monotonic() + seconds
    while not should_stop() and time.monotonic() < deadline:
        time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))


__all__ = ["SCHEDULER_LEASE_S", "Entry", "entries", "period_s", "run_scheduler"]

