"""Run orchestration: lock each entity, sync it, record the run. Library entry point for
``ponte sync``, ``plan`` and ``backfill``."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime

from loguru import logger

from etl.connectors.base import Connector, stops_waits
from etl.engine.entity import EntitySync
from etl.engine.model import Options, Planned
from etl.engine.references import RunReferences
from etl.engine.report import EntityReport, RunReport
from etl.errors import EtlError, LockHeld, Stopped, UnsentField, WaitAsked
from etl.logging import redact
from etl.mapping import EntityMapping, MapContext
from etl.mapping.computed import feeds
from etl.mapping.models import Side
from etl.state import Store


def lock_name(entity: str) -> str:
    return f"entity:{entity}"


def build_context(store: Store, connectors: dict[Side, Connector] | None = None, *,
                  dry_run: bool = False, refs: RunReferences | None = None,
                  now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> MapContext:
    """A mapping context whose links come from the store on demand (cached per run), and whose
    reference lists (users, sellers, tags) from the connectors, each read once (``refs``: the
    run's lists, shared by its entities)."""

    def lookup(entity: str, side: Side, key: str) -> str | None:
        pairs = store.links(entity, **{f"{side}_keys": [key]})
        for crm_key, erp_key in pairs:
            if (crm_key if side == "crm" else erp_key) == key:
                return erp_key if side == "crm" else crm_key
        return None

    if refs is None and connectors is not None:
        refs = RunReferences(connectors, dry_run=dry_run, store=store, now=now)
    return MapContext(lookup=lookup, refs=refs)


def run_sync(
    *,
    store: Store,
    connectors: dict[Side, Connector],
    mappings: dict[str, EntityMapping],
    entities: Sequence[str] | None = None,
    kind: str = "sync",
    options: Options | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> RunReport:
    """Sync ``entities`` (all mapped ones by default) once. Never raises for one bad record;
    raises :class:`LockHeld` when another run holds an entity. A system that is down ends the
    run with status ``failed`` and nothing checkpointed past the failure; a stop request
    (``options.should_stop``) ends it as ``stopped`` after the current chunk.

    The run row is always finished: an :class:`Aborted` run (second signal) is recorded as
    ``aborted``, any other exception (a bug, a malformed vendor record nobody foresaw) as
    ``failed`` with its text (secrets masked); both are re-raised after the locks are
    released. A read waiting as its system asked gives way to the stop request too."""
    opt = options or Options()
    with stops_waits(connectors.values(), opt.should_stop):
        return _run_sync(store=store, connectors=connectors, mappings=mappings,
                         names=list(entities or mappings), kind=kind, opt=opt, now=now)


def _run_sync(*, store: Store, connectors: dict[Side, Connector],
              mappings: dict[str, EntityMapping], names: list[str], kind: str, opt: Options,
              now: Callable[[], datetime]) -> RunReport:
    started = time.monotonic()
    run_start = now()
    run_id = uuid.uuid4().hex
    report = RunReport(run_id=run_id, kind=kind, dry_run=opt.dry_run)
    record = not opt.dry_run
    if record:
        store.fail_orphaned_runs(now=run_start)  # runs killed outright: never "running" forever
        run_id = store.start_run(kind, names, now=run_start)
        report.run_id = run_id
    log = logger.bind(run_id=run_id[:8])
    held: list[str] = []
    stopped: list[str] = []  # entities stopped before writing (a mapped path not sent)
    heartbeat: Heartbeat | None = None
    planned = Planned()  # a dry run's plan so far, for the entities that depend on earlier ones
    refs = opt.references or RunReferences(connectors, dry_run=opt.dry_run, store=store,
                                           now=now)  # once a run
    try:
        if record:
            for name in names:
                if not store.acquire_lock(lock_name(name), run_id, lease_s=opt.lease_s,
                                          now=run_start):
                    holder = store.lock_holder(lock_name(name))
                    until = holder[1].isoformat() if holder else "?"
                    raise LockHeld(
                        f"another ponte run holds the lock of {name!r} (run "
                        f"{holder[0][:8] if holder else '?'}, lease until {until}); "
                        "nothing was written — try again when it finishes"
                    )
                held.append(name)
            heartbeat = Heartbeat(store, held, run_id, lease_s=opt.lease_s, now=now)
            heartbeat.start()
        for name in names:
            if opt.stop_requested():
                raise Stopped(f"stopped before {name}")
            mapping = mappings[name]
            entity_report = EntityReport()
            report.entities[name] = entity_report
            sync = EntitySync(
                mapping, connectors, store, build_context(store, refs=refs),
                run_id=run_id, now=run_start, options=opt, report=entity_report,
                lock_name=lock_name(name), planned=planned, feeds=feeds(mappings, name),
            )
            try:
                sync.run()
                if record:
                    _recompute(names[:names.index(name)], name, mappings, connectors, store,
                               report, run_id=run_id, now=run_start, options=opt, refs=refs)
            except UnsentField as exc:  # this entity stops; the others still run
                stopped.append(str(exc))
                log.bind(entity=name).error("{}", exc)
                continue
            log.bind(entity=name).info(
                "{}: crm read {} created {} updated {}; erp read {} created {} updated {}; "
                "matched {} conflicts {} quarantined {}",
                name, entity_report.crm.read, entity_report.crm.created,
                entity_report.crm.updated, entity_report.erp.read, entity_report.erp.created,
                entity_report.erp.updated, entity_report.matched, entity_report.conflicts,
                entity_report.crm.quarantined + entity_report.erp.quarantined,
            )
        report.status = "partial" if report.quarantined else "ok"
        if stopped:
            report.status = "failed"
            report.error = "\n".join(stopped)
    except Stopped as exc:
        report.status = "stopped"
        report.error = str(exc)
        report.retry_after_s = exc.seconds if isinstance(exc, WaitAsked) else None
        log.warning("run stopped: {}", exc)
    except LockHeld:
        report.status = "failed"
        report.error = "lock held"
        raise
    except EtlError as exc:  # SystemUnavailable, LockLost, ...: the run failed, ponte goes on
        report.status = "failed"
        report.error = str(exc)
        log.error("run failed: {}", exc)
    except KeyboardInterrupt as exc:  # Aborted (a second signal), or an unhandled Ctrl-C
        report.status = "aborted"
        report.error = str(exc) or "interrupted"
        log.warning("run aborted: {}", report.error)
        raise
    except BaseException as exc:  # not ponte's own (a bug, a malformed vendor record)
        report.status = "failed"
        report.error = redact(f"internal error: {type(exc).__name__}: {exc}")
        log.error("run failed: {}", report.error)
        raise
    finally:
        if heartbeat is not None:
            heartbeat.stop()
        for name in held:
            try:
                store.release_lock(lock_name(name), run_id)
            except Exception as exc:  # noqa: BLE001 - the lease expires; finish the run anyway
                log.error("could not release the lock of {}: {}", name, exc)
        if record:
            _finish(store, report, connectors, started)
        else:
            _calls(report, connectors, started)
    log.info("run {} {}: {} writes, {} quarantined, {:.2f}s", kind, report.status, report.writes,
             report.quarantined, report.duration_s)
    return report


def _recompute(done: Sequence[str], name: str, mappings: dict[str, EntityMapping],
               connectors: dict[Side, Connector], store: Store, report: RunReport, *,
               run_id: str, now: datetime, options: Options, refs: RunReferences) -> None:
    """After ``name`` ran: the entities of this run that ran before it and compute fields from
    it (customers from orders) work out the records its facts marked, so that an invoiced
    order reaches its customer in the same run (only the marked records are read)."""
    for target in dict.fromkeys(t for t, _n, _s in feeds(mappings, name)):
        if target not in done:
            continue  # it runs later in this run, or not at all: its next run computes them
        EntitySync(mappings[target], connectors, store, build_context(store, refs=refs),
                   run_id=run_id,
                   now=now, options=replace(options, computed_only=True),
                   report=report.entities[target], lock_name=lock_name(target)).run()


class Heartbeat(threading.Thread):
    """Renews the run's entity locks every third of the lease while the run goes on, so a run
    that outlives its lease (a slow system, a big first sync) never lets a second writer in."""

    def __init__(self, store: Store, names: list[str], run_id: str, *, lease_s: float,
                 now: Callable[[], datetime]) -> None:
        super().__init__(name="ponte-lock-heartbeat", daemon=True)
        self.store, self.names, self.run_id = store, list(names), run_id
        self.lease_s, self.now = lease_s, now
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(max(1.0, self.lease_s / 3)):
            for name in self.names:
                try:
                    self.store.renew_lock(lock_name(name), self.run_id, lease_s=self.lease_s,
                                          now=self.now())
                except Exception as exc:  # noqa: BLE001 - the run's own renewal reports it
                    logger.warning("could not renew the lock of {}: {}", name, exc)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=10)


def _calls(report: RunReport, connectors: dict[Side, Connector], started: float) -> None:
    report.api_calls = {side: c.calls.as_dict() for side, c in connectors.items()}
    report.retries = {side: _retry_stats(c) for side, c in connectors.items()}
    report.duration_s = time.monotonic() - started


def _retry_stats(connector: Connector) -> dict[str, int]:
    """The HTTP layer's retry counts (``Connector.stats``)."""
    return connector.stats.as_dict()


def _finish(store: Store, report: RunReport, connectors: dict[Side, Connector],
            started: float) -> None:
    _calls(report, connectors, started)
    store.finish_run(report.run_id, report.status, report.as_dict(), now=datetime.now(UTC))
