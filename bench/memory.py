"""Peak memory of one backfill: N ERP customers into an empty CRM, ponte in its own process.

    .venv/bin/python bench/memory.py --customers 50000 [--rpm 1000000] [--page-size 500]

This process runs both simulators (``running_sandbox``, rate limits raised to ``--rpm`` on both
sides) and seeds the ERP with ``--customers`` customers and the CRM with none. ponte then runs
``ponte backfill customers --side erp --json`` in a fresh interpreter whose settings point at
the simulators (SQLite state in a temporary folder, the same limits raised). The figure is that
process's peak resident set size, read from its own ``/proc/self/status`` (``VmHWM``) when it
exits: not ``ru_maxrss`` of a child, which after fork + exec can start from this (big) process's
peak.

Prints one JSON object ``{"customers", "seconds", "peak_mb", ...}``. Not part of the test
suite. Goal: peak <= 400 MB at 200,000 customers and peak(200,000) <= 1.3 x peak(50,000).
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
from etl.sandbox.server import running_sandbox

ROOT = Path(__file__).resolve().parents[1]
MAPPINGS = ROOT / "mappings" / "ploomes_omie"

# Runs ponte's CLI and, when the interpreter exits, writes its peak RSS (kB) to a file.
CHILD = """
import atexit, sys

PEAK_FILE = sys.argv.pop(1)

def _peak() -> None:
    with open("/proc/self/status", encoding="ascii") as status:
        hwm = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    with open(PEAK_FILE, "w", encoding="ascii") as out:
        out.write(hwm)

atexit.register(_peak)
sys.argv[0] = "ponte"
from etl.cli import main
main()
"""


def erp_only_total(customers: int) -> int:
    """How many customers to ask the seeder for so that ``customers`` are in the ERP only
    (at overlap 0 it splits them ERP-only / CRM-only by ``ERP_ONLY_SHARE``)."""
    total = round(customers / ERP_ONLY_SHARE)
    while round(total * ERP_ONLY_SHARE) < customers:
        total += 1
    while round(total * ERP_ONLY_SHARE) > customers:
        total -= 1
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=50_000)
    parser.add_argument("--rpm", type=int, default=1_000_000,
                        help="rate limit of both simulators and of ponte's settings")
    parser.add_argument("--page-size", type=int, default=500, help="Omie page size")
    args = parser.parse_args()
    if not sys.platform.startswith("linux"):
        sys.exit("bench/memory.py reads /proc: Linux only")

    with running_sandbox(customers=0, ploomes_rpm=args.rpm, omie_rpm=args.rpm) as sb, \
            tempfile.TemporaryDirectory() as tmp:
        seed(sb.crm, sb.erp, customers=erp_only_total(args.customers), products=0, orders=0,
             seed=42, overlap=0.0, now=sb.crm.clock.now() - timedelta(hours=1))
        for row in list(sb.crm.db["Contacts"]):
            sb.crm.ui_delete("Contacts", row.id)
        assert len(sb.erp.db["clientes"]) == args.customers and not len(sb.crm.db["Contacts"])
        env = {k: v for k, v in os.environ.items() if not k.startswith("PONTE_")}
        env.update({
            "PONTE_STATE_URL": f"sqlite:///{Path(tmp) / 'state.db'}",
            "PONTE_MAPPINGS_DIR": str(MAPPINGS),
            "PONTE_CRM__BASE_URL": sb.crm_url,
            "PONTE_ERP__BASE_URL": sb.erp_url,
            "PONTE_CRM__REQUESTS_PER_MINUTE": str(args.rpm),
            "PONTE_ERP__REQUESTS_PER_MINUTE": str(args.rpm),
            "PONTE_ERP__PAGE_SIZE": str(args.page_size),
            "PONTE_LOG_LEVEL": "WARNING",
        })
        peak_file = Path(tmp) / "peak_kb"
        started = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, str(peak_file), "backfill", "customers", "--side",
             "erp", "--json"], env=env, capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - started
        created = len(sb.crm.db["Contacts"])
        peak_mb = int(peak_file.read_text(encoding="ascii")) / 1024 if peak_file.exists() \
            else None
    start = proc.stdout.find("{")
    report: dict[str, Any] = json.JSONDecoder().raw_decode(proc.stdout[start:])[0] \
        if start >= 0 else {}
    if proc.returncode not in (0, 1) or peak_mb is None:
        sys.exit(f"ponte backfill exited {proc.returncode}:\n{proc.stdout[-2000:]}\n"
                 f"{proc.stderr[-4000:]}")
    counts = report.get("entities", {}).get("customers", {})
    out = {"customers": args.customers, "seconds": round(seconds, 1),
           "peak_mb": round(peak_mb, 1), "status": report.get("status"),
           "created_in_crm": created, "crm": counts.get("crm"), "erp": counts.get("erp")}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
