"""A simulator's records: one table per entity, in id order, in memory or persisted to a SQLite
file. Timestamps are aware UTC datetimes; each simulator renders them in its vendor's format."""

from __future__ import annotations

import copy
import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from etl.sandbox.index import FieldIndex


@dataclass
class Row:
    id: int
    data: dict[str, Any]
    created: datetime
    updated: datetime


@dataclass
class Table:
    """Records of one entity, in id order. ``data`` holds the vendor-native fields except the
    id and the timestamps, which the simulator renders."""

    name: str
    rows: dict[int, Row] = field(default_factory=dict)
    next_id: int = 1
    indexes: dict[str, FieldIndex] = field(default_factory=dict, repr=False)
    version: int = 0  # bumped by every insert, update and delete
    #: Told of every write once it is done: (table, the record before or None, after or None).
    listener: Callable[[str, Row | None, Row | None], None] | None = field(default=None,
                                                                            repr=False)
    _orders: dict[str, tuple[int, list[Row]]] = field(default_factory=dict, repr=False)

    def ordered(self, name: str, key: Callable[[Row], Any]) -> list[Row]:
        """The rows sorted by ``key``, cached under ``name`` until the next write through this
        table. The list returned is never changed afterwards; do not change it."""
        cached = self._orders.get(name)
        if cached is None or cached[0] != self.version:
            cached = self._orders[name] = (self.version, sorted(self.rows.values(), key=key))
        return cached[1]

    def index(self, name: str, default: Any = None) -> FieldIndex:
        """The equality index of field ``name`` (built on first use, then kept current);
        ``default``: the value a record without one is read as (always the same per field)."""
        found = self.indexes.get(name)
        if found is None:
            found = self.indexes[name] = FieldIndex(name, default)
            for row in self.rows.values():
                found.add(row.id, row.data)
        if found.default != default:
            raise ValueError(f"{self.name}.{name} is indexed with default {found.default!r}")
        return found

    def insert(self, data: dict[str, Any], at: datetime, *, id: int | None = None) -> Row:
        rid = id if id is not None else self.next_id
        self.next_id = max(self.next_id, rid + 1)
        old = self.rows.get(rid)
        self.version += 1
        row = Row(rid, data, at, at)
        for index in self.indexes.values():
            if old is not None:
                index.remove(rid, old.data)
            index.add(rid, data)
        self.rows[rid] = row
        if self.listener is not None:
            self.listener(self.name, old, row)
        return row

    def get(self, rid: int) -> Row | None:
        return self.rows.get(rid)

    def update(self, rid: int, changes: dict[str, Any], at: datetime) -> Row:
        row = self.rows[rid]
        before = self._snapshot(row)
        self.version += 1
        touched = [i for name, i in self.indexes.items() if name in changes]
        for index in touched:
            index.remove(rid, row.data)
        row.data.update(changes)
        for index in touched:
            index.add(rid, row.data)
        row.updated = at
        if self.listener is not None:
            self.listener(self.name, before, row)
        return row

    def replace(self, rid: int, data: dict[str, Any], at: datetime) -> Row:
        """Change a record to hold exactly ``data`` (fields not in it are gone)."""
        row = self.rows[rid]
        before = self._snapshot(row)
        self.version += 1
        for index in self.indexes.values():
            index.remove(rid, row.data)
            index.add(rid, data)
        row.data = data
        row.updated = at
        if self.listener is not None:
            self.listener(self.name, before, row)
        return row

    def _snapshot(self, row: Row) -> Row | None:
        """A copy of ``row`` as it is, for the listener (None when nobody listens)."""
        if self.listener is None:
            return None
        return Row(row.id, copy.deepcopy(row.data), row.created, row.updated)

    def delete(self, rid: int) -> Row | None:
        row = self.rows.pop(rid, None)
        if row is not None:
            self.version += 1
            for index in self.indexes.values():
                index.remove(rid, row.data)
            if self.listener is not None:
                self.listener(self.name, row, None)
        return row

    def __iter__(self) -> Iterator[Row]:
        return iter(list(self.rows.values()))

    def __len__(self) -> int:
        return len(self.rows)


class Database:
    """All tables of one simulator. In memory, or persisted to a SQLite file with ``save``."""

    def __init__(self, names: list[str], path: str | None = None) -> None:
        self.path = path
        self.tables: dict[str, Table] = {n: Table(n) for n in names}
        self.lock = threading.RLock()
        if path:
            self._load()

    def __getitem__(self, name: str) -> Table:
        return self.tables[name]

    def clear(self) -> None:
        with self.lock:
            for name in list(self.tables):
                self.tables[name] = Table(name)

    def _connect(self) -> sqlite3.Connection:
        assert self.path
        con = sqlite3.connect(self.path)
        con.execute(
            "CREATE TABLE IF NOT EXISTS records (tbl TEXT, id INTEGER, data TEXT,"
            " created TEXT, updated TEXT, PRIMARY KEY (tbl, id))"
        )
        con.execute("CREATE TABLE IF NOT EXISTS counters (tbl TEXT PRIMARY KEY, next_id INTEGER)")
        return con

    def _load(self) -> None:
        con = self._connect()
        try:
            for tbl, rid, data, created, updated in con.execute(
                "SELECT tbl, id, data, created, updated FROM records ORDER BY tbl, id"
            ):
                if tbl in self.tables:
                    self.tables[tbl].rows[rid] = Row(
                        rid,
                        json.loads(data),
                        datetime.fromisoformat(created),
                        datetime.fromisoformat(updated),
                    )
            for tbl, next_id in con.execute("SELECT tbl, next_id FROM counters"):
                if tbl in self.tables:
                    self.tables[tbl].next_id = next_id
        finally:
            con.close()

    def save(self) -> None:
        """Write everything to the SQLite file (no-op in memory)."""
        if not self.path:
            return
        with self.lock:
            con = self._connect()
            try:
                with con:
                    con.execute("DELETE FROM records")
                    con.execute("DELETE FROM counters")
                    for t in self.tables.values():
                        con.executemany(
                            "INSERT INTO records VALUES (?, ?, ?, ?, ?)",
                            [
                                (
                                    t.name,
                                    r.id,
                                    json.dumps(r.data, ensure_ascii=False),
                                    r.created.isoformat(),
                                    r.updated.isoformat(),
                                )
                                for r in t.rows.values()
                            ],
                        )
                        con.execute("INSERT INTO counters VALUES (?, ?)", (t.name, t.next_id))
            finally:
                con.close()
