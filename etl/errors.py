"""One exception tree for all of ponte.

    EtlError
    ├── ConfigError           bad settings or mappings; stop before anything is written (exit 2)
    ├── SystemUnavailable     a whole side is down or refuses us; the run fails, nothing is
    │                         checkpointed past the failure (exit 3)
    ├── RecordError           one record is bad or was rejected; quarantine it and go on
    ├── RetriableError        429 / 5xx / timeout / dropped connection; back off and retry
    └── LockHeld              another run holds the entity's lock (exit 4)

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


class SystemUnavailable(EtlError):
    """A whole system is down, unreachable, or refuses our credentials."""

    def __init__(self, system: str, message: str) -> None:
        super().__init__(f"{system}: {message}")
        self.system = system


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


class Aborted(KeyboardInterrupt):
    """A second SIGINT/SIGTERM: the run stops at once (the chunk in progress rolls back)."""
