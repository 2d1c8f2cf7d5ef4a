"""Every connection at once: ``ponte status --all`` and the status page of a deployment with
named connections (``PONTE_CONNECTIONS_DIR``, :mod:`etl.connections`).

Each connection's status is the one ``ponte status --connection NAME`` shows
(:func:`etl.ops.status`, read from that connection's own part of the state database). A
connection whose settings or state cannot be read is listed with its error: one broken company
never hides the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from etl.clock import Clock, SystemClock
from etl.errors import EtlError
from etl.ops import StatusReport
from etl.settings import Settings


@dataclass(frozen=True)
class ConnectionStatus:
    """One connection's status (``report``), or why it could not be read (``error``)."""

    name: str
    report: StatusReport | None
    error: str | None = None

    @property
    def quarantined(self) -> int:
        if self.report is None:
            return 0
        return sum(s.quarantined for e in self.report.entities for s in e.sides)

    @property
    def max_lag_s(self) -> float | None:
        """The largest watermark lag of its entities and sides (None: no watermark yet)."""
        lags = [s.lag_s for e in self.report.entities for s in e.sides
                if s.lag_s is not None] if self.report else []
        return max(lags, default=None)

    @property
    def failing(self) -> list[str]:
        """Entities whose last run did not end ok."""
        if self.report is None:
            return []
        return [e.entity for e in self.report.entities
                if e.last_run is not None and e.last_run.status != "ok"]

    def as_dict(self) -> dict[str, Any]:
        if self.report is None:
            return {"error": self.error}
        return self.report.as_dict()


@dataclass(frozen=True)
class FleetStatus:
    now: datetime
    connections: list[ConnectionStatus]

    def as_dict(self) -> dict[str, Any]:
        return {"now": self.now.isoformat(),
                "connections": {c.name: c.as_dict() for c in self.connections}}


def load(folder: Path | None = None) -> dict[str, Settings | EtlError]:
    """Every connection's settings by name, or the error that stops them (the folder itself
    unset, missing or holding a bad file name raises :class:`ConfigError`)."""
    from etl.connections import names, settings_for

    out: dict[str, Settings | EtlError] = {}
    for name in names(folder):
        try:
            out[name] = settings_for(name, folder)
        except EtlError as exc:
            out[name] = exc
    return out


def status_all(loaded: dict[str, Settings | EtlError], *, clock: Clock | None = None
               ) -> FleetStatus:
    """The status of each connection of ``loaded`` (:func:`load`), in name order."""
    from etl.ponte import Ponte

    clock = clock or SystemClock()
    out = []
    for name, settings in sorted(loaded.items()):
        if isinstance(settings, EtlError):
            out.append(ConnectionStatus(name, None, str(settings)))
            continue
        try:
            out.append(ConnectionStatus(name, Ponte(settings, clock=clock).status()))
        except EtlError as exc:
            out.append(ConnectionStatus(name, None, str(exc)))
    return FleetStatus(clock.now(), out)


__all__ = ["ConnectionStatus", "FleetStatus", "load", "status_all"]
