"""The worker of ``ponte serve``: turns stored webhook events into targeted syncs.

Each pass reads the pending events that are due (``due_at`` = received + the debounce), adds
the pending events of the same records that are not due yet (their sync reads the record as it
is now, so they are covered too), groups them by (entity, side) and runs one targeted sync per
group with all its keys, or mirrors the deletions of its delete events. Only after that
returned are the events marked ``done``; a failure (a system down, another run holding the
entity's lock) puts them back, one attempt more, due again after a backoff, and ``failed``
with the error after :data:`MAX_ATTEMPTS`. Events stored while no worker ran (a restart, a
crash) are simply pending: the next pass takes them.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from loguru import logger

from etl.engine import RunReport
from etl.errors import EtlError, LockHeld
from etl.serve.facade import MirroredDeletes
from etl.state import Store
from etl.state.events import EventRow

MAX_ATTEMPTS = 8
BUSY_WAIT_S = 2.0  # events of an entity another run holds: tried again after this, no attempt
POLL_S = 0.1  # how often an idle worker looks for due events (one indexed query)
ALERTS_EVERY_S = 30.0  # the alerts are evaluated after each pass with syncs, and this often
BACKOFF_S = (5.0, 15.0, 60.0, 300.0, 900.0)  # after the 1st, 2nd, ... failed attempt


class Runner(Protocol):
    """What the worker needs of the façade (:class:`etl.ponte.Ponte`)."""

    def sync_keys(self, entity: str, side: str, keys: Sequence[str]) -> RunReport: ...

    def mirror_deletes(self, entity: str, side: str, keys: Sequence[str]
                       ) -> MirroredDeletes: ...

    def after_run(self) -> None: ...


@dataclass
class Pass:
    """What one pass did: groups synced, events done, put back and failed."""

    syncs: int = 0
    done: int = 0
    retried: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


def backoff(attempts: int, steps: Sequence[float] = BACKOFF_S) -> timedelta:
    """How long an event waits after its ``attempts``-th failed attempt."""
    return timedelta(seconds=steps[min(max(attempts, 1), len(steps)) - 1])


class Worker:
    """One pass at a time over the due events (:meth:`run_once`); :meth:`start` runs passes in
    a thread until :meth:`stop` (the current sync finishes first)."""

    def __init__(self, runner: Runner, store: Store, *, now: Callable[[], datetime],
                 poll_s: float = POLL_S, max_attempts: int = MAX_ATTEMPTS,
                 backoff_s: Sequence[float] = BACKOFF_S) -> None:
        self.runner, self.store, self.now = runner, store, now
        self.poll_s, self.max_attempts, self.backoff_s = poll_s, max_attempts, backoff_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- one pass -------------------------------------------------------------------------------

    def run_once(self) -> Pass:
        """Process every event due now; never raises for a failed sync."""
        out = Pass()
        due = self.store.due_events(self.now())
        if not due:
            return out
        groups: dict[tuple[str, str, bool], list[EventRow]] = defaultdict(list)
        for ev in self._with_later(due):
            assert ev.entity is not None and ev.key is not None
            groups[(ev.entity, ev.side, ev.action == "delete")].append(ev)
        for (entity, side, deletes), events in groups.items():
            if self._stop.is_set() and out.syncs:
                break  # stopping: what is left stays pending
            self._process(entity, side, deletes, events, out)
        return out

    def _with_later(self, due: list[EventRow]) -> list[EventRow]:
        """The due events and the pending ones of the same records not due yet."""
        records = {(e.entity, e.side, e.key) for e in due}
        later = [e for e in self.store.pending_of([e.key for e in due if e.key is not None])
                 if (e.entity, e.side, e.key) in records]
        by_id = {e.id: e for e in [*due, *later]}
        return [by_id[i] for i in sorted(by_id)]

    def _process(self, entity: str, side: str, deletes: bool, events: list[EventRow],
                 out: Pass) -> None:
        keys = list(dict.fromkeys(e.key for e in events if e.key is not None))
        ids = [e.id for e in events]
        out.syncs += 1
        log = logger.bind(entity=entity, side=side)
        try:
            if deletes:
                result = self.runner.mirror_deletes(entity, side, keys)
                error = f"deletes blocked: {result.blocked}" if result.blocked else None
                for key, what in result.outcomes.items():
                    log.info("delete event {} {} {}: {}", entity, side, key, what)
            else:
                report = self.runner.sync_keys(entity, side, keys)
                if report.retry_after_s is not None:  # the system asked to wait: not a failure
                    self.store.postpone_events(ids, due_at=self.now() + timedelta(
                        seconds=report.retry_after_s))
                    out.retried += len(ids)
                    log.info("{} events of {} {} wait {:.0f} s: {}", len(ids), entity, side,
                             report.retry_after_s, report.error)
                    return
                error = report.error if report.status in ("failed", "stopped") else None
        except LockHeld as exc:
            self.store.postpone_events(ids, due_at=self.now() + timedelta(seconds=BUSY_WAIT_S))
            out.retried += len(ids)
            log.info("{} events of {} {} wait: {}", len(ids), entity, side, exc)
            return
        except EtlError as exc:
            error = str(exc)
        except Exception as exc:  # noqa: BLE001 - a bug must not stop the worker
            error = f"internal error: {type(exc).__name__}: {' '.join(str(exc).split())}"
        if error is None:
            self.store.finish_events(ids, now=self.now())
            out.done += len(ids)
            return
        attempts = max(e.attempts for e in events) + 1
        failed = self.store.retry_events(ids, now=self.now(),
                                         due_at=self.now() + backoff(attempts, self.backoff_s),
                                         error=error, max_attempts=self.max_attempts)
        out.failed += failed
        out.retried += len(ids) - failed
        out.errors.append(error)
        log.warning("{} events of {} {} put back (attempt {}): {}", len(ids), entity, side,
                    attempts, error)

    # --- the thread ------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="ponte-events", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        last_alerts = 0.0
        while not self._stop.is_set():
            synced = more = False
            try:
                synced = self.run_once().syncs > 0
                more = synced and self._due_now()
            except Exception as exc:  # noqa: BLE001 - the state was unreachable: try again
                logger.error("event worker pass failed: {}: {}", type(exc).__name__, exc)
            # the metrics file and the alerts (never raise) wait while events are due: under a
            # steady stream they would delay every pass; they run at least every ALERTS_EVERY_S
            if (synced and not more) or time.monotonic() - last_alerts >= ALERTS_EVERY_S:
                self.runner.after_run()
                last_alerts = time.monotonic()
            if not more:  # events that fell due during the pass are taken at once
                self._stop.wait(self.poll_s)

    def _due_now(self) -> bool:
        """Whether a pending event is due already (it arrived during the last pass)."""
        due = self.store.next_event_due()
        return due is not None and due <= self.now()

    def stop(self, timeout: float | None = None) -> None:
        """Stop after the current sync (pending events stay pending)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)


__all__ = ["BACKOFF_S", "MAX_ATTEMPTS", "Pass", "Runner", "Worker", "backoff"]
