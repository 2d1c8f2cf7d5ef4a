"""What the store keeps for computed fields (:mod:`etl.mapping.computed`).

* facts: per source record (an order) the key of the record it belongs to (its customer), its
  amount, its date and whether it passes the source's filter — written from the records a run
  reads, so no run has to read every order again;
* marks: the records whose facts changed since their computed values were last worked out,
  set in the same transaction as the facts and cleared only by the run that computed them
  again (a mark set meanwhile has a newer ``seq`` and stays); a record linked to a partner by
  natural key or by crash recovery is marked too, when it has facts;
* windows: the cutoff each source was last computed with, so that the records whose facts
  left the window since then are computed again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from etl.state import models as m
from etl.state.db import StoreBase, chunks, unique
from etl.state.models import to_utc

if TYPE_CHECKING:  # imported where used: a run with nothing to do loads no pandas
    import pandas as pd

FACT_COLUMNS = ["link", "amount", "at", "counts"]


@dataclass(frozen=True)
class FactRow:
    """One source record's facts."""

    key: str
    link: str | None
    amount: float | None
    at: datetime | None
    counts: bool


class ComputedStore(StoreBase):
    """Facts, marks and windows of computed fields."""

    def record_facts(self, target: str, source: str, facts: Sequence[FactRow]) -> int:
        """Store the facts of records read (one transaction), marking the records they belong
        to — the new link and, when a record moved, the old one — wherever a fact is new or
        changed. Returns how many facts changed."""
        if not facts:
            return 0
        t = m.computed_facts
        latest = {f.key: f for f in facts}
        with self._writer.begin() as conn:
            held: dict[str, tuple[Any, ...]] = {}
            base = sa.select(t.c.key, t.c.link, t.c.amount, t.c.at, t.c.counts).where(
                t.c.target == target, t.c.source == source)
            for chunk in chunks(list(latest), self._chunk):
                for row in conn.execute(base.where(t.c.key.in_(chunk))):
                    held[row.key] = (row.link, row.amount, row.at, bool(row.counts))
            changed = [f for f in latest.values() if held.get(f.key) != (
                f.link, f.amount, None if f.at is None else to_utc(f.at), f.counts)]
            if not changed:
                return 0
            stmt = self._insert(t)
            ex = stmt.excluded
            stmt = stmt.on_conflict_do_update(
                index_elements=[t.c.target, t.c.source, t.c.key],
                set_={"link": ex.link, "amount": ex.amount, "at": ex.at, "counts": ex.counts})
            rows = [{"target": target, "source": source, "key": f.key, "link": f.link,
                     "amount": f.amount, "at": f.at, "counts": f.counts} for f in changed]
            for part in chunks(rows, 5000):
                conn.execute(stmt, part)
            marked = {f.link for f in changed if f.link is not None}
            marked |= {held[f.key][0] for f in changed
                       if f.key in held and held[f.key][0] is not None}
            self._mark(conn, target, sorted(marked))
        return len(changed)

    def _mark(self, conn: sa.Connection, target: str, keys: Sequence[str]) -> None:
        if not keys:
            return
        t = m.computed_marks
        stmt = self._insert(t)
        stmt = stmt.on_conflict_do_update(index_elements=[t.c.target, t.c.key],
                                          set_={"seq": t.c.seq + 1})
        for part in chunks([{"target": target, "key": k, "seq": 1} for k in keys], 5000):
            conn.execute(stmt, part)

    def _mark_with_facts(self, conn: sa.Connection, target: str, keys: Sequence[str]) -> None:
        """Mark the records of ``keys`` that have stored facts: linked just now (matched by
        natural key, or a create found after a crash), their computed values were perhaps
        never worked out for a partner; those without facts have nothing to compute."""
        t = m.computed_facts
        having: set[str] = set()
        for chunk in chunks(unique(keys), self._chunk):
            having.update(str(k) for k in conn.scalars(sa.select(t.c.link).distinct().where(
                t.c.target == target, t.c.link.in_(chunk))))
        self._mark(conn, target, sorted(having))

    def computed_marks(self, target: str) -> dict[str, int]:
        """Records of ``target`` to compute again: key -> the mark's sequence number."""
        t = m.computed_marks
        with self.engine.connect() as conn:
            return {k: int(s) for k, s in conn.execute(
                sa.select(t.c.key, t.c.seq).where(t.c.target == target))}

    def clear_computed_marks(self, target: str, marks: Mapping[str, int]) -> None:
        """Clear these marks, unless they were set again since they were read."""
        if not marks:
            return
        t = m.computed_marks
        stmt = sa.delete(t).where(t.c.target == target, t.c.key == sa.bindparam("k"),
                                  t.c.seq == sa.bindparam("s"))
        with self._writer.begin() as conn:
            conn.execute(stmt, [{"k": k, "s": s} for k, s in marks.items()])

    def facts_for(self, target: str, source: str, links: Sequence[str]) -> pd.DataFrame:
        """The facts of the records of ``links`` (columns link, amount, at, counts)."""
        t = m.computed_facts
        base = sa.select(t.c.link, t.c.amount, t.c.at, t.c.counts).where(
            t.c.target == target, t.c.source == source)
        rows: list[Any] = []
        with self.engine.connect() as conn:
            for chunk in chunks(unique(links), self._chunk):
                rows.extend(conn.execute(base.where(t.c.link.in_(chunk))).all())
        return facts_frame(rows)

    def links_crossing(self, target: str, source: str, since: datetime, until: datetime
                       ) -> list[str]:
        """Records with a counted fact dated in ``[since, until)``: the part of the window
        that moved past them since the last computation."""
        t = m.computed_facts
        q = sa.select(t.c.link).distinct().where(
            t.c.target == target, t.c.source == source, t.c.counts.is_(True),
            t.c.link.is_not(None), t.c.at >= to_utc(since), t.c.at < to_utc(until))
        with self.engine.connect() as conn:
            return sorted(str(k) for k in conn.scalars(q))

    def computed_cutoff(self, target: str, source: str) -> datetime | None:
        t = m.computed_windows
        with self.engine.connect() as conn:
            value: datetime | None = conn.scalar(sa.select(t.c.cutoff).where(
                t.c.target == target, t.c.source == source))
        return value

    def set_computed_cutoff(self, target: str, source: str, cutoff: datetime) -> None:
        t = m.computed_windows
        stmt = self._insert(t)
        stmt = stmt.on_conflict_do_update(index_elements=[t.c.target, t.c.source],
                                          set_={"cutoff": stmt.excluded.cutoff})
        with self._writer.begin() as conn:
            conn.execute(stmt, [{"target": target, "source": source, "cutoff": cutoff}])


def facts_frame(rows: Sequence[Any]) -> pd.DataFrame:
    """Fact rows as a typed frame: link (object), amount (float64), at (UTC), counts (bool)."""
    import pandas as pd

    frame = pd.DataFrame.from_records(list(rows), columns=FACT_COLUMNS)
    frame["amount"] = pd.to_numeric(frame["amount"], errors="coerce").astype("float64")
    frame["at"] = pd.to_datetime(frame["at"], utc=True)
    frame["counts"] = frame["counts"].astype(bool)
    return frame
