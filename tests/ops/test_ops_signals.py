"""``ponte sync``/``plan``/``verify`` as real processes against sandbox servers: a signal stops
them after the current chunk (exit 3, a message, the run recorded as ``stopped``), a second one
aborts at once (run ``aborted``, lock released), a crash that is not ponte's own finishes the
run as ``failed`` (exit 5), and a SIGKILLed run is marked failed by the run that takes its lock.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from etl.exitcodes import Exit
from etl.sandbox.server import Sandbox, running_sandbox, serving_ploomes
from etl.state import Store
from tests.ops.conftest import FAST, env_for, wait_for

PONTE = Path(sys.executable).parent / "ponte"  # the installed console script
LOCK = "entity:customers"


@dataclass
class Ponte:
    """One ``ponte`` child process with its stdout and stderr in files."""

    proc: subprocess.Popen[bytes]
    out: Path
    err: Path

    def stdout(self) -> str:
        return self.out.read_text()

    def stderr(self) -> str:
        return self.err.read_text()

    def stop_soon(self, within: float) -> dict[str, object]:
        """Ctrl-C now: ponte exits 3 within ``within`` seconds; its JSON report."""
        assert self.proc.poll() is None, self.stderr()
        self.proc.send_signal(signal.SIGINT)
        signalled = time.monotonic()
        assert self.wait(timeout=180) == Exit.FAILED, self.stderr()
        assert time.monotonic() - signalled < within, self.stderr()
        report: dict[str, object] = json.loads(self.stdout())
        return report

    def wait(self, timeout: float = 120) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"ponte did not exit in {timeout}s:\n{self.stderr()}") from None


@dataclass
class Setup:
    sandbox: Sandbox
    env: dict[str, str]
    tmp: Path
    store: Store

    def start(self, *args: str, name: str = "ponte", **extra_env: str) -> Ponte:
        out, err = self.tmp / f"{name}.out", self.tmp / f"{name}.err"
        with out.open("w") as o, err.open("w") as e:
            proc = subprocess.Popen([str(PONTE), *args], cwd=self.tmp,
                                    env={**self.env, **extra_env}, stdout=o, stderr=e)
        return Ponte(proc, out, err)

    def run(self, *args: str, name: str = "ponte", **extra_env: str) -> tuple[int, Ponte]:
        p = self.start(*args, name=name, **extra_env)
        return p.wait(), p

    def faults(self, side: str, **knobs: object) -> None:
        url = self.sandbox.crm_url if side == "crm" else self.sandbox.erp_url
        base = url.split("/api/")[0]
        httpx.post(f"{base}/_sandbox/faults", json=knobs).raise_for_status()

    def committed_a_chunk(self) -> bool:
        runs = self.store.runs(limit=1)
        return bool(runs) and runs[0].status == "running" and bool(self.store.links("customers"))

    def no_duplicates(self) -> None:
        crm = [r.data.get("Register") for r in self.sandbox.crm.db["Contacts"]]
        erp = [re.sub(r"\D", "", r.data.get("cnpj_cpf", "")) for r in self.sandbox.erp.db["clientes"]]
        assert len(crm) == len(set(crm)) and len(erp) == len(set(erp)) and set(crm) == set(erp)


@contextmanager
def setup(tmp_path: Path, customers: int = 600) -> Iterator[Setup]:
    with running_sandbox(customers=customers, products=0, orders=0, ploomes_rpm=FAST,
                         omie_rpm=FAST) as sb:
        sb.erp.faults.redundant_rule = False
        env = {**os.environ, **env_for(sb, tmp_path)}
        env.pop("PONTE_LOG_LEVEL", None)
        store = Store.open(env["PONTE_STATE_URL"])
        try:
            yield Setup(sb, env, tmp_path, store)
        finally:
            store.close()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_during_sync_stops_after_the_chunk_exit_3_and_the_next_sync_converges(
        tmp_path: Path, sig: signal.Signals) -> None:
    with setup(tmp_path) as s:
        s.faults("crm", latency_ms=15)  # each write takes a while: the signal lands mid-run
        s.faults("erp", latency_ms=15)
        p = s.start("sync", "customers", "--json")
        assert wait_for(lambda: s.committed_a_chunk() or p.proc.poll() is not None)
        assert p.proc.poll() is None, p.stderr()
        p.proc.send_signal(sig)
        assert p.wait() == Exit.FAILED, p.stderr()
        err = p.stderr()
        assert f"{sig.name} received: stopping after the current chunk" in err
        assert "press Ctrl-C again to abort now" in err
        report = json.loads(p.stdout())  # exactly one JSON object
        assert report["status"] == "stopped" and "stopped after" in report["error"]
        run = s.store.run(report["run_id"])
        assert run is not None and run.status == "stopped" and run.finished_at is not None
        assert "whole chunks committed" in run.report["error"]
        assert s.store.watermarks() == []  # not moved: the window was not finished
        assert s.store.lock_holder(LOCK) is None
        assert s.store.links("customers")  # the chunks done before the signal were kept

        s.faults("crm", latency_ms=0)
        s.faults("erp", latency_ms=0)
        code, _ = s.run("sync", "customers", name="again")
        assert code == Exit.OK
        code, last = s.run("sync", "customers", "--json", name="last")
        assert code == Exit.OK, last.stderr()
        counts = json.loads(last.stdout())["entities"]["customers"]
        assert counts["crm"]["created"] == counts["erp"]["created"] == 0
        assert counts["crm"]["updated"] == counts["erp"]["updated"] == 0
        s.no_duplicates()


def test_two_ctrl_c_abort_at_once_and_leave_the_state_consistent(tmp_path: Path) -> None:
    with setup(tmp_path) as s:
        s.faults("crm", latency_ms=200)  # finishing a chunk of 100 writes would take 20 s+
        s.faults("erp", latency_ms=200)
        p = s.start("sync", "customers", "--json")
        assert wait_for(lambda: s.committed_a_chunk() or p.proc.poll() is not None, timeout=120)
        time.sleep(1.0)  # well inside the next chunk, which needs many more seconds
        assert p.proc.poll() is None, p.stderr()
        p.proc.send_signal(signal.SIGINT)
        assert wait_for(lambda: "stopping after the current chunk" in p.stderr(), timeout=10)
        asked = time.monotonic()
        p.proc.send_signal(signal.SIGINT)
        assert p.wait() == Exit.FAILED, p.stderr()
        assert time.monotonic() - asked < 5  # at once, not after the chunk
        assert "SIGINT received again: aborting now" in p.stderr()
        assert json.loads(p.stdout()) == {"status": "aborted", "error": "aborted by a second SIGINT",
                                          "exit_code": 3}
        run = s.store.runs(limit=1)[0]
        assert run.status == "aborted" and run.finished_at is not None
        assert s.store.lock_holder(LOCK) is None and s.store.watermarks() == []

        s.faults("crm", latency_ms=0)
        s.faults("erp", latency_ms=0)
        assert s.run("sync", "customers", name="again")[0] == Exit.OK
        code, last = s.run("sync", "customers", "--json", name="last")
        counts = json.loads(last.stdout())["entities"]["customers"]
        assert code == Exit.OK and counts["crm"]["created"] == counts["erp"]["created"] == 0
        s.no_duplicates()


def test_a_crash_that_is_not_ponte_s_own_fails_the_run_and_exits_5(tmp_path: Path) -> None:
    with setup(tmp_path, customers=20) as s:
        # a vendor record ponte cannot even page past: Ploomes sends it without an Id
        httpx.post(f"{s.sandbox.crm_url}/_sandbox/Contacts", json={
            "Name": "ACME LTDA", "TypeId": 1, "Register": "11222333000181",
            "_raw": {"Id": None}}).raise_for_status()
        code, p = s.run("sync", "customers", "--json")
        assert code == Exit.INTERNAL, p.stderr()
        lines = [ln for ln in p.stderr().splitlines() if ln.startswith("internal error:")]
        # the spec's key pattern refuses the record's key None (a ValueError, never sent)
        assert len(lines) == 1 and "ValueError" in lines[0] and "please report it" in lines[0]
        assert "Traceback" not in p.stderr()
        out = json.loads(p.stdout())
        assert out["status"] == "failed" and out["exit_code"] == 5 and "ValueError" in out["error"]
        run = s.store.runs(limit=1)[0]
        assert run.status == "failed" and run.finished_at is not None
        assert run.report["error"].startswith("internal error: ValueError")
        assert s.store.lock_holder(LOCK) is None

        code, debug = s.run("sync", "customers", name="debug", PONTE_LOG_LEVEL="DEBUG")
        assert code == Exit.INTERNAL and "Traceback (most recent call last)" in debug.stderr()
        assert all(r.status != "running" for r in s.store.runs())


def test_a_sigkilled_run_is_marked_failed_by_the_run_that_takes_its_lock(tmp_path: Path) -> None:
    with setup(tmp_path) as s:
        s.faults("crm", latency_ms=15)
        s.faults("erp", latency_ms=15)
        p = s.start("sync", "customers")
        assert wait_for(lambda: s.committed_a_chunk() or p.proc.poll() is not None)
        assert p.proc.poll() is None, p.stderr()
        killed = s.store.runs(limit=1)[0].id
        p.proc.kill()
        p.proc.wait()
        assert s.store.run(killed).status == "running"  # type: ignore[union-attr]

        code, st = s.run("status", "--json", name="status")
        assert code == Exit.OK
        entity = next(e for e in json.loads(st.stdout())["entities"] if e["entity"] == "customers")
        assert entity["running"] is None  # a dead process is not a run in progress

        s.faults("crm", latency_ms=0)
        s.faults("erp", latency_ms=0)
        code, again = s.run("sync", "customers", name="again")
        assert code == Exit.OK, again.stderr()
        row = s.store.run(killed)
        assert row is not None and row.status == "failed" and row.finished_at is not None
        assert row.report["error"].startswith("killed: lock 'entity:customers' taken over "
                                              "from a dead process")
        code, runs = s.run("runs", "--json", name="runs")
        listed = {r["id"]: r for r in json.loads(runs.stdout())}
        assert listed[killed]["status"] == "failed"
        assert all(r["status"] != "running" for r in listed.values())
        s.no_duplicates()


@pytest.mark.parametrize("args", [["verify", "--fix", "--json"], ["plan", "--json"]],
                         ids=["verify-fix", "plan"])
def test_a_signal_during_verify_or_plan_stops_it_with_exit_3(tmp_path: Path,
                                                             args: list[str]) -> None:
    with setup(tmp_path) as s:
        s.faults("erp", latency_ms=100)  # small Omie pages, each slow: reading takes a while
        p = s.start(*args, PONTE_ERP__PAGE_SIZE="10")
        assert wait_for(lambda: s.sandbox.erp.requests.as_list() != [] or p.proc.poll() is not None)
        time.sleep(1.0)
        assert p.proc.poll() is None, p.stderr()
        p.proc.send_signal(signal.SIGTERM)
        assert p.wait() == Exit.FAILED, p.stderr()
        assert "SIGTERM received: stopping after the current chunk" in p.stderr()
        out = json.loads(p.stdout())
        assert out["status"] == "stopped" and "stopped" in out["error"]
        if args[0] == "verify":
            run = s.store.runs(limit=1)[0]
            assert run.kind == "verify-fix" and run.status == "stopped"
            assert all(s.store.lock_holder(f"entity:{n}") is None
                       for n in ("customers", "products", "orders"))
        else:
            assert s.store.runs() == []  # a plan records nothing


def test_a_signal_while_a_system_is_down_stops_at_once_not_after_its_retries(
        tmp_path: Path) -> None:
    """Nothing listens at the CRM's address: the custom-field list a run reads first is
    retried with a backoff that would take ~40 s to run out; a signal ends that wait within a
    second, as a stop (exit 3), naming what was being retried."""
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with setup(tmp_path) as s:
        p = s.start("sync", "customers", "--json", PONTE_CRM__BASE_URL=down)
        time.sleep(3.0)  # past the first retries: in a backoff wait of 2 s or more
        out = p.stop_soon(within=5.0)
        assert out["status"] == "stopped"
        assert re.match(r"stopped while Ploomes GET /Fields was to be tried again after "
                        r"\d+\.\d s \(last: connection failed \(ConnectError\)\)$",
                        str(out["error"])), out["error"]
        assert s.sandbox.erp.requests.as_list() == []  # nothing else was asked, or written
        assert s.store.runs() == []  # stopped before the run began


def test_a_signal_while_writes_face_a_system_gone_down_stops_at_once_and_nothing_is_lost(
        tmp_path: Path) -> None:
    """The CRM goes away in the middle of a sync's writes: each later write is refused at
    connect time, so none of it was sent, and the writers back off to try again (their
    attempts would take over a minute to run out). A signal ends those waits within seconds,
    as a stop (exit 3) naming what was being tried again. Once the CRM is back, the next sync
    writes what was left, each record once, and the two systems agree.

    The CRM takes updates only here (the customers only Omie had are removed first): a
    create into it that a closing connection leaves in doubt is looked up before anything
    else, and that look-up waits out its retries (tests/connectors/test_ploomes_connector.py)."""
    with setup(tmp_path) as s:
        registers = {r.data.get("Register") for r in s.sandbox.crm.db["Contacts"]}
        for row in list(s.sandbox.erp.db["clientes"]):
            if re.sub(r"\D", "", row.data.get("cnpj_cpf", "")) not in registers:
                s.sandbox.erp.ui_delete("clientes", row.id)
        s.faults("crm", latency_ms=15)  # each write takes a while: the CRM leaves mid-run
        with serving_ploomes(s.sandbox.crm) as crm_url:
            p = s.start("sync", "customers", "--json", PONTE_CRM__BASE_URL=crm_url)
            assert wait_for(lambda: s.committed_a_chunk() or p.proc.poll() is not None)
            assert p.proc.poll() is None, p.stderr()
        time.sleep(2.5)  # the CRM is down: the writes are in their backoff waits
        out = p.stop_soon(within=5.0)
        assert out["status"] == "stopped", out
        retries = out["retries"]
        assert isinstance(retries, dict) and retries["crm"]["dropped"] > 0, out  # being retried
        # what gave way first: a write ("...; it was never sent") or a read the run was making
        assert re.match(r"stopped while Ploomes \S+ \S+ was to be tried again after \d+\.\d s "
                        r"\(last: connection failed \(\w+\)\)", str(out["error"])), out
        port = int(crm_url.rsplit(":", 1)[1])
        with serving_ploomes(s.sandbox.crm, port):  # back, with the same data
            code, again = s.run("sync", "customers", "--json", name="again",
                                PONTE_CRM__BASE_URL=crm_url)
            assert code == Exit.OK, again.stderr()
            counts = json.loads(again.stdout())["entities"]["customers"]
            assert counts["crm"]["updated"] > 0, counts  # what the stopped run left
            s.no_duplicates()
            code, verify = s.run("verify", "customers", name="verify",
                                 PONTE_CRM__BASE_URL=crm_url)
            assert code == Exit.OK, verify.stdout() + verify.stderr()  # no drift
