"""Benchmark the write pipeline at the latency limit: N new customers pushed from Omie into
Ploomes, the CRM answering each request after ``--latency-ms``, no rate limit in the way, one
record per request, with 1, 4 and 16 writers.

    .venv/bin/python bench/push.py [--records 10000] [--writers 1,4,16] [--latency-ms 20]
        [--read-slots 1] [--profile DIR] [--json]

Per writers count, this process runs both simulators as real servers on loopback
(``running_sandbox``) with their rate limits raised to :data:`RPM`, and ``faults.latency_ms`` on
Ploomes; ponte runs as its own process, as in production: ``ponte sync customers --json`` with
``PONTE_CRM__REQUESTS_PER_MINUTE`` / ``PONTE_ERP__REQUESTS_PER_MINUTE`` = :data:`RPM` and
``PONTE_CRM__WRITE_CONCURRENCY`` = the writers; ``PONTE_CRM__MAX_CONCURRENCY`` = the writers plus
``--read-slots`` (:data:`READ_SLOTS`), so the natural-key searches before creates go beside the
writes (``--read-slots 0``: they share the writers' slots). The ERP holds ``--records`` customers, the CRM none
(the seeder's ERP-only share, the CRM-only remainder deleted), so every record is one create.

``efficiency = records_per_s / (writers / latency_s)``: the share of what ``writers`` requests
of ``latency`` each, back to back, could create per second. ``seconds`` is the wall time of the
``ponte sync`` process (start-up included, from modules compiled beforehand as an installed
package has them: :func:`ponte_env`). Right after, a second ``ponte sync customers`` with
nothing changed gives ``quiet_rerun_s`` and ``quiet_rerun_reads`` (the requests each simulator
saw during it, by endpoint). Goals at 10,000 records, 20 ms: writers 1 and 4 >= 85 %.

``--profile DIR`` runs both syncs under cProfile (``DIR/push-<writers>.prof``,
``DIR/quiet-<writers>.prof``; the profiler slows ponte: use it to compare, not for the
figures). Prints one JSON object per writers count,
then a table unless ``--json``. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from etl.sandbox.seed import ERP_ONLY_SHARE, seed
from etl.sandbox.server import Sandbox, running_sandbox

ROOT = Path(__file__).resolve().parents[1]
MAPPINGS = ROOT / "mappings" / "ploomes_omie"
PONTE = Path(sys.executable).parent / "ponte"
ENTITY = "customers"
RPM = 1_000_000  # simulators and ponte alike: no rate limit in the way
GOAL = 0.85
READ_SLOTS = 1  # default requests beside the writers: the natural-key searches, the listings


def seed_erp_only(sb: Sandbox, records: int) -> None:
    """``records`` customers in Omie, none in Ploomes."""
    # the seeder splits customers 60/40 ERP-only/CRM-only at overlap 0: ask for enough
    # to get the ERP count, then delete the CRM's share
    total = round(records / ERP_ONLY_SHARE)
    while round(total * ERP_ONLY_SHARE) < records:
        total += 1
    while round(total * ERP_ONLY_SHARE) > records:
        total -= 1
    seed(sb.crm, sb.erp, customers=total, products=0, orders=0, seed=42, overlap=0.0,
         now=sb.crm.clock.now() - timedelta(hours=1))
    for row in list(sb.crm.db["Contacts"]):
        sb.crm.ui_delete("Contacts", row.id)
    assert len(sb.erp.db["clientes"]) == records and not len(sb.crm.db["Contacts"])


def ponte_env() -> dict[str, str]:
    """This environment without PONTE_ settings, for a ``ponte`` process that starts as an
    installed one does: from compiled modules. Its dependencies were compiled when they were
    installed; ponte's own are compiled here, in place (a checkout installed in editable mode
    has none, and with PYTHONDONTWRITEBYTECODE set every start would compile them again:
    ~0.25 s that drt, installed from a wheel, never pays). No PYTHONPYCACHEPREFIX: under one,
    every dependency's compiled modules would be looked for there and pandas, SQLAlchemy and
    the rest compiled again at the first start (seconds)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PONTE_")
           and k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")}
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "etl")], env=env,
                   check=True)
    return env


