"""Watermarks in the future: refused by ``ponte watermark set``; one already in the state (edited,
or the clock went back) fails the sync with exit 3 and a message, shows in ``ponte status`` and
in the metrics file."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from typer.testing import CliRunner

from etl import ops
from etl.cli import app
from etl.errors import ConfigError
from etl.exitcodes import Exit
from etl.state import Store
from tests.ops.conftest import Env
from tests.ops.test_ops_metrics import parse

runner = CliRunner()
NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)
LAG = timedelta(seconds=5)


def ponte(*args: str, input: str | None = None) -> Any:
    return runner.invoke(app, list(args), input=input, catch_exceptions=False)


def flat(text: str) -> str:
    """Output with the console's line wrapping undone."""
    return re.sub(r"\s+", " ", text)


@pytest.mark.parametrize(("to", "refused"), [
    (NOW - LAG - timedelta(seconds=1), False),
    (NOW - LAG, False),  # exactly where a run starting now stops reading
    (NOW - LAG + timedelta(milliseconds=1), True),
    (NOW + timedelta(minutes=1), True),
    (datetime(2030, 1, 1, tzinfo=UTC), True),
])
def test_future_watermarks_are_refused(to: datetime, refused: bool) -> None:
    if not refused:
        ops.check_not_future("customers", "crm", to, now=NOW, safety_lag=LAG)
        return
    with pytest.raises(ConfigError) as caught:
        ops.check_not_future("customers", "crm", to, now=NOW, safety_lag=LAG)
    message = str(caught.value)
    for text in (to.isoformat(), "in the future for customers crm", (NOW - LAG).isoformat(),
                 "PONTE_SAFETY_LAG_S=5", "ponte watermark reset customers --side crm"):
        assert text in message, (text, message)


def test_watermark_set_in_the_future_exits_2_and_changes_nothing(cli_env: Env) -> None:
    assert ponte("sync", "customers").exit_code == Exit.OK
    with Store.open(cli_env.state_url) as store:
        before, runs = store.watermark("customers", "crm"), len(store.runs(limit=100))
    result = ponte("watermark", "set", "customers", "--side", "crm", "--to", "2030-01-01",
                   "--yes")
    assert result.exit_code == Exit.CONFIG, result.output
    err = flat(result.stderr)
    assert "--to 2030-01-01T00:00:00+00:00 is in the future for customers crm" in err, err
    assert "give an earlier time" in err
    with Store.open(cli_env.state_url) as store:
        assert store.watermark("customers", "crm") == before
        assert len(store.runs(limit=100)) == runs  # not even a failed change recorded
    past = ponte("watermark", "set", "customers", "--side", "crm", "--to", "1h", "--yes")
    assert past.exit_code == Exit.OK, past.output


def test_a_watermark_ahead_in_the_state_fails_the_sync_and_shows(cli_env: Env) -> None:
    assert ponte("sync", "customers").exit_code == Exit.OK
    future = datetime(2030, 1, 1, tzinfo=UTC)
    with Store.open(cli_env.state_url) as store:  # edited behind ponte's back
        store.set_watermark("customers", "crm", future, now=datetime.now(UTC))
    writes = cli_env.write_requests()
    result = ponte("sync", "customers")
    assert result.exit_code == Exit.FAILED, result.output
    text = flat(result.stdout)
    for part in (("customers crm: the stored watermark 2030-01-01T00:00:00+00:00 is ahead of "
                 "this run's signpost"), "ponte watermark set customers --side crm",
                 "ponte watermark reset customers --side crm"):
        assert part in text, (part, text)
    data = json.loads(ponte("sync", "customers", "--json").stdout)
    assert data["status"] == "failed" and "2030-01-01T00:00:00+00:00" in data["error"]
    assert cli_env.write_requests() == writes
    # the metrics file written after the failed sync reports it
    m = parse(cli_env.metrics.read_text())
    assert m['ponte_watermark_ahead_seconds{connection="",entity="customers",side="crm"}'] > 3 * 365 * 86400
    assert m['ponte_watermark_lag_seconds{connection="",entity="customers",side="crm"}'] < 0
    assert m['ponte_watermark_ahead_seconds{connection="",entity="customers",side="erp"}'] == 0
    assert m['ponte_last_run_status{connection="",entity="customers",status="failed"}'] == 1
    # and status
    st = json.loads(ponte("status", "--json").stdout)
    sides = {s["side"]: s for s in next(e for e in st["entities"]
                                        if e["entity"] == "customers")["sides"]}
    assert sides["crm"]["ahead_s"] > 0 and sides["erp"]["ahead_s"] is None
    table = ponte("status")
    assert table.exit_code == 0 and "AHEAD" in table.stdout, table.stdout
    assert "ponte watermark reset customers --side crm" in flat(table.stderr)
    # the fix the message names works
    assert ponte("watermark", "reset", "customers", "--side", "crm", "--yes").exit_code == 0
    assert ponte("sync", "customers").exit_code == Exit.OK
    assert 'ponte_watermark_ahead_seconds{connection="",entity="customers",side="crm"} 0' in \
        cli_env.metrics.read_text()
