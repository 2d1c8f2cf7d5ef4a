"""The state store: watermarks, snapshots, links, quarantine, intents, runs and run locks.

One :class:`Store` wraps one SQLAlchemy ``Engine`` (SQLite by default, PostgreSQL for production
or several workers). It is put together from focused parts: the database itself
(:mod:`etl.state.db`), watermarks, snapshots and links (:mod:`etl.state.records`), quarantine
and intents (:mod:`etl.state.quarantine`), runs and locks (:mod:`etl.state.runs`), alert
conditions (:mod:`etl.state.alerts`); the rows they read and write are in
:mod:`etl.state.rows`. This module adds what spans them: the checkpoint of one page, and the
bindings.

Conventions:

* Time always comes in as an argument (``now``); the store never reads the clock. Every
  timestamp must be aware (a naive one is a ``ValueError``); it is stored as UTC and returned
  as an aware UTC datetime on every backend.
* Writes that belong together go through :meth:`Store.checkpoint`, one transaction per page.
  On SQLite, write transactions start with ``BEGIN IMMEDIATE`` so that two processes never
  deadlock on a read-then-write upgrade; readers are never blocked (WAL).
* Errors: a URL that cannot be parsed or reached is a ``ConfigError`` naming ``PONTE_STATE_URL``
  (the password hidden); a checkpoint that would break a link's uniqueness raises
  :class:`StateConflict` and writes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import exc

from etl.errors import StateConflict
from etl.state import models as m
from etl.state.alerts import AlertStore
from etl.state.computed import ComputedStore
from etl.state.events import EventStore
from etl.state.lists import ReferenceListStore
from etl.state.quarantine import QuarantineStore
from etl.state.records import RecordStore
from etl.state.rows import BindingRow, Checkpoint
from etl.state.runs import RunStore

__all__ = ["Store"]


class Store(RecordStore, QuarantineStore, RunStore, ComputedStore, EventStore, AlertStore,
            ReferenceListStore):
    """The state database. Build with :meth:`open` (URL) or ``Store(engine)``."""

    # ---------------------------------------------------------------- checkpoint

    def checkpoint(self, cp: Checkpoint, *, now: datetime, run_id: str | None = None) -> None:
        """Commit one page: snapshots, quarantine, clears, deletes, links, watermarks and the
        computed marks of records it linked, all or none."""
        try:
            with self._writer.begin() as conn:
                if cp.snapshots:
                    self._upsert_snapshots(conn, cp.snapshots, now)
                if cp.quarantine:
                    self._upsert_quarantine(conn, cp.quarantine, now, run_id)
                if cp.clear_quarantine:
                    t = m.quarantine
                    conn.execute(
                        sa.delete(t).where(t.c.entity == cp.entity,
                                           t.c.system == sa.bindparam("s"),
                                           t.c.key == sa.bindparam("k")),
                        [{"s": s, "k": k} for s, k in dict.fromkeys(cp.clear_quarantine)])
                if cp.clear_intents:
                    t = m.intents
                    conn.execute(
                        sa.delete(t).where(t.c.entity == cp.entity,
                                           t.c.target_system == sa.bindparam("s"),
                                           t.c.source_key == sa.bindparam("k")),
                        [{"s": s, "k": k} for s, k in dict.fromkeys(cp.clear_intents)])
                if cp.drop_snapshots or cp.drop_links or cp.tombstones:
                    self._apply_deletes(conn, cp)
                if cp.links:
                    self._insert_links(conn, cp.entity, cp.links, now)
                if cp.watermarks:
                    self._upsert_watermarks(conn, cp.entity, cp.watermarks, now)
                if cp.computed_marks:
                    self._mark_with_facts(conn, cp.entity, cp.computed_marks)
        except exc.IntegrityError as e:
            raise StateConflict(f"checkpoint of {cp.entity!r} rolled back: it breaks a "
                                f"uniqueness rule of the state store ({e.orig})") from e

    def _apply_deletes(self, conn: sa.Connection, cp: Checkpoint) -> None:
        t = m.snapshots
        for system, key in dict.fromkeys(cp.drop_snapshots):
            conn.execute(sa.delete(t).where(t.c.system == system, t.c.entity == cp.entity,
                                            t.c.key == key))
        links = m.links
        for crm, erp in dict.fromkeys(cp.drop_links):
            conn.execute(sa.delete(links).where(links.c.entity == cp.entity,
                                                links.c.crm_key == crm, links.c.erp_key == erp))
        for crm, erp, side in cp.tombstones:
            conn.execute(sa.update(links).where(links.c.entity == cp.entity,
                                                links.c.crm_key == crm, links.c.erp_key == erp)
                         .values(deleted_in=side))

    # ---------------------------------------------------------------- bindings

    def bindings(self) -> dict[str, BindingRow]:
        """The systems this state was built with, by side (empty before first use)."""
        t = m.bindings
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t.c.side, t.c.kind, t.c.base_url, t.c.account_hash,
                                          t.c.salt, t.c.bound_at)).all()
        return {r.side: BindingRow(*r) for r in rows}

    def set_bindings(self, rows: Sequence[BindingRow], *, replace: bool) -> None:
        """Store the sides' bindings. ``replace=False`` (first use) keeps a side already bound
        by a concurrent process; ``replace=True`` (a deliberate rebind) overwrites."""
        if not rows:
            return
        t = m.bindings
        stmt = self._insert(t)
        if replace:
            stmt = stmt.on_conflict_do_update(index_elements=[t.c.side], set_={
                c: getattr(stmt.excluded, c)
                for c in ("kind", "base_url", "account_hash", "salt", "bound_at")})
        else:
            stmt = stmt.on_conflict_do_nothing(index_elements=[t.c.side])
        with self._writer.begin() as conn:
            conn.execute(stmt, [asdict(r) for r in rows])
