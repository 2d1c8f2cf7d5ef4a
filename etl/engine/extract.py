"""Extract: a side's window, read page by page in chunks, normalized and diffed against the
stored snapshots; what comes out is what changed.

Each chunk holds whole pages up to ``Options.read_chunk`` records (or one page more; the first
chunk up to :data:`~etl.engine.model.FIRST_READ_CHUNK`, so that writes start sooner), so memory
follows the chunk, not the window. Per chunk: records dropped from quarantine and still as they were are skipped, every
record is normalized through the mapping (one that fails is quarantined with the reason), and
the rest are diffed by row hash; unchanged ones stop here (and a quarantine entry left from a
failed version in between goes). Quarantine entries due for a retry are read by key after the
window, unless the window had them already.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from loguru import logger

from etl import watermark as wm
from etl.connectors.base import Record
from etl.connectors.schema import SCHEMAS
from etl.engine import computed
from etl.engine.model import (
    FIRST_READ_CHUNK,
    GONE_SEP,
    Job,
    Seen,
    digest,
    jsonable,
    ordered_by_updated_at,
    updated_at,
)
from etl.engine.report import Problem
from etl.engine.scope import ScopeFilter
from etl.engine.spool import Spool
from etl.errors import RecordError, Stopped, UnsentField
from etl.mapping import read_record
from etl.mapping.models import Side
from etl.mapping.paths import unsent_paths
from etl.state import Checkpoint, QuarantineEntry, QuarantineRow


@dataclass
class Chunk:
    """Records read from one side, by key (the last version read wins)."""

    side: Side
    records: dict[str, Record] = field(default_factory=dict)
    from_window: bool = True  # a slice of the window (not due entries read by key)
    spooled: bool = False  # read back from the spool (the window was read whole first)


@dataclass
class Changes:
    """What changed in one chunk, and the newest updated-at the chunk held."""

    side: Side
    seen: list[Seen]
    latest: datetime | None = None


class Extract:
    def __init__(self, job: Job) -> None:
        self.job = job
        self.scope = ScopeFilter(job.m, job.ctx)
        self.rescan = False  # a widened scope: every side read from the beginning
        self.spools: dict[Side, Spool] = {}  # the spooled windows of this run, by side

    def window(self, side: Side) -> wm.Window:
        """The run's window of a side: the explicit one of a backfill, else from the stored
        watermark minus the lookback up to the signpost. From a stored watermark the side may
        leave out the records ponte itself changed last (``Window.skip_own``): what ponte
        wrote is in the snapshot already. A first run, a rescan, a backfill and ``verify``
        read everything (the state may not hold what an earlier ponte wrote)."""
        job = self.job
        if job.opt.window is not None:
            return job.opt.window
        stored = None if self.rescan else job.store.watermark(job.entity, side)
        window = wm.window(
            stored,
            run_start=job.now,
            lookback=job.opt.lookback,
            safety_lag=job.opt.safety_lag,
            precision=job.conn[side].capabilities.clock_precision,
        )
        return replace(window, skip_own=stored is not None)

    def pages(self, side: Side, window: wm.Window) -> Generator[list[Record], None, None]:
        """The window's pages as the side lists them; a stop request ends the read."""
        job = self.job
        for page in job.conn[side].list_changed(job.entity, window):
            if job.opt.progress:
                job.opt.progress(f"{job.entity}: read {side}", len(page))
            yield page
            self.check_stop(side)

    def check_stop(self, side: Side) -> None:
        """Raise :class:`Stopped` when a stop was requested while reading ``side``."""
        job = self.job
        if job.opt.stop_requested():
            raise Stopped(f"stopped while reading {job.entity} from {side}; whole chunks "
                          "kept, watermark not moved")

    def spooled(self, side: Side, window: wm.Window) -> Iterator[list[Record]]:
        """The window's pages read whole on a thread of their own, through a temporary file,
        handed on as they arrive (:class:`~etl.engine.spool.Spool`). For a side not listed in
        updated-at order (Omie pages by number): this run's own writes into it would move
        records out of the filtered listing and shift its later pages, skipping records, so a
        write into it waits for :meth:`whole`."""
        spool = Spool(self.pages(side, window), name=f"ponte-read-{self.job.entity}-{side}",
                      check=lambda: self.check_stop(side))
        self.spools[side] = spool
        try:
            yield from spool
        finally:
            spool.close()

    def whole(self, side: Side) -> None:
        """Return once the side's spooled window (if it has one) is read to its end; raise
        what stopped that reading. Called before any write into the side."""
        spool = self.spools.get(side)
        if spool is not None:
            spool.whole()

    def read(self, side: Side, window: wm.Window) -> dict[str, Record]:
        """Every record of the window, by key (the last version wins): for small windows and
        for callers that need all of it at once."""
        c = self.job.conn[side]
        out: dict[str, Record] = {}
        for page in self.pages(side, window):
            for record in page:
                out[c.key_of(self.job.entity, record)] = record
        return out

    def by_keys(self, side: Side) -> Iterator[list[Record]]:
        """The records ``Options.keys`` names on this side, read by key (a targeted sync); a
        key the side does not have is simply not read."""
        job = self.job
        keys = list(dict.fromkeys((job.opt.keys or {}).get(side, ())))
        size = max(1, job.opt.read_chunk)
        for start in range(0, len(keys), size):
            page = list(job.conn[side].read_by_keys(job.entity, keys[start:start + size]))
            if job.opt.progress:
                job.opt.progress(f"{job.entity}: read {side}", len(page))
            yield page

    def chunks(self, side: Side, window: wm.Window) -> Iterator[Chunk]:
        """The window in chunks of whole pages, ``read_chunk`` records or just over, then (in
        a sync, not a backfill) the due quarantine entries the window did not hold, read by
        key, then the records whose computed fields must be worked out again (only those with
        ``Options.computed_only``). A targeted sync (``Options.keys``) reads its keys only."""
        job = self.job
        c = job.conn[side]
        size = max(1, job.opt.read_chunk)
        due: dict[str, QuarantineRow] = {}
        targeted = job.opt.keys is not None
        if job.opt.window is None and not job.opt.computed_only and not targeted:
            due = {q.key: q for q in job.store.quarantine_due(job.entity, side, job.now)}
        marked = computed.pending(job, side)  # computed fields to work out again
        spooled = not ordered_by_updated_at(c)
        pages: Iterable[list[Record]] = ()
        if targeted:
            pages = self.by_keys(side)
            spooled = False
        elif not job.opt.computed_only:
            pages = self.spooled(side, window) if spooled else self.pages(side, window)
        chunk = Chunk(side, from_window=not targeted, spooled=spooled)
        limit = min(size, FIRST_READ_CHUNK)  # the first chunk small: writes start sooner
        for page in pages:
            for record in page:
                key = c.key_of(job.entity, record)
                chunk.records[key] = record
                due.pop(key, None)
                marked.pop(key, None)
            # whole pages only: a page read before an earlier chunk's writes could hold the
            # old version of a record those writes changed
            if len(chunk.records) >= limit:
                yield chunk
                chunk = Chunk(side, from_window=not targeted, spooled=spooled)
                limit = size
        if chunk.records:
            yield chunk
        if due:
            retry = Chunk(side, from_window=False)
            for record in c.read_by_keys(job.entity, list(due)):
                key = c.key_of(job.entity, record)
                retry.records[key] = record
                due.pop(key, None)
            self.retried_but_gone(side, list(due.values()))
            for key in retry.records:
                marked.pop(key, None)
            if retry.records:
                yield retry
        keys = list(marked)
        for start in range(0, len(keys), size):  # read by key: a chunk at a time
            extra = Chunk(side, from_window=False)
            for record in c.read_by_keys(job.entity, keys[start:start + size]):
                extra.records[c.key_of(job.entity, record)] = record
            if extra.records:
                yield extra

    def reread(self, side: Side) -> Chunk | None:
        """The records of ``side`` this run wrote into while someone else changed them
        (``Job.reread``), read again by key; None when there are none."""
        job = self.job
        keys, job.reread[side] = sorted(job.reread[side]), set()
        if not keys:
            return None
        c = job.conn[side]
        chunk = Chunk(side, from_window=False)
        for record in c.read_by_keys(job.entity, keys):
            chunk.records[c.key_of(job.entity, record)] = record
        return chunk if chunk.records else None

    def changes(self, chunk: Chunk) -> Changes:
        """Normalize and diff one chunk: the records that changed since their snapshot."""
        job, side = self.job, chunk.side
        records = chunk.records
        job.report.side(side).read += len(records)
        if chunk.spooled and job.written[side]:
            # written by this run after the spool was read: the copy here is older
            stale = job.written[side].intersection(records)
            for key in stale:
                del records[key]
            job.report.side(side).unchanged += len(stale)
        self.ignore_dropped(side, records)
        computed.record_facts(job, side, records)
        seen = self.normalize(side, records, quarantine=not job.opt.dry_run)
        latest = max((s.updated for s in seen if s.updated is not None), default=None)
        if not seen:
            return Changes(side, [], latest)
        import pandas as pd

        from etl.diff import diff

        columns = job.columns
        incoming = pd.DataFrame(
            [{"key": s.key, **{col: s.values.get(col) for col in columns}} for s in seen],
            columns=["key", *columns], dtype=object,
        )
        snap = job.store.snapshots(side, job.entity, incoming["key"].tolist())
        result = diff(incoming, snap[["key", "h1", "h2"]], columns=columns, key="key")
        job.report.side(side).unchanged += len(result.unchanged)
        self.clear_clean(side, [str(k) for k in result.unchanged])
        by_key = {s.key: s for s in seen}
        out: list[Seen] = []
        for frame in (result.new, result.changed):
            for key, h1, h2 in zip(frame["key"], frame["h1"], frame["h2"], strict=True):
                s = by_key[str(key)]
                s.h1, s.h2 = int(h1), int(h2)
                out.append(s)
        return Changes(side, out, latest)

    def clear_clean(self, side: Side, unchanged: list[str]) -> None:
        """Records read exactly as they were last synced are clean: an entry left from a
        failed version in between (fixed back to the synced values) goes."""
        job = self.job
        if job.opt.dry_run or not unchanged:
            return
        stale = job.store.quarantined_keys(job.entity, side).intersection(unchanged)
        if stale:
            cp = Checkpoint(job.entity, clear_quarantine=[(side, k) for k in sorted(stale)])
            job.store.checkpoint(cp, now=job.now, run_id=job.run_id)

    def ignore_dropped(self, side: Side, records: dict[str, Record]) -> None:
        """Records whose quarantine entry was dropped are ignored while they are exactly as
        they were when dropped; once they change they are processed again."""
        job = self.job
        if not records:
            return
        dropped = job.store.quarantine_dropped(job.entity, side)
        for key, payload in dropped.items():
            if key in records and digest(records[key]) == digest(payload):
                del records[key]
                job.report.side(side).skipped += 1

    def retried_but_gone(self, side: Side, gone: Sequence[QuarantineRow]) -> None:
        """Due entries whose record the side no longer has: the entry says so and backs off."""
        job = self.job
        if job.opt.dry_run or not gone:
            return
        entries = []
        for q in gone:
            first = q.reason.split(GONE_SEP, 1)[-1]
            entries.append(QuarantineEntry(
                job.entity, side, q.key, q.kind,
                f"{job.entity} {side} {q.key} was not found when retried (deleted in the "
                f"{side}?); `ponte quarantine drop {q.id}` forgets it{GONE_SEP}{first}",
                q.field, q.payload))
            logger.bind(entity=job.entity, side=side, key=q.key).warning(
                "quarantined record not found when retried")
        job.store.checkpoint(Checkpoint(job.entity, quarantine=entries), now=job.now,
                             run_id=job.run_id)

    def check_sent(self, side: Side, records: Iterable[Record]) -> None:
        """Stop the entity when a mapped path is absent from every record of a chunk: the
        system does not send it, and reading it would blank the field on the other side. Only
        paths the system's schema says every record carries are judged (Omie leaves out tags
        that were never filled), so one chunk tells as well as the whole window."""
        job = self.job
        system = SCHEMAS.get(job.conn[side].kind)
        collection = job.m.systems[side].collection if side in job.m.systems else ""
        schema = system.collections.get(collection) if system is not None else None
        records = list(records)
        unsent = unsent_paths(job.m, side, records, schema)
        if not unsent:
            return
        where = f"{system.system if system else job.conn[side].kind} {collection}".strip()
        listed = ", ".join(
            f"{(r.base + '[].' if r.base else '') + r.path!r} ({r.where})" for r in unsent)
        raise UnsentField(job.entity, (
            f"{job.entity}: the {side} ({where}) does not send {listed}: absent from all "
            f"{len(records)} records read, so reading it would blank that field on the other "
            f"side; {job.entity} stopped before writing anything — fix the path in the "
            "mapping file"))

    def normalize(self, side: Side, records: dict[str, Record], *, quarantine: bool
                  ) -> list[Seen]:
        """Canonical values of each record; records that fail go to quarantine (when
        ``quarantine``) and into the report's problems with the reason. A mapped path that
        no record carries stops the entity first (:meth:`check_sent`)."""
        job = self.job
        self.check_sent(side, records.values())
        c = job.conn[side]
        out: list[Seen] = []
        bad: list[QuarantineEntry] = []
        outside = [k for k, r in records.items() if not self.scope.includes(side, r)]
        if outside:
            known = self.scope.were_inside(job.store, side, job.entity, outside)
            outside = [k for k in outside if k not in known]
            job.report.side(side).out_of_scope += len(outside)
        left_out = set(outside)
        for key, record in records.items():
            if key in left_out:
                continue
            try:
                values = read_record(job.m, side, record, job.ctx)
                updated = updated_at(c, side, job.entity, record)
            except RecordError as exc:
                bad.append(QuarantineEntry(job.entity, side, key, "invalid", str(exc),
                                           exc.field, jsonable(record)))
                continue
            out.append(Seen(side, key, values, updated, 0, 0, record))
        computed.fill(job, side, out)
        if bad:
            job.report.side(side).quarantined += len(bad)
            for q in bad:
                job.report.problems.append(Problem(job.entity, side, q.key, q.kind, q.reason))
                logger.bind(entity=job.entity, side=side, key=q.key).warning(
                    "quarantined: {}", q.reason)
            if quarantine:
                job.store.checkpoint(Checkpoint(job.entity, quarantine=bad), now=job.now,
                                     run_id=job.run_id)
        return out
