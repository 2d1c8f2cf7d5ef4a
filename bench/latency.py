"""Change-to-visible latency of ``ponte serve``: edits made through the vendor APIs, the time
until each edit's value shows on the other side; webhooks on, and polling for comparison.

    .venv/bin/python bench/latency.py [--mode webhooks|polling|both] [--rate 10] [--seconds 60]
        [--json]

Per mode, this process runs both simulators as real servers (``running_sandbox``), seeded with
customers on both sides (one per edit, plus a few), and ponte runs as its own processes, as in
production: one ``ponte sync customers`` links them by CNPJ/CPF, then ``ponte serve`` (with
``--poll`` and ``PONTE_SCHEDULE__CUSTOMERS=every:60`` in polling mode) stays up.

* webhooks: ``ponte webhooks register`` creates the Ploomes callbacks
  (``PONTE_SERVE__PUBLIC_URL`` = the serve process's loopback address) and the Omie portal
  configuration is set through the simulator's admin API (``POST /_sandbox/webhooks``).
* polling: no webhook is configured; the schedule reads every change once a minute.

The edits alternate CRM and ERP (Ploomes ``PATCH /Contacts(id)`` with the User-Key, Omie
``AlterarCliente``) at ``--rate`` per second for ``--seconds``; each writes a unique e-mail
address into a linked customer not edited before. A watcher reads the other side's records
through the admin API's record dump (``GET /_sandbox/<table>``, not rate-limited) every
:data:`WATCH_EVERY_S` and notes when each edit's value is there. latency = seen - edit
answered (the watcher's period is included). ``lost`` = edits not seen within the grace period
after the last edit (30 s with webhooks, two polling intervals when polling); ``duplicates`` =
customers created on either side during the bench (the counts before and after must match).

10 edits per second is beyond Ploomes' documented 120 requests per minute (and Omie's 240 per
method): both simulators' limits and ponte's (``PONTE_CRM__REQUESTS_PER_MINUTE``,
``PONTE_ERP__REQUESTS_PER_MINUTE``) are raised to :data:`RPM` for this bench. Other settings keep
their defaults (debounce 1 s, safety lag 5 s).

Prints one JSON object per mode (``mode, rate, seconds, edits, p50_s, p95_s, p99_s, lost,
duplicates``, the events and runs the state recorded, ...), then a table unless ``--json``.
Goal with webhooks: p95 <= 5 s, p99 <= 10 s, 0 lost, 0 duplicates. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from etl.sandbox.server import Sandbox, running_sandbox
from etl.state import Store
from etl.state.events import EventRow

ROOT = Path(__file__).resolve().parents[1]
MAPPINGS = ROOT / "mappings" / "ploomes_omie"
PONTE = Path(sys.executable).parent / "ponte"
RPM = 6_000  # both simulators and ponte's settings; the vendors document 120 (Ploomes), 240
POLL_EVERY_S = 60
WATCH_EVERY_S = 0.2
WEBHOOK_GRACE_S = 30.0
WEBHOOK_KEY = "bench-latency-hook-key"
OMIE_TOPICS = ["ClienteFornecedor.Incluido", "ClienteFornecedor.Alterado",
               "ClienteFornecedor.Excluido"]
SPARE_CUSTOMERS = 10


@dataclass
class Edit:
    """One edit: where it was made, the value it wrote, when it was answered and seen."""

    n: int
    side: str  # where the edit was made: "crm" | "erp"
    crm_id: int
    erp_id: int
    marker: str
    answered: float = 0.0  # monotonic
    seen: float | None = None
    answered_at: datetime | None = None  # wall clock, to compare with the stored events


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def admin_url(sb: Sandbox, side: str) -> str:
    """The admin API's root of one simulator (Omie's base URL ends in /api/v1)."""
    return sb.crm_url if side == "crm" else sb.erp_url.split("/api/")[0]


class Watcher:
    """Reads both sides' customers through the admin API and notes when each edit shows."""

    def __init__(self, sb: Sandbox) -> None:
        self.sb, self.lock = sb, threading.Lock()
        self.edits: list[Edit] = []
        self.dumps = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="latency-watcher", daemon=True)

    def add(self, edit: Edit) -> None:
        with self.lock:
            self.edits.append(edit)

    def unseen(self) -> int:
        with self.lock:
            return sum(1 for e in self.edits if e.seen is None)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _loop(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set():
                for side, table, id_field, email in (("crm", "Contacts", "Id", "Email"),
                                                     ("erp", "clientes", "codigo_cliente_omie",
                                                      "email")):
                    records = client.get(f"{admin_url(self.sb, side)}/_sandbox/{table}"
                                         ).json()["records"]
                    now = time.monotonic()
                    self.dumps += 1
                    emails = {int(r[id_field]): str(r.get(email) or "").lower() for r in records}
                    with self.lock:
                        for e in self.edits:
                            if e.seen is None and e.side != side and e.answered and \
                                    emails.get(e.crm_id if side == "crm" else e.erp_id) == e.marker:
                                e.seen = now
                self._stop.wait(WATCH_EVERY_S)


def edit(client: httpx.Client, sb: Sandbox, e: Edit) -> None:
    """Make one edit through the vendor API of its side; raise when it is refused."""
    if e.side == "crm":
        r = client.patch(f"{sb.crm_url}/Contacts({e.crm_id})", json={"Email": e.marker},
                         headers={"User-Key": sb.user_key})
    else:
        r = client.post(f"{sb.erp_url}/geral/clientes/", json={
            "call": "AlterarCliente", "app_key": sb.app_key, "app_secret": sb.app_secret,
            "param": [{"codigo_cliente_omie": e.erp_id, "email": e.marker}]})
    if r.status_code >= 300 or "faultstring" in r.text:
        raise RuntimeError(f"edit {e.n} on {e.side} refused: {r.status_code} {r.text[:300]}")


def counts(sb: Sandbox) -> tuple[int, int]:
    return len(sb.crm.db["Contacts"]), len(sb.erp.db["clientes"])


def ponte(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(PONTE), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, check=False, timeout=1800)
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"ponte {' '.join(args)} exited {proc.returncode}:\n"
                           f"{proc.stderr[-3000:]}")
    return proc


