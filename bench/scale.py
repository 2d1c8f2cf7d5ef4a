"""Benchmark ponte on Celery: aggregate throughput of many connections per number of workers.

    .venv/bin/python bench/scale.py [--connections 20] [--workers 1 2 4] [--concurrency 5]
        [--records 60] [--rpm 120] [--latency-ms 50] [--death]

Needs RabbitMQ and PostgreSQL (``--broker-url``, ``--state-url``; defaults: this machine's on
loopback) and optionally ``--limiter-url`` (PONTE_LIMITER_URL: a Redis database for rate limits
shared across processes).

``--connections`` sandbox pairs run as real servers on loopback in this process, each with its
own per-key limits (Ploomes ``--rpm`` requests a minute, Omie 240) and answering in
``--latency-ms``; each connection's file says the same limits. Each round: every ERP holds
``--records`` customers the CRM lacks (fresh data, fresh state schemas, a fresh queue); ``N``
``ponte worker --concurrency C`` processes are started and ready before the clock starts; one
customers sync per connection is enqueued; the round ends when every run is finished (read from
the state database). A worker is one process with a fixed concurrency of ``C`` threads, so ``N``
workers run ``N x C`` connections at once.

Ceiling: each connection's sync is bound by its rate limits (one CRM create per record, plus
the reads the run needs on both sides): its ceiling is ``records / ceiling_s`` records/s, where
``ceiling_s`` = its CRM requests / (rpm / 60) + its Omie requests / (240 / 60), every request it
needed back to back at its side's limit (as bench/throughput.py); the fleet's is the sum of the
connections' ceilings. ``ceiling_share`` = aggregate records/s / that
sum; it can only reach ~100 % when every connection syncs at once (``N x C >= connections``).
``over_limit`` counts the requests the simulators refused with 429.

``--death`` also measures what a worker's death costs: a job running on a worker that is
SIGKILLed is redelivered to a second worker; the figure is the seconds from the kill to the
start of the redelivered run.

Prints one JSON object, then a table. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from etl.connections import state_part
from etl.distributed.app import make_app
from etl.distributed.enqueue import send
from etl.distributed.jobs import Job
from etl.sandbox.seed import ERP_ONLY_SHARE, seed
from etl.sandbox.server import Sandbox, running_sandbox
from etl.state import Store

PONTE = str(Path(sys.executable).with_name("ponte"))
OMIE_RPM = 240


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--concurrency", type=int, default=5)
    parser.add_argument("--records", type=int, default=60)
    parser.add_argument("--rpm", type=int, default=120)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--broker-url", default="amqp://guest:guest@127.0.0.1:5672//")
    parser.add_argument("--state-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--limiter-url", default="")
    parser.add_argument("--death", action="store_true")
    args = parser.parse_args()

    rounds = []
    with ExitStack() as stack:
        pairs = [stack.enter_context(running_sandbox(ploomes_rpm=args.rpm, omie_rpm=OMIE_RPM))
                 for _ in range(args.connections)]
        for n in args.workers:
            rounds.append(run_round(args, pairs, n))
            print(json.dumps({"round": rounds[-1]}), file=sys.stderr, flush=True)
        death = measure_death(args, pairs[0]) if args.death else None
    one = rounds[0]["records_per_s"] if rounds else 0.0
    out = {
        "connections": args.connections, "concurrency": args.concurrency,
        "records": args.records, "rpm": args.rpm, "latency_ms": args.latency_ms,
        "limiter_url": bool(args.limiter_url),
        "workers": [r["workers"] for r in rounds],
        "records_per_s": [r["records_per_s"] for r in rounds],
        "ceiling_records_per_s": [r["ceiling_records_per_s"] for r in rounds],
        "ceiling_share": [r["ceiling_share"] for r in rounds],
        "speedup": [round(r["records_per_s"] / one, 2) if one else None for r in rounds],
        "over_limit": [r["over_limit"] for r in rounds],
        "seconds": [r["seconds"] for r in rounds],
        "statuses": [r["statuses"] for r in rounds],
        "worker_death": death,
        "goal": "4 workers >= 3x one worker, >= 85 % of the ceilings' sum, 0 over the limit",
    }
    print(json.dumps(out))
    render(out)


def reseed(sb: Sandbox, records: int, seed_value: int) -> None:
    """The ERP holds ``records`` customers the CRM lacks; request counts cleared."""
    sb.crm.reset()
    sb.erp.reset()
    total = round(records / ERP_ONLY_SHARE)
    while round(total * ERP_ONLY_SHARE) < records:
        total += 1
    while round(total * ERP_ONLY_SHARE) > records:
        total -= 1
    seed(sb.crm, sb.erp, customers=total, products=0, orders=0, seed=seed_value, overlap=0.0,
         now=sb.crm.clock.now() - timedelta(hours=1))
    for row in list(sb.crm.db["Contacts"]):
        sb.crm.ui_delete("Contacts", row.id)
    sb.erp.faults.redundant_rule = False
    sb.crm.faults.latency_ms = sb.erp.faults.latency_ms = 0
    sb.crm.requests.reset()
    sb.erp.requests.reset()


def connection_file(sb: Sandbox, rpm: int) -> str:
    values = {
        "PONTE_CRM__BASE_URL": sb.crm_url, "PONTE_CRM__CREDENTIALS__USER_KEY": sb.user_key,
        "PONTE_ERP__BASE_URL": sb.erp_url, "PONTE_ERP__CREDENTIALS__APP_KEY": sb.app_key,
        "PONTE_ERP__CREDENTIALS__APP_SECRET": sb.app_secret,
        "PONTE_CRM__REQUESTS_PER_MINUTE": rpm, "PONTE_ERP__REQUESTS_PER_MINUTE": OMIE_RPM,
        "PONTE_SAFETY_LAG_S": 0,
    }
    return "".join(f"{k}='{v}'\n" for k, v in values.items())


@contextmanager
def deployment(args: argparse.Namespace, pairs: list[Sandbox], tag: str
               ) -> Iterator[tuple[Path, dict[str, str], list[str], str]]:
    """Connection files for ``pairs`` (names ``b<tag>-NN``), the workers' environment, the
    names and a fresh queue; the connections' schemas and the queue are removed after."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "connections"
        folder.mkdir()
        names = []
        for i, sb in enumerate(pairs):
            name = f"b{tag}-{i:02d}"
            (folder / f"{name}.env").write_text(connection_file(sb, args.rpm))
            names.append(name)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PONTE_")}
        env.update(PONTE_CONNECTIONS_DIR=str(folder), PONTE_STATE_URL=args.state_url,
                   PONTE_BROKER_URL=args.broker_url, PONTE_LIMITER_URL=args.limiter_url)
        queue = f"ponte-bench-{tag}"
        try:
            yield Path(tmp), env, names, queue
        finally:
            from kombu import Connection

            with Connection(args.broker_url) as conn:
                conn.default_channel.queue_delete(queue)
            admin = sa.create_engine(args.state_url)
            with admin.begin() as c:
                for name in names:
                    c.execute(sa.text(f'DROP SCHEMA IF EXISTS "{state_part(name)}" CASCADE'))
            admin.dispose()


