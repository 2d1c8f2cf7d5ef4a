"""One exception tree for all of ponte.

    EtlError
    ├── ConfigError           bad settings or mappings; stop before anything is written (exit 2)
    │   └── StateBoundElsewhere   the state database was built with other systems (exit 2)
    │   └── UnsentField       a mapped native path no record of a listing carries: that entity
    │                         stops before writing; the run goes on with the others
    ├── SystemUnavailable     a whole side is down or refuses us; the run fails, nothing is
    │                         checkpointed past the failure (exit 3)
    ├── RecordError           one record is bad or was rejected; quarantine it and go on
    ├── RetriableError        429 / 5xx / timeout / dropped connection; back off and retry
    ├── WatermarkAhead        a stored watermark is past the run's signpost; the run fails (exit 3)
    ├── LockHeld              another run holds the entity's lock (exit 4)
    ├── Stopped               a stop was asked (SIGTERM/SIGINT): the run ends between chunks,
    │                         whole chunks kept, watermark not moved (exit 3)
    ├── LockLost              another run took the entity's lock (our lease expired): stop
    │                         before writing more (exit 3)
    └── StateConflict         a checkpoint would break the state's invariants (a key linked to
                              two partners): rolled back whole; the run fails (exit 3)

    Aborted (a KeyboardInterrupt, outside the tree on purpose: no ``except Exception`` may
    swallow it) — a second SIGINT/SIGTERM: stop at once; the run is recorded as aborted (exit 3)

Vendor and httpx exceptions are translated into this tree at the connector boundary and never
leak into the engine. Messages never contain secrets.
"""

from __future__ import annotations


class EtlError(Exception):
    """Base of every error ponte raises on purpose."""


class ConfigError(EtlError):
    """Settings or a mapping file are wrong. Names what is wrong and where."""


class StateBoundElsewhere(ConfigError):
    """The state database belongs to other systems (kind, base URL or account differ)."""


class UnsentField(ConfigError):
    """A mapped native path that the system does not send (absent from every record read).

    Reading it would give ``None`` everywhere and blank the field on the other side, so the
    entity stops before anything is written for it."""

    def __init__(self, entity: str, message: str) -> None:
        super().__init__(message)
        self.entity = entity


class SystemUnavailable(EtlError):
    """A whole system is down, unreachable, or refuses our credentials."""

    def __init__(self, system: str, message: str) -> None:
        super().__init__(f"{system}: {message}")
        self.system = system


class NotSent(SystemUnavailable):
    """Every attempt of a request failed before it reached the system: the connection was
    refused or never made (or the system answered HTTP 429, refusing it unprocessed). A write
    that ends so was never carried out: no look-up is needed to know it. ``last`` says how
    the last attempt failed."""

    def __init__(self, system: str, message: str, *, last: str = "") -> None:
        super().__init__(system, message)
        self.last = last


class RecordError(EtlError):
    """One record cannot be synced: invalid, or rejected by the target.

    ``field`` names the offending field when known; ``kind`` is ``invalid`` (caught before
    sending), ``rejected`` (the target refused it) or ``conflict``.
    """

    def __init__(self, message: str, *, field: str | None = None, kind: str = "invalid") -> None:
        super().__init__(message)
        self.field = field
        self.kind = kind


class RetriableError(EtlError):
    """A transient failure: rate limit, server error, timeout. Worth trying again."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class LockHeld(EtlError):
    """Another run holds the lock of this entity."""


class WatermarkAhead(EtlError):
    """A stored watermark is ahead of the run's signpost (the state was edited, or the clock
    went back): nothing after it could be read, so the entity's run fails instead of "ok"."""


class Stopped(EtlError):
    """The run was asked to stop (SIGTERM/SIGINT) and did so between chunks."""


class WaitAsked(Stopped):
    """A system asked to wait longer than the run may wait in line (a targeted sync of
    ``ponte serve``, whose other events must not stand behind it): the run stops between
    chunks, and what it was doing is tried again ``seconds`` later."""

    def __init__(self, message: str, seconds: float) -> None:
        super().__init__(message)
        self.seconds = seconds


class LockLost(EtlError):
    """Another run took this entity's lock (our lease expired): stop before writing more."""


class StateConflict(EtlError):
    """A checkpoint would break the store's invariants (e.g. link a key to two partners).

    Raised before commit; the whole checkpoint is rolled back."""


class Aborted(KeyboardInterrupt):
    """A second SIGINT/SIGTERM: the run stops at once (the chunk in progress rolls back)."""
