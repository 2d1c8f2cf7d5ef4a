"""The library's one entry point: ``Ponte(settings, clock=...)``.

The CLI, the daemon (:mod:`etl.scheduler`) and the tests call these methods; each builds what
it needs from the settings (mappings, state store, connectors), does one thing and returns a
result object. The time comes from one :class:`~etl.clock.Clock`: pure functions get the
instant read from it, the engine gets ``clock.now`` itself.

Commands that change something an operator should approve first (watermark changes, dropping a
quarantine entry, rebinding the state) take a ``confirm`` callback, called with what would
change before anything is written; it raises to refuse.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from loguru import logger

from etl import alerts, api, binding, ops, scheduler
from etl import watermark as wm
from etl.alert_delivery import ChannelResult
from etl.binding import BindingStatus
from etl.clock import Clock, SystemClock
from etl.engine import RunReport, run_sync
from etl.engine.verify import VerifyReport
from etl.engine.verify import verify as run_verify
from etl.errors import ConfigError, EtlError, LockHeld, SystemUnavailable
from etl.fields import FieldList, list_fields
from etl.mapping import EntityMapping, load_mappings
from etl.mapping.models import Side
from etl.ops import StatusReport, WatermarkChange, WatermarkResult
from etl.results import (
    DbUpgrade,
    MetricsPublished,
    QuarantineList,
    QuarantineRetry,
    Rebind,
    RunList,
    ScheduledRun,
    Served,
    WatermarkList,
)
from etl.serve.facade import EventsFacade
from etl.settings import Settings, schedule_var
from etl.state import AlertRow, QuarantineRow, RunRow, Store

__all__ = ["Ponte"]

Progress = Callable[[str, int], None]
ShouldStop = Callable[[], bool]


class Ponte(EventsFacade):
    """One configured ponte: ``settings`` say which systems and state; ``clock`` what time it
    is; ``crm_client``/``erp_client`` (optional) are the HTTP clients the connectors use
    (tests pass clients bound to the simulators)."""

    def __init__(self, settings: Settings, *, clock: Clock | None = None,
                 crm_client: httpx.Client | None = None,
                 erp_client: httpx.Client | None = None) -> None:
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        self.crm_client = crm_client
        self.erp_client = erp_client

    # ------------------------------------------------------------------- runs against the systems

    @contextmanager
    def _session(self, *, bind: bool, should_stop: ShouldStop | None = None) -> Iterator[
            tuple[Store, dict[Side, Any], dict[str, EntityMapping]]]:
        with api.session(self.settings, crm_client=self.crm_client, erp_client=self.erp_client,
                         bind=bind, now=self.clock.now(), should_stop=should_stop) as opened:
            yield opened

    def sync(self, entities: Sequence[str] | None = None, *, dry_run: bool = False,
             progress: Progress | None = None, should_stop: ShouldStop | None = None
             ) -> RunReport:
        """One incremental run (what cron calls); ``dry_run`` = :meth:`plan`.
        ``progress(phase, records)`` is told of every page read and chunk written;
        ``should_stop`` is asked between pages and chunks (a signal): the run then ends as
        ``stopped`` with whole chunks kept. A real run rewrites PONTE_METRICS_FILE (when set)
        afterwards, whatever its outcome."""
        began = False  # bad configuration stops before a run: no run, nothing to follow it
        try:
            if entities:  # names unknown ones, before any system is asked anything
                load_mappings(self.settings.mappings_dir, list(entities))
            try:
                with self._session(bind=not dry_run,
                                   should_stop=should_stop) as (store, conns, maps):
                    began = True
                    return run_sync(
                        store=store, connectors=conns, mappings=maps, entities=entities or None,
                        kind="plan" if dry_run else "sync",
                        options=api.options_from(self.settings, dry_run=dry_run,
                                                 progress=progress, should_stop=should_stop),
                        now=self.clock.now)
            except SystemUnavailable as exc:  # before the run began (a custom-field list)
                if not dry_run and not began:
                    began = True
                    self._failed_before_start("sync", entities, exc)
                raise
        finally:
            if began and not dry_run:
                self.after_run()

    def _failed_before_start(self, kind: str, entities: Sequence[str] | None,
                             exc: EtlError) -> None:
        """Record a run that failed before it began (a system down while ponte read the
        custom fields its mappings name), so ``ponte runs`` shows it like any failed run."""
        names = list(entities) if entities else list(load_mappings(self.settings.mappings_dir))
        now = self.clock.now()
        with self.settings.open_state() as store:
            run_id = store.start_run(kind, names, now=now)
            report = RunReport(run_id=run_id, kind=kind, status="failed", error=str(exc))
            store.finish_run(run_id, "failed", report.as_dict(), now=now)

    def plan(self, entities: Sequence[str] | None = None, *, progress: Progress | None = None,
             should_stop: ShouldStop | None = None) -> RunReport:
        """What a sync would write, field by field; writes nothing anywhere."""
        return self.sync(entities, dry_run=True, progress=progress, should_stop=should_stop)

    def backfill(self, entity: str, *, since: datetime | str | None = None,
                 until: datetime | str | None = None, sides: Sequence[str] | None = None,
                 dry_run: bool = False, progress: Progress | None = None,
                 should_stop: ShouldStop | None = None) -> RunReport:
        """The sync pipeline over ``[since, until)`` (default: from the beginning to now);
        never reads or moves the stored watermark. ``since``/``until`` may be text as
        :func:`etl.ops.parse_time` reads it. Safe to interrupt (``should_stop``) and re-run:
        whole chunks are committed, and records already synced diff as unchanged."""
        start = self.clock.now()
        chosen = tuple(ops.parse_side(s) for s in sides) if sides is not None else None
        since_at = self._time(since, start, "--since")
        until_at = self._time(until, start, "--until") or start
        if since_at is not None and since_at >= until_at:
            raise ConfigError(f"--since {since_at.isoformat()} is not before --until "
                              f"{until_at.isoformat()}")
        load_mappings(self.settings.mappings_dir, [entity])  # an unknown one: before any request
        with self._session(bind=not dry_run, should_stop=should_stop) as (store, conns, maps):
            m = ops.entity_mapping(maps, entity)
            if chosen is not None:
                missing = [s for s in chosen if s not in m.sources()]
                if missing:
                    raise ConfigError(f"{entity} is not read from {', '.join(missing)} "
                                      f"(its sources: {', '.join(m.sources())})")
            opt = api.options_from(self.settings, dry_run=dry_run,
                                   window=wm.Window(since_at, until_at), sides=chosen,
                                   progress=progress, should_stop=should_stop)
            logger.bind(entity=entity).info(
                "backfill {} over [{}, {}) from {}{}", entity,
                since_at.isoformat() if since_at else "the beginning", until_at.isoformat(),
                ", ".join(chosen or m.sources()), " (dry run)" if dry_run else "")
            report = run_sync(store=store, connectors=conns, mappings=maps, entities=[entity],
                              kind="backfill", options=opt, now=lambda: start)
        if not dry_run:
            self.after_run()
        return report

    def verify(self, entities: Sequence[str] | None = None, *, fix: bool = False,
               should_stop: ShouldStop | None = None) -> VerifyReport:
        """Read both systems in full and report every drift; ``fix`` repairs what the
        mappings allow (deletes and deactivations only within PONTE_MAX_DELETE_SHARE).
        ``should_stop`` ends it between pages and chunks (``Stopped`` is raised)."""
        if entities:  # names unknown ones, before any system is asked anything
            load_mappings(self.settings.mappings_dir, list(entities))
        began = False
        try:
            with self._session(bind=fix, should_stop=should_stop) as (store, conns, maps):
                began = True
                if entities:  # the session's mappings have their custom fields resolved
                    maps = {e: m for e, m in maps.items() if e in entities}
                return run_verify(store=store, connectors=conns, mappings=maps,
                                  entities=list(entities) if entities else None, fix=fix,
                                  max_delete_share=self.settings.max_delete_share,
                                  now=self.clock.now(), should_stop=should_stop)
        finally:
            if began:  # not after bad configuration: the alerts would only repeat its error
                alerts.evaluate_safely(self.settings, self.clock.now())

    def check_mappings(self, directory: Path | None = None, *, online: bool = False,
                       entities: Sequence[str] | None = None) -> api.MappingCheck:
        """Load and check the mappings (every native path; ``online``: custom fields too)."""
        return api.check_mappings(self.settings, directory, online=online, entities=entities,
                                  crm_client=self.crm_client, erp_client=self.erp_client)

    def fields(self, side: str, collection: str) -> FieldList:
        """What a mapping can name in ``collection`` of ``side``: its declared fields and the
        custom fields the system lists (one request to it, when it lists them)."""
        client = self.crm_client if side == "crm" else self.erp_client
        return list_fields(self.settings, side, collection, client=client)

    # ------------------------------------------------------------------- the daemon

    def scheduled_sync(self, entity: str, should_stop: ShouldStop) -> ScheduledRun:
        """One scheduled run of one entity (a ``ponte run`` job). Errors are logged and
        returned, not raised: the daemon goes on with the next schedule. Rewrites the metrics
        file."""
        try:
            with self._session(bind=True, should_stop=should_stop) as (store, conns, maps):
                self.share_limiters(conns)  # with the process's other runs and event runs
                report = run_sync(store=store, connectors=conns, mappings=maps,
                                  entities=[entity], kind="sync", now=self.clock.now,
                                  options=api.options_from(self.settings,
                                                           should_stop=should_stop))
            return ScheduledRun(entity, report)
        except LockHeld as exc:
            logger.bind(entity=entity).warning("skipped: {}", exc)
            return ScheduledRun(entity, error=f"skipped: {exc}")
        except EtlError as exc:
            logger.bind(entity=entity).error("scheduled run of {} failed: {}", entity, exc)
            return ScheduledRun(entity, error=str(exc))
        except Exception as exc:  # noqa: BLE001 - a bug: the run row is finished; go on
            import traceback

            error = (f"internal error (please report it): {type(exc).__name__}: "
                     f"{' '.join(str(exc).split())}")
            logger.bind(entity=entity).error("scheduled run of {} failed with an {}", entity,
                                             error)
            logger.debug("traceback:\n{}", "".join(traceback.format_exception(exc)).rstrip())
            return ScheduledRun(entity, error=error)
        finally:
            self.after_run()

    def serve(self, entities: Sequence[str] | None = None, *, run_now: bool = False,
              misfire_grace_s: int = scheduler.MISFIRE_GRACE_S) -> Served:
        """Run as a daemon until SIGTERM/SIGINT: each entity synced on its own schedule
        (``PONTE_SCHEDULE__<ENTITY>``). Mappings, schedules and the state's binding are checked
        before it starts (:class:`ConfigError`), not at the first scheduled run."""
        mappings = self.check_mappings(entities=entities).mappings
        names = list(entities or mappings)
        schedules = {n: self.settings.schedule_of(n) or "" for n in names}
        missing = [n for n, s in schedules.items() if not s]
        if missing:
            raise ConfigError(f"no schedule for {', '.join(missing)} (set "
                              f"{', '.join(schedule_var(n) for n in missing)})")
        self.check_binding()
        scheduler.serve(schedules, self.scheduled_sync, misfire_grace_s=misfire_grace_s,
                        run_now=run_now)
        return Served(schedules)

    def check_binding(self) -> BindingStatus:
        """Refuse early (``StateBoundElsewhere``, exit 2) when the state belongs to other
        systems: the daemon checks at start instead of failing every scheduled run."""
        with self.settings.open_state() as store:
            return binding.ensure(store, self.settings, bind=False, now=self.clock.now())

    def publish_metrics(self) -> MetricsPublished:
        """Rewrite PONTE_METRICS_FILE from the state, if set; never fails (``written`` False:
        not set, or ``error`` says why not)."""
        path = self.settings.metrics_file
        if path is None:
            return MetricsPublished(None, written=False)
        from etl.metrics import write_metrics

        try:
            names = list(load_mappings(self.settings.mappings_dir))
            with self.settings.open_state() as store:
                path = write_metrics(path, store, names, now=self.clock.now(),
                                     safety_lag=timedelta(seconds=self.settings.safety_lag_s),
                                     connection=self.settings.connection)
        except (OSError, ConfigError) as exc:
            logger.warning("metrics not written to {}: {}", path, exc)
            return MetricsPublished(path, written=False, error=str(exc))
        return MetricsPublished(path, written=True)

    def after_run(self) -> None:
        """What follows every recorded run: the metrics file, then the alerts (neither ever
        fails the run's command)."""
        self.publish_metrics()
        alerts.evaluate_safely(self.settings, self.clock.now())

    # ------------------------------------------------------------------- the state database

    @contextmanager
    def _state(self, *, writes: bool = False) -> Iterator[tuple[Store, dict[str, EntityMapping]]]:
        """The store and mappings for commands that need no connector. ``writes``: the
        command changes the state, so a state built with other systems stops it (exit 2) and
        a state not bound yet is bound to the configured systems (see :mod:`etl.binding`)."""
        mappings = load_mappings(self.settings.mappings_dir)
        with self.settings.open_state() as store:
            if writes:
                binding.ensure(store, self.settings, bind=True, now=self.clock.now())
            yield store, mappings

    def status(self) -> StatusReport:
        """Per entity and side: watermark and lag, last run, quarantine, next scheduled run."""
        with self._state() as (store, mappings):
            return ops.status(store, mappings, self.settings, now=self.clock.now())

    def watermarks(self, entity: str | None = None) -> WatermarkList:
        """The stored watermarks of every (or one) entity's source sides."""
        with self._state() as (store, mappings):
            return WatermarkList(tuple(ops.watermarks(store, mappings, entity,
                                                      now=self.clock.now())))

    def set_watermark(self, entity: str, *, side: str, to: datetime | str,
                      confirm: Callable[[list[WatermarkChange]], None] | None = None
                      ) -> WatermarkResult:
        """Move one side's watermark to ``to`` (text as :func:`etl.ops.parse_time` reads it);
        a ``to`` after now minus the safety lag is refused. Under the entity's lock, recorded
        as a ``watermark`` run."""
        return self._change_watermark(entity, side, to, confirm)

    def reset_watermark(self, entity: str, *, side: str | None = None,
                        confirm: Callable[[list[WatermarkChange]], None] | None = None
                        ) -> WatermarkResult:
        """Forget the watermark(s) of ``entity`` (one side or all): the next sync re-reads
        from the beginning."""
        return self._change_watermark(entity, side, None, confirm)

    def _change_watermark(self, entity: str, side: str | None, to: datetime | str | None,
                          confirm: Callable[[list[WatermarkChange]], None] | None
                          ) -> WatermarkResult:
        with self._state(writes=True) as (store, mappings):
            now = self.clock.now()
            value = self._time(to, now, "--to")
            lag = timedelta(seconds=self.settings.safety_lag_s)
            changes = ops.plan_watermark(store, mappings, entity, side=side, to=value, now=now,
                                         safety_lag=lag)
            if confirm is not None:
                confirm(changes)
            return ops.apply_watermark(store, changes, now=now, safety_lag=lag,
                                       lease_s=float(self.settings.lock_lease_s))

    def runs(self, limit: int = 20) -> RunList:
        """The latest runs, newest first."""
        with self._state() as (store, _maps):
            return RunList(tuple(ops.runs(store, limit)))

    def run(self, run_id: str) -> RunRow:
        """One run by id or unique prefix."""
        with self._state() as (store, _maps):
            return ops.run(store, run_id)

    def quarantine_list(self, entity: str | None = None) -> QuarantineList:
        """Entries waiting in quarantine (of every or one entity), oldest first."""
        with self._state() as (store, _maps):
            return QuarantineList(tuple(ops.quarantine(store, entity)))

    def quarantine_entry(self, qid: int) -> QuarantineRow:
        """One entry waiting in quarantine (a dropped or unknown one is a ``ConfigError``)."""
        with self._state() as (store, _maps):
            return ops.quarantine_entry(store, qid)

    def quarantine_retry(self, qid: int | None) -> QuarantineRetry:
        """Make one entry (``qid``) or all (None) due now; how many."""
        with self._state(writes=True) as (store, _maps):
            return QuarantineRetry(ops.quarantine_retry(store, qid, now=self.clock.now()))

    def quarantine_drop(self, qid: int, *,
                        confirm: Callable[[QuarantineRow], None] | None = None) -> QuarantineRow:
        """Drop an entry: its record is ignored until it changes."""
        with self._state(writes=True) as (store, _maps):
            row = ops.quarantine_entry(store, qid)
            if confirm is not None:
                confirm(row)
            return ops.quarantine_drop(store, qid)

    def alerts(self) -> list[AlertRow]:
        """Every alert condition known, in force or cleared (``ponte alerts``)."""
        with self._state() as (store, _maps):
            return store.alerts()

    def test_alerts(self) -> list[ChannelResult]:
        """One test message to every configured alert channel: what each did with it."""
        return alerts.send_test(self.settings.alerts)

    def rebind(self, *, confirm: Callable[[list[str], str], None] | None = None) -> Rebind:
        """Bind the state to the configured systems; ``confirm(changes, state_url)`` is asked
        first (not when it is already bound as configured: nothing is done then)."""
        with self.settings.open_state() as store:
            changes = binding.rebind_plan(store, self.settings)
            if not changes:
                return Rebind(None)
            if confirm is not None:
                confirm(changes, store.safe_url)
            done = binding.rebind(store, self.settings, now=self.clock.now())
        return Rebind(done.run_id, tuple(done.changes))

    def upgrade_db(self) -> DbUpgrade:
        """Apply the state database migrations."""
        with self.settings.open_state(migrate=False) as store:
            store.upgrade()
            return DbUpgrade(store.safe_url, store.revision())

    @staticmethod
    def _time(value: datetime | str | None, now: datetime, option: str) -> datetime | None:
        if isinstance(value, str):
            return ops.parse_time(value, now=now, option=option)
        return value
