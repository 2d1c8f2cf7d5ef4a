"""One run of one entity, as a sequence of small parts, chunk by chunk:

    extract (window, pages, normalize, diff)  ->  pairing (links, natural-key matches)
        ->  plan (resolution, writes, field changes)  ->  load (intents, writes, checkpoint)

Each source side's window is read in chunks of ``Options.read_chunk`` records; a chunk of each
side goes through the pipeline together, then the next, so memory follows the chunk and not
the window (two batches at most: the next one is read and diffed while the last writes of
the one before are answered; its copies of records those writes land on are dropped). Where a side lists its window in updated-at order (``Capabilities.
ordered_by_updated_at``), its watermark moves after every chunk; otherwise only once the
whole window was processed. The engine never knows which vendor a side is.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from etl import watermark as wm
from etl.connectors.base import Connector, Record
from etl.engine import computed, heap, scope, switching
from etl.engine.extract import Changes, Chunk, Extract
from etl.engine.load import Load, Sending
from etl.engine.model import (
    CHUNK,
    READ_CHUNK,
    Job,
    Options,
    Planned,
    Seen,
    Unit,
    ordered_by_updated_at,
)
from etl.engine.pairing import (
    fetch_links,
    fetch_matches,
    find_wanted,
    link_units,
    lonely_wanted,
    match,
    match_found,
)
from etl.engine.plan import Planner, Write, fetch_dependencies
from etl.engine.report import EntityReport
from etl.errors import LockLost, Stopped, WatermarkAhead
from etl.mapping import EntityMapping, MapContext
from etl.mapping.computed import ComputedSource
from etl.mapping.models import SIDES, Side
from etl.state import Checkpoint, Store

__all__ = [
    "CHUNK",
    "READ_CHUNK",
    "EntitySync",
    "LockLost",
    "Options",
    "Planned",
    "Seen",
    "Stopped",
    "Unit",
    "chunk_starts",
]


IN_FLIGHT = 3  # write chunks sent and not yet checkpointed, at most
#: the first write chunk of a batch: small, so that the target's writers start once a few
#: natural keys are searched rather than a whole chunk's; each next chunk is twice the one
#: before, up to CHUNK (:func:`chunk_starts`)
FIRST_CHUNK = 10


def chunk_starts(count: int) -> list[int]:
    """Where the write chunks of ``count`` units start: :data:`FIRST_CHUNK` units, then twice
    as many each time up to :data:`CHUNK`. A chunk's writes wait for its natural-key
    searches, made one after another on the searcher thread while the chunk before is
    written: a chunk twice the last one is searched before the last one's writes are
    answered (a search, ~10 keys, takes about as long as a write), where a whole
    :data:`CHUNK` after 10 units left the writers idle ~0.2 s at every batch's start."""
    starts, at, size = [], 0, FIRST_CHUNK
    while at < count:
        starts.append(at)
        at, size = at + size, min(size * 2, CHUNK)
    return starts


@dataclass
class _Read:
    """A batch read and diffed, with how many writes had landed on each side by then."""

    batch: dict[Side, Chunk]
    changes: dict[Side, Changes]
    landed: dict[Side, int]


@dataclass
class _InFlight:
    """A write chunk whose writes are on their way: checkpointed once they are all answered."""

    units: Sequence[Unit]
    cp: Checkpoint
    writes: dict[Side, list[Write]]
    sending: dict[Side, Sending | None] = field(
        default_factory=lambda: {"crm": None, "erp": None})

    def done(self) -> bool:
        return all(s is None or s.done() for s in self.sending.values())

    def cancel(self) -> None:
        for s in self.sending.values():
            if s is not None:
                s.cancel()

    def settle(self) -> None:
        """Wait until the writes already on their way have ended, whatever their outcome."""
        for s in self.sending.values():
            if s is not None:
                s.settle()