def start_serve(env: dict[str, str], cwd: Path, url: str, poll: bool) -> subprocess.Popen[str]:
    err = (cwd / "serve.err").open("w")
    proc = subprocess.Popen([str(PONTE), "serve", *(["--poll"] if poll else [])], cwd=cwd,
                            env=env, stdout=subprocess.DEVNULL, stderr=err, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ponte serve exited {proc.returncode}:\n"
                               f"{(cwd / 'serve.err').read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("ponte serve did not answer /healthz within 120 s")


def breakdown(edits: list[Edit], events: list[EventRow]) -> dict[str, float | None]:
    """Where an edit's latency goes (medians): the webhook's delivery (edit answered ->
    event stored), ponte's wait and sync (stored -> marked done: the debounce, the worker's
    poll, the run) and the rest (done -> seen by the watcher: its period and a dump)."""
    first: dict[tuple[str, str], EventRow] = {}
    for ev in sorted(events, key=lambda ev: ev.id):
        if ev.key is not None:
            first.setdefault((ev.side, ev.key), ev)
    delivery, processing, rest = [], [], []
    for e in edits:
        ev = first.get((e.side, str(e.crm_id if e.side == "crm" else e.erp_id)))
        if ev is None or e.answered_at is None:
            continue
        received = to_utc(ev.received_at)
        delivery.append((received - e.answered_at).total_seconds())
        if ev.processed_at is not None:
            done = to_utc(ev.processed_at)
            processing.append((done - received).total_seconds())
            if e.seen is not None:
                seen_at = e.answered_at.timestamp() + (e.seen - e.answered)
                rest.append(seen_at - done.timestamp())
    return {"delivery": percentile(delivery, 50), "debounce_poll_sync": percentile(processing, 50),
            "done_to_seen": percentile(rest, 50)}


def to_utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def percentile(values: list[float], q: int) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 3)
    return round(statistics.quantiles(values, n=100, method="inclusive")[q - 1], 3)


