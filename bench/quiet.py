"""Benchmark the quiet re-run right after a big write, with and without the last-updater filter.

    .venv/bin/python bench/quiet.py [--customers 10000]

Both simulators run as real servers on loopback. Omie holds ``--customers`` customers and
Ploomes none; a first sync pushes them all into Ploomes (and links them). Then, 2 s later on
the moved clocks (well inside the 600 s lookback), nothing having changed:

* ``without``: a re-run with the Ploomes spec stripped of its ``last_updater`` sections (a
  connectors folder holding that copy): every record ponte wrote is in the window and read;
* ``with``: the same re-run with the built-in spec: the listing leaves out the records whose
  ``UpdaterId`` is ponte's own user (``GET /Self``), server-side.

Per run: the Ploomes ``GET /Contacts`` requests the simulator saw, the records ponte read per
side, the API calls of the run report and the wall-clock seconds. Omie records no last updater
ponte can tell from another app's, so its side is re-read in both runs. Prints one JSON object,
then a table. Not part of the test suite.
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
import yaml

from etl.clock import OffsetClock
from etl.connectors.registry import BUILT_IN_DIR
from etl.ponte import Ponte
from etl.sandbox.seed import seed
from etl.sandbox.server import Sandbox, running_sandbox
from etl.settings import CrmSettings, ErpSettings, Settings

ROOT = Path(__file__).resolve().parents[1]
MAPPINGS = ROOT / "mappings" / "ploomes_omie"
ENTITY = "customers"
FAST = 1_000_000
LOOKBACK_S = 600


def loopback_clients(sb: Sandbox) -> tuple[httpx.Client, httpx.Client]:
    """One connection per request (see bench/api_calls.py)."""
    limits = httpx.Limits(max_keepalive_connections=0)
    return (httpx.Client(base_url=sb.crm_url, timeout=30, limits=limits),
            httpx.Client(base_url=sb.erp_url + "/", timeout=30, limits=limits))


def spec_without_filter(folder: Path) -> Path:
    """A copy of the Ploomes spec without ``last_updater`` (today's behaviour before it)."""
    raw = yaml.safe_load((BUILT_IN_DIR / "ploomes.yaml").read_text(encoding="utf-8"))
    for entity in raw["entities"].values():
        entity.get("list", {}).pop("last_updater", None)
    (folder / "ploomes.yaml").write_text(yaml.safe_dump(raw, allow_unicode=True),
                                         encoding="utf-8")
    return folder


def contact_reads(sb: Sandbox) -> int:
    return sum(n for (endpoint, _s), n in sb.crm.requests.counts.items()
               if endpoint == "GET /Contacts")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=10_000)
    args = parser.parse_args()
    out: dict[str, Any] = {"customers": args.customers, "lookback_s": LOOKBACK_S, "runs": {}}
    with running_sandbox(customers=0, ploomes_rpm=FAST, omie_rpm=FAST) as sb, \
            tempfile.TemporaryDirectory() as tmp:
        sb.erp.faults.redundant_rule = False
        clock = OffsetClock()

        def tick(seconds: float) -> None:
            clock.advance(seconds)
            sb.crm.clock.advance(seconds)
            sb.erp.clock.advance(seconds)

        seed(sb.crm, sb.erp, customers=args.customers, products=0, orders=0, seed=42,
             overlap=1.0, now=sb.crm.clock.now() - timedelta(hours=1))
        for row in sb.crm.db["Contacts"]:  # Omie only: the first sync pushes them all
            sb.crm.db["Contacts"].delete(row.id)
        plain = Path(tmp) / "plain"
        plain.mkdir()
        state_url = f"sqlite:///{Path(tmp) / 'state.db'}"

        def settings(connectors_dir: Path | None) -> Settings:
            return Settings(state_url=state_url, mappings_dir=MAPPINGS, lookback_s=LOOKBACK_S,
                            safety_lag_s=0, connectors_dir=connectors_dir,
                            crm=CrmSettings(base_url=sb.crm_url, requests_per_minute=FAST),
                            erp=ErpSettings(base_url=sb.erp_url, requests_per_minute=FAST))

        def run(name: str, connectors_dir: Path | None = None) -> None:
            tick(2)
            sb.crm.requests.reset()
            crm_client, erp_client = loopback_clients(sb)
            ponte = Ponte(settings(connectors_dir), clock=clock, crm_client=crm_client,
                          erp_client=erp_client)
            start = time.perf_counter()
            rep = ponte.sync([ENTITY])
            seconds = time.perf_counter() - start
            if rep.status != "ok":
                raise RuntimeError(f"run {name} failed: {rep.error}")
            r = rep.entities[ENTITY]
            out["runs"][name] = {
                "seconds": round(seconds, 3), "contact_pages": contact_reads(sb),
                "read": {"crm": r.crm.read, "erp": r.erp.read},
                "written": {"crm": r.crm.created + r.crm.updated,
                            "erp": r.erp.created + r.erp.updated},
                "api_calls": rep.api_calls}

        run("push")
        run("without", spec_without_filter(plain))
        run("with")
    print(json.dumps(out))
    render(out)


def render(out: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Quiet re-run after pushing {out['customers']:,} customers")
    for col in ("run", "seconds", "GET /Contacts", "read crm/erp", "written crm/erp",
                "API reads crm/erp"):
        table.add_column(col, justify="right")
    for name, r in out["runs"].items():
        table.add_row(name, f"{r['seconds']:.2f}", str(r["contact_pages"]),
                      f"{r['read']['crm']}/{r['read']['erp']}",
                      f"{r['written']['crm']}/{r['written']['erp']}",
                      f"{r['api_calls']['crm']['read']}/{r['api_calls']['erp']['read']}")
    Console().print(table)


if __name__ == "__main__":
    main()
