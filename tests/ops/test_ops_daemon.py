"""``ponte run`` as a real process against sandbox servers: SIGTERM stops it cleanly (exit 0,
whole chunks kept, watermark not moved past unfinished work) and the next run converges."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from etl.cli import app
from etl.sandbox.server import running_sandbox
from etl.state import Store
from tests.ops.conftest import FAST, env_for, wait_for

PONTE = Path(sys.executable).parent / "ponte"  # the installed console script


def test_sigterm_during_ponte_run_exits_0_and_the_next_run_converges(tmp_path: Path,
                                                                      monkeypatch) -> None:
    with running_sandbox(customers=800, products=0, orders=0, ploomes_rpm=FAST,
                         omie_rpm=FAST) as sb:
        sb.erp.faults.redundant_rule = False
        # answers take a little while, so the signal always lands while the run still writes
        # (on a loaded machine an unslowed run could finish before the signal is sent)
        sb.crm.faults.latency_ms = sb.erp.faults.latency_ms = 10
        env = {**os.environ, **env_for(sb, tmp_path), "PONTE_SCHEDULE__CUSTOMERS": "every:1"}
        log = tmp_path / "run.log"
        with log.open("w") as fh:
            proc = subprocess.Popen([str(PONTE), "run", "customers", "--now"],
                                    cwd=tmp_path, env=env,
                                    stdout=fh, stderr=subprocess.STDOUT)
        try:
            store = Store.open(env["PONTE_STATE_URL"])

            def writing() -> bool:  # a run is in progress and has committed a chunk
                runs = store.runs(limit=1)
                return bool(runs) and runs[0].status == "running" and bool(
                    store.links("customers"))

            assert wait_for(lambda: writing() or proc.poll() is not None), log.read_text()
            assert proc.poll() is None, log.read_text()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=120) == 0, log.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
        text = log.read_text()
        assert "SIGTERM received" in text and "scheduler stopped" in text
        runs = store.runs(limit=5)
        assert all(r.status != "running" for r in runs)  # every run was finished and recorded
        # stopped mid-run (it had committed a chunk of 800+): the watermark did not move
        assert runs[0].status == "stopped" and "stopped" in runs[0].report["error"], text
        assert store.watermark("customers", "crm") is None
        assert store.lock_holder("entity:customers") is None
        store.close()

        for k, v in env_for(sb, tmp_path).items():
            monkeypatch.setenv(k, v)
        monkeypatch.chdir(tmp_path)
        runner = CliRunner()
        assert runner.invoke(app, ["sync", "customers"]).exit_code == 0
        again = runner.invoke(app, ["sync", "customers", "--json"])
        assert again.exit_code == 0 and '"created": 0' in again.stdout
        assert '"updated": 1' not in again.stdout
        crm = [r.data.get("Register") for r in sb.crm.db["Contacts"]]
        erp = [re.sub(r"\D", "", r.data.get("cnpj_cpf", "")) for r in sb.erp.db["clientes"]]
        assert len(crm) == len(set(crm)) and len(erp) == len(set(erp)) and set(crm) == set(erp)


def test_ctrl_c_during_backfill_stops_between_chunks_and_a_rerun_finishes(tmp_path: Path,
                                                                          monkeypatch) -> None:
    with running_sandbox(customers=800, products=0, orders=0, ploomes_rpm=FAST,
                         omie_rpm=FAST) as sb:
        sb.erp.faults.redundant_rule = False
        # answers take a little while, so the signal always lands while the run still writes
        # (on a loaded machine an unslowed run could finish before the signal is sent)
        sb.crm.faults.latency_ms = sb.erp.faults.latency_ms = 10
        env = {**os.environ, **env_for(sb, tmp_path)}
        log = tmp_path / "backfill.log"
        with log.open("w") as fh:
            proc = subprocess.Popen([str(PONTE), "backfill", "customers", "--json"],
                                    cwd=tmp_path, env=env, stdout=fh, stderr=subprocess.STDOUT)
        try:
            store = Store.open(env["PONTE_STATE_URL"])
            assert wait_for(lambda: bool(store.links("customers")) or proc.poll() is not None)
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=120) == 3, log.read_text()  # stopped: not a success
        finally:
            if proc.poll() is None:
                proc.kill()
        text = log.read_text()
        assert "SIGINT received: stopping after the current chunk" in text
        assert '"status": "stopped"' in text
        run = store.runs(limit=1)[0]
        assert run.kind == "backfill" and run.status == "stopped"
        assert "stopped" in run.report["error"]
        assert store.watermarks() == [] and store.lock_holder("entity:customers") is None
        store.close()
        for k, v in env_for(sb, tmp_path).items():
            monkeypatch.setenv(k, v)
        monkeypatch.chdir(tmp_path)
        runner = CliRunner()
        assert runner.invoke(app, ["backfill", "customers"]).exit_code == 0
        assert '"created": 0' in runner.invoke(app, ["sync", "customers", "--json"]).stdout
        crm = [r.data.get("Register") for r in sb.crm.db["Contacts"]]
        erp = [re.sub(r"\D", "", r.data.get("cnpj_cpf", "")) for r in sb.erp.db["clientes"]]
        assert len(crm) == len(set(crm)) and len(erp) == len(set(erp)) and set(crm) == set(erp)