def start_workers(n: int, concurrency: int, env: dict[str, str], where: Path, queue: str,
                  *, first: int = 0) -> list[subprocess.Popen[bytes]]:
    procs = []
    for i in range(first, first + n):
        with open(where / f"worker{i}.log", "wb") as log:
            procs.append(subprocess.Popen(
                [PONTE, "worker", "--queue", queue, "--concurrency", str(concurrency)],
                env=env, cwd=where, stdout=log, stderr=subprocess.STDOUT))
    for i in range(first, first + n):
        wait_for(lambda i=i: " ready." in (where / f"worker{i}.log").read_text(errors="replace"),
                 60, f"worker {i} ready")
    return procs


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def wait_for(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.2)


def finished_runs(state_url: str, names: list[str]) -> dict[str, Any]:
    out = {}
    for name in names:
        with Store.open(state_url, connection=name) as store:
            runs = [r for r in store.runs(limit=10) if r.kind == "sync"]
        if runs and all(r.status != "running" for r in runs):
            out[name] = runs[0]
    return out


def run_round(args: argparse.Namespace, pairs: list[Sandbox], workers: int) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:6]
    for i, sb in enumerate(pairs):
        reseed(sb, args.records, seed_value=100 + i)
    with deployment(args, pairs, tag) as (where, env, names, queue):
        for name in names:  # the schemas exist (and are migrated) before the clock starts
            Store.open(args.state_url, connection=name).close()
        procs = start_workers(workers, args.concurrency, env, where, queue)
        for sb in pairs:
            sb.crm.faults.latency_ms = sb.erp.faults.latency_ms = args.latency_ms
            sb.crm.requests.reset()
            sb.erp.requests.reset()
        try:
            app = make_app(args.broker_url, queue=queue)
            sent_at = datetime.now(UTC)
            send(app, [[Job(name, "sync", "customers")] for name in names])
            done: dict[str, Any] = {}
            deadline = time.monotonic() + 3600
            while len(done) < len(names) and time.monotonic() < deadline:
                time.sleep(1.0)
                done = finished_runs(args.state_url, names)
        finally:
            stop(procs)
        last = max(r.finished_at for r in done.values())
        seconds = (last - sent_at).total_seconds()
        created = 0
        ceiling = 0.0
        over = 0
        for name, sb in zip(names, pairs, strict=True):
            run = done[name]
            made = int(run.report["entities"]["customers"]["crm"]["created"])
            crm_ok = sum(n for (_e, s), n in sb.crm.requests.counts.items() if s != 429)
            erp_ok = sum(n for (_e, s), n in sb.erp.requests.counts.items() if s != 429)
            over += sum(n for sim in (sb.crm, sb.erp)
                        for (_e, s), n in sim.requests.counts.items() if s == 429)
            created += made
            # every request the run needed, back to back at its side's limit
            ceiling_s = crm_ok / (args.rpm / 60) + erp_ok / (OMIE_RPM / 60)
            ceiling += made / ceiling_s if ceiling_s else 0.0
        rate = created / seconds
        starts = sorted((r.started_at - sent_at).total_seconds() for r in done.values())
        lengths = sorted(float(r.report.get("duration_s") or 0) for r in done.values())
        return {"workers": workers, "seconds": round(seconds, 1), "created": created,
                "run_s_median": round(lengths[len(lengths) // 2], 1),
                "run_s_max": round(lengths[-1], 1),
                "start_after_s": [round(starts[0], 1), round(starts[len(starts) // 2], 1),
                                  round(starts[-1], 1)],
                "records_per_s": round(rate, 2), "ceiling_records_per_s": round(ceiling, 2),
                "ceiling_share": round(rate / ceiling, 3) if ceiling else None,
                "over_limit": over,
                "statuses": sorted({r.status for r in done.values()})}


def measure_death(args: argparse.Namespace, sb: Sandbox) -> dict[str, Any]:
    """Seconds from a worker's SIGKILL mid-run to the start of its job's redelivered run."""
    tag = uuid.uuid4().hex[:6]
    reseed(sb, args.records, seed_value=7)
    with deployment(args, [sb], tag) as (where, env, names, queue):
        Store.open(args.state_url, connection=names[0]).close()
        first = start_workers(1, 1, env, where, queue)
        second: list[subprocess.Popen[bytes]] = []
        try:
            sb.crm.faults.latency_ms = sb.erp.faults.latency_ms = args.latency_ms
            send(make_app(args.broker_url, queue=queue), [[Job(names[0], "sync", "customers")]])
            wait_for(lambda: len(sb.crm.db["Contacts"]) >= 5, 300, "the run to write")
            second = start_workers(1, 1, env, where, queue, first=1)
            first[0].send_signal(signal.SIGKILL)
            first[0].wait()
            killed = datetime.now(UTC)
            runs: list[Any] = []

            def redone() -> bool:
                nonlocal runs
                with Store.open(args.state_url, connection=names[0]) as store:
                    runs = [r for r in store.runs(limit=10) if r.started_at > killed]
                return bool(runs)

            wait_for(redone, 600, "the redelivered run")
            wait_for(lambda: bool(finished_runs(args.state_url, names)), 600, "its end")
        finally:
            stop(first + second)
        contacts = [r.data.get("Register") for r in sb.crm.db["Contacts"]]
        return {"redone_after_s": round((runs[-1].started_at - killed).total_seconds(), 2),
                "same_host": True, "duplicates": len(contacts) - len(set(contacts)),
                "created": len(contacts), "expected": args.records}


def render(out: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{out['connections']} connections x {out['records']} customers, "
                        f"{out['rpm']} rpm each, {out['latency_ms']:.0f} ms, "
                        f"{out['concurrency']} jobs per worker")
    for col in ("workers", "run (s)", "records/s", "speedup", "ceiling records/s", "share",
                "429s"):
        table.add_column(col, justify="right")
    for i, n in enumerate(out["workers"]):
        table.add_row(str(n), str(out["seconds"][i]), str(out["records_per_s"][i]),
                      str(out["speedup"][i]), str(out["ceiling_records_per_s"][i]),
                      f"{out['ceiling_share'][i]:.1%}", str(out["over_limit"][i]))
    Console().print(table)
    if out["worker_death"]:
        Console().print(f"worker death: {out['worker_death']}")


if __name__ == "__main__":
    main()
