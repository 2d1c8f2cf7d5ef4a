"""The reference lists of a run (users, sellers, tags): each side's list read once, when a
mapped field first needs it, and kept for the run. A dry run never creates a missing item: it
stands in a placeholder key, so the plan shows what would be written.

Where a system refuses an identical read repeated within a short time (Omie: 60 s,
``Capabilities.repeat_refused_s``), the copy an earlier command read that recently is taken
from the state instead: a ``verify`` right after a ``sync`` does not wait a minute for a list
the sync has just read. A value that copy lacks makes the list be read anew, as within a run."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from etl.connectors.base import Connector, HasReferences
from etl.errors import ConfigError
from etl.mapping.models import Side

if TYPE_CHECKING:
    from etl.state import Store

PLANNED = "(new) "  # a dry run's key of an item it would create


class RunReferences:
    """:class:`etl.mapping.apply.ReferenceTables` over the run's connectors."""

    def __init__(self, connectors: dict[Side, Connector], *, dry_run: bool = False,
                 store: Store | None = None,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.connectors = connectors
        self.dry_run = dry_run
        self.store, self.now = store, now
        self._rows: dict[tuple[Side, str], dict[str, str]] = {}
        self._read_at: dict[tuple[Side, str], datetime] = {}  # of the lists shared by commands
        self._borrowed: set[tuple[Side, str]] = set()  # the copies an earlier command read
        self._lock = threading.Lock()
        self._refreshed: set[tuple[Side, str]] = set()  # re-read at most once a run
        self.reads = 0  # lists read so far (a test checks once per run)

    def _conn(self, side: Side) -> HasReferences:
        conn = self.connectors.get(side)
        if not isinstance(conn, HasReferences):
            kind = getattr(conn, "kind", "?")
            raise ConfigError(f"the {side} connector ({kind}) has no reference lists; a mapped "
                              "field with transform 'reference' or 'tag_list' needs its spec's "
                              "'references'")
        return conn

    def new_run(self) -> None:
        """Lists kept for the next run of a session (ponte serve's event runs): a value a list
        lacks may again make that list be read anew, once in the run, before it is created."""
        with self._lock:
            self._refreshed.clear()

    def rows(self, side: Side, name: str, *, fresh: bool = False) -> dict[str, str]:
        with self._lock:
            if fresh and (side, name) in self._rows and (side, name) not in self._refreshed:
                self._refreshed.add((side, name))
                del self._rows[(side, name)]
            if (side, name) not in self._rows:
                conn = self._conn(side)
                rows = None if fresh else self._kept(side, name)
                if rows is not None:
                    self._borrowed.add((side, name))
                else:
                    self._borrowed.discard((side, name))
                    read_at = self.now()
                    rows = conn.reference(name)
                    self.reads += 1
                    self._keep(side, name, rows, read_at)
                self._rows[(side, name)] = rows
            return self._rows[(side, name)]

    def borrowed(self, side: Side, name: str) -> bool:
        """Whether the run's copy of the list is one an earlier command read (from the state),
        not read by this run."""
        with self._lock:
            return (side, name) in self._borrowed

    def _shared(self, side: Side) -> float | None:
        """How long a list of ``side`` read by one command serves the next (None: not kept)."""
        conn = self.connectors.get(side)
        if conn is None or self.store is None:
            return None
        return conn.capabilities.repeat_refused_s

    def _kept(self, side: Side, name: str) -> dict[str, str] | None:
        seconds = self._shared(side)
        if seconds is None or self.store is None:
            return None
        kept = self.store.kept_reference(side, name,
                                         since=self.now() - timedelta(seconds=seconds))
        if kept is None:
            return None
        rows, self._read_at[(side, name)] = kept
        return rows

    def _keep(self, side: Side, name: str, rows: dict[str, str], read_at: datetime) -> None:
        if self._shared(side) is None or self.store is None or self.dry_run:
            return
        self._read_at[(side, name)] = read_at
        self.store.keep_reference(side, name, rows, read_at=read_at)

    def create(self, side: Side, name: str, value: str) -> str:
        rows = self.rows(side, name)
        key = PLANNED + value if self.dry_run else self._conn(side).create_reference(name, value)
        with self._lock:
            rows[key] = value
            read_at = self._read_at.get((side, name))
            if read_at is not None and not self.dry_run:  # the copy as read, plus this item
                self._keep(side, name, rows, read_at)
        return key

    def describe(self, side: Side, name: str) -> str:
        return self._conn(side).describe_reference(name)
