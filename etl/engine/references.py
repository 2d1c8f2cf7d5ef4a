"""The reference lists of a run (users, sellers, tags): each side's list read once, when a
mapped field first needs it, and kept for the run. A dry run never creates a missing item: it
stands in a placeholder key, so the plan shows what would be written."""

from __future__ import annotations

import threading

from etl.connectors.base import Connector, HasReferences
from etl.errors import ConfigError
from etl.mapping.models import Side

PLANNED = "(new) "  # a dry run's key of an item it would create


class RunReferences:
    """:class:`etl.mapping.apply.ReferenceTables` over the run's connectors."""

    def __init__(self, connectors: dict[Side, Connector], *, dry_run: bool = False) -> None:
        self.connectors = connectors
        self.dry_run = dry_run
        self._rows: dict[tuple[Side, str], dict[str, str]] = {}
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
                self._rows[(side, name)] = self._conn(side).reference(name)
                self.reads += 1
            return self._rows[(side, name)]

    def create(self, side: Side, name: str, value: str) -> str:
        rows = self.rows(side, name)
        key = PLANNED + value if self.dry_run else self._conn(side).create_reference(name, value)
        with self._lock:
            rows[key] = value
        return key

    def describe(self, side: Side, name: str) -> str:
        return self._conn(side).describe_reference(name)