def sync(env: dict[str, str], cwd: Path, profile: Path | None = None
         ) -> tuple[float, dict[str, Any]]:
    """One ``ponte sync customers --json`` in its own process: wall seconds and its report."""
    cmd = [str(PONTE), "sync", ENTITY, "--json"]
    if profile is not None:
        cmd = [sys.executable, "-m", "cProfile", "-o", str(profile), *cmd]
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False,
                          timeout=3600)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"ponte sync exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    start = proc.stdout.find("{")
    report: dict[str, Any] = json.loads(proc.stdout[start:])
    return seconds, report


def requests_seen(sb: Sandbox) -> dict[str, dict[str, int]]:
    return {side: {f"{e} {s}": n for (e, s), n in sorted(sim.requests.counts.items())}
            for side, sim in (("crm", sb.crm), ("erp", sb.erp))}


def efficiency(records_per_s: float, writers: int, latency_ms: float) -> float:
    """The share of what ``writers`` requests of ``latency_ms`` each, back to back, allow."""
    return round(records_per_s / (writers / (latency_ms / 1000)), 3)


def run_one(records: int, writers: int, latency_ms: float, profile: Path | None, *,
            read_slots: int = READ_SLOTS) -> dict[str, Any]:
    with running_sandbox(customers=0, ploomes_rpm=RPM, omie_rpm=RPM) as sb, \
            tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        seed_erp_only(sb, records)
        sb.crm.faults.latency_ms = latency_ms
        env = ponte_env()
        env.update({
            "PONTE_STATE_URL": f"sqlite:///{tmp / 'state.db'}",
            "PONTE_MAPPINGS_DIR": str(MAPPINGS),
            "PONTE_CRM__BASE_URL": sb.crm_url, "PONTE_ERP__BASE_URL": sb.erp_url,
            "PONTE_CRM__REQUESTS_PER_MINUTE": str(RPM),
            "PONTE_ERP__REQUESTS_PER_MINUTE": str(RPM),
            "PONTE_CRM__WRITE_CONCURRENCY": str(writers),
            "PONTE_CRM__MAX_CONCURRENCY": str(writers + read_slots),
            "PONTE_LOG_LEVEL": "WARNING",
        })
        sb.crm.requests.reset()
        sb.erp.requests.reset()
        prof = profile / f"push-{writers}.prof" if profile is not None else None
        seconds, report = sync(env, tmp, prof)
        first_requests = requests_seen(sb)
        created = len(sb.crm.db["Contacts"])
        sb.crm.requests.reset()
        sb.erp.requests.reset()
        quiet_prof = profile / f"quiet-{writers}.prof" if profile is not None else None
        quiet_s, quiet = sync(env, tmp, quiet_prof)
        quiet_requests = requests_seen(sb)
    counts = report["entities"][ENTITY]
    rps = counts["crm"]["created"] / seconds
    reads = {side: sum(n for name, n in seen.items() if not name.startswith(("POST", "PATCH",
                                                                               "DELETE")))
             for side, seen in quiet_requests.items()}
    return {
        "records": records, "writers": writers, "max_concurrency": writers + read_slots,
        "latency_ms": latency_ms,
        "status": report["status"], "created": counts["crm"]["created"],
        "created_in_sim": created,
        "failed": counts["crm"]["quarantined"] + counts["erp"]["quarantined"],
        "seconds": round(seconds, 1), "records_per_s": round(rps, 2),
        "efficiency": efficiency(rps, writers, latency_ms),
        "api_calls": report["api_calls"], "requests_seen": first_requests,
        "quiet_rerun_s": round(quiet_s, 2), "quiet_rerun_status": quiet["status"],
        "quiet_rerun_reads": {f"{ENTITY} {side}": n for side, n in reads.items()},
        "quiet_rerun_api_calls": quiet["api_calls"], "quiet_rerun_requests": quiet_requests,
        "profiled": prof is not None,
    }


def render(results: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    first = results[0]
    table = Table(title=f"push {first['records']:,} new customers Omie -> Ploomes "
                        f"({first['latency_ms']:.0f} ms latency, no rate limit)")
    for col in ("writers", "run (s)", "records/s", "efficiency", "goal", "created", "failed",
                "quiet rerun (s)", "quiet rerun reads"):
        table.add_column(col, justify="right")
    for r in results:
        ok = "ok" if r["efficiency"] >= GOAL and r["failed"] == 0 else "MISS"
        goal = f">= 85% {ok}" if r["writers"] in (1, 4) else "report"
        reads = ", ".join(f"{k}: {v}" for k, v in r["quiet_rerun_reads"].items())
        table.add_row(str(r["writers"]), f"{r['seconds']}", f"{r['records_per_s']}",
                      f"{r['efficiency']:.1%}", goal, f"{r['created']:,}", str(r["failed"]),
                      f"{r['quiet_rerun_s']}", reads)
    Console().print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--writers", default="1,4,16",
                        help="comma-separated writers counts, one run each")
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--read-slots", type=int, default=READ_SLOTS,
                        help="CRM requests allowed beside the writers (max_concurrency - writers)")
    parser.add_argument("--profile", type=Path, default=None,
                        help="a folder for a cProfile dump of each first sync")
    parser.add_argument("--json", action="store_true", help="JSON lines only, no table")
    args = parser.parse_args()
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    results = []
    for writers in (int(w) for w in args.writers.split(",")):
        result = run_one(args.records, writers, args.latency_ms, args.profile,
                         read_slots=args.read_slots)
        print(json.dumps(result), flush=True)
        results.append(result)
    if not args.json:
        render(results)


if __name__ == "__main__":
    main()
