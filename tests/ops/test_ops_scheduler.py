"""Schedule strings -> APScheduler triggers; next-run computation with ``now`` passed in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from etl.errors import ConfigError
from etl.scheduler import describe, next_run, trigger_for

NOW = datetime(2024, 5, 10, 12, 2, 30, tzinfo=UTC)


@pytest.mark.parametrize(("spec", "expected"), [
    ("*/5 * * * *", datetime(2024, 5, 10, 12, 5, tzinfo=UTC)),
    ("0 3 * * *", datetime(2024, 5, 11, 3, 0, tzinfo=UTC)),
    ("every:300", NOW + timedelta(seconds=300)),
    ("every:60", NOW + timedelta(seconds=60)),
])
def test_next_run(spec: str, expected: datetime) -> None:
    assert next_run(spec, NOW, timezone=UTC) == expected


def test_interval_counts_from_the_last_run() -> None:
    last = NOW - timedelta(seconds=200)
    assert next_run("every:300", NOW, last_run=last) == last + timedelta(seconds=300)
    long_ago = NOW - timedelta(seconds=1000)
    assert next_run("every:300", NOW, last_run=long_ago) == long_ago + timedelta(seconds=1200)


@pytest.mark.parametrize("spec", ["every:0", "every:x", "* * *", "61 * * * *", "hourly"])
def test_bad_schedules_name_the_setting(spec: str) -> None:
    with pytest.raises(ConfigError, match="PONTE_SCHEDULE__ORDERS"):
        trigger_for(spec, setting="schedule__orders")


def test_trigger_kinds_and_describe() -> None:
    assert isinstance(trigger_for("*/5 * * * *"), CronTrigger)
    assert isinstance(trigger_for("every:30"), IntervalTrigger)
    assert describe("every:300") == "every 0:05:00" and describe("0 * * * *") == "cron 0 * * * *"
