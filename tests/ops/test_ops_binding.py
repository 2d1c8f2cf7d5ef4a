"""A state database used with other systems is refused by every command that reads or writes
(exit 2, nothing touched on either side or in the state), and ``ponte db rebind`` moves it
deliberately. Through the real ``ponte`` app against sandbox servers on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from etl.cli import app
from etl.exitcodes import Exit
from etl.sandbox.server import running_sandbox
from etl.state import Store
from tests.ops.conftest import FAST, Env, env_for

runner = CliRunner()
PONTE = Path(sys.executable).parent / "ponte"  # the installed console script


def ponte(*args: str, input: str | None = None) -> Any:
    return runner.invoke(app, list(args), input=input, catch_exceptions=False)


def state_dump(url: str) -> dict[str, Any]:
    """Every row of every table of the state: what "state unchanged" compares."""
    with Store.open(url) as store, store.engine.connect() as conn:
        names = sa.inspect(conn).get_table_names()
        return {t: sorted(map(repr, conn.execute(sa.text(f"SELECT * FROM {t}")).all()))
                for t in names if t != "alembic_version"}


def requests(sb: Any) -> int:
    return sum(sb.crm.requests.counts.values()) + sum(sb.erp.requests.counts.values())


# every command that reads or writes the systems or the state
REFUSED = [
    ("sync",), ("sync", "customers", "--json"), ("plan",), ("verify",), ("verify", "--fix"),
    ("backfill", "customers"), ("backfill", "customers", "--dry-run"),
    ("watermark", "set", "customers", "--side", "crm", "--to", "2024-01-01", "--yes"),
    ("watermark", "reset", "customers", "--yes"), ("quarantine", "retry", "--all"),
]


def test_a_state_reused_with_other_systems_is_refused_and_left_alone(
        cli_env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    first = ponte("sync")
    assert first.exit_code in (Exit.OK, Exit.QUARANTINED), first.output
    before = state_dump(cli_env.state_url)
    assert before["links"] and before["bindings"]
    with running_sandbox(customers=20, products=5, orders=4, seed=99, ploomes_rpm=FAST,
                         omie_rpm=FAST) as other:
        monkeypatch.setenv("PONTE_CRM__BASE_URL", other.crm_url)
        monkeypatch.setenv("PONTE_ERP__BASE_URL", other.erp_url)
        for args in REFUSED:
            result = ponte(*args)
            assert result.exit_code == Exit.CONFIG, (args, result.output)
            err = result.stderr
            assert "was built with other systems" in err, (args, err)
            assert f"crm: base URL differs — stored {cli_env.sandbox.crm_url}, configured " \
                   f"{other.crm_url}" in err, err
            assert f"erp: base URL differs — stored {cli_env.sandbox.erp_url}" in err
            assert "PONTE_STATE_URL=" in err and "ponte db rebind" in err
            for secret in (other.user_key, other.app_key, other.app_secret):
                assert secret not in result.output
        assert requests(other) == 0  # not one call, let alone a write, to the other systems
        # read-only commands still answer (they read only the state) and status says why
        status = ponte("status")
        assert status.exit_code == 0, status.output
        assert "built with other systems" in status.stderr and "db rebind" in status.stderr
        data = json.loads(ponte("status", "--json").stdout)
        assert data["binding"]["matches"] is False
        assert ponte("runs").exit_code == 0
        assert ponte("watermark", "show").exit_code == 0
    assert state_dump(cli_env.state_url) == before  # not one row changed


def test_rebind_confirms_records_and_lets_the_same_systems_sync_again(
        cli_env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    assert ponte("sync", "customers").exit_code in (Exit.OK, Exit.QUARANTINED)
    # the same Ploomes account got a new User-Key
    rotated = "rotated-ploomes-user-key-51c2"
    cli_env.sandbox.crm.user_key = rotated
    monkeypatch.setenv("PONTE_CRM__CREDENTIALS__USER_KEY", rotated)
    refused = ponte("sync", "customers")
    assert refused.exit_code == Exit.CONFIG
    assert "crm: account differs — PONTE_CRM__CREDENTIALS__USER_KEY" in refused.stderr
    assert rotated not in refused.output
    no_terminal = ponte("db", "rebind")
    assert no_terminal.exit_code == Exit.CONFIG and "refused" in no_terminal.stderr
    declined = ponte("db", "rebind", input="n\n")
    assert declined.exit_code == Exit.CONFIG and "nothing changed" in declined.stderr
    assert ponte("sync", "customers").exit_code == Exit.CONFIG  # still bound to the old key
    done = ponte("db", "rebind", "--yes", "--json")
    assert done.exit_code == 0, done.output
    result = json.loads(done.stdout)
    url = cli_env.sandbox.crm_url
    assert result["changes"] == [f"crm: ploomes {url} -> ploomes {url} (new account credential)"]
    run = json.loads(ponte("runs", "show", result["run_id"][:8], "--json").stdout)
    assert run["kind"] == "rebind" and run["status"] == "ok"
    assert rotated not in json.dumps(run)
    writes = cli_env.write_requests()
    again = ponte("sync", "customers", "--json")
    assert again.exit_code == Exit.OK, again.output
    counts = json.loads(again.stdout)["entities"]["customers"]
    assert counts["crm"]["created"] == counts["erp"]["created"] == 0
    assert cli_env.write_requests() == writes  # same systems: nothing to write
    nothing = ponte("db", "rebind", "--yes")
    assert nothing.exit_code == 0 and "already bound" in nothing.stdout


def test_real_processes_sync_and_daemon_refuse_a_state_of_other_systems(tmp_path: Path) -> None:
    with running_sandbox(customers=10, products=3, orders=2, ploomes_rpm=FAST,
                         omie_rpm=FAST) as first, \
            running_sandbox(customers=10, products=3, orders=2, seed=5, ploomes_rpm=FAST,
                            omie_rpm=FAST) as second:
        first.erp.faults.redundant_rule = False
        env = {**os.environ, **env_for(first, tmp_path)}
        done = subprocess.run([str(PONTE), "sync"], check=False, cwd=tmp_path, env=env,
                              capture_output=True,
                              text=True, timeout=300)
        assert done.returncode in (Exit.OK, Exit.QUARANTINED), done.stderr[-2000:]
        before = state_dump(env["PONTE_STATE_URL"])
        other = {**env, "PONTE_CRM__BASE_URL": second.crm_url,
                 "PONTE_ERP__BASE_URL": second.erp_url, "PONTE_SCHEDULE__CUSTOMERS": "every:1"}
        for args in (["sync"], ["run", "customers", "--now"]):
            r = subprocess.run([str(PONTE), *args], check=False, cwd=tmp_path, env=other,
                               capture_output=True, text=True, timeout=120)
            assert r.returncode == Exit.CONFIG, (args, r.stderr[-2000:])
            assert "was built with other systems" in r.stderr
            assert f"configured {second.crm_url}" in r.stderr
        assert requests(second) == 0
        assert state_dump(env["PONTE_STATE_URL"]) == before
