"""Exit codes of the ``ponte`` command, in one place (documented in the README and --help).

An unexpected exception (a bug: ponte's own errors all have a code above) exits 5, not 1 or 3:
1 is a success for cron and the systemd units (records quarantined), and 3 means "a system was
down or the run was stopped" — retrying later helps there, it does not help a bug, so alerting
and the operator must be able to tell the two apart.
"""

from __future__ import annotations

from enum import IntEnum

from etl.errors import ConfigError, EtlError, LockHeld, SystemUnavailable


class Exit(IntEnum):
    OK = 0  # success
    QUARANTINED = 1  # success, but some records were quarantined (see `ponte quarantine list`)
    CONFIG = 2  # bad configuration or mappings: nothing was written
    FAILED = 3  # a system was unavailable, the run failed or was stopped/aborted
    LOCKED = 4  # another run holds the lock: nothing was written
    INTERNAL = 5  # unexpected internal error (a bug): the run is recorded as failed; report it


HELP = (
    "Exit codes: 0 success; 1 success with quarantined records; 2 bad configuration "
    "(nothing written); 3 a system unavailable, the run failed, or it was stopped (Ctrl-C, "
    "SIGTERM); 4 another run holds the lock; 5 internal error (a bug: please report it)."
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
    """ok -> 0, partial -> 1; failed, stopped and aborted -> 3."""
    return {"ok": Exit.OK, "partial": Exit.QUARANTINED}.get(status, Exit.FAILED)
