"""Benchmark HTTP requests per run against the minimum a run needs.

    .venv/bin/python bench/api_calls.py [--customers 1000] [--changes 1000] [--few 100]

The minimum, per entity: reads ``max(1, ceil(n / page size))`` per source side (n = records in
its window; one read is needed to learn that nothing changed), writes ``ceil(n / batch size)``
per target (Ploomes and Omie have no batch endpoint: batch size 1), nothing else.

Both simulators run as real servers on loopback with ``--customers`` customers on both sides
(``overlap=1.0``). Setup: a first sync (matching by CNPJ/CPF) and a settling sync, then, each
``lookback + 100 s`` apart on the moved clocks, the measured runs:

* ``none``: nothing changed anywhere -> 1 read per side, no writes;
* ``changes``: ``--changes`` customers edited in the CRM -> ERP updates;
* ``echo``: the next run, which reads the ERP echoes of those writes and writes nothing;
* ``few``: ``--few`` CRM edits (a listing shorter than one page).

Requests are counted twice: by the simulators' request logs (``sim.requests``, what the servers
saw) and by the run report's ``api_calls`` (what ponte counted); both are compared with the
minimum. Prints one JSON object, then a table. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

from etl.clock import OffsetClock
from etl.ponte import Ponte
from etl.sandbox.seed import seed
from etl.sandbox.server import Sandbox, running_sandbox
from etl.settings import CrmSettings, ErpSettings, Settings

ROOT = Path(__file__).resolve().parents[1]
MAPPINGS = ROOT / "mappings" / "ploomes_omie"
ENTITY = "customers"
FAST = 1_000_000
LOOKBACK_S = 300
CRM_PAGE = 300  # Ploomes $top (documented maximum)
ERP_PAGE = 100  # ponte's default Omie registros_por_pagina (PONTE_ERP__PAGE_SIZE)


def loopback_clients(sb: Sandbox) -> tuple[httpx.Client, httpx.Client]:
    """One connection per request: the sandbox servers answer kept-alive connections ~40 ms
    late (no TCP_NODELAY on their sockets); see bench/incremental.py."""
    limits = httpx.Limits(max_keepalive_connections=0)
    return (httpx.Client(base_url=sb.crm_url, timeout=30, limits=limits),
            httpx.Client(base_url=sb.erp_url + "/", timeout=30, limits=limits))


def server_counts(sb: Sandbox) -> dict[str, dict[str, Any]]:
    """Requests the simulators logged, split into reads and writes, with the endpoints."""
    out: dict[str, dict[str, Any]] = {}
    for side, sim in (("crm", sb.crm), ("erp", sb.erp)):
        reads = writes = 0
        endpoints: dict[str, int] = {}
        for (endpoint, status), n in sim.requests.counts.items():
            name = f"{endpoint} {status}"
            endpoints[name] = endpoints.get(name, 0) + n
            if side == "crm":
                is_read = endpoint.startswith("GET ")
            else:
                is_read = endpoint.rsplit("/", 1)[-1].startswith(("Listar", "Consultar"))
            if is_read:
                reads += n
            else:
                writes += n
        out[side] = {"read": reads, "write": writes, "endpoints": endpoints}
    return out


def minimum(read_n: dict[str, int], write_n: dict[str, int]) -> dict[str, dict[str, int]]:
    pages = {"crm": CRM_PAGE, "erp": ERP_PAGE}
    return {side: {"read": max(1, math.ceil(read_n[side] / pages[side])),
                   "write": write_n[side]}  # batch size 1 on both systems
            for side in ("crm", "erp")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000)
    parser.add_argument("--changes", type=int, default=1_000)
    parser.add_argument("--few", type=int, default=100)
    args = parser.parse_args()
    if max(args.changes, args.few) > args.customers:
        parser.error("--changes and --few cannot exceed --customers")

    report: dict[str, Any] = {"customers": args.customers, "page_size": {"crm": CRM_PAGE,
                                                                         "erp": ERP_PAGE},
                              "batch_size": {"crm": 1, "erp": 1}, "runs": {}}
    with running_sandbox(customers=0, ploomes_rpm=FAST, omie_rpm=FAST) as sb, \
            tempfile.TemporaryDirectory() as tmp:
        sb.erp.faults.redundant_rule = False
        clock = OffsetClock()  # ponte's clock, moved with the simulators' clocks

        def tick(seconds: float) -> None:
            clock.advance(seconds)
            sb.crm.clock.advance(seconds)
            sb.erp.clock.advance(seconds)

        seed(sb.crm, sb.erp, customers=args.customers, products=0, orders=0, seed=42,
             overlap=1.0, now=sb.crm.clock.now() - timedelta(hours=1))
        settings = Settings(
            state_url=f"sqlite:///{Path(tmp) / 'state.db'}", mappings_dir=MAPPINGS,
            lookback_s=LOOKBACK_S, safety_lag_s=0,
            crm=CrmSettings(base_url=sb.crm_url, requests_per_minute=FAST),
            erp=ErpSettings(base_url=sb.erp_url, requests_per_minute=FAST, page_size=ERP_PAGE),
        )
        ids = sorted(r.id for r in sb.crm.db["Contacts"])
        rng = random.Random(1)

        def run(name: str | None, edits: int = 0) -> None:
            tick(LOOKBACK_S + 100)  # past the lookback: each run's window holds only its delta
            for rid in rng.sample(ids, edits):
                row = sb.crm.db["Contacts"].get(rid)
                assert row is not None
                sb.crm.ui_update("Contacts", rid, {"Name": f"{row.data['Name']} *"})
            tick(2)
            sb.crm.requests.reset()
            sb.erp.requests.reset()
            crm_client, erp_client = loopback_clients(sb)
            rep = Ponte(settings, clock=clock, crm_client=crm_client,
                        erp_client=erp_client).sync([ENTITY])
            if rep.status != "ok":
                raise RuntimeError(f"run {name} failed: {rep.error}")
            if name is None:
                return
            r = rep.entities[ENTITY]
            read_n = {"crm": r.crm.read, "erp": r.erp.read}
            write_n = {"crm": r.crm.created + r.crm.updated, "erp": r.erp.created + r.erp.updated}
            least = minimum(read_n, write_n)
            seen = server_counts(sb)
            ponte = rep.api_calls
            total = {k: sum(seen[s][k] for s in ("crm", "erp")) for k in ("read", "write")}
            least_total = {k: sum(least[s][k] for s in ("crm", "erp")) for k in ("read", "write")}
            report["runs"][name] = {
                "records_read": read_n, "records_written": write_n, "minimum": least,
                "server": seen, "ponte": ponte,
                "extra": {k: total[k] - least_total[k] for k in ("read", "write")},
                "at_minimum": total == least_total,
                "ponte_matches_server": all(ponte[s][k] == seen[s][k] for s in ("crm", "erp")
                                            for k in ("read", "write")),
            }

        run(None)  # first sync: match by CNPJ/CPF, settle differences
        run(None)  # the echoes of the first sync's writes
        run("none")
        run("changes", args.changes)
        run("echo")
        run("few", args.few)
    print(json.dumps(report))
    render(report)


def render(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"HTTP requests per run ({report['customers']:,} customers)")
    for col in ("run", "records read crm/erp", "written crm/erp", "minimum r/w",
                "server crm r/w", "server erp r/w", "extra r/w", "at minimum"):
        table.add_column(col, justify="right")
    for name, r in report["runs"].items():
        least = r["minimum"]
        table.add_row(
            name, f"{r['records_read']['crm']}/{r['records_read']['erp']}",
            f"{r['records_written']['crm']}/{r['records_written']['erp']}",
            f"{least['crm']['read'] + least['erp']['read']}/"
            f"{least['crm']['write'] + least['erp']['write']}",
            f"{r['server']['crm']['read']}/{r['server']['crm']['write']}",
            f"{r['server']['erp']['read']}/{r['server']['erp']['write']}",
            f"{r['extra']['read']}/{r['extra']['write']}", "yes" if r["at_minimum"] else "no")
    Console().print(table)


if __name__ == "__main__":
    main()
