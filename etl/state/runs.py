"""Runs and the lease locks that keep two runs of one entity apart.

A run row is written when a run starts and finished with its report. A lock is a row with an
owner and a lease; the stored owner carries the holder's host and pid (``owner|host:pid``), so a
holder killed on this host (SIGKILL, OOM, power cut) is noticed at once instead of waited out,
and the run it belonged to is recorded as failed.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from loguru import logger

from etl.errors import ConfigError
from etl.state import models as m
from etl.state.db import StoreBase
from etl.state.rows import RunRow

_HOLDER_SEP = "|"


class RunStore(StoreBase):
    """Run rows and run locks."""

    # ---------------------------------------------------------------- runs

    def start_run(self, kind: str, entities: Sequence[str], *, now: datetime) -> str:
        run_id = uuid.uuid4().hex
        with self._writer.begin() as conn:
            conn.execute(sa.insert(m.runs).values(id=run_id, kind=kind, status="running",
                                                  started_at=now, entities=list(entities),
                                                  report={}))
        return run_id

    def finish_run(self, run_id: str, status: str, report: dict[str, Any], *,
                   now: datetime) -> None:
        t = m.runs
        with self._writer.begin() as conn:
            done = conn.execute(sa.update(t).where(t.c.id == run_id).values(
                status=status, report=report, finished_at=now)).rowcount
        if not done:
            raise KeyError(f"no run {run_id!r} in the state store")

    def fail_orphaned_runs(self, *, now: datetime, grace_s: float = 60.0) -> list[str]:
        """Finish as failed every run still recorded as running that holds no lock and started
        more than ``grace_s`` ago: a live run holds its entities' locks from right after its
        start to its end, so such a run's process is gone (SIGKILL, OOM, power cut) and no
        later run of its entities took its lock over. Returns their ids."""
        t, locks = m.runs, m.locks
        with self._writer.begin() as conn:
            owners = {str(o).split(_HOLDER_SEP, 1)[0] for o in conn.scalars(sa.select(locks.c.owner))}
            candidates = conn.execute(sa.select(t.c.id).where(
                t.c.status == "running",
                t.c.started_at <= now - timedelta(seconds=grace_s))).scalars().all()
            orphans = [rid for rid in candidates if rid not in owners]
            for rid in orphans:
                conn.execute(sa.update(t).where(t.c.id == rid, t.c.status == "running").values(
                    status="failed", finished_at=now, report={
                        "error": "killed: its process ended without finishing the run (it holds "
                                 "no lock)"}))
        for rid in orphans:
            logger.warning("run {} marked failed: its process ended without finishing it", rid[:8])
        return orphans

    def runs(self, limit: int = 20) -> list[RunRow]:
        """The latest runs, newest first."""
        t = m.runs
        q = sa.select(t).order_by(t.c.started_at.desc(), t.c.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [_run_row(r) for r in conn.execute(q)]

    def run(self, run_id: str) -> RunRow | None:
        """A run by id or by a prefix of its id; an ambiguous prefix is a ``ConfigError``."""
        t = m.runs
        if not run_id:
            return None
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t).where(t.c.id == run_id)).first()
            if row is not None:
                return _run_row(row)
            rows = conn.execute(sa.select(t).where(t.c.id.startswith(run_id, autoescape=True))
                                .limit(2)).all()
        if len(rows) > 1:
            raise ConfigError(f"run id prefix {run_id!r} is ambiguous; give more characters")
        return _run_row(rows[0]) if rows else None

    # ---------------------------------------------------------------- locks

    def acquire_lock(self, name: str, owner: str, *, lease_s: float, now: datetime) -> bool:
        """Take ``name`` for ``lease_s`` seconds if it is free, expired, already ours, or held
        by a process of this host that no longer exists (killed: SIGKILL, OOM, power cut).

        One conditional upsert: the row is written only when absent, expired or ours, so two
        live owners can never both hold it on either backend. The stored owner carries the
        holder's host and pid (``owner|host:pid``) so a dead holder's lease is not waited out."""
        if self._try_lock(name, owner, lease_s=lease_s, now=now):
            return True
        t = m.locks
        with self.engine.connect() as conn:
            stored = conn.scalar(sa.select(t.c.owner).where(t.c.name == name))
        if stored is None or not _holder_dead(stored):
            return False
        with self._writer.begin() as conn:  # only that dead holder's row; a live taker wins
            gone = conn.execute(sa.delete(t).where(t.c.name == name, t.c.owner == stored))
            if gone.rowcount:
                _, _, where = stored.partition(_HOLDER_SEP)
                self._fail_dead_run(conn, stored, now, f"killed: lock {name!r} taken over from "
                                    f"a dead process ({where}) by run {owner[:8]}")
        return self._try_lock(name, owner, lease_s=lease_s, now=now)

    def _try_lock(self, name: str, owner: str, *, lease_s: float, now: datetime) -> bool:
        t = m.locks
        me = _lock_owner(owner)
        expires = now + timedelta(seconds=lease_s)
        stmt = self._insert(t).values(name=name, owner=me, acquired_at=now, expires_at=expires)
        ex = stmt.excluded
        stmt = stmt.on_conflict_do_update(
            index_elements=[t.c.name],
            set_={"owner": ex.owner, "acquired_at": ex.acquired_at, "expires_at": ex.expires_at},
            where=sa.or_(t.c.expires_at <= now, t.c.owner == me))
        with self._writer.begin() as conn:
            before = conn.execute(sa.select(t.c.owner, t.c.expires_at)
                                  .where(t.c.name == name)).first()
            conn.execute(stmt)
            holder = conn.scalar(sa.select(t.c.owner).where(t.c.name == name))
            if holder == me and before is not None and before[0] != me:
                self._fail_dead_run(conn, before[0], now, f"lease expired: lock {name!r} "
                                    f"(lease until {before[1].isoformat()}) taken over by run "
                                    f"{owner[:8]}")
        return holder == me

    @staticmethod
    def _fail_dead_run(conn: sa.Connection, stored_owner: str, now: datetime,
                       reason: str) -> None:
        """Finish the run of a lock holder that was taken over as failed, with ``reason`` —
        only while it is still recorded as running (a live holder that finishes later
        records its own outcome)."""
        t = m.runs
        run_id = stored_owner.split(_HOLDER_SEP, 1)[0]
        conn.execute(sa.update(t).where(t.c.id == run_id, t.c.status == "running").values(
            status="failed", finished_at=now, report={"error": reason}))
        logger.warning("run {} marked failed: {}", run_id[:8], reason)

    def renew_lock(self, name: str, owner: str, *, lease_s: float, now: datetime) -> bool:
        """Extend our lease; False when the lock is no longer ours (lost to a takeover)."""
        t = m.locks
        with self._writer.begin() as conn:
            n = conn.execute(sa.update(t).where(t.c.name == name, t.c.owner == _lock_owner(owner))
                             .values(expires_at=now + timedelta(seconds=lease_s))).rowcount
        return n > 0

    def release_lock(self, name: str, owner: str) -> None:
        """Let go of ``name`` if we hold it; someone else's lock is left alone."""
        t = m.locks
        with self._writer.begin() as conn:
            conn.execute(sa.delete(t).where(t.c.name == name, t.c.owner == _lock_owner(owner)))

    def live_lock_holder(self, name: str, *, now: datetime) -> str | None:
        """The run id holding ``name`` right now: its lease has not expired and its process is
        not known to be dead (a SIGKILLed run on this host is not "in progress")."""
        t = m.locks
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t.c.owner, t.c.expires_at).where(t.c.name == name)).first()
        if row is None or row[1] <= now or _holder_dead(row[0]):
            return None
        return str(row[0].split(_HOLDER_SEP, 1)[0])

    def lock_busy(self, name: str, *, now: datetime) -> tuple[str, datetime] | None:
        """(owner, expires_at) when a live run holds ``name``: its lease runs past ``now`` and
        it is not a dead process of this host (whose lock the next taker takes over)."""
        t = m.locks
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t.c.owner, t.c.expires_at).where(t.c.name == name)).first()
        if row is None or row[1] <= now or _holder_dead(row[0]):
            return None
        return row[0].split(_HOLDER_SEP, 1)[0], row[1]

    def lock_holder(self, name: str) -> tuple[str, datetime] | None:
        """(owner, expires_at) of the lock row, expired or not; None when nobody holds it."""
        t = m.locks
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t.c.owner, t.c.expires_at).where(t.c.name == name)).first()
        return None if row is None else (row[0].split(_HOLDER_SEP, 1)[0], row[1])



def _lock_owner(owner: str) -> str:
    """The owner as stored in a lock row: the run's id plus this process's host and pid."""
    return f"{owner}{_HOLDER_SEP}{socket.gethostname()}:{os.getpid()}"


def _holder_dead(stored: str) -> bool:
    """True when a lock row's holder ran on this host and its process is gone."""
    _, sep, where = stored.partition(_HOLDER_SEP)
    host, _, pid = where.rpartition(":")
    if not sep or host != socket.gethostname() or not pid.isdigit():
        return False  # another host's process (or an old row): only its lease can expire
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, another user's
    return False



def _run_row(row: sa.Row[Any]) -> RunRow:
    r = row._mapping
    return RunRow(id=r["id"], kind=r["kind"], status=r["status"], started_at=r["started_at"],
                  finished_at=r["finished_at"], entities=list(r["entities"] or []),
                  report=dict(r["report"] or {}))

