"""The clocks of :mod:`etl.clock`: one protocol, the system's clock, and the two test clocks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from etl.clock import Clock, ManualClock, OffsetClock, SystemClock

T = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("clock", [SystemClock(), ManualClock(T), OffsetClock()],
                         ids=["system", "manual", "offset"])
def test_every_clock_is_a_clock_and_tells_aware_utc_time(clock: Clock) -> None:
    assert isinstance(clock, Clock)
    now = clock.now()
    assert now.tzinfo is not None and now.utcoffset() == timedelta(0)


@pytest.mark.parametrize(("steps", "expected"), [
    ([], T),
    ([30], T + timedelta(seconds=30)),
    ([30, -10, 0.5], T + timedelta(seconds=20.5)),
], ids=["still", "one step", "several steps"])
def test_a_manual_clock_moves_only_when_told(steps: list[float], expected: datetime) -> None:
    clock = ManualClock(T)
    for s in steps:
        clock.advance(s)
    assert clock.now() == clock.now() == expected


def test_a_manual_clock_can_be_set_and_refuses_naive_times() -> None:
    clock = ManualClock(T)
    clock.set(T + timedelta(days=1))
    assert clock.now() == T + timedelta(days=1)
    with pytest.raises(ValueError, match="ManualClock: 2026-03-01T12:00:00 has no time zone"):
        ManualClock(T.replace(tzinfo=None))
    with pytest.raises(ValueError, match="ManualClock.set: .* has no time zone"):
        clock.set(T.replace(tzinfo=None))


def test_an_offset_clock_follows_its_base_shifted() -> None:
    base = ManualClock(T)
    clock = OffsetClock(base, offset_s=10)
    assert clock.now() == T + timedelta(seconds=10)
    clock.advance(50)
    base.advance(5)
    assert clock.now() == T + timedelta(seconds=65)


def test_an_offset_clock_over_the_system_clock_is_ahead_of_it() -> None:
    clock = OffsetClock(offset_s=3600)
    before = datetime.now(UTC)
    assert before + timedelta(hours=1) <= clock.now() <= datetime.now(UTC) + timedelta(hours=1)
