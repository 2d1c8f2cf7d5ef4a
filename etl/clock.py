"""What time it is, injected: every entry point of :class:`etl.ponte.Ponte` reads the time
from one :class:`Clock` instead of taking ``now`` as a datetime here and a callable there.

The library's pure functions take the instant they need (``now: datetime``, read once from the
clock by the façade); the engine, which reads the time again as a run goes on (lease renewals),
is given ``clock.now`` itself.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    """A source of aware UTC datetimes."""

    def now(self) -> datetime: ...


class SystemClock:
    """The machine's clock, in UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def __repr__(self) -> str:
        return "SystemClock()"


def _aware(value: datetime, what: str) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"{what}: {value.isoformat()} has no time zone; give an aware datetime")
    return value


class ManualClock:
    """A clock that stands still until told to move (tests): ``now()`` is ``at`` until
    :meth:`advance` or :meth:`set` change it."""

    def __init__(self, at: datetime) -> None:
        self._at = _aware(at, "ManualClock")

    def now(self) -> datetime:
        return self._at

    def advance(self, seconds: float) -> None:
        self._at += timedelta(seconds=seconds)

    def set(self, at: datetime) -> None:
        self._at = _aware(at, "ManualClock.set")

    def __repr__(self) -> str:
        return f"ManualClock({self._at.isoformat()})"


class OffsetClock:
    """Another clock (default: the system's) shifted by an offset that :meth:`advance` grows:
    time still passes, and a demo or a test can jump ahead together with the simulators'
    clocks."""

    def __init__(self, base: Clock | None = None, *, offset_s: float = 0.0) -> None:
        self.base: Clock = base or SystemClock()
        self.offset = timedelta(seconds=offset_s)

    def now(self) -> datetime:
        return self.base.now() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)

    def __repr__(self) -> str:
        return f"OffsetClock({self.base!r}, offset_s={self.offset.total_seconds()})"
