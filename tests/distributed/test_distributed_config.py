"""What needs no broker: bad settings and options stop ``ponte enqueue``/``worker``/``schedule``
with exit 2 before anything is sent; schedules become periods; the scheduler's lease on a real
state database (SQLite) is held by one owner at a time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from etl.cli import app
from etl.distributed.lease import Lease
from etl.distributed.schedule import entries, period_s
from etl.errors import ConfigError
from etl.exitcodes import Exit
from etl.state import Store

runner = CliRunner()
CLOSED = "amqp://guest:guest@127.0.0.1:9//"  # nothing listens there: nothing may be sent


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no .env from the working tree
    for name in ("PONTE_CONNECTIONS_DIR", "PONTE_CONNECTION", "PONTE_LIMITER_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PONTE_STATE_URL", f"sqlite:///{tmp_path / 'state.db'}")
    monkeypatch.setenv("PONTE_BROKER_URL", CLOSED)


@pytest.mark.parametrize(("args", "says"), [
    (["enqueue", "--kind", "nope"], "--kind 'nope': must be one of sync, backfill, verify"),
    (["enqueue", "--since", "7d"], "--since, --until and --side are for --kind backfill"),
    (["enqueue", "--fix"], "--fix is for --kind verify"),
    (["enqueue", "--kind", "backfill", "--side", "both"], "--side 'both': must be crm or erp"),
    (["enqueue", "nothing"], "unknown entity nothing"),
    (["enqueue", "customerz"], "did you mean customers?"),
    (["enqueue", "--all"], "PONTE_CONNECTIONS_DIR is not set"),
])
def test_bad_options_stop_before_anything_is_sent(args: list[str], says: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == Exit.CONFIG, result.output
    assert says in result.output


@pytest.mark.parametrize(("url", "says"), [
    ("http://127.0.0.1:5672/", "PONTE_BROKER_URL: scheme 'http' is not supported"),
    ("", "PONTE_BROKER_URL is empty"),
])
def test_a_bad_broker_url_is_named(monkeypatch: pytest.MonkeyPatch, url: str, says: str) -> None:
    monkeypatch.setenv("PONTE_BROKER_URL", url)
    result = runner.invoke(app, ["enqueue", "customers"])
    assert result.exit_code == Exit.CONFIG, result.output
    assert says in result.output


def test_a_broker_that_does_not_answer_is_named_not_a_bug() -> None:
    result = runner.invoke(app, ["enqueue", "customers"])  # CLOSED: nothing listens
    assert result.exit_code == Exit.FAILED, result.output
    assert "PONTE_BROKER_URL=amqp://guest:***@127.0.0.1:9//: cannot send the jobs" in result.output
    assert "nothing was sent" in result.output and "bug" not in result.output


def test_a_refused_broker_login_is_bad_configuration(monkeypatch: pytest.MonkeyPatch,
                                                     rabbitmq_url: str) -> None:
    scheme, rest = rabbitmq_url.split("://", 1)
    wrong = f"{scheme}://ponte-nobody:not-the-password@{rest.rsplit('@', 1)[-1]}"
    monkeypatch.setenv("PONTE_BROKER_URL", wrong)
    result = runner.invoke(app, ["enqueue", "customers"])
    assert result.exit_code == Exit.CONFIG, result.output
    assert "the broker refused the login" in result.output
    assert "not-the-password" not in result.output and "bug" not in result.output


def test_a_bad_connection_file_stops_enqueue_all(monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    folder = tmp_path / "connections"
    folder.mkdir()
    (folder / "good.env").write_text("PONTE_CRM__REQUESTS_PER_MINUTE='60'\n")
    (folder / "bad.env").write_text("PONTE_CRM__REQUESTS_PER_MINUTE='fast'\n")
    monkeypatch.setenv("PONTE_CONNECTIONS_DIR", str(folder))
    result = runner.invoke(app, ["enqueue", "--all"])
    assert result.exit_code == Exit.CONFIG, result.output
    assert "PONTE_CRM__REQUESTS_PER_MINUTE" in result.output and "not a valid integer" in \
        result.output
    result = runner.invoke(app, ["--connection", "good", "enqueue", "--all"])
    assert result.exit_code == Exit.CONFIG and "--all and --connection" in result.output


def test_schedules_of_every_connection(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    folder = tmp_path / "connections"
    folder.mkdir()
    (folder / "acme.env").write_text("PONTE_SCHEDULE__CUSTOMERS='every:60'\n")
    (folder / "beta.env").write_text("")
    monkeypatch.setenv("PONTE_CONNECTIONS_DIR", str(folder))
    found = {(e.connection, e.entity): e.spec for e in entries(["acme", "beta"])}
    assert found[("acme", "customers")] == "every:60"
    assert found[("beta", "customers")] == "*/5 * * * *"  # the default
    assert found[("beta", "products")] == "*/15 * * * *"
    (folder / "beta.env").write_text("PONTE_SCHEDULE__CUSTOMERS='every:0'\n")
    with pytest.raises(ConfigError, match="PONTE_SCHEDULE__CUSTOMERS"):
        entries(["acme", "beta"])


@pytest.mark.parametrize(("spec", "seconds"), [
    ("every:300", 300.0), ("*/5 * * * *", 300.0), ("0 * * * *", 3600.0)])
def test_period_of_a_schedule(spec: str, seconds: float) -> None:
    assert period_s(spec, datetime(2026, 12, 2, 10, 7, tzinfo=UTC)) == seconds


def test_the_lease_has_one_holder_at_a_time(tmp_path: Path) -> None:
    clock = [datetime(2026, 12, 2, 10, 0, tzinfo=UTC)]
    with Store.open(f"sqlite:///{tmp_path / 's.db'}") as store:
        first = Lease(store, "scheduler:q", lease_s=30, now=lambda: clock[0])
        second = Lease(store, "scheduler:q", lease_s=30, now=lambda: clock[0])
        assert first.acquire() and not second.acquire()
        clock[0] += timedelta(seconds=20)
        assert first.renew() and not second.acquire()  # renewed: until 10:00:50
        clock[0] += timedelta(seconds=31)  # the holder stopped renewing (another host died)
        assert second.acquire()
        assert not first.renew(), "a holder whose lease was taken must stop"
        second.release()
        assert first.acquire()
        other = Lease(store, "scheduler:other-queue", lease_s=30, now=lambda: clock[0])
        assert other.acquire(), "one lease per queue"