def run_mode(mode: str, rate: float, seconds: float, customers: int = 0) -> dict[str, Any]:
    """One bench of ``mode``: set up, edit for ``seconds``, wait out the grace, count."""
    n_edits = round(rate * seconds)
    customers = max(customers, n_edits + SPARE_CUSTOMERS)
    webhooks = mode == "webhooks"
    grace = WEBHOOK_GRACE_S if webhooks else 2.0 * POLL_EVERY_S
    with running_sandbox(customers=customers, products=0, orders=0,
                         ploomes_rpm=RPM, omie_rpm=RPM, overlap=1.0) as sb, \
            tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        state_url = f"sqlite:///{tmp / 'state.db'}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("PONTE_")}
        env.update({
            "PONTE_STATE_URL": state_url, "PONTE_MAPPINGS_DIR": str(MAPPINGS),
            "PONTE_CRM__BASE_URL": sb.crm_url, "PONTE_ERP__BASE_URL": sb.erp_url,
            "PONTE_CRM__REQUESTS_PER_MINUTE": str(RPM),
            "PONTE_ERP__REQUESTS_PER_MINUTE": str(RPM),
            "PONTE_METRICS_FILE": str(tmp / "ponte.prom"),
            "PONTE_SERVE__PORT": str(port), "PONTE_SERVE__HOST": "127.0.0.1",
        })
        if webhooks:
            env.update({"PONTE_SERVE__PUBLIC_URL": url, "PONTE_CRM__WEBHOOK_KEY": WEBHOOK_KEY})
        else:
            env["PONTE_SCHEDULE__CUSTOMERS"] = f"every:{POLL_EVERY_S}"
        started = time.perf_counter()
        ponte(env, tmp, "sync", "customers")
        setup_sync_s = time.perf_counter() - started
        store = Store.open(state_url)
        links = [(int(c), int(e)) for c, e in store.links("customers")]
        if len(links) < n_edits:
            raise RuntimeError(f"{len(links)} linked customers for {n_edits} edits")
        before = counts(sb)
        bench_start = datetime.now(UTC)
        serve = start_serve(env, tmp, url, poll=not webhooks)
        try:
            if webhooks:
                ponte(env, tmp, "webhooks", "register")
                httpx.post(f"{admin_url(sb, 'erp')}/_sandbox/webhooks", json={
                    "url": f"{url}/webhooks/omie", "topics": OMIE_TOPICS}).raise_for_status()
            watcher = Watcher(sb)
            watcher.start()
            with httpx.Client(timeout=30) as client:
                t0 = time.monotonic()
                for n in range(n_edits):
                    crm_id, erp_id = links[n]
                    e = Edit(n, "crm" if n % 2 == 0 else "erp", crm_id, erp_id,
                             f"lat{n:05d}.{mode[0]}@exemplo.com.br")
                    time.sleep(max(0.0, t0 + n / rate - time.monotonic()))
                    edit(client, sb, e)
                    e.answered, e.answered_at = time.monotonic(), datetime.now(UTC)
                    watcher.add(e)
                edits_took = time.monotonic() - t0
            deadline = time.monotonic() + grace
            while watcher.unseen() and time.monotonic() < deadline:
                time.sleep(0.5)
            watcher.stop()
        finally:
            serve.send_signal(signal.SIGTERM)
            try:
                serve.wait(120)
            except subprocess.TimeoutExpired:
                serve.kill()
        after = counts(sb)
        events = store.event_counts()
        stages = breakdown(watcher.edits, store.events(limit=100_000)) if webhooks else {}
        runs = [r for r in store.runs(limit=100_000) if r.started_at >= bench_start]
        store.close()
        deliveries = {side: {k: v for k, v in sim.deliveries.status().items()
                             if k in ("delivered", "retried", "dead_lettered")}
                      for side, sim in (("crm", sb.crm), ("erp", sb.erp))}
        dead = [d["last_error"] for sim in (sb.crm, sb.erp)
                for d in sim.deliveries.status()["dead_letters"]]
        serve_log = (tmp / "serve.err").read_text()
    if dead or any(e.seen is None for e in watcher.edits):
        print(f"{mode}: webhook deliveries given up: {sorted(set(dead))[:5]}; "
              f"the end of ponte serve's log:\n{serve_log[-3000:]}", file=sys.stderr)
    slow = [line for line in serve_log.splitlines()
            if any(w in line.lower() for w in ("redundant", "retry", "retrying", "wait"))]
    if slow:
        print(f"{mode}: waits in ponte serve's log:\n" + "\n".join(slow[-20:]), file=sys.stderr)
    latencies = sorted(e.seen - e.answered for e in watcher.edits if e.seen is not None)
    run_s = [(r.finished_at - r.started_at).total_seconds() for r in runs
             if r.finished_at is not None and r.kind == ("event" if webhooks else "sync")]
    return {
        "mode": mode, "rate": rate, "seconds": seconds, "edits": len(watcher.edits),
        "edits_took_s": round(edits_took, 1),
        "p50_s": percentile(latencies, 50), "p95_s": percentile(latencies, 95),
        "p99_s": percentile(latencies, 99),
        "max_s": round(latencies[-1], 3) if latencies else None,
        "lost": len(watcher.edits) - len(latencies),
        "duplicates": (after[0] - before[0]) + (after[1] - before[1]),
        "customers_before": list(before), "customers_after": list(after),
        "events": events, "event_runs": sum(1 for r in runs if r.kind == "event"),
        "sync_runs": sum(1 for r in runs if r.kind == "sync"),
        "run_s_p50": percentile(run_s, 50), "run_s_max": round(max(run_s), 3) if run_s else None,
        "failed_runs": sum(1 for r in runs if r.status not in ("ok", "partial")),
        "stages_p50_s": stages, "grace_s": grace, "watch_every_s": WATCH_EVERY_S, "setup_sync_s": round(setup_sync_s, 1),
        "deliveries": deliveries,
        "rate_limits": f"raised to {RPM}/min on both simulators and in ponte's settings "
                       "(Ploomes documents 120/min)",
        "goal": "webhooks: p95 <= 5 s, p99 <= 10 s, 0 lost, 0 duplicates",
    }


