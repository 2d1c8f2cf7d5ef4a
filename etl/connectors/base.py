"""The protocol the engine uses to talk to any system, without knowing which one it is.

A connector speaks its vendor's API and hands the engine *vendor-native records* (plain dicts as
the API returns them). The mappings (``mappings/<pair>/*.yaml``) say which native paths carry
which mapped field; the connector only knows its endpoints and quirks.

Entities are the engine's words (``customers``, ``products``, ``orders``); each connector says
which native collection serves each.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol, runtime_checkable

from etl.errors import RecordError
from etl.watermark import Window

Record = dict[str, Any]


@dataclass(frozen=True)
class Capabilities:
    """What the engine needs to know to use a system well. Endpoint facts are data."""

    page_size: int  # largest page the list endpoint serves
    batch_size: int  # records per write request (1 where there is no batch endpoint)
    requests_per_minute: int
    max_concurrency: int
    clock_zone: str  # IANA name of the zone the API's timestamps are in ("UTC" if aware)
    clock_precision: timedelta  # resolution of the changed-since filter and of updated-at
    has_external_id_upsert: bool  # a create can be retried safely by external id
    has_changed_since: bool  # list endpoint filters by updated-at
    # entity -> the native path of the updated-at field, named when a record has none
    updated_at_paths: Mapping[str, str] = field(default_factory=dict)
    # list_changed yields a window in updated-at order (keyset paging), so every record up to
    # the last one yielded so far was read: the watermark may move per chunk
    ordered_by_updated_at: bool = False
    # entities whose listing leaves out ponte's own last changes (``Window.skip_own``): a
    # record ponte wrote is not listed again until someone else changes it
    skips_own_writes: frozenset[str] = frozenset()
    # an identical read repeated within this many seconds is refused (Omie's 60 s): a
    # reference list one command read that recently serves the next one (None: no such rule)
    repeat_refused_s: float | None = None


@dataclass
class WriteOp:
    """One record to write. ``key`` is set for updates; ``external_id`` is ponte's stable id for
    the record (the other side's key, prefixed), used as the target's external-id / integration
    code so a retried create is found instead of duplicated."""

    action: Literal["create", "update"]
    payload: Record  # native fields to send (only the mapped, changed ones for updates)
    key: str | None = None
    external_id: str | None = None


@dataclass
class WriteResult:
    op: WriteOp
    key: str | None = None  # the target's key of the written record
    record: Record | None = None  # the record as the target stores it now, when known
    error: RecordError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class ApiCalls:
    """HTTP requests made, split into reads and writes."""

    read: int = 0
    write: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"read": self.read, "write": self.write}


@dataclass
class RetryStats:
    """What the HTTP layer went through: public, read by the run report."""

    retries: int = 0
    got_429: int = 0
    got_5xx: int = 0
    timeouts: int = 0
    dropped: int = 0

    def as_dict(self) -> dict[str, int]:
        return {k: int(v) for k, v in vars(self).items()}


@runtime_checkable
class Connector(Protocol):
    """What the engine may call, and what each call may raise.

    Errors are the tree of :mod:`etl.errors`, nothing else escapes a connector:

    * :class:`~etl.errors.SystemUnavailable`: the system is down, refuses the credentials, or
      kept failing after the retries (any method that talks to it). The run fails (exit 3).
    * :class:`~etl.errors.ConfigError`: an entity or field this connector does not have, or a
      request the system rejects as malformed (a bad filter): the configuration is wrong.
    * :class:`~etl.errors.RecordError`: one record is bad; never raised, only *returned* (in
      :class:`WriteResult` or from :meth:`delete`), so one record never fails the others.
    """

    system: str  # "crm" or "erp"
    kind: str  # "ploomes", "omie", ...
    capabilities: Capabilities
    calls: ApiCalls
    stats: RetryStats  # retries, 429s, 5xx, timeouts, dropped connections so far

    def entities(self) -> set[str]:
        """Entities this connector can read or write."""
        ...

    def key_of(self, entity: str, record: Record) -> str:
        """The record's key in this system, as a string. Raises nothing for a record this
        connector returned; ``ConfigError`` for an unknown entity."""
        ...

    def updated_at(self, entity: str, record: Record) -> datetime | None:
        """The record's last-change instant, aware UTC, at the source's precision; ``None``
        when the record carries no usable one (the engine quarantines it, naming
        ``capabilities.updated_at_paths[entity]``). Never raises for a bad value."""
        ...

    def list_changed(self, entity: str, window: Window) -> Iterator[list[Record]]:
        """Pages of records changed in ``window``: in updated-at order when
        ``capabilities.ordered_by_updated_at``, else in the system's own order (a record may
        then appear twice, the later version last).

        Systems without a changed-since filter yield everything. The end of the list is not an
        error. A system that is down raises :class:`etl.errors.SystemUnavailable`.
        """
        ...

    def read_by_keys(self, entity: str, keys: Sequence[str]) -> list[Record]:
        """Current records for these keys; missing keys (and keys that cannot be this
        system's) are simply absent. Raises ``SystemUnavailable``."""
        ...

    def find_by(self, entity: str, native_field: str, values: Sequence[str], *,
                unlinked_only: bool = False) -> list[Record]:
        """Records whose ``native_field`` (digits-only tax id, product code, external id) is in
        ``values``; used to match before creating. ``unlinked_only``: the caller uses only
        records that are no other record's partner yet (natural-key matching), so an answer
        read earlier in the run may serve it after ponte's own writes, which only make or
        change partners. ``ConfigError`` when the entity cannot be searched by
        ``native_field``; ``SystemUnavailable``."""
        ...

    def write_batch(self, entity: str, ops: Sequence[WriteOp]) -> list[WriteResult]:
        """Write these records. One bad record yields a result with ``error`` set; it never
        fails the others. Transient failures are retried inside; a system that is down raises
        :class:`etl.errors.SystemUnavailable`."""
        ...

    def delete(self, entity: str, key: str) -> RecordError | None:
        """Delete one record; ``None`` when done or already gone, else the reason (returned,
        not raised). Raises ``SystemUnavailable``."""
        ...

    def close(self) -> None:
        """Release what the connector owns; never raises."""
        ...


@runtime_checkable
class Deactivates(Protocol):
    """A connector that may know how to deactivate a record of an entity (a spec's
    ``deactivate`` request); the engine uses it where a mapping says ``deletes: deactivate``,
    else writes the mapping's ``deactivate`` fields as an update."""

    def can_deactivate(self, entity: str) -> bool:
        """The system has a deactivate operation for ``entity``; raises nothing."""
        ...

    def deactivate(self, entity: str, key: str) -> RecordError | None:
        """Deactivate one record; ``None`` when done or already gone, else the reason
        (returned, not raised). Raises ``SystemUnavailable``."""
        ...


@runtime_checkable
class HasReferences(Protocol):
    """A connector with reference lists (a spec's ``references``: users, sellers, tags) that
    mapped fields point into by id."""

    def describe_reference(self, name: str) -> str:
        """What one item of the list is, for messages (``Omie seller (vendedor)``)."""
        ...

    def reference(self, name: str) -> dict[str, str]:
        """The whole list, key -> value. Raises ``SystemUnavailable``; ``ConfigError`` for a
        list the connector does not have."""
        ...

    def create_reference(self, name: str, value: str) -> str:
        """Add ``value``; its key. A refusal is a raised :class:`RecordError`."""
        ...


@contextmanager
def stops_waits(connectors: Iterable[object], should_stop: Callable[[], bool] | None
                ) -> Iterator[None]:
    """For the block: a read that waits as its system asked (Omie's 60 s for a repeated
    listing) gives way to ``should_stop`` (a signal), on the connectors that wait so (those
    with a ``should_stop`` attribute). What they had before is put back after."""
    before = [(c, c.should_stop) for c in connectors if hasattr(c, "should_stop")]
    for c, _ in before:
        setattr(c, "should_stop", should_stop)  # noqa: B010 - not every connector has it
    try:
        yield
    finally:
        for c, value in before:
            setattr(c, "should_stop", value)  # noqa: B010
