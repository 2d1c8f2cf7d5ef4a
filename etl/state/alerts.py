"""Alert conditions and their announcements (:mod:`etl.alerts`).

One row per condition (``run_failed:customers``, ``quarantine``...). A condition is announced
once when it starts and once when it clears, whoever evaluates it — a CLI run, ``ponte serve``,
two of them at the same time. Two claims make that hold:

* the transition: :meth:`AlertStore.apply_conditions` starts and clears conditions with
  ``UPDATE ... WHERE active = <the value read>`` (or an insert that does nothing when the row
  exists) and keeps only the changes whose row count is 1, all in one transaction;
* the announcement: ``notified_at`` NULL means "to announce" (started, or cleared after being
  announced). :meth:`AlertStore.claim_announcements` sets it to ``now`` where it is still NULL
  (row count 1: this process sends); :meth:`AlertStore.release_announcements` puts it back to
  NULL when no channel took the message, so the next evaluation sends it again.

A condition that clears before its start was ever announced clears silently. A process killed
between its claim and its send loses that one announcement: at most once, never twice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from etl.state import models as m
from etl.state.db import StoreBase


@dataclass(frozen=True)
class AlertRow:
    """One condition as stored: active or cleared, since when, what it is about, and when it
    was last announced (None: its announcement is still to be sent)."""

    condition: str
    active: bool
    since: datetime
    detail: str
    notified_at: datetime | None
    cleared_at: datetime | None


@dataclass(frozen=True)
class Transition:
    """A condition that started or cleared in this evaluation."""

    condition: str
    started: bool  # False: cleared


class AlertStore(StoreBase):
    """The ``alerts`` table, and the stalled-backlog read of the ``events`` table."""

    def alerts(self, *, active_only: bool = False) -> list[AlertRow]:
        """Every known condition (``active_only``: those in force), by name."""
        t = m.alerts
        q = sa.select(t).order_by(t.c.condition)
        if active_only:
            q = q.where(t.c.active.is_(True))
        with self.engine.connect() as conn:
            return [_alert_row(r) for r in conn.execute(q)]

    def apply_conditions(self, found: Mapping[str, str], *, now: datetime) -> list[Transition]:
        """Store the conditions true at ``now`` (name -> detail), in one transaction: a new one
        starts, an active one absent from ``found`` clears, an active one still true only has
        its detail refreshed. Returns the transitions this call made (a concurrent evaluation
        that made one first keeps it)."""
        t = m.alerts
        out: list[Transition] = []
        with self._writer.begin() as conn:
            # FOR UPDATE (PostgreSQL): a concurrent evaluation waits here and then reads what
            # this one wrote; SQLite's BEGIN IMMEDIATE already serializes the two
            held = {r.condition: bool(r.active) for r in conn.execute(
                sa.select(t.c.condition, t.c.active).order_by(t.c.condition).with_for_update())}
            for name, detail in sorted(found.items()):
                if held.get(name):
                    conn.execute(sa.update(t).where(t.c.condition == name, t.c.active.is_(True))
                                 .values(detail=detail))
                    continue
                values = {"active": True, "since": now, "detail": detail, "notified_at": None,
                          "cleared_at": None}
                if name in held:
                    n = conn.execute(sa.update(t).where(
                        t.c.condition == name, t.c.active.is_(False)).values(**values)).rowcount
                else:
                    stmt = self._insert(t).values(condition=name, **values)  # rowcount: -1 on
                    n = len(conn.execute(stmt.on_conflict_do_nothing(  # PostgreSQL, so RETURNING
                        index_elements=[t.c.condition]).returning(t.c.condition)).all())
                if n == 1:
                    out.append(Transition(name, True))
            for name in sorted(c for c, active in held.items() if active and c not in found):
                # announced: the clear is announced too; never announced: it clears silently
                n = conn.execute(sa.update(t).where(t.c.condition == name, t.c.active.is_(True))
                                 .values(active=False, cleared_at=now, notified_at=sa.case(
                                     (t.c.notified_at.is_(None), now), else_=None))).rowcount
                if n == 1:
                    out.append(Transition(name, False))
        return out

    def claim_announcements(self, *, now: datetime) -> list[AlertRow]:
        """The conditions whose start or clear is to be announced, claimed by this process:
        their ``notified_at`` is set to ``now`` (a concurrent claim gets none of them)."""
        t = m.alerts
        claimed: list[AlertRow] = []
        with self._writer.begin() as conn:
            names = conn.scalars(sa.select(t.c.condition).where(t.c.notified_at.is_(None))
                                 .order_by(t.c.condition)).all()
            for name in names:
                n = conn.execute(sa.update(t).where(t.c.condition == name,
                                                    t.c.notified_at.is_(None))
                                 .values(notified_at=now)).rowcount
                if n == 1:
                    row = conn.execute(sa.select(t).where(t.c.condition == name)).one()
                    claimed.append(_alert_row(row))
        return claimed

    def release_announcements(self, rows: Sequence[AlertRow]) -> None:
        """Give claimed announcements back (no channel took them): the next evaluation sends
        them again. A row changed since the claim is left as it is."""
        t = m.alerts
        with self._writer.begin() as conn:
            for row in rows:
                conn.execute(sa.update(t).where(t.c.condition == row.condition,
                                                t.c.active == row.active,
                                                t.c.notified_at == row.notified_at)
                             .values(notified_at=None))

    def stalled_events(self, before: datetime) -> tuple[int, datetime | None]:
        """Webhook events still pending that were received before ``before``: how many, and
        when the oldest was received."""
        t = m.events
        q = sa.select(sa.func.count(), sa.func.min(t.c.received_at)).where(
            t.c.status == "pending", t.c.received_at < before)
        with self.engine.connect() as conn:
            count, oldest = conn.execute(q).one()
        return int(count), oldest


def _alert_row(row: sa.Row[object]) -> AlertRow:
    r = row._mapping
    return AlertRow(condition=r["condition"], active=bool(r["active"]), since=r["since"],
                    detail=r["detail"], notified_at=r["notified_at"],
                    cleared_at=r["cleared_at"])
