"""The operator commands through the real ``ponte`` app (typer's CliRunner), with settings from
the environment pointing at sandbox servers on loopback and a real SQLite state database."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest
from typer.testing import CliRunner

from etl.cli import app
from etl.exitcodes import Exit
from etl.state import Store
from tests.ops.conftest import Env

runner = CliRunner()


def ponte(*args: str, input: str | None = None):
    return runner.invoke(app, list(args), input=input, catch_exceptions=False)


def store(env: Env) -> Store:
    return Store.open(env.state_url)


def test_second_sync_while_the_lock_is_held_exits_4_and_writes_nothing(cli_env: Env) -> None:
    with store(cli_env) as s:
        assert s.acquire_lock("entity:customers", "another-run", lease_s=600,
                              now=datetime.now(UTC))
    result = ponte("sync", "customers")
    assert result.exit_code == Exit.LOCKED, result.output
    assert "holds the lock" in result.stderr and "nothing was written" in result.stderr
    assert cli_env.write_requests() == 0
    with store(cli_env) as s:
        assert s.count_snapshots("crm", "customers") == 0 and s.watermarks() == []
        assert s.lock_holder("entity:customers")[0] == "another-run"  # left alone
    # a watermark change is refused the same way
    result = ponte("watermark", "reset", "customers", "--yes")
    assert result.exit_code == Exit.LOCKED


def test_sync_then_status_runs_and_metrics(cli_env: Env) -> None:
    first = ponte("sync", "--json")
    assert first.exit_code in (Exit.OK, Exit.QUARANTINED), first.output
    run_id = json.loads(first.stdout)["run_id"]
    result = ponte("status", "--json")
    assert result.exit_code == 0, result.output
    st = json.loads(result.stdout)
    cust = next(e for e in st["entities"] if e["entity"] == "customers")
    assert {s["side"] for s in cust["sides"]} == {"crm", "erp"}
    assert all(s["watermark"] and s["lag_s"] >= 0 for s in cust["sides"])
    assert cust["last_run"]["id"] == run_id and cust["next_run"] and cust["schedule"]
    table = ponte("status")
    assert table.exit_code == 0 and "customers" in table.stdout and "next run" in table.stdout, table.stdout
    runs = ponte("runs", "--json", "--limit", "5")
    assert [r["id"] for r in json.loads(runs.stdout)] == [run_id]
    shown = ponte("runs", "show", run_id[:7], "--json")
    assert shown.exit_code == 0 and json.loads(shown.stdout)["id"] == run_id
    assert ponte("runs", "show", "zzzz").exit_code == Exit.CONFIG
    assert "sync" in ponte("runs").stdout
    # the sync wrote the metrics file (textfile collector format), with no secrets in it
    text = cli_env.metrics.read_text()
    for name in ("ponte_last_run_timestamp_seconds", "ponte_last_run_status",
                 "ponte_records_total", "ponte_watermark_lag_seconds",
                 "ponte_run_duration_seconds", "ponte_api_calls_total"):
        assert f"# TYPE {name} gauge" in text
    m = re.search(r'^ponte_records_total\{connection="",entity="customers",side="crm",kind="read"\} (\d+)$',
                  text, re.MULTILINE)
    assert m and int(m.group(1)) == cust["last_run"]["counts"]["crm"]["read"] > 0
    assert re.search(r'ponte_last_run_status\{connection="",entity="customers",status="ok"\} 1', text) or \
        re.search(r'ponte_last_run_status\{connection="",entity="customers",status="partial"\} 1', text)
    for secret in (cli_env.sandbox.user_key, cli_env.sandbox.app_key,
                   cli_env.sandbox.app_secret):
        assert secret not in text
    assert not list(cli_env.metrics.parent.glob(".*.tmp"))  # no temp file left behind


def test_watermark_commands_confirm_log_and_record(cli_env: Env) -> None:
    assert ponte("sync", "customers").exit_code == 0
    shown = json.loads(ponte("watermark", "show", "customers", "--json").stdout)
    before = {r["side"]: r["watermark"] for r in shown}
    assert before["crm"] and before["erp"]
    # no stdin: refused, nothing changed
    refused = ponte("watermark", "reset", "customers")
    assert refused.exit_code == Exit.CONFIG and "refused" in refused.stderr
    declined = ponte("watermark", "reset", "customers", input="n\n")
    assert declined.exit_code == Exit.CONFIG and "nothing changed" in declined.stderr
    with store(cli_env) as s:
        assert s.watermark("customers", "crm") is not None
    # confirmed at the prompt
    ok = ponte("watermark", "set", "customers", "--side", "crm", "--to", "2024-01-01T00:00:00Z",
               input="y\n")
    assert ok.exit_code == 0, ok.output
    assert "-> 2024-01-01T00:00:00+00:00" in ok.stdout
    with store(cli_env) as s:
        assert s.watermark("customers", "crm") == datetime(2024, 1, 1, tzinfo=UTC)
        assert s.watermark("customers", "erp").isoformat() == before["erp"]
    # --yes, JSON, recorded as a run
    reset = ponte("watermark", "reset", "customers", "--side", "erp", "--yes", "--json")
    data = json.loads(reset.stdout)
    assert data["changes"] == [{"entity": "customers", "side": "erp", "old": before["erp"],
                                "new": None}]
    run = json.loads(ponte("runs", "show", data["run_id"][:8], "--json").stdout)
    assert run["kind"] == "watermark" and before["erp"] in run["report"]["summary"]
    assert ponte("watermark", "set", "customers", "--side", "crm", "--to", "soon",
                 "--yes").exit_code == Exit.CONFIG
    assert ponte("watermark", "show", "invoices").exit_code == Exit.CONFIG
    table = ponte("watermark", "show")
    assert "from the" in table.stdout and "products" in table.stdout


def test_backfill_cli_keeps_the_watermark_and_logs_progress(cli_env: Env) -> None:
    assert ponte("sync", "customers").exit_code == 0
    with store(cli_env) as s:
        before = {(w.entity, w.system): w.value for w in s.watermarks()}
    result = ponte("backfill", "customers", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["kind"] == "backfill"
    assert report["entities"]["customers"]["crm"]["read"] == len(cli_env.sandbox.crm.db["Contacts"])
    assert report["entities"]["customers"]["crm"]["updated"] == 0
    assert "backfill done" in result.stderr  # not a terminal: log lines, not a bar
    with store(cli_env) as s:
        assert {(w.entity, w.system): w.value for w in s.watermarks()} == before
    recent = json.loads(ponte("backfill", "customers", "--since", "1h", "--json").stdout)
    assert recent["entities"]["customers"]["crm"]["read"] < len(cli_env.sandbox.crm.db["Contacts"])
    plain = ponte("backfill", "customers", "--side", "erp", "--dry-run")
    assert plain.exit_code == 0 and "backfill" in plain.stdout
    assert ponte("backfill", "customers", "--side", "sap").exit_code == Exit.CONFIG
    assert ponte("backfill", "products", "--side", "crm").exit_code == Exit.CONFIG
    assert ponte("backfill", "customers", "--since", "nope").exit_code == Exit.CONFIG


def test_quarantine_commands(cli_env: Env) -> None:
    crm = cli_env.sandbox.crm
    order = min(crm.db["Orders"], key=lambda r: r.id)
    lines = [dict(line) for line in order.data["Products"]]
    lines[0]["Quantity"] = 0
    crm.ui_update("Orders", order.id, {"Products": lines})
    result = ponte("sync")
    assert result.exit_code == Exit.QUARANTINED, result.output
    rows = json.loads(ponte("quarantine", "list", "orders", "--json").stdout)
    assert len(rows) == 1 and rows[0]["key"] == str(order.id) and "quantity" in rows[0]["reason"]
    qid = str(rows[0]["id"])
    assert "quantity" in ponte("quarantine", "list").stdout
    shown = ponte("quarantine", "show", qid)
    assert shown.exit_code == 0 and '"payload"' in shown.stdout
    assert ponte("quarantine", "retry").exit_code == Exit.CONFIG  # id or --all
    retried = ponte("quarantine", "retry", qid)
    assert retried.exit_code == 0 and "next `ponte sync` re-reads it" in retried.stdout
    assert "1 entry" in ponte("quarantine", "retry", "--all").stdout
    assert ponte("quarantine", "drop", qid).exit_code == Exit.CONFIG  # no confirmation
    assert ponte("quarantine", "drop", qid, "--yes").exit_code == 0
    assert json.loads(ponte("quarantine", "list", "--json").stdout) == []
    dropped = ponte("quarantine", "show", qid)
    assert dropped.exit_code == Exit.CONFIG and "was dropped" in dropped.output


def test_json_log_format_gives_json_lines(cli_env: Env, monkeypatch) -> None:
    monkeypatch.setenv("PONTE_LOG_FORMAT", "json")
    result = ponte("sync", "customers")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert any(r["message"].startswith("run sync ok") for r in records)
    assert all({"time", "level", "message"} <= r.keys() for r in records)
    assert any(r.get("entity") == "customers" for r in records)


def test_help_documents_exit_codes_and_schedule_forms() -> None:
    top = ponte("--help").stdout
    assert "4 another run holds the lock" in " ".join(top.split())
    for cmd in ("run", "backfill", "status", "watermark", "runs", "quarantine"):
        assert cmd in top
    run_help = " ".join(ponte("run", "--help").stdout.split())
    assert "every:SECONDS" in run_help and "crontab" in run_help and "exits 0" in run_help
    assert "re-reads" in " ".join(ponte("quarantine", "retry", "--help").stdout.split())


@pytest.mark.parametrize(("side", "table", "raw", "field"), [
    ("crm", "Contacts", {"LastUpdateDate": None}, "LastUpdateDate"),
    ("crm", "Contacts", {"LastUpdateDate": "ontem"}, "LastUpdateDate"),
    ("erp", "clientes", {"info": {"dAlt": None, "hAlt": None}}, "info.dAlt"),
    ("erp", "clientes", {"info": {"dAlt": "31/02/2026", "hAlt": "25:00:00"}}, "info.dAlt"),
], ids=["ploomes-null", "ploomes-garbage", "omie-null", "omie-garbage"])
def test_an_undated_record_is_quarantined_naming_the_field_and_the_run_goes_on(
        cli_env: Env, side: str, table: str, raw: dict[str, object], field: str) -> None:
    import httpx

    sb = cli_env.sandbox
    base = sb.crm_url if side == "crm" else sb.erp_url.split("/api/")[0]
    body = ({"Name": "PADARIA SEM DATA LTDA", "TypeId": 1, "Register": "11222333000181"}
            if side == "crm" else {"razao_social": "PADARIA SEM DATA LTDA",
                                   "cnpj_cpf": "11.222.333/0001-81"})
    made = httpx.post(f"{base}/_sandbox/{table}", json={**body, "_raw": raw}).json()
    key = str(made.get("Id") or made.get("codigo_cliente_omie"))
    result = ponte("sync", "customers", "--json")
    assert result.exit_code == Exit.QUARANTINED, result.output
    report = json.loads(result.stdout)
    assert report["status"] == "partial"
    assert report["entities"]["customers"]["crm"]["created"] > 0  # the others were synced
    rows = json.loads(ponte("quarantine", "list", "customers", "--json").stdout)
    mine = [r for r in rows if r["system"] == side and r["key"] == key]
    assert len(mine) == 1 and mine[0]["field"] == field and field in mine[0]["reason"], rows
    with store(cli_env) as s:
        run = s.runs(limit=1)[0]
        assert run.status == "partial" and s.watermark("customers", side) is not None


def test_an_internal_error_exits_5_and_its_text_is_stored_and_printed_without_secrets(
        cli_env: Env) -> None:
    import httpx

    from etl.settings import Settings

    secret = Settings().crm.credential("user_key")
    # a vendor record whose Id is not a number (and happens to carry a secret): ponte trips
    # over it while paging — not one of its own errors
    httpx.post(f"{cli_env.sandbox.crm_url}/_sandbox/Contacts", json={
        "Name": "ACME LTDA", "TypeId": 1, "Register": "11222333000181",
        "_raw": {"Id": secret}}).raise_for_status()
    result = ponte("sync", "customers", "--json")
    assert result.exit_code == Exit.INTERNAL, result.output
    assert secret not in result.output
    body = json.loads(result.stdout)
    assert body["exit_code"] == 5 and "ValueError" in body["error"] and "***" in body["error"]
    with store(cli_env) as s:
        run = s.runs(limit=1)[0]
        assert run.status == "failed" and run.report["error"].startswith("internal error:")
        assert "***" in run.report["error"] and secret not in json.dumps(run.report)
        assert s.lock_holder("entity:customers") is None


def test_a_scheduled_run_that_crashes_is_recorded_failed_and_the_daemon_goes_on(
        cli_env: Env) -> None:
    import httpx

    from etl.ponte import Ponte
    from etl.settings import Settings

    httpx.post(f"{cli_env.sandbox.crm_url}/_sandbox/Contacts", json={
        "Name": "ACME LTDA", "TypeId": 1, "Register": "11222333000181",
        "_raw": {"Id": None}}).raise_for_status()
    result = Ponte(Settings()).scheduled_sync("customers", lambda: False)  # no raise
    assert result.report is None and result.error is not None
    assert "ValueError: a record's key 'None'" in result.error
    with store(cli_env) as s:
        run = s.runs(limit=1)[0]
        # the record's key None is a malformed record the spec's key pattern refuses
        assert run.status == "failed" and run.report["error"].startswith(
            "internal error: ValueError: a record's key 'None'")
    text = cli_env.metrics.read_text()  # the metrics still follow the failed run
    assert 'ponte_last_run_status{connection="",entity="customers",status="failed"} 1' in text
