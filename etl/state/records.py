"""What the store remembers of the records themselves: watermarks, snapshots and links.

The public methods read or write on their own; the ``_upsert_*``/``_insert_links`` helpers
take an open connection so that :meth:`etl.state.store.Store.checkpoint` commits them with the
rest of a page.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from etl.errors import StateConflict
from etl.state import models as m
from etl.state.db import StoreBase, chunks, unique
from etl.state.models import to_utc
from etl.state.rows import SnapshotRow, WatermarkRow

if TYPE_CHECKING:  # imported where used: a run with nothing to do loads no pandas
    import pandas as pd

_SNAPSHOT_COLUMNS = ["key", "h1", "h2", "data", "natural_key", "source_updated"]


class RecordStore(StoreBase):
    """Watermarks, snapshots and links (with their tombstones)."""

    # ---------------------------------------------------------------- watermarks

    def watermark(self, entity: str, system: str) -> datetime | None:
        t = m.watermarks
        with self.engine.connect() as conn:
            value: datetime | None = conn.scalar(
                sa.select(t.c.value).where(t.c.entity == entity, t.c.system == system))
        return value

    def watermarks(self, entity: str | None = None) -> list[WatermarkRow]:
        t = m.watermarks
        q = sa.select(t.c.entity, t.c.system, t.c.value, t.c.updated_at)
        if entity is not None:
            q = q.where(t.c.entity == entity)
        with self.engine.connect() as conn:
            rows = conn.execute(q.order_by(t.c.entity, t.c.system)).all()
        return [WatermarkRow(*r) for r in rows]

    def set_watermark(self, entity: str, system: str, value: datetime | None, *,
                      now: datetime) -> None:
        """Set (or, with ``None``, delete) a watermark; used by admin commands and resets."""
        with self._writer.begin() as conn:
            if value is None:
                t = m.watermarks
                conn.execute(sa.delete(t).where(t.c.entity == entity, t.c.system == system))
            else:
                self._upsert_watermarks(conn, entity, {system: value}, now)

    def _upsert_watermarks(self, conn: sa.Connection, entity: str,
                           values: dict[str, datetime], now: datetime) -> None:
        t = m.watermarks
        stmt = self._insert(t)
        stmt = stmt.on_conflict_do_update(
            index_elements=[t.c.entity, t.c.system],
            set_={"value": stmt.excluded.value, "updated_at": stmt.excluded.updated_at})
        conn.execute(stmt, [{"entity": entity, "system": s, "value": to_utc(v),
                             "updated_at": now} for s, v in values.items()])

    # ---------------------------------------------------------------- snapshots

    def snapshots(self, system: str, entity: str, keys: Sequence[str]) -> pd.DataFrame:
        """Snapshot rows of these keys only (absent keys are simply missing)."""
        t = m.snapshots
        return self._snapshot_frame(system, entity, t.c.key, keys)

    def snapshots_by_natural_key(self, system: str, entity: str,
                                 values: Sequence[str]) -> pd.DataFrame:
        """Snapshot rows whose natural key is one of ``values`` (may be several per value)."""
        t = m.snapshots
        return self._snapshot_frame(system, entity, t.c.natural_key, values)

    def _snapshot_frame(self, system: str, entity: str, column: sa.ColumnElement[Any],
                        values: Sequence[str]) -> pd.DataFrame:
        t = m.snapshots
        base = sa.select(t.c.key, t.c.h1, t.c.h2, t.c.data, t.c.natural_key,
                         t.c.source_updated).where(t.c.system == system, t.c.entity == entity)
        rows: list[sa.Row[*tuple[Any, ...]]] = []
        with self.engine.connect() as conn:
            for chunk in chunks(unique(values), self._chunk):
                rows.extend(conn.execute(base.where(column.in_(chunk))).all())
        import pandas as pd

        frame = pd.DataFrame.from_records(rows, columns=_SNAPSHOT_COLUMNS)
        frame["h1"] = frame["h1"].astype("int64")
        frame["h2"] = frame["h2"].astype("int64")
        frame["source_updated"] = pd.to_datetime(frame["source_updated"], utc=True)
        return frame

    def count_snapshots(self, system: str, entity: str) -> int:
        t = m.snapshots
        with self.engine.connect() as conn:
            return int(conn.scalar(sa.select(sa.func.count()).select_from(t).where(
                t.c.system == system, t.c.entity == entity)) or 0)

    # ---------------------------------------------------------------- links

    def count_links(self, entity: str) -> int:
        """How many pairs of ``entity`` are linked (the delete share's base), not loading them."""
        t = m.links
        with self.engine.connect() as conn:
            return int(conn.scalar(sa.select(sa.func.count()).select_from(t).where(
                t.c.entity == entity)) or 0)

    def links(self, entity: str, *, crm_keys: Sequence[str] | None = None,
              erp_keys: Sequence[str] | None = None) -> list[tuple[str, str]]:
        """(crm_key, erp_key) pairs of ``entity``: all of them, or those touching any of the
        given CRM keys or ERP keys (both filters together: the union)."""
        with self.engine.connect() as conn:
            return self._links(conn, entity, crm_keys, erp_keys)

    def _links(self, conn: sa.Connection, entity: str, crm_keys: Sequence[str] | None,
               erp_keys: Sequence[str] | None) -> list[tuple[str, str]]:
        t = m.links
        base = sa.select(t.c.crm_key, t.c.erp_key).where(t.c.entity == entity)
        if crm_keys is None and erp_keys is None:
            return [(c, e) for c, e in conn.execute(base.order_by(t.c.crm_key))]
        found: dict[tuple[str, str], None] = {}
        for column, keys in ((t.c.crm_key, crm_keys), (t.c.erp_key, erp_keys)):
            for chunk in chunks(unique(keys or ()), self._chunk):
                for c, e in conn.execute(base.where(column.in_(chunk))):
                    found[(c, e)] = None
        return list(found)

    def tombstones(self, entity: str, *, crm_keys: Sequence[str] | None = None
                   ) -> dict[tuple[str, str], str]:
        """(crm_key, erp_key) -> the side the record was deleted from: all of them, or those of
        the given CRM keys (looked up by key, so a run's cost follows its delta)."""
        t = m.links
        base = sa.select(t.c.crm_key, t.c.erp_key, t.c.deleted_in).where(
            t.c.entity == entity, t.c.deleted_in.is_not(None))
        with self.engine.connect() as conn:
            if crm_keys is None:
                return {(c, e): d for c, e, d in conn.execute(base)}
            found: dict[tuple[str, str], str] = {}
            for chunk in chunks(unique(crm_keys), self._chunk):
                found.update({(c, e): d for c, e, d in
                              conn.execute(base.where(t.c.crm_key.in_(chunk)))})
            return found

    def _upsert_snapshots(self, conn: sa.Connection, snaps: Sequence[SnapshotRow],
                          now: datetime) -> None:
        t = m.snapshots
        latest = {(s.system, s.entity, s.key): s for s in snaps}  # last row wins
        stmt = self._insert(t)
        ex = stmt.excluded
        stmt = stmt.on_conflict_do_update(
            index_elements=[t.c.system, t.c.entity, t.c.key],
            set_={"h1": ex.h1, "h2": ex.h2, "data": ex.data, "natural_key": ex.natural_key,
                  "source_updated": ex.source_updated, "seen_at": ex.seen_at})
        rows = [{"system": s.system, "entity": s.entity, "key": s.key, "h1": int(s.h1),
                 "h2": int(s.h2), "data": s.data, "natural_key": s.natural_key,
                 "source_updated": s.source_updated, "seen_at": now} for s in latest.values()]
        for chunk in chunks(rows, 10_000):
            conn.execute(stmt, chunk)

    def _insert_links(self, conn: sa.Connection, entity: str, pairs: Sequence[tuple[str, str]],
                      now: datetime) -> None:
        wanted = list(dict.fromkeys(pairs))
        by_crm: dict[str, str] = {}
        by_erp: dict[str, str] = {}
        for crm, erp in wanted:  # the page itself must not link one key twice
            other_erp, other_crm = by_crm.setdefault(crm, erp), by_erp.setdefault(erp, crm)
            if other_erp != erp or other_crm != crm:
                raise StateConflict(
                    f"checkpoint of {entity!r} rolled back: it links {crm!r} <-> {erp!r} and "
                    f"also {crm!r} <-> {other_erp!r} or {other_crm!r} <-> {erp!r}")
        existing = set(self._links(conn, entity, list(by_crm), list(by_erp)))
        for crm, erp in existing:
            if (crm in by_crm and by_crm[crm] != erp) or (erp in by_erp and by_erp[erp] != crm):
                raise StateConflict(
                    f"checkpoint of {entity!r} rolled back: {crm!r} <-> {erp!r} is already "
                    f"linked; refusing to link {crm!r} <-> {by_crm.get(crm, '?')!r} or "
                    f"{by_erp.get(erp, '?')!r} <-> {erp!r}")
        new = [(c, e) for c, e in wanted if (c, e) not in existing]
        if new:
            conn.execute(sa.insert(m.links), [{"entity": entity, "crm_key": c, "erp_key": e,
                                               "created_at": now} for c, e in new])

