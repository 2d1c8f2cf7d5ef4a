"""Pure watermark rules: windows, signposts and precision. No I/O, no clock reads —
``now`` always comes in as an argument.

The rules (DESIGN.md, "Rules that are easy to get wrong"):

* the lower bound is inclusive and reaches back ``lookback`` below the watermark, so records that
  share the boundary instant, commit late, or come from a skewed clock are read again; the
  snapshot diff drops what was already processed;
* the upper bound is the *signpost*: the run's start minus a safety lag, floored to the source's
  precision; the watermark never moves past it, so future-dated records cannot push it forward;
* conversions to a source's clock floor (round down), never round up.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Window:
    """Half-open ``[since, until)`` in aware UTC; ``since=None`` means from the beginning.

    ``skip_own``: the listing may leave out records whose last change was ponte's own, where
    the system records who last changed a record (an incremental run: those writes are in the
    snapshot already); a system that cannot tell lists them as before."""

    since: datetime | None
    until: datetime | None = None
    skip_own: bool = False


def floor_to(value: datetime, precision: timedelta) -> datetime:
    """Round an aware datetime down to a multiple of ``precision`` since the epoch."""
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value.isoformat()} where an aware one is required")
    if precision <= timedelta(0):
        return value
    step = precision // timedelta(microseconds=1)
    micros = (value - EPOCH) // timedelta(microseconds=1)
    return EPOCH + timedelta(microseconds=micros - micros % step)


def signpost(run_start: datetime, *, safety_lag: timedelta, precision: timedelta) -> datetime:
    """The upper bound of this run's window: run start minus the lag, floored."""
    return floor_to(run_start - safety_lag, precision)


def window(
    watermark: datetime | None,
    *,
    run_start: datetime,
    lookback: timedelta,
    safety_lag: timedelta,
    precision: timedelta,
) -> Window:
    """The window one incremental run reads for one (entity, system)."""
    until = signpost(run_start, safety_lag=safety_lag, precision=precision)
    if watermark is None:
        return Window(None, until)
    since = floor_to(watermark - lookback, precision)
    return Window(min(since, until), until)


def ahead_of(watermark: datetime | None, signpost_: datetime) -> timedelta | None:
    """How far a stored watermark is past a run's signpost, or None when it is not.

    A watermark past the signpost means the state was edited or the clock went back: the
    window would be empty, and every change made before the watermark would never be read."""
    if watermark is None or watermark <= signpost_:
        return None
    return watermark - signpost_


def span_text(span: timedelta) -> str:
    """A duration for people: ``1126d 2h``, ``2h 5m``, ``42s``."""
    secs = int(abs(span.total_seconds()))
    d, rem = divmod(secs, 86400)
    h, rem = divmod(rem, 3600)
    m, sec = divmod(rem, 60)
    parts = [f"{d}d"] * bool(d) + [f"{h}h"] * bool(h) + [f"{m}m"] * bool(m and not d)
    parts += [f"{sec}s"] * bool(not d and not h)
    return " ".join(parts)


def advance(current: datetime | None, *, completed_until: datetime) -> datetime:
    """The watermark after a window was read *and* every record in it durably processed.

    A watermark never moves backwards inside normal runs (only ``watermark set/reset`` does).
    """
    if current is None:
        return completed_until
    return max(current, completed_until)
