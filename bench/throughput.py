"""Benchmark a backfill's write throughput against the target's rate limit: 5,000 customers from
Omie into Ploomes, with Ploomes allowing 1,200 requests per minute and answering in 50 ms.

    .venv/bin/python bench/throughput.py [--customers 5000] [--rpm 1200] [--latency-ms 50]
        [--fresh-connections]

Both simulators run as real servers on loopback (uvicorn, ``running_sandbox(ploomes_rpm=1200)``)
with ``faults.latency_ms = 50`` on Ploomes; ponte's settings say the same limit
(``PONTE_CRM__REQUESTS_PER_MINUTE=1200``). The ERP holds ``--customers`` customers, the CRM none
(the seeder's ERP-only share, the CRM-only remainder deleted). One timed
``Ponte(settings).sync(["customers"])`` creates them all in Ploomes.

The ceiling is what the limit allows: every Ploomes request (the creates plus the reads the run
needs: the changed-contacts listing and the city/state lookups) at 1200/60 = 20 per second, and
the Omie reads at Omie's own limit before them. ``share = ceiling time / run time``; the
baseline is that ceiling. Goal: share >= 90 % with 0 failed records.

With ``--fresh-connections`` ponte gets clients that open one connection per request (see
bench/incremental.py on the sandbox's ~40 ms delay on kept-alive connections); by default it
builds its own clients from the settings, as in production. Prints one JSON object, then a
table. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

from etl.ponte import Ponte
from etl.sandbox.seed import ERP_ONLY_SHARE, seed
from etl.sandbox.server import running_sandbox
from etl.settings import CrmSettings, ErpSettings, Settings

ROOT = Path(__file__).resolve().parents[1]
MAPPINGS = ROOT / "mappings" / "ploomes_omie"
ENTITY = "customers"
OMIE_RPM = 240


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=5_000)
    parser.add_argument("--rpm", type=int, default=1_200)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--fresh-connections", action="store_true")
    args = parser.parse_args()

    with running_sandbox(customers=0, ploomes_rpm=args.rpm, omie_rpm=OMIE_RPM) as sb, \
            tempfile.TemporaryDirectory() as tmp:
        # the seeder splits customers 60/40 ERP-only/CRM-only at overlap 0: ask for enough
        # to get the ERP count, then delete the CRM's share
        total = round(args.customers / ERP_ONLY_SHARE)
        while round(total * ERP_ONLY_SHARE) < args.customers:
            total += 1
        while round(total * ERP_ONLY_SHARE) > args.customers:
            total -= 1
        seed(sb.crm, sb.erp, customers=total, products=0, orders=0, seed=42, overlap=0.0,
             now=sb.crm.clock.now() - timedelta(hours=1))
        for row in sb.crm.db["Contacts"]:
            sb.crm.ui_delete("Contacts", row.id)
        assert len(sb.erp.db["clientes"]) == args.customers and not len(sb.crm.db["Contacts"])
        sb.crm.faults.latency_ms = args.latency_ms
        sb.crm.requests.reset()
        sb.erp.requests.reset()
        settings = Settings(
            state_url=f"sqlite:///{Path(tmp) / 'state.db'}", mappings_dir=MAPPINGS,
            crm=CrmSettings(base_url=sb.crm_url, requests_per_minute=args.rpm),
            erp=ErpSettings(base_url=sb.erp_url, requests_per_minute=OMIE_RPM),
        )
        clients: dict[str, Any] = {}
        if args.fresh_connections:
            limits = httpx.Limits(max_keepalive_connections=0)
            clients = {"crm_client": httpx.Client(base_url=sb.crm_url, timeout=30,
                                                  limits=limits),
                       "erp_client": httpx.Client(base_url=sb.erp_url + "/", timeout=30,
                                                  limits=limits)}
        started = time.perf_counter()
        report = Ponte(settings, **clients).sync([ENTITY])
        seconds = time.perf_counter() - started

        r = report.entities[ENTITY]
        crm_calls = report.api_calls["crm"]
        erp_calls = report.api_calls["erp"]
        crm_requests = sum(sb.crm.requests.counts.values())
        got_429 = sum(n for (_, status), n in sb.crm.requests.counts.items() if status == 429)
        endpoints = {f"{e} {s}": n for (e, s), n in sorted(sb.crm.requests.counts.items())}
        created = len(sb.crm.db["Contacts"])
    crm_needed = crm_calls["read"] + crm_calls["write"] - got_429  # requests that did work
    ceiling_s = crm_needed / (args.rpm / 60) + (erp_calls["read"] + erp_calls["write"]) / (
        OMIE_RPM / 60)
    failed = r.crm.quarantined + r.erp.quarantined
    out = {
        "customers": args.customers, "rpm": args.rpm, "latency_ms": args.latency_ms,
        "fresh_connections": args.fresh_connections, "status": report.status,
        "seconds": round(seconds, 1), "created": r.crm.created, "created_in_sim": created,
        "failed": failed, "records_per_s": round(r.crm.created / seconds, 2),
        "ceiling_records_per_s": round(r.crm.created / ceiling_s, 2),
        "ceiling_s": round(ceiling_s, 1),
        "share": round(ceiling_s / seconds, 3), "goal_share": 0.9,
        "api_calls": report.api_calls, "crm_requests_seen": crm_requests, "crm_429": got_429,
        "crm_endpoints": endpoints,
        "baseline": "every needed request at the rate limit, back to back",
    }
    print(json.dumps(out))
    render(out)


def render(out: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"backfill {out['customers']:,} customers Omie -> Ploomes "
                        f"({out['rpm']} rpm, {out['latency_ms']:.0f} ms latency)")
    for col in ("run (s)", "ceiling (s)", "records/s", "ceiling records/s", "share", "goal",
                "created", "failed", "429s"):
        table.add_column(col, justify="right")
    ok = "ok" if out["share"] >= out["goal_share"] and out["failed"] == 0 else "MISS"
    table.add_row(f"{out['seconds']}", f"{out['ceiling_s']}", f"{out['records_per_s']}",
                  f"{out['ceiling_records_per_s']}", f"{out['share']:.1%}",
                  f">= 90% {ok}", f"{out['created']:,}", f"{out['failed']}",
                  f"{out['crm_429']}")
    Console().print(table)


if __name__ == "__main__":
    main()
