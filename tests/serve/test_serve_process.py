"""``ponte serve`` as a real process against sandbox servers: SIGTERM stops it cleanly with
pending events kept; SIGKILL in the middle of a stream of events loses none and duplicates
nothing once it is started again."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from etl.sandbox.server import Sandbox, running_sandbox
from etl.state import Store
from tests.ops.conftest import FAST, env_for, wait_for
from tests.serve.conftest import CRM_KEY, free_port

PONTE = Path(sys.executable).parent / "ponte"


@dataclass
class Proc:
    proc: subprocess.Popen[bytes]
    err: Path

    def stderr(self) -> str:
        return self.err.read_text()


@dataclass
class Setup:
    sandbox: Sandbox
    env: dict[str, str]
    tmp: Path
    store: Store
    url: str

    def start(self, name: str) -> Proc:
        err = self.tmp / f"{name}.err"
        with (self.tmp / f"{name}.out").open("w") as o, err.open("w") as e:
            proc = subprocess.Popen([str(PONTE), "serve"], cwd=self.tmp, env=self.env,
                                    stdout=o, stderr=e)
        p = Proc(proc, err)
        assert wait_for(lambda: self._listening() or proc.poll() is not None), p.stderr()
        assert proc.poll() is None, p.stderr()
        return p

    def _listening(self) -> bool:
        try:
            httpx.get(f"{self.url}/webhooks/ploomes", timeout=1)
        except httpx.TransportError:
            return False
        return True

    def post(self, crm_id: int, n: int) -> httpx.Response:
        return httpx.post(f"{self.url}/webhooks/ploomes?collection=Contacts", timeout=10,
                          json={"Action": "Update", "ValidationKey": CRM_KEY,
                                "New": {"Id": crm_id, "n": n}, "Old": None})


@contextmanager
def setup(tmp_path: Path) -> Iterator[Setup]:
    with running_sandbox(customers=30, products=0, orders=0, ploomes_rpm=FAST, omie_rpm=FAST,
                         overlap=1.0) as sb:
        sb.erp.faults.redundant_rule = False
        port = free_port()
        env = {**os.environ, **env_for(sb, tmp_path), "PONTE_CRM__WEBHOOK_KEY": CRM_KEY,
               "PONTE_SERVE__PORT": str(port), "PONTE_SERVE__DEBOUNCE_S": "0.2"}
        env.pop("PONTE_LOG_LEVEL", None)
        code = subprocess.run([str(PONTE), "sync", "customers"], check=False, cwd=tmp_path,
                              env=env, capture_output=True, timeout=300)
        assert code.returncode == 0, code.stderr.decode()
        store = Store.open(env["PONTE_STATE_URL"])
        try:
            yield Setup(sb, env, tmp_path, store, f"http://127.0.0.1:{port}")
        finally:
            store.close()


def _stop(p: Proc) -> None:
    if p.proc.poll() is None:
        p.proc.kill()
        p.proc.wait(10)


def test_sigterm_stops_serve_and_pending_events_stay_pending(tmp_path: Path) -> None:
    with setup(tmp_path) as s:
        p = s.start("serve")
        try:
            crm_id = int(s.store.links("customers")[0][0])
            # another run holds the entity: the event cannot be processed before the stop
            assert s.store.acquire_lock("entity:customers", "another-run", lease_s=600,
                                        now=datetime.now(UTC))
            assert s.post(crm_id, 1).status_code == 200
            p.proc.send_signal(signal.SIGTERM)
            assert p.proc.wait(60) == 0, p.stderr()
        finally:
            _stop(p)
        assert "pending events wait for the next start" in p.stderr()
        assert s.store.event_counts()["pending"] == 1


def test_sigkill_mid_stream_then_restart_processes_every_event_once(tmp_path: Path) -> None:
    with setup(tmp_path) as s:
        links = [(int(c), int(e)) for c, e in s.store.links("customers")][:15]
        clientes_before = len(s.sandbox.erp.db["clientes"])
        httpx.post(f"{s.sandbox.erp_url.split('/api/')[0]}/_sandbox/faults",
                   json={"latency_ms": 150}).raise_for_status()
        p = s.start("serve")
        try:
            for n, (crm_id, _erp) in enumerate(links):
                s.sandbox.crm.ui_update("Contacts", crm_id,
                                        {"Email": f"kill{n}@exemplo.com.br"})
                assert s.post(crm_id, n).status_code == 200
                if n == 4:  # the first events processed, then the rest arrive
                    assert wait_for(lambda: s.store.event_counts()["done"] > 0,
                                    timeout=120), p.stderr()
            # a sync of the rest is under way (each ERP call is slow): the process dies outright
            p.proc.send_signal(signal.SIGKILL)
            p.proc.wait(10)
        finally:
            _stop(p)
        assert s.store.event_counts()["pending"] > 0  # killed mid-stream
        httpx.post(f"{s.sandbox.erp_url.split('/api/')[0]}/_sandbox/faults",
                   json={"latency_ms": 0}).raise_for_status()
        again = s.start("again")
        try:
            assert wait_for(lambda: s.store.event_counts()["pending"] == 0, timeout=180), \
                again.stderr()
        finally:
            again.proc.send_signal(signal.SIGTERM)
            again.proc.wait(60)
            _stop(again)
        counts = s.store.event_counts()
        assert counts["done"] == len(links) and counts["failed"] == 0
        for n, (_crm, erp_id) in enumerate(links):
            assert s.sandbox.erp.db["clientes"].get(erp_id).data["email"] == \
                f"kill{n}@exemplo.com.br"
        taxes = [re.sub(r"\D", "", r.data.get("cnpj_cpf", ""))
                 for r in s.sandbox.erp.db["clientes"]]
        assert len(taxes) == len(set(taxes)) == clientes_before  # nothing created twice


def test_serve_with_poll_also_runs_the_schedules(tmp_path: Path) -> None:
    with setup(tmp_path) as s:
        s.env["PONTE_SCHEDULE__CUSTOMERS"] = "every:1"
        before = sum(1 for r in s.store.runs(limit=100) if r.kind == "sync")
        err = tmp_path / "poll.err"
        with (tmp_path / "poll.out").open("w") as o, err.open("w") as e:
            proc = subprocess.Popen([str(PONTE), "serve", "--poll"], cwd=tmp_path, env=s.env,
                                    stdout=o, stderr=e)
        p = Proc(proc, err)
        try:
            assert wait_for(lambda: sum(1 for r in s.store.runs(limit=100) if r.kind == "sync"
                                        and r.status == "ok") > before, timeout=120), p.stderr()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(60) == 0, p.stderr()
        finally:
            _stop(p)
        assert s.store.live_lock_holder("entity:customers", now=datetime.now(UTC)) is None


def _cli(s: Setup, *args: str) -> dict[str, Any]:
    done = subprocess.run([str(PONTE), *args, "--json"], check=False, cwd=s.tmp, env=s.env,
                          capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    doc: dict[str, Any] = json.loads(done.stdout)
    return doc


def test_the_simulators_deliveries_reach_a_serve_process_registered_by_the_cli(
        tmp_path: Path) -> None:
    """``ponte webhooks register`` (CLI) in the Ploomes simulator, Omie's portal set to what
    it printed, then user edits in both simulators reach the other side through ``ponte
    serve`` alone, with ``ponte webhooks status`` listing the callbacks."""
    with setup(tmp_path) as s:
        s.env["PONTE_SERVE__PUBLIC_URL"] = s.url
        registered = _cli(s, "webhooks", "register")
        assert registered["changed"] == 9
        assert CRM_KEY not in json.dumps(registered)
        (portal,) = registered["manual"]
        admin = s.sandbox.erp_url.split("/api/")[0]
        httpx.post(f"{admin}/_sandbox/webhooks", json={"url": portal["url"], "topics":
                                                       portal["topics"]}).raise_for_status()
        assert _cli(s, "webhooks", "register")["changed"] == 0
        status = _cli(s, "webhooks", "status")
        assert len(status["callbacks"]) == 9 and all(
            c["url"].startswith(f"{s.url}/webhooks/ploomes") for c in status["callbacks"])
        crm_id, erp_id = (int(k) for k in s.store.links("customers")[0])
        other_crm, other_erp = (int(k) for k in s.store.links("customers")[1])
        p = s.start("serve")
        try:
            httpx.patch(f"{s.sandbox.crm_url}/_sandbox/Contacts/{crm_id}",
                        json={"Email": "pelo.crm@exemplo.com.br"}).raise_for_status()
            httpx.patch(f"{admin}/_sandbox/clientes/{other_erp}",
                        json={"nome_fantasia": "Pelo ERP"}).raise_for_status()
            assert wait_for(lambda: s.sandbox.erp.db["clientes"].get(erp_id).data.get(
                "email") == "pelo.crm@exemplo.com.br" and s.sandbox.crm.db["Contacts"].get(
                other_crm).data.get("Name") == "Pelo ERP", timeout=60), p.stderr()
        finally:
            p.proc.send_signal(signal.SIGTERM)
            p.proc.wait(60)
            _stop(p)
        assert CRM_KEY not in p.stderr()
        counts = s.store.event_counts()
        assert counts["done"] >= 2 and counts["failed"] == 0