class EntitySync:
    def __init__(
        self,
        mapping: EntityMapping,
        connectors: dict[Side, Connector],
        store: Store,
        ctx: MapContext,
        *,
        run_id: str,
        now: datetime,
        options: Options,
        report: EntityReport,
        lock_name: str,
        planned: Planned | None = None,
        feeds: Sequence[tuple[str, str, ComputedSource]] = (),
    ) -> None:
        planned = planned if options.dry_run else None
        self.job = Job(mapping, connectors, store, ctx, run_id, now, options, report, planned,
                       feeds=list(feeds))
        self.lock_name = lock_name
        self.extract = Extract(self.job)
        self.load = Load(self.job)
        self.planner = Planner(mapping, ctx, {s: c.kind for s, c in connectors.items()},
                               planned=planned)
        self.windows: dict[Side, wm.Window] = {}
        self._claimed: set[tuple[Side, str]] = set()  # partners found by search, in flight
        self._processed = 0  # records of the batches before this one, all processed
        self._started = time.monotonic()
        if planned is not None:
            for entity, crm_key, erp_key in planned.links:
                ctx.add_link(entity, crm_key, erp_key)

    @property
    def entity(self) -> str:
        return self.job.entity

    # --- the parts, in order -------------------------------------------------------------------

    def pair(self, changes: Mapping[Side, Sequence[Seen]]) -> list[Unit]:
        """Units of these changes: by link, then by natural key (fetches first, then the pure
        pairing)."""
        units = link_units(changes, fetch_links(self.job, changes))
        self.job.report.matched += match(self.job.m, units,
                                         fetch_matches(self.job, units, search=False))
        return units

    def process(self, units: list[Unit], ahead: Callable[[], None] | None = None) -> None:
        """Plan and load the units in write chunks (:func:`chunk_starts`: :data:`FIRST_CHUNK`
        units, doubling up to :data:`CHUNK`), each checkpointed.

        No barrier between chunks: a chunk's writes are sent (intents first) and the next
        chunk is planned and sent while they are in flight, up to :data:`IN_FLIGHT` chunks, so
        the target's writers never wait for planning or checkpoints. Chunks are checkpointed in
        order, each once the target has answered all of its writes. ``ahead`` is called once
        the last chunk is sent, before waiting for it: the next batch is read meanwhile (an
        error there is raised after the writes in flight are checkpointed)."""
        window: deque[_InFlight] = deque()
        self._claimed = set()
        starts = chunk_starts(len(units))
        chunks = [units[a:b] for a, b in itertools.pairwise([*starts, len(units)])]
        # the natural-key searches of the chunks, in order on their own thread, ahead of the
        # writes; only the requests go there, what they found is applied here
        searcher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ponte-search")
        wanted = lonely_wanted(self.job, units)
        if any(getattr(self.job.conn[side], "refuses_repeated_reads", False) for side in wanted):
            # a system that refuses an identical read repeated soon after (Omie) is searched
            # once for the whole batch, as before anything is written
            whole = searcher.submit(find_wanted, self.job, wanted)
            searches = [whole] * len(chunks)
        else:
            searches = [searcher.submit(find_wanted, self.job, lonely_wanted(self.job, chunk))
                        for chunk in chunks]
        try:
            for n, start in enumerate(starts):
                found = None
                if not self.job.opt.stop_requested():
                    try:
                        found = searches[n].result()
                    except Stopped:  # its read was waiting as the system asked: a stop too
                        pass
                if found is None:
                    while window:
                        self._finish_first(window)
                    raise Stopped(f"stopped after {self._processed + start} {self.entity} "
                                  "records of this run (whole chunks committed; watermark not "
                                  "moved past them)")
                window.append(self._start_chunk(chunks[n], found))
                while window and (len(window) > IN_FLIGHT or window[0].done()):
                    self._finish_first(window)
            failed: BaseException | None = None
            if ahead is not None:
                try:
                    ahead()
                except Exception as exc:  # noqa: BLE001 - raised below, once the writes landed
                    failed = exc
            while window:
                self._finish_first(window)
            self._processed += len(units)
            if failed is not None:
                raise failed
        except BaseException as exc:
            # writes not sent yet are never sent (their intents stay); those on their way end
            # before the run goes on (or ends) while a stop request still stands: a write that
            # never reached its system gives way to it, one that may have is waited out
            for flight in window:
                flight.cancel()
            if not isinstance(exc, KeyboardInterrupt):  # a second signal: at once
                for flight in window:
                    flight.settle()
            raise
        finally:
            searcher.shutdown(wait=True, cancel_futures=True)

    def _finish_first(self, window: deque[_InFlight]) -> None:
        """Checkpoint the oldest chunk in flight; it leaves the window only once done, so a
        failure still finds it there (its writes not sent are then dropped)."""
        self._finish_chunk(window[0])
        window.popleft()

    def _start_chunk(self, units: Sequence[Unit], found: Mapping[Side, list[Record]]
                     ) -> _InFlight:
        job, load = self.job, self.load
        cp = Checkpoint(self.entity)
        writes: dict[Side, list[Write]] = {"crm": [], "erp": []}
        units = list(units)
        job.report.matched += match_found(job, units, found, self._claimed)
        self.planner.dependencies = fetch_dependencies(job, units)
        for u in units:
            plan = self.planner.plan(u)
            if plan.conflict:
                job.report.conflicts += 1
            for side in plan.skipped:
                job.report.side(side).skipped += 1
            if plan.link is not None:
                cp.links.append(plan.link)
                job.ctx.add_link(self.entity, *plan.link)
                load.mark_computed(cp, plan.link)  # matched by natural key
            for target in SIDES:
                writes[target].extend(plan.writes[target])
            job.report.add_changes(plan.changes, keep_all=job.opt.dry_run)
            if plan.error is not None:
                side = next(iter(u.seen))
                load.quarantine(cp, side, u.key(side) or "?", plan.error, u.seen[side].record)
                continue
            self.planner.note_planned(u, plan)
        flight = _InFlight(units, cp, writes)
        for target in SIDES:
            if job.opt.dry_run:
                load.count_planned(target, writes[target])
            else:
                if writes[target]:  # a side still being read whole takes no write yet
                    self.extract.whole(target)
                flight.sending[target] = load.send(target, writes[target])
        return flight

    def _finish_chunk(self, flight: _InFlight) -> None:
        job, load, cp = self.job, self.load, flight.cp
        for target in SIDES:
            load.receive(target, flight.writes[target], flight.sending[target], cp)
        load.snapshot_sources(flight.units, cp)
        if not job.opt.dry_run:
            load.checkpoint(cp)
            self.renew_lock()
        if job.opt.progress:
            job.opt.progress(f"{self.entity}: write", len(flight.units))

    # --- lock and watermarks -------------------------------------------------------------------

    def renew_lock(self) -> None:
        """Extend the lease from the current instant (the run's start plus the time elapsed:
        renewing from the start would not extend it at all); raise :class:`LockLost` when
        another run has taken the lock, so this one writes nothing more."""
        job = self.job
        now = job.now + timedelta(seconds=time.monotonic() - self._started)
        if not job.store.renew_lock(self.lock_name, job.run_id, lease_s=job.opt.lease_s,
                                    now=now):
            raise LockLost(f"lost the lock of {self.entity!r} to another run (lease of "
                           f"{job.opt.lease_s:.0f}s expired); stopped without writing more")

    def check_watermarks(self, sides: Sequence[Side]) -> None:
        """A stored watermark past this run's signpost fails the entity before anything is read
        or written: the window would be empty and the run would say "ok" while that side's
        changes are never read (the state was edited, or this machine's clock went back)."""
        job = self.job
        for side in sides:
            stored = job.store.watermark(self.entity, side)
            post = wm.signpost(job.now, safety_lag=job.opt.safety_lag,
                               precision=job.conn[side].capabilities.clock_precision)
            ahead = wm.ahead_of(stored, post)
            if ahead is None:
                continue
            assert stored is not None
            raise WatermarkAhead(
                f"{self.entity} {side}: the stored watermark {stored.isoformat()} is ahead of "
                f"this run's signpost {post.isoformat()} (run start minus the safety lag) by "
                f"{wm.span_text(ahead)} — the state was edited or this machine's clock "
                f"went back, and no {side} change made before the watermark would be read. "
                f"Nothing was read or written for {self.entity}. Fix: `ponte watermark set "
                f"{self.entity} --side {side} --to <a time before the signpost>` or `ponte "
                f"watermark reset {self.entity} --side {side}` (re-reads from the beginning; "
                "nothing is duplicated); if the clock is wrong, correct it first")

    def _moves_watermark(self) -> bool:
        opt = self.job.opt
        return (not opt.dry_run and opt.window is None and not opt.computed_only
                and opt.keys is None)

    def _advance(self, changes: Mapping[Side, Changes], chunks: Mapping[Side, Chunk]) -> None:
        """After a processed chunk: the watermark of a side listed in updated-at order moves to
        the chunk's newest record (records sharing that instant are re-read next time)."""
        job = self.job
        cp = Checkpoint(self.entity)
        for side, ch in changes.items():
            if chunks[side].from_window and ch.latest is not None and \
                    ordered_by_updated_at(job.conn[side]):
                cp.watermarks[side] = wm.advance(job.store.watermark(self.entity, side),
                                                 completed_until=ch.latest)
        if cp.watermarks:
            job.store.checkpoint(cp, now=job.now, run_id=job.run_id)

    # --- the whole entity ----------------------------------------------------------------------

    def _batches(self, sides: Sequence[Side]) -> Iterator[dict[Side, Chunk]]:
        """One chunk of each side at a time, until every side's window is read."""
        streams = {side: self.extract.chunks(side, self.windows[side]) for side in sides}
        while streams:
            batch: dict[Side, Chunk] = {}
            for side in list(streams):
                chunk = next(streams[side], None)
                if chunk is None:
                    del streams[side]
                else:
                    batch[side] = chunk
            if batch:
                yield batch

    def _rereads(self, sides: Sequence[Side]) -> Iterator[dict[Side, Chunk]]:
        """Records someone changed while this run wrote into them (known once every write of
        the window has landed), read again by key; twice at most."""
        for _ in range(2):
            batch = {side: c for side in sides if (c := self.extract.reread(side)) is not None}
            if not batch:
                return
            yield batch

    def _read(self, batches: Iterator[dict[Side, Chunk]]) -> _Read | None:
        """The next batch, normalized and diffed; None once the window is read."""
        landed = {side: len(self.job.landed[side]) for side in SIDES}  # before its pages
        batch = next(batches, None)
        if batch is None:
            return None
        return _Read(batch, {side: self.extract.changes(chunk) for side, chunk in batch.items()},
                     landed)

    def _fresh(self, read: _Read) -> dict[Side, Changes]:
        """The changes of a batch, less the records a write of this run landed on after the
        batch was read (it was read while the writes before it were in flight): that copy is
        older than what was written, and is never processed (as a spooled one)."""
        for side, ch in read.changes.items():
            late = set(self.job.landed[side][read.landed[side]:])
            stale = [s for s in ch.seen if s.key in late]
            if stale:
                ch.seen = [s for s in ch.seen if s.key not in late]
                self.job.report.side(side).unchanged += len(stale)
        return read.changes

    def _after_batch(self, changes: Mapping[Side, Changes], batch: Mapping[Side, Chunk]
                     ) -> None:
        if self._moves_watermark():
            self._advance(changes, batch)
        if not self.job.opt.dry_run:
            # every link made so far is in the state now, where the context finds it again on
            # demand: its cache must not grow with the window
            self.job.ctx.crm_to_erp.clear()
            self.job.ctx.erp_to_crm.clear()

    def run(self) -> None:
        job = self.job
        switching.quick_switches()  # a writer whose answer came waits 0.5 ms at most, not 5
        sides = [s for s in job.m.sources() if job.opt.sides is None or s in job.opt.sides]
        if job.opt.computed_only:  # the marked records of the sides with computed fields
            sides = [s for s in sides if job.m.computed_fields(s)]
        elif job.opt.keys is not None:  # a targeted sync: the sides whose keys are named
            sides = [s for s in sides if job.opt.keys.get(s)]
        elif job.opt.window is None:  # a backfill neither reads nor moves the watermark
            self.check_watermarks(sides)
        if not job.opt.dry_run and not job.opt.computed_only:
            self.load.recover_intents()
        if job.opt.window is None and job.opt.keys is None:
            found, before = scope.recorded(job.store, self.entity)
            self.extract.rescan = found and scope.widened(before, job.m.scope)
            job.report.rescanned = self.extract.rescan
        self.windows = {side: self.extract.window(side) for side in sides}
        # the window's batches: each next one is read and diffed while the last writes of the
        # one before are in flight, then paired and planned once they have landed
        window = self._batches(sides)
        read = self._read(window)
        while read is not None:
            ahead: list[_Read | None] = []

            def read_ahead(got: list[_Read | None] = ahead) -> None:
                got.append(self._read(window))

            changes = self._fresh(read)
            heap.settle()  # set up and a first batch diffed: what is alive now stays
            self.process(self.pair({side: ch.seen for side, ch in changes.items()}),
                         ahead=read_ahead)
            self._after_batch(changes, read.batch)
            read = ahead[0] if ahead else self._read(window)
        for batch in self._rereads(sides):
            changes = {side: self.extract.changes(chunk) for side, chunk in batch.items()}
            self.process(self.pair({side: ch.seen for side, ch in changes.items()}))
            self._after_batch(changes, batch)
        computed.finish(job, sides)
        if not self._moves_watermark():
            return
        cp = Checkpoint(self.entity)
        for side in sides:
            until = self.windows[side].until
            assert until is not None
            cp.watermarks[side] = wm.advance(job.store.watermark(self.entity, side),
                                             completed_until=until)
            job.report.watermarks[side] = cp.watermarks[side].isoformat()
        self.load.checkpoint(cp)
        job.report.scope, job.report.scope_done = scope.scope_dict(job.m.scope), True
