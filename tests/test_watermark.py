from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from etl import watermark as wm

MS = timedelta(milliseconds=1)
S = timedelta(seconds=1)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "precision", "expected"),
    [
        (utc(2026, 1, 1, 12, 0, 0, 999_999), S, utc(2026, 1, 1, 12, 0, 0)),
        (utc(2026, 1, 1, 12, 0, 0, 999_999), MS, utc(2026, 1, 1, 12, 0, 0, 999_000)),
        (utc(2026, 1, 1, 12, 0, 0), S, utc(2026, 1, 1, 12, 0, 0)),
        (utc(2026, 1, 1, 12, 0, 59, 1), timedelta(minutes=1), utc(2026, 1, 1, 12, 0, 0)),
        (utc(2026, 1, 1, 12, 0, 0, 123_456), timedelta(0), utc(2026, 1, 1, 12, 0, 0, 123_456)),
    ],
)
def test_floor_rounds_down_never_up(value: datetime, precision: timedelta, expected: datetime) -> None:
    assert wm.floor_to(value, precision) == expected


def test_floor_rejects_naive() -> None:
    with pytest.raises(ValueError, match="naive"):
        wm.floor_to(datetime(2026, 1, 1), S)


@pytest.mark.parametrize(
    ("watermark", "lookback", "lag", "precision", "since", "until"),
    [
        (None, 300, 5, S, None, utc(2026, 1, 1, 11, 59, 55)),
        (utc(2026, 1, 1, 11, 0, 0), 300, 5, S, utc(2026, 1, 1, 10, 55, 0), utc(2026, 1, 1, 11, 59, 55)),
        (utc(2026, 1, 1, 11, 0, 0, 500_000), 0, 5, S, utc(2026, 1, 1, 11, 0, 0), utc(2026, 1, 1, 11, 59, 55)),
        (utc(2026, 1, 1, 11, 0, 0, 500_000), 0, 0, MS, utc(2026, 1, 1, 11, 0, 0, 500_000), utc(2026, 1, 1, 12, 0, 0)),
        # a watermark ahead of the signpost (future-dated records, clock skew) never inverts the window
        (utc(2026, 1, 1, 13, 0, 0), 60, 5, S, utc(2026, 1, 1, 11, 59, 55), utc(2026, 1, 1, 11, 59, 55)),
    ],
)
def test_window(
    watermark: datetime | None, lookback: int, lag: int, precision: timedelta,
    since: datetime | None, until: datetime,
) -> None:
    got = wm.window(
        watermark, run_start=utc(2026, 1, 1, 12, 0, 0), lookback=timedelta(seconds=lookback),
        safety_lag=timedelta(seconds=lag), precision=precision,
    )
    assert got == wm.Window(since, until)


def test_boundary_records_are_re_read() -> None:
    """Records sharing the watermark instant fall inside the next window (inclusive start)."""
    boundary = utc(2026, 1, 1, 11, 0, 0)
    w = wm.window(boundary, run_start=utc(2026, 1, 1, 12, 0, 0), lookback=timedelta(0),
                  safety_lag=timedelta(seconds=5), precision=S)
    assert w.since is not None and w.since <= boundary < w.until


def test_many_records_sharing_a_timestamp_across_a_page_break() -> None:
    """Simulate a page break in the middle of 250 records sharing one second: the watermark
    after the window is the signpost, and a window starting at any page's last timestamp still
    includes every record of that second."""
    shared = utc(2026, 1, 1, 11, 0, 0)
    records = [(shared, i) for i in range(250)]
    pages = [records[i : i + 100] for i in range(0, 250, 100)]
    last_of_first_page = pages[0][-1][0]
    w = wm.window(last_of_first_page, run_start=utc(2026, 1, 1, 12, 0, 0), lookback=timedelta(0),
                  safety_lag=timedelta(0), precision=S)
    assert all(w.since is not None and w.since <= ts < w.until for ts, _ in records)


@pytest.mark.parametrize(
    ("current", "completed", "expected"),
    [
        (None, utc(2026, 1, 1), utc(2026, 1, 1)),
        (utc(2026, 1, 1), utc(2026, 1, 2), utc(2026, 1, 2)),
        (utc(2026, 1, 2), utc(2026, 1, 1), utc(2026, 1, 2)),
    ],
)
def test_advance_never_moves_backwards(
    current: datetime | None, completed: datetime, expected: datetime
) -> None:
    assert wm.advance(current, completed_until=completed) == expected


@pytest.mark.parametrize(
    ("watermark", "expected"),
    [
        (None, None),  # never synced: from the beginning
        (utc(2026, 1, 1, 11, 0, 0), None),  # behind the signpost: normal
        (utc(2026, 1, 1, 11, 59, 55), None),  # at the signpost: where the last run stopped
        (utc(2026, 1, 1, 11, 59, 55, 1000), timedelta(milliseconds=1)),
        (utc(2030, 1, 1, 0, 0, 0), utc(2030, 1, 1) - utc(2026, 1, 1, 11, 59, 55)),
    ],
)
def test_ahead_of_the_signpost(watermark: datetime | None, expected: timedelta | None) -> None:
    assert wm.ahead_of(watermark, utc(2026, 1, 1, 11, 59, 55)) == expected


@pytest.mark.parametrize(("span", "text"), [
    (timedelta(seconds=42), "42s"),
    (timedelta(hours=2, minutes=5, seconds=9), "2h 5m"),
    (timedelta(days=1126, hours=2, minutes=3), "1126d 2h"),
    (timedelta(0), "0s"),
])
def test_span_text(span: timedelta, text: str) -> None:
    assert wm.span_text(span) == text
