"""Tables of the state store, as SQLAlchemy Core.

The schema itself is created by the Alembic migrations in ``migrations/versions``; these table
objects describe it for queries. Two column types carry the store's conventions:

* ``UTCDateTime``: accepts only aware datetimes, stores UTC (naive UTC on SQLite, which has no
  time zones) and always returns aware UTC datetimes, on every backend.
* ``JSONText``: compact JSON text (``ensure_ascii=False``), so the stored value is readable and
  byte-identical on SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.types import TypeDecorator

UTC = dt.UTC


def to_utc(value: dt.datetime) -> dt.datetime:
    """``value`` as an aware UTC datetime; a naive datetime is refused (its zone is unknown)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value.isoformat()} given to the state store; "
                         "pass an aware datetime (UTC)")
    return value.astimezone(UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timestamp stored as UTC and returned as an aware UTC datetime."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        value = to_utc(value)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: dt.datetime | None,
                             dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _json_default(value: Any) -> Any:
    """Values JSON has no type for: timestamps and dates as ISO text, decimals as text,
    numpy scalars as their Python value."""
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    item = getattr(value, "item", None)  # numpy / pandas scalars
    if callable(item):
        return item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps(value: Any) -> str:
    """Compact JSON text, as stored in every JSON column."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=_json_default)


class JSONText(TypeDecorator[Any]):
    """A JSON value stored as compact text."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else dumps(value)

    def process_result_value(self, value: str | None, dialect: Dialect) -> Any:
        return None if value is None else json.loads(value)


metadata = MetaData()

watermarks = Table(
    "watermarks", metadata,
    Column("entity", String(), nullable=False),
    Column("system", String(), nullable=False),
    Column("value", UTCDateTime, nullable=True),
    Column("updated_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("entity", "system", name="pk_watermarks"),
)

snapshots = Table(
    "snapshots", metadata,
    Column("system", String(), nullable=False),
    Column("entity", String(), nullable=False),
    Column("key", String(), nullable=False),
    Column("h1", BigInteger, nullable=False),
    Column("h2", BigInteger, nullable=False),
    Column("data", JSONText, nullable=False),
    Column("natural_key", Text, nullable=True),
    Column("source_updated", UTCDateTime, nullable=True),
    Column("seen_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("system", "entity", "key", name="pk_snapshots"),
    Index("ix_snapshots_natural_key", "system", "entity", "natural_key"),
)

links = Table(
    "links", metadata,
    Column("entity", String(), nullable=False),
    Column("crm_key", String(), nullable=False),
    Column("erp_key", String(), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("deleted_in", String(), nullable=True),  # tombstone: the side it was deleted from
    UniqueConstraint("entity", "crm_key", name="uq_links_crm"),
    UniqueConstraint("entity", "erp_key", name="uq_links_erp"),
)

runs = Table(
    "runs", metadata,
    Column("id", String(), primary_key=True),
    Column("kind", String(), nullable=False),
    Column("status", String(), nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime, nullable=True),
    Column("entities", JSONText, nullable=False),
    Column("report", JSONText, nullable=True),
    Index("ix_runs_started_at", "started_at"),
)

quarantine = Table(
    "quarantine", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("entity", String(), nullable=False),
    Column("system", String(), nullable=False),
    Column("key", String(), nullable=False),
    Column("kind", String(), nullable=False),
    Column("reason", Text, nullable=False),
    Column("field", Text, nullable=True),
    Column("payload", JSONText, nullable=True),
    Column("attempts", Integer, nullable=False),
    Column("first_seen", UTCDateTime, nullable=False),
    Column("last_seen", UTCDateTime, nullable=False),
    Column("next_retry_at", UTCDateTime, nullable=False),
    Column("run_id", String(), nullable=True),
    UniqueConstraint("entity", "system", "key", name="uq_quarantine_record"),
)

locks = Table(
    "locks", metadata,
    Column("name", String(), primary_key=True),
    Column("owner", String(), nullable=False),
    Column("acquired_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
)

intents = Table(
    "intents", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("entity", String(), nullable=False),
    Column("target_system", String(), nullable=False),
    Column("source_key", String(), nullable=False),
    Column("external_id", String(), nullable=False),
    Column("payload", JSONText, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("entity", "target_system", "source_key", name="uq_intents_source"),
)

bindings = Table(
    "bindings", metadata,
    Column("side", String(), primary_key=True),
    Column("kind", String(), nullable=False),
    Column("base_url", Text, nullable=False),
    Column("account_hash", String(), nullable=False),  # salted scrypt hash, never the secret
    Column("salt", String(), nullable=False),
    Column("bound_at", UTCDateTime, nullable=False),
)

# computed fields (etl/mapping/computed.py): per-record facts of a source entity, the records
# whose computed values must be worked out again, and the window each was last computed with
computed_facts = Table(
    "computed_facts", metadata,
    Column("target", String(), nullable=False),  # the entity whose fields are computed
    Column("source", String(), nullable=False),  # the computed source's name in its mapping
    Column("key", String(), nullable=False),  # the source record's key (an order)
    Column("link", String(), nullable=True),  # the key of the target record (its customer)
    Column("amount", Float, nullable=True),
    Column("at", UTCDateTime, nullable=True),
    Column("counts", Boolean, nullable=False),  # passed the source's 'where'
    PrimaryKeyConstraint("target", "source", "key", name="pk_computed_facts"),
    Index("ix_computed_facts_link", "target", "source", "link"),
    Index("ix_computed_facts_at", "target", "source", "at"),
)

computed_marks = Table(
    "computed_marks", metadata,
    Column("target", String(), nullable=False),
    Column("key", String(), nullable=False),
    Column("seq", Integer, nullable=False),  # bumped by every new mark
    PrimaryKeyConstraint("target", "key", name="pk_computed_marks"),
)

computed_windows = Table(
    "computed_windows", metadata,
    Column("target", String(), nullable=False),
    Column("source", String(), nullable=False),
    Column("cutoff", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("target", "source", name="pk_computed_windows"),
)

# webhook events accepted by ``ponte serve`` (stored before the 200; a redelivery of the same
# vendor event is a no-op) and turned into targeted syncs by its worker loop
events = Table(
    "events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("side", String(), nullable=False),  # crm | erp: the system that sent it
    Column("event_id", String(), nullable=False),  # the vendor's identity of the event
    Column("collection", String(), nullable=True),  # the vendor collection it names
    Column("entity", String(), nullable=True),  # the mapping entity; None: not covered
    Column("key", String(), nullable=True),  # the record's key on that side
    Column("action", String(), nullable=False),  # create | update | delete | other
    Column("status", String(), nullable=False),  # pending | done | ignored | failed
    Column("attempts", Integer, nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    Column("due_at", UTCDateTime, nullable=False),  # not processed before (debounce, retry)
    Column("processed_at", UTCDateTime, nullable=True),
    Column("error", Text, nullable=True),
    Column("payload", JSONText, nullable=True),  # the record as the event carried it, no secrets
    UniqueConstraint("side", "event_id", name="uq_events_identity"),
    Index("ix_events_status_due", "status", "due_at"),
)

# alert conditions (run failed, quarantine over a threshold, drift, lag, stalled backlog): each
# is announced once when it starts and once when it clears
alerts = Table(
    "alerts", metadata,
    Column("condition", String(), primary_key=True),  # e.g. "run_failed:customers"
    Column("active", Boolean, nullable=False),
    Column("since", UTCDateTime, nullable=False),
    Column("detail", Text, nullable=False),
    Column("notified_at", UTCDateTime, nullable=True),
    Column("cleared_at", UTCDateTime, nullable=True),
)

reference_lists = Table(
    "reference_lists", metadata,
    Column("side", String(), nullable=False),  # crm | erp
    Column("name", String(), nullable=False),  # the list's name in the connector's spec
    Column("rows", JSONText, nullable=False),  # key -> value, as the system listed it
    Column("read_at", UTCDateTime, nullable=False),  # when it was read (or an item added)
    PrimaryKeyConstraint("side", "name", name="pk_reference_lists"),
)
