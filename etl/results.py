"""What the façade's commands return, where no engine or ops result fits already.

:class:`etl.ponte.Ponte` returns one frozen dataclass per call: the engine's ``RunReport`` and
``VerifyReport``, the ops' ``StatusReport`` and ``WatermarkResult``, the state's ``RunRow`` and
``QuarantineRow`` for one row, and the results below for lists, counts and the daemon. Those the
CLI prints as JSON carry the one method that builds that document.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from etl.engine import RunReport
from etl.ops import WatermarkView, quarantine_dict, run_dict
from etl.state import QuarantineRow, RunRow

__all__ = ["DbUpgrade", "MetricsPublished", "QuarantineList", "QuarantineRetry", "Rebind",
           "RunList", "ScheduledRun", "Served", "WatermarkList"]


@dataclass(frozen=True)
class WatermarkList:
    """The stored watermarks of the entities' source sides (``Ponte.watermarks``)."""

    watermarks: tuple[WatermarkView, ...]

    def as_list(self) -> list[dict[str, Any]]:
        return [w.as_dict() for w in self.watermarks]


@dataclass(frozen=True)
class RunList:
    """The latest runs, newest first (``Ponte.runs``)."""

    runs: tuple[RunRow, ...]

    def as_list(self) -> list[dict[str, Any]]:
        return [run_dict(r) for r in self.runs]


@dataclass(frozen=True)
class QuarantineList:
    """Entries waiting in quarantine, oldest first (``Ponte.quarantine_list``)."""

    entries: tuple[QuarantineRow, ...]

    def as_list(self) -> list[dict[str, Any]]:
        return [quarantine_dict(r) for r in self.entries]


@dataclass(frozen=True)
class QuarantineRetry:
    """How many entries were made due now (``Ponte.quarantine_retry``)."""

    due: int


@dataclass(frozen=True)
class Rebind:
    """What ``rebind`` changed (``run_id`` None and no changes: it was bound as configured)."""

    run_id: str | None
    changes: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "changes": list(self.changes)}


@dataclass(frozen=True)
class DbUpgrade:
    """The state database after its migrations ran: its URL (password hidden) and revision."""

    state_url: str
    revision: str | None


@dataclass(frozen=True)
class MetricsPublished:
    """Whether PONTE_METRICS_FILE was rewritten: ``path`` None when it is not set; ``error``
    says why it was not written."""

    path: Path | None
    written: bool
    error: str | None = None


@dataclass(frozen=True)
class ScheduledRun:
    """One scheduled run of one entity: its report, or why there is none (``error``: the lock
    was held, or the run failed; it is logged, not raised)."""

    entity: str
    report: RunReport | None = None
    error: str | None = None


@dataclass(frozen=True)
class Served:
    """The schedules the daemon ran, by entity, until it was told to stop."""

    schedules: Mapping[str, str]
