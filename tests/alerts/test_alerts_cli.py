"""``ponte alerts`` (the conditions in force, ``--json``), ``ponte alerts test``, and a CLI run
whose alert channel is down: the run's exit code is its own."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from etl.cli import app
from etl.exitcodes import Exit
from etl.state import Store
from tests.alerts.conftest import HOOK_TOKEN, SMTP_PASSWORD, Receiver, SmtpServer, free_port
from tests.engine.conftest import MAPPINGS
from tests.ops.conftest import Env

runner = CliRunner()


def ponte(*args: str) -> Result:
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.fixture
def state_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    monkeypatch.setenv("PONTE_STATE_URL", url)
    monkeypatch.setenv("PONTE_MAPPINGS_DIR", str(MAPPINGS))
    monkeypatch.chdir(tmp_path)  # no stray .env
    return url


def failed_run(url: str, entity: str) -> None:
    now = datetime.now(UTC) - timedelta(minutes=1)
    with Store.open(url) as store:
        run = store.start_run("sync", [entity], now=now)
        store.finish_run(run, "failed", {"error": "Omie answered HTTP 500"}, now=now)


def test_alerts_lists_the_conditions_in_force(state_env: str, hook: Receiver,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    result = ponte("alerts")
    assert result.exit_code == 0 and "no alert condition in force" in result.stdout
    assert json.loads(ponte("alerts", "--json").stdout) == []

    monkeypatch.setenv("PONTE_ALERTS__WEBHOOK_URL", hook.url)
    failed_run(state_env, "orders")
    with Store.open(state_env) as store:
        store.apply_conditions({"drift:customers": "old"}, now=datetime.now(UTC))
        store.apply_conditions({}, now=datetime.now(UTC))  # cleared
    from etl.alerts import evaluate_alerts
    from etl.settings import Settings

    evaluate_alerts(Settings(), datetime.now(UTC))
    doc = json.loads(ponte("alerts", "--json").stdout)
    assert [(d["condition"], d["active"]) for d in doc] == [("run_failed:orders", True)]
    assert doc[0]["notified_at"] is not None and "ponte runs show" in doc[0]["detail"]
    every = json.loads(ponte("alerts", "--all", "--json").stdout)
    assert [d["condition"] for d in every] == ["drift:customers", "run_failed:orders"]
    table = ponte("alerts").stdout
    assert "run_failed:orders" in table and "drift:customers" not in table


def test_alerts_test_says_which_channel_took_the_message(
        state_env: str, hook: Receiver, smtp: SmtpServer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    result = ponte("alerts", "test")
    assert result.exit_code == Exit.CONFIG
    assert "PONTE_ALERTS__WEBHOOK_URL" in result.stderr

    monkeypatch.setenv("PONTE_ALERTS__WEBHOOK_URL", hook.url)
    monkeypatch.setenv("PONTE_ALERTS__SMTP_URL", smtp.url)
    monkeypatch.setenv("PONTE_ALERTS__EMAIL_TO", "ops@example.com")
    result = ponte("alerts", "test")
    assert result.exit_code == 0, result.output
    assert f"webhook (127.0.0.1:{hook.port}): sent" in result.stdout
    assert f"e-mail (127.0.0.1:{smtp.port}): sent" in result.stdout
    assert hook.texts()[0].startswith("[ponte] test alert")
    assert hook.paths == [f"/hooks/{HOOK_TOKEN}"]
    assert smtp.box.messages[0]["Subject"] == "[ponte] test alert"

    smtp.stop()
    result = ponte("alerts", "test")
    assert result.exit_code == Exit.FAILED
    assert f"e-mail (127.0.0.1:{smtp.port}): NOT sent" in result.stderr
    assert "webhook" in result.stdout
    for secret in (SMTP_PASSWORD, HOOK_TOKEN):
        assert secret not in result.output


def test_a_sync_whose_alert_channel_is_down_keeps_its_exit_code(
        cli_env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    down = f"smtp://ponte:{SMTP_PASSWORD}@127.0.0.1:{free_port()}"
    monkeypatch.setenv("PONTE_ALERTS__SMTP_URL", down)
    monkeypatch.setenv("PONTE_ALERTS__EMAIL_TO", "ops@example.com")
    failed_run(cli_env.state_url, "orders")
    result = ponte("sync", "customers")
    assert result.exit_code in (Exit.OK, Exit.QUARANTINED), result.output
    assert "alert message not sent by e-mail" in result.stderr
    assert SMTP_PASSWORD not in result.output
    with Store.open(cli_env.state_url) as store:
        [row] = store.alerts()
    assert row.condition == "run_failed:orders" and row.notified_at is None  # retried later
