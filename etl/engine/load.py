"""Load: carry out a chunk's plans — intents before creates that cannot be upserted, the writes,
their results — and checkpoint the chunk in one transaction: links, snapshots (the written
records as the target echoes them, the read ones as read), quarantine entries, and the
watermark when it may move.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from loguru import logger

from etl.connectors.base import Record, WriteOp, WriteResult
from etl.engine.model import Job, Unit, jsonable, ordered_by_updated_at
from etl.engine.plan import Write
from etl.engine.report import Problem
from etl.engine.resolve import Values
from etl.errors import RecordError
from etl.mapping import kept_fields, merge_kept, read_record
from etl.mapping.apply import get_path
from etl.mapping.models import SIDES, Side, other
from etl.state import Checkpoint, QuarantineEntry


class Sending(Protocol):
    """Writes on their way (:class:`etl.connectors.generic_writes.PendingWrites`)."""

    def done(self) -> bool: ...
    def results(self) -> list[WriteResult]: ...
    def cancel(self) -> None: ...
    def settle(self) -> None: ...


class _Done:
    """Writes already done, as a :class:`Sending`."""

    def __init__(self, results: list[WriteResult]) -> None:
        self._results = results

    def done(self) -> bool:
        return True

    def results(self) -> list[WriteResult]:
        return self._results

    def cancel(self) -> None:
        pass

    def settle(self) -> None:
        pass


class Load:
    def __init__(self, job: Job) -> None:
        self.job = job

    # --- intents -------------------------------------------------------------------------------

    def record_intents(self, target: Side, writes: Sequence[Write]) -> None:
        """Before creates that the target cannot upsert by external id, write down the intent so
        that a crash between 'created' and 'link saved' is resolved next run, not duplicated."""
        job = self.job
        if job.conn[target].capabilities.has_external_id_upsert:
            return
        intents = []
        for w in writes:
            if w.op.action != "create":
                continue
            field_name, value = self._recovery_key(target, w.op, w.values)
            if field_name is None:
                continue
            intents.append((w.unit.key(other(target)) or "", value or "", {"field": field_name}))
        job.store.record_intents(job.entity, target, intents, now=job.now)

    def _recovery_key(self, target: Side, op: WriteOp, values: Values
                      ) -> tuple[str | None, str | None]:
        m = self.job.m
        spec = m.systems[target]
        if spec.external_id_field:
            return spec.external_id_field, op.external_id
        if spec.natural_key_field and m.natural_key:
            return spec.natural_key_field, values.get(m.natural_key)
        return None, None

    def recover_intents(self) -> None:
        """Finish creates a crashed run left behind: find each record by its external id (or
        natural key) and link it, or forget the intent when the create never landed."""
        job = self.job
        for target in SIDES:
            if target not in job.m.create_in:
                continue
            pending = job.store.pending_intents(job.entity, target)
            if not pending:
                continue
            cp = Checkpoint(job.entity)
            by_field: dict[str, list[Any]] = {}
            for intent in pending:
                by_field.setdefault(intent.payload.get("field", ""), []).append(intent)
            c = job.conn[target]
            for field_name, intents in by_field.items():
                found: dict[str, Record] = {}
                if field_name:
                    for got in c.find_by(job.entity, field_name, [i.external_id for i in intents]):
                        found[str(get_path(got, field_name))] = got
                for intent in intents:
                    rec = found.get(intent.external_id)
                    if rec is None and field_name == job.m.systems[target].natural_key_field:
                        rec = found.get(intent.external_id.lstrip("0")) or None
                    if rec is not None:
                        key = c.key_of(job.entity, rec)
                        pair = (intent.source_key, key) if target == "erp" else \
                            (key, intent.source_key)
                        cp.links.append(pair)
                        job.ctx.add_link(job.entity, *pair)
                        self.mark_computed(cp, pair)
                        try:
                            vals = read_record(job.m, target, rec, job.ctx)
                            cp.snapshots.append(job.snap(target, key, vals, rec))
                        except RecordError:
                            pass
                        logger.bind(entity=job.entity, side=target).info(
                            "recovered a create interrupted by a crash: {} -> {}",
                            intent.source_key, key)
                    cp.clear_intents.append((target, intent.source_key))
            self.checkpoint(cp)

    # --- writes --------------------------------------------------------------------------------

    def count_planned(self, target: Side, writes: Sequence[Write]) -> None:
        """Dry run: what would be written, counted as if it were."""
        counts = self.job.report.side(target)
        for w in writes:
            if w.op.action == "create":
                counts.created += 1
            else:
                counts.updated += 1

    def merge_current(self, target: Side, writes: Sequence[Write]) -> None:
        """Updates whose list fields keep the target's items the mapping does not own, of
        records this run did not read from ``target``: read them by key (in one go) and merge
        their current lists into the payloads. A record not found is written as planned (the
        update then reports it gone)."""
        todo = [w for w in writes if w.needs_current and w.op.key is not None]
        if not todo:
            return
        job, c = self.job, self.job.conn[target]
        found = {c.key_of(job.entity, r): r
                 for r in c.read_by_keys(job.entity, sorted({str(w.op.key) for w in todo}))}
        for w in todo:
            record = found.get(str(w.op.key))
            if record is not None:
                w.op.payload = merge_kept(job.m, target, w.op.payload, record)
                w.needs_current = False

    def write(self, target: Side, writes: Sequence[Write], cp: Checkpoint) -> None:
        """Send the writes to ``target`` (intents first) and put their outcome into ``cp``."""
        self.receive(target, writes, self.send(target, writes), cp)

    def send(self, target: Side, writes: Sequence[Write]) -> Sending | None:
        """Record the intents of the creates, then send the writes without waiting for them
        (the connector's writer threads carry them): :meth:`receive` collects them."""
        if not writes:
            return None
        self.merge_current(target, writes)
        self.record_intents(target, writes)
        c, ops = self.job.conn[target], [w.op for w in writes]
        start = getattr(c, "start_batch", None)
        if start is None:  # a connector without writer threads: written here and now
            return _Done(c.write_batch(self.job.entity, ops))
        sending: Sending = start(self.job.entity, ops)
        return sending

    def receive(self, target: Side, writes: Sequence[Write], sending: Sending | None,
                cp: Checkpoint) -> None:
        """Wait for the writes :meth:`send` sent and put their outcome into ``cp``."""
        if sending is None:
            return
        for w, res in zip(writes, sending.results(), strict=True):
            self.apply_result(target, w, res, cp)

    def apply_result(self, target: Side, w: Write, res: WriteResult, cp: Checkpoint) -> None:
        job, u, op = self.job, w.unit, w.op
        source = other(target)
        if not res.ok:
            assert res.error is not None
            self.quarantine(cp, source, u.key(source) or "?", res.error,
                            u.seen[source].record if source in u.seen else {"payload": op.payload})
            u.seen.pop(source, None)  # not snapshotted: retried next run
            return
        counts = job.report.side(target)
        key = res.key or op.key
        assert key is not None
        job.landed[target].append(key)
        if not ordered_by_updated_at(job.conn[target]):
            job.written[target].add(key)
        if op.action == "create":
            counts.created += 1
            u.set_key(target, key)
            assert u.crm_key is not None and u.erp_key is not None
            cp.links.append((u.crm_key, u.erp_key))
            job.ctx.add_link(job.entity, u.crm_key, u.erp_key)
            cp.clear_intents.append((target, u.key(source) or ""))
        else:
            counts.updated += 1
        echoed: Values | None = None
        if res.record is not None:
            try:
                echoed = read_record(job.m, target, res.record, job.ctx)
            except RecordError:
                echoed = None
        if echoed is None:
            base = dict(u.current(target) or {})
            base.update(w.values)
            echoed = base
        elif op.action == "update":
            # only the fields written take the echo: a field a user changed in the target
            # while this run was writing must still look changed next run, or it never flows
            base = dict(u.current(target) or {})
            if job.entity in job.conn[target].capabilities.skips_own_writes and any(
                    echoed.get(f) != v for f, v in base.items() if f not in w.values):
                job.reread[target].add(key)  # someone else changed it since: read it again
            base.update({f: echoed.get(f) for f in w.values})
            # a list that kept the target's other items reads back more than was written when
            # one of them moved into what the mapping owns (a number cleared on the other side):
            # the snapshot keeps what was written, so the next run copies it across
            skips_own = job.entity in job.conn[target].capabilities.skips_own_writes
            for f in kept_fields(job.m, target, w.values):
                if skips_own and base[f] != w.values[f]:
                    # ponte is now its last updater: its listing would never show the item
                    # that moved up, so the record is read again by key before the run ends
                    job.reread[target].add(key)
                base[f] = w.values[f]
            echoed = base
        cp.snapshots.append(job.snap(target, key, echoed, res.record))
        if source in u.seen:
            cp.clear_quarantine.append((source, u.key(source) or ""))

    # --- the chunk's checkpoint ----------------------------------------------------------------

    def snapshot_sources(self, units: Sequence[Unit], cp: Checkpoint) -> None:
        """Every record read and handled (written, or needing nothing) gets its snapshot, so the
        next run sees it as unchanged."""
        job = self.job
        failed = {(q.system, q.key) for q in cp.quarantine}
        written = {(s.system, s.key) for s in cp.snapshots}
        for u in units:
            for side, s in u.seen.items():
                if (side, s.key) in failed:
                    continue
                if (side, s.key) in written:
                    # read, then written into by this run (an owned field flowing back): its
                    # snapshot is the write's echo, and a quarantine entry it had is done
                    cp.clear_quarantine.append((side, s.key))
                    continue
                if s.h1 == 0 and s.h2 == 0 and side not in job.m.sources():
                    # found by natural key on a side that is not read each run
                    cp.snapshots.append(job.snap(side, s.key, s.values, s.record))
                    continue
                cp.snapshots.append(job.snap(side, s.key, s.values, s.record, s.updated))
                cp.clear_quarantine.append((side, s.key))
            if not u.linked and u.crm_key and u.erp_key and not any(
                (side, u.key(side)) in failed for side in SIDES
            ):
                pair = (u.crm_key, u.erp_key)
                if pair not in cp.links:
                    cp.links.append(pair)
                    job.ctx.add_link(job.entity, *pair)
                    self.mark_computed(cp, pair)  # matched by natural key

    def mark_computed(self, cp: Checkpoint, pair: tuple[str, str]) -> None:
        """A pair linked now, not created now: the record on the side that computes fields is
        marked (when it has stored facts), so its computed values reach its partner in this
        run's pass after the source entity, or the next run — not only at its next fact."""
        for side, key in zip(SIDES, pair, strict=True):
            if self.job.m.computed_fields(side):
                cp.computed_marks.append(key)

    def quarantine(self, cp: Checkpoint, side: Side, key: str, exc: RecordError,
                   record: Record) -> None:
        job = self.job
        kind = exc.kind if exc.kind in ("invalid", "rejected", "conflict") else "invalid"
        cp.quarantine.append(QuarantineEntry(job.entity, side, key, kind, str(exc), exc.field,
                                             jsonable(record)))
        job.report.side(side).quarantined += 1
        job.report.problems.append(Problem(job.entity, side, key, kind, str(exc)))
        logger.bind(entity=job.entity, side=side, key=key).warning("quarantined: {}", exc)

    def checkpoint(self, cp: Checkpoint) -> None:
        """Hash the checkpoint's snapshots in bulk and commit it in one transaction."""
        job = self.job
        if cp.snapshots:
            import pandas as pd

            from etl.rowhash import hash_frame

            columns = job.columns
            frame = pd.DataFrame([[s.data.get(c) for c in columns] for s in cp.snapshots],
                                 columns=columns, dtype=object)
            h = hash_frame(frame, columns)
            for snap, h1, h2 in zip(cp.snapshots, h["h1"].tolist(), h["h2"].tolist(),
                                    strict=True):
                snap.h1, snap.h2 = int(h1), int(h2)
        job.store.checkpoint(cp, now=job.now, run_id=job.run_id)
