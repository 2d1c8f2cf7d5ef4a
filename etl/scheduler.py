"""``ponte run``: APScheduler wiring only. Each entity is a job on its own schedule; the work
itself is the caller's ``run_entity`` function (:meth:`etl.ponte.Ponte.scheduled_sync`, given by
:meth:`etl.ponte.Ponte.serve`).

Schedules are strings (``PONTE_SCHEDULE__<ENTITY>``, :meth:`etl.settings.Settings.schedule_of`):

* a 5-field crontab expression, ``*/5 * * * *`` (server local time, as cron reads it), or
* ``every:SECONDS``, e.g. ``every:300`` — a fixed interval counted from the daemon's start.

Jobs run one at a time (one worker thread: entities share the vendors' rate limits and the
state database), ``max_instances=1`` and ``coalesce=True`` (a backlog of missed runs becomes one
run), and a run that starts late by more than the misfire grace is skipped until the next time.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from loguru import logger

from etl.errors import ConfigError
from etl.interrupt import stop_on_signals

if TYPE_CHECKING:  # APScheduler is imported where a schedule is read (a sync needs none)
    from apscheduler.triggers.base import BaseTrigger

MISFIRE_GRACE_S = 600
EVERY = "every:"


def trigger_for(spec: str, *, setting: str = "schedule", start: datetime | None = None,
                timezone: Any = None) -> BaseTrigger:
    """A trigger for a schedule string; a bad one is a :class:`ConfigError` naming the setting.

    ``start`` anchors ``every:N`` intervals (the daemon's start, or the last run)."""
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    text = spec.strip()
    var = f"PONTE_{setting.upper()}"
    if text.startswith(EVERY):
        try:
            seconds = int(text[len(EVERY):])
        except ValueError:
            seconds = 0
        if seconds < 1:
            raise ConfigError(f"{var}: {spec!r} is not a valid interval; use every:SECONDS "
                              "with SECONDS >= 1, e.g. every:300")
        kw: dict[str, Any] = {"seconds": seconds, "start_date": start}
        if timezone is not None:
            kw["timezone"] = timezone
        return IntervalTrigger(**kw)
    if len(text.split()) != 5:
        raise ConfigError(f"{var}: {spec!r} is not a schedule; use a 5-field crontab "
                          "expression (e.g. '*/5 * * * *') or every:SECONDS")
    try:
        if timezone is not None:
            return CronTrigger.from_crontab(text, timezone=timezone)
        return CronTrigger.from_crontab(text)
    except ValueError as exc:
        raise ConfigError(f"{var}: {spec!r} is not a valid crontab expression: {exc}") from None


def next_run(spec: str, now: datetime, *, setting: str = "schedule",
             last_run: datetime | None = None, timezone: Any = None) -> datetime | None:
    """When ``spec`` fires next after ``now`` (aware). Crontab expressions are read in
    ``timezone`` (default: the server's local zone, as ``ponte run`` and cron read them);
    intervals count from ``last_run`` when known (as a daemon started then would), else from
    ``now``."""
    if spec.strip().startswith(EVERY):
        trig = trigger_for(spec, setting=setting, start=last_run or now, timezone=now.tzinfo)
        step = cast(timedelta, cast(Any, trig).interval)
        fire: datetime = last_run or now
        while fire <= now:
            fire += step
        return fire
    cron = trigger_for(spec, setting=setting, timezone=timezone)
    found: datetime | None = cron.get_next_fire_time(None, now)
    return found


def serve(
    schedules: dict[str, str],
    run_entity: Callable[[str, Callable[[], bool]], object],
    *,
    misfire_grace_s: int = MISFIRE_GRACE_S,
    run_now: bool = False,
    signals: Sequence[int] = (signal.SIGTERM, signal.SIGINT),
) -> None:
    """Block, running ``run_entity(entity, should_stop)`` on each entity's schedule, until
    SIGTERM/SIGINT (:mod:`etl.interrupt`, as every long command). The run in progress then
    stops at its next chunk boundary (whole chunks committed, watermark not moved; the run is
    recorded as ``stopped``) and this returns; a second signal does not cut that short."""
    from apscheduler.executors.pool import ThreadPoolExecutor
    from apscheduler.schedulers.blocking import BlockingScheduler

    triggers = {name: trigger_for(spec, setting=f"schedule__{name}")
                for name, spec in schedules.items()}  # config errors before anything starts
    executor = ThreadPoolExecutor(max_workers=1)
    sched = BlockingScheduler(executors={"default": executor},
                              job_defaults={"max_instances": 1, "coalesce": True,
                                            "misfire_grace_time": misfire_grace_s})
    with stop_on_signals(logger.info, abort_on_second=False, signals=signals,
                         on_first=lambda: sched.shutdown(wait=False)) as stop:

        def job(name: str) -> None:
            if stop.is_set():
                return
            run_entity(name, stop.is_set)

        for name, trig in triggers.items():
            extra: dict[str, Any] = {}
            if run_now:
                extra["next_run_time"] = datetime.now().astimezone()
            sched.add_job(job, trig, args=[name], id=name, name=f"sync {name}", **extra)
        try:
            for name, spec in schedules.items():
                logger.info("scheduled {}: {}", name, spec)
            sched.start()
        finally:
            executor.shutdown(wait=True)  # let the run in progress reach its stop point
    logger.info("scheduler stopped")


def poll(schedules: dict[str, str], run_entity: Callable[[str, Callable[[], bool]], object],
         should_stop: Callable[[], bool], *, misfire_grace_s: int = MISFIRE_GRACE_S) -> None:
    """Like :func:`serve`, in a background thread of another long-running process (``ponte
    serve --poll``): the schedules run, one run at a time, until ``should_stop()``; the run in
    progress then stops at its next chunk boundary."""
    from apscheduler.executors.pool import ThreadPoolExecutor
    from apscheduler.schedulers.background import BackgroundScheduler

    triggers = {name: trigger_for(spec, setting=f"schedule__{name}")
                for name, spec in schedules.items()}
    sched = BackgroundScheduler(executors={"default": ThreadPoolExecutor(max_workers=1)},
                                job_defaults={"max_instances": 1, "coalesce": True,
                                              "misfire_grace_time": misfire_grace_s})
    for name, trig in triggers.items():
        sched.add_job(run_entity, trig, args=[name, should_stop], id=name, name=f"sync {name}")
        logger.info("scheduled {}: {}", name, schedules[name])
    sched.start()
    try:
        while not should_stop():
            time.sleep(0.2)
    finally:
        sched.shutdown(wait=True)


def describe(spec: str) -> str:
    """A short human form of a schedule string."""
    text = spec.strip()
    if text.startswith(EVERY):
        return f"every {timedelta(seconds=int(text[len(EVERY):]))}"
    return f"cron {text}"
