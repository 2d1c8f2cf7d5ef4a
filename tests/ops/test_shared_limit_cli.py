"""``ponte sync`` with PONTE_LIMITER_URL: the sync through a real Redis, and a Redis that does not
answer stopping the command before anything is sent (sandbox servers on loopback)."""

from __future__ import annotations

import json

import pytest
import redis
from typer.testing import CliRunner

from etl.cli import app
from etl.exitcodes import Exit
from tests.ops.conftest import Env

runner = CliRunner()


def test_sync_waits_in_redis_for_each_request(cli_env: Env, redis_url: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PONTE_LIMITER_URL", redis_url)
    client = redis.Redis.from_url(redis_url)
    before = set(client.scan_iter("ponte:limit:*:slots"))
    result = runner.invoke(app, ["sync", "customers", "--json"], catch_exceptions=False)
    assert result.exit_code in (Exit.OK, Exit.QUARANTINED), result.output
    calls = json.loads(result.stdout)["api_calls"]
    keys = {k.decode() for k in client.scan_iter("ponte:limit:*:slots")}
    ours = [k for k in keys if cli_env.sandbox.crm_url.split("//")[1] in k
            or cli_env.sandbox.erp_url.split("//")[1] in k]
    assert len(ours) == 2, keys - {k.decode() for k in before}  # one per side's account
    slots = sum(int(client.zcard(k)) for k in ours)
    assert slots >= sum(c["read"] + c["write"] for c in calls.values()) > 0
    for secret in (cli_env.sandbox.user_key, cli_env.sandbox.app_key):
        assert all(secret not in k for k in keys)


def test_an_unreachable_limiter_stops_sync_before_any_request(
        cli_env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PONTE_LIMITER_URL", "redis://:hunter2@127.0.0.1:1/0")
    result = runner.invoke(app, ["sync", "customers"], catch_exceptions=False)
    assert result.exit_code == Exit.CONFIG, result.output
    assert "PONTE_LIMITER_URL='redis://:***@127.0.0.1:1/0'" in result.stderr
    assert "hunter2" not in result.output
    assert cli_env.write_requests() == 0
    assert sum(r["count"] for r in cli_env.sandbox.crm.requests.as_list()) == 0
