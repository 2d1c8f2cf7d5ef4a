"""The state database itself: connecting, migrating, SQLite's connection setup.

:class:`StoreBase` holds the SQLAlchemy ``Engine`` and what every part of the store needs (the
dialect's insert with ON CONFLICT, the writer connection, the bound-parameter chunk size);
:class:`etl.state.store.Store` adds the reads and writes on top. The schema is created and
upgraded by the Alembic migrations shipped in ``etl/state/migrations``, found through the package
path, so they work from an installed wheel.
"""

from __future__ import annotations

import importlib
import weakref
from collections.abc import Iterable, Iterator, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Self

import sqlalchemy as sa
from sqlalchemy import event, exc

from etl.errors import ConfigError

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000
# SQLite allows 999 bound parameters per statement in old builds; PostgreSQL far more.
_CHUNK = {"sqlite": 900, "postgresql": 5000}
_ADVISORY_LOCK_ID = 0x706F6E7465  # "ponte": serializes concurrent upgrades on PostgreSQL


def chunks(values: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    """``values`` in slices of at most ``size``."""
    for start in range(0, len(values), size):
        yield values[start:start + size]


def unique(values: Iterable[str]) -> list[str]:
    """``values`` without repeats, in first-seen order."""
    return list(dict.fromkeys(values))


@lru_cache(maxsize=1)
def head_revision() -> str | None:
    """The newest migration shipped with this ponte. Migrations are numbered in one line
    (``0005_events_alerts.py`` is revision ``0005``, its parent ``0004``), so the highest
    number is the head; read from the file names, without alembic: a run whose schema is
    current never loads it (the tests check this against alembic's own reading)."""
    numbers = sorted(p.name[:4] for p in (MIGRATIONS / "versions").glob("[0-9][0-9][0-9][0-9]_*.py"))
    return numbers[-1] if numbers else None


class StoreBase:
    """The state database's engine and its dialect's particulars."""

    def __init__(self, engine: sa.Engine, *, migrate: bool = True) -> None:
        self.engine = engine
        self.dialect: str = engine.dialect.name
        if self.dialect not in _CHUNK:
            raise ConfigError(f"PONTE_STATE_URL: unsupported database {self.dialect!r} "
                              "(use sqlite or postgresql)")
        if self.dialect == "sqlite":
            _install_sqlite_events(engine)
        # Write transactions: BEGIN IMMEDIATE on SQLite (see :mod:`etl.state.store`).
        self._writer = engine.execution_options(ponte_begin="IMMEDIATE")
        self._chunk = _CHUNK[self.dialect]
        # the dialect's own INSERT (upserts); only the one in use is imported (~35 ms each)
        self._insert = importlib.import_module(f"sqlalchemy.dialects.{self.dialect}").insert
        if migrate and self.revision() != head_revision():  # at head: no write lock taken
            self.upgrade()

    @classmethod
    def open(cls, url: str, *, migrate: bool = True, connection: str | None = None) -> Self:
        """Connect to ``url`` (the value of PONTE_STATE_URL) and bring the schema to head.

        ``connection``: a named connection's own part of the database (:func:`connection_url`).
        """
        try:
            parsed = sa.make_url(url)
        except exc.ArgumentError as e:
            raise ConfigError(f"PONTE_STATE_URL: cannot parse the state database URL: {e}") from None
        parsed, schema = connection_url(parsed, connection)
        connect_args = {"options": f"-c search_path={schema}"} if schema else {}
        safe = parsed.render_as_string(hide_password=True)
        try:
            engine = sa.create_engine(parsed, connect_args=connect_args)
            if engine.dialect.name == "sqlite":
                _install_sqlite_events(engine)
        except (exc.ArgumentError, exc.NoSuchModuleError, ImportError, TypeError) as e:
            raise ConfigError(f"PONTE_STATE_URL: cannot use {safe}: "
                              f"{_scrub(str(e), parsed)}") from None
        try:
            if schema:
                _create_schema(parsed, schema)
            with engine.connect():
                pass
            return cls(engine, migrate=migrate)
        except exc.DBAPIError as e:
            engine.dispose()
            reason = _scrub(str(e.orig), parsed).strip()
            raise ConfigError(f"PONTE_STATE_URL: cannot open the state database {safe}: "
                              f"{reason}") from None

    def upgrade(self) -> None:
        """Apply every pending migration (idempotent; concurrent callers are serialized)."""
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with self._writer.begin() as conn:
            if self.dialect == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"),
                             {"id": _ADVISORY_LOCK_ID})
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def revision(self) -> str | None:
        """The schema's migration revision (None before the first migration)."""
        with self.engine.connect() as conn:
            if not sa.inspect(conn).has_table("alembic_version"):
                return None
            found = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
            return None if found is None else str(found)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def safe_url(self) -> str:
        """The state database's URL with any password hidden (for messages)."""
        return self.engine.url.render_as_string(hide_password=True)


def connection_url(url: sa.URL, connection: str | None) -> tuple[sa.URL, str | None]:
    """Where a named connection's state lives in the state database at ``url``.

    PostgreSQL: its own schema (``conn_<name>``), set as the search path of every session, so
    every table, lock and migration of that connection is in it and no query can see another
    connection's rows. SQLite: its own file beside the default (``ponte.db`` ->
    ``ponte.conn_<name>.db``). None (the single-connection settings): the database as given.
    Returns the URL to open and the PostgreSQL schema (None elsewhere).
    """
    if connection is None:
        return url, None
    from etl.connections import state_part  # the name rules live with the connections

    part = state_part(connection)
    if url.get_backend_name() == "postgresql":
        return url, part
    if url.get_backend_name() == "sqlite":
        path = url.database or ""
        if path in ("", ":memory:") or path.startswith("file:"):
            raise ConfigError(f"PONTE_STATE_URL: a named connection ({connection!r}) needs a "
                              "state database file or PostgreSQL, not an in-memory SQLite")
        stem, dot, ext = path.rpartition(".")
        named = f"{stem}.{part}.{ext}" if dot and "/" not in ext else f"{path}.{part}"
        return url.set(database=named), None
    return url, None


def _create_schema(url: sa.URL, schema: str) -> None:
    """Create a connection's schema once (serialized with the migrations: no race between two
    processes opening a new connection at the same time)."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as conn:
            exists = conn.execute(sa.text("SELECT 1 FROM pg_namespace WHERE nspname = :s"),
                                  {"s": schema}).first()
            if exists is None:
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"),
                             {"id": _ADVISORY_LOCK_ID})
                conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    finally:
        engine.dispose()


def _scrub(text: str, url: sa.URL) -> str:
    """``text`` with the URL's password removed, should a driver echo it."""
    if url.password:
        text = text.replace(str(url.password), "***")
    return text


_SQLITE_EVENTS: weakref.WeakSet[sa.Engine] = weakref.WeakSet()  # engines already set up


def _install_sqlite_events(engine: sa.Engine) -> None:
    """WAL, busy timeout and foreign keys on every connection; explicit BEGIN so that write
    transactions can be BEGIN IMMEDIATE (pysqlite's own implicit BEGIN is switched off)."""
    if engine in _SQLITE_EVENTS:
        return

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        mode = conn.get_execution_options().get("ponte_begin", "")
        conn.exec_driver_sql(f"BEGIN {mode}".strip())

    _SQLITE_EVENTS.add(engine)