def render(results: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="change-to-visible latency (edits through the vendor APIs)")
    for col in ("mode", "edits", "rate/s", "p50 s", "p95 s", "p99 s", "max s", "lost",
                "duplicates", "event runs", "sync runs"):
        table.add_column(col, justify="right")
    for r in results:
        table.add_row(r["mode"], str(r["edits"]), str(r["rate"]), str(r["p50_s"]),
                      str(r["p95_s"]), str(r["p99_s"]), str(r["max_s"]), str(r["lost"]),
                      str(r["duplicates"]), str(r["event_runs"]), str(r["sync_runs"]))
    Console(width=120).print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("webhooks", "polling", "both"), default="both")
    parser.add_argument("--rate", type=float, default=10.0, help="edits per second")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to edit")
    parser.add_argument("--customers", type=int, default=0,
                        help="customers on both sides (default: one per edit, plus a few)")
    parser.add_argument("--json", action="store_true", help="only the JSON objects")
    args = parser.parse_args()
    if not PONTE.exists():
        sys.exit(f"ponte's console script is not next to this interpreter ({PONTE.name}); "
                 "run the bench with the project's virtualenv")
    modes = ["webhooks", "polling"] if args.mode == "both" else [args.mode]
    results = []
    for mode in modes:
        result = run_mode(mode, args.rate, args.seconds, args.customers)
        print(json.dumps(result), flush=True)
        results.append(result)
    if not args.json:
        render(results)


if __name__ == "__main__":
    main()
