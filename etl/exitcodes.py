"""Exit codes of the ``ponte`` command, in one place (documented in the README and --help)."""

from __future__ import annotations

from enum import IntEnum

from etl.errors import ConfigError, EtlError, LockHeld, SystemUnavailable


class Exit(IntEnum):
    OK = 0  # success
    QUARANTINED = 1  # success, but some records were quarantined (see `ponte quarantine list`)
    CONFIG = 2  # bad configuration or mappings: nothing was written
    FAILED = 3  # a system was unavailable or the run failed: nothing checkpointed past it
    LOCKED = 4  # another run holds the lock: nothing was written


HELP = (
    "Exit codes: 0 success; 1 success with quarantined records; 2 bad configuration "
    "(nothing written); 3 a system unavailable or the run failed; 4 another run holds the lock."
)


def for_error(exc: EtlError) -> Exit:
    if isinstance(exc, ConfigError):
        return Exit.CONFIG
    if isinstance(exc, LockHeld):
        return Exit.LOCKED
    if isinstance(exc, SystemUnavailable):
        return Exit.FAILED
    return Exit.FAILED


def for_status(status: str) -> Exit:
    return {"ok": Exit.OK, "partial": Exit.QUARANTINED}.get(status, Exit.FAILED)
