"""The write benchmark of ``bench/push.py`` run with drt (drt-core, a reverse-ETL tool) instead
of ponte: N new customers POSTed one per request into the Ploomes simulator, which answers each
after ``--latency-ms``, no rate limit in the way.

    <venv>/bin/pip install drt-core==1.2.1        # a venv of its own, outside ponte's
    .venv/bin/python bench/drt_push.py --drt <venv>/bin/drt [--records 10000] [--writers 1]
        [--latency-ms 20] [--json]

drt is not a ponte dependency and this script never imports it: it writes a drt project into a
temporary folder and times the ``drt`` executable given by ``--drt`` as its own process, as
``bench/push.py`` times ``ponte sync``. Like there, this process runs both simulators on loopback
(``running_sandbox``) with their limits raised to :data:`RPM` and ``faults.latency_ms`` on Ploomes,
and seeds the same customers (``seed_erp_only``, seed 42). drt reads them from a SQLite file (its
``sqlite`` source needs no server), one row per customer with the fields ponte's
``mappings/ploomes_omie`` writes that identify a contact: ``Name``, ``LegalName``, ``Email``,
``Register`` (CNPJ/CPF digits) and ``TypeId`` (1 company, 2 person); the simulator fills ``CNPJ``
or ``CPF`` from ``Register``. drt's ``rest_api`` destination sends each row as the JSON body of one
``POST /Contacts`` with the ``User-Key`` header, ``body_mode: record`` (no batching), its pacing
off (``requests_per_second: 0``; drt's default is 10 a second) and its defaults otherwise
(extraction in batches of 100 rows, one HTTP client per batch, retries of 429/5xx).

drt writes one sync's rows one after another; its only concurrency is ``drt run --threads N``
running several syncs at once. ``--writers N`` therefore splits the rows into N syncs
(``id % N``) run with ``--threads N``. ``efficiency = records_per_s / (writers / latency_s)``, as in
``bench/push.py``; ``seconds`` is the wall time of the ``drt run`` process (start-up included)
and ``overhead_ms_per_write`` what it spent per create beyond the latency (per writer);
``drt_run_s`` / ``drt_overhead_ms_per_write`` the same from drt's own ``total_duration_seconds``
(start-up excluded). ``created_in_sim`` is what the simulator holds afterwards (the script exits
non-zero unless it is ``--records``). Prints one JSON object, then a line of text unless
``--json``. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from push import RPM, efficiency, requests_seen, seed_erp_only

from etl.sandbox.server import Sandbox, running_sandbox

COLUMNS = ("Name", "LegalName", "Email", "Register", "TypeId")


def write_source(sb: Sandbox, path: Path) -> int:
    """The seeded Omie customers as drt's source rows, in a SQLite file; returns the count."""
    rows = []
    for row in sb.erp.db["clientes"]:
        d = row.data
        rows.append((row.id, d.get("nome_fantasia") or d["razao_social"], d["razao_social"],
                     d.get("email") or None, re.sub(r"\D", "", d["cnpj_cpf"]),
                     2 if d.get("pessoa_fisica") == "S" else 1))
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, Name TEXT, LegalName TEXT, "
                   "Email TEXT, Register TEXT, TypeId INTEGER)")
        db.executemany("INSERT INTO customers VALUES (?, ?, ?, ?, ?, ?)", rows)
    db.close()
    return len(rows)


def write_project(sb: Sandbox, tmp: Path, source: Path, writers: int) -> tuple[Path, Path]:
    """A drt project (``tmp/project``) and its profiles (``tmp/home/.drt``): returns both dirs."""
    project, home = tmp / "project", tmp / "home"
    (project / "syncs").mkdir(parents=True)
    (home / ".drt").mkdir(parents=True)
    profiles = {"bench": {"type": "sqlite", "database": str(source)}}
    (home / ".drt" / "profiles.yml").write_text(yaml.safe_dump(profiles))
    (project / "drt_project.yml").write_text(yaml.safe_dump({
        "name": "ponte_bench", "version": "0.1", "profile": "bench",
        "history": {"enabled": False}}))
    for k in range(writers):
        where = f" WHERE id % {writers} = {k}" if writers > 1 else ""
        sync = {
            "name": f"contacts_{k}",
            "model": f"SELECT {', '.join(COLUMNS)} FROM customers{where} ORDER BY id",
            "destination": {
                "type": "rest_api", "url": f"{sb.crm_url}/Contacts", "method": "POST",
                "headers": {"User-Key": sb.user_key}, "body_mode": "record",
                "rate_limit": {"requests_per_second": 0},
            },
            "sync": {"mode": "full", "rate_limit": {"requests_per_second": 0},
                     "on_error": "fail"},
        }
        (project / "syncs" / f"contacts_{k}.yml").write_text(yaml.safe_dump(sync,
                                                                            sort_keys=False))
    return project, home


def drt_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRT_")}
    env.update({"HOME": str(home), "DO_NOT_TRACK": "1", "DRT_TELEMETRY": "0"})
    return env


def drt_version(drt: Path) -> str:
    out = subprocess.run([str(drt), "--version"], capture_output=True, text=True, check=True,
                         timeout=120).stdout
    found = re.search(r"version\s+(\S+)", out)
    return found.group(1) if found else out.strip()


def run_one(drt: Path, records: int, writers: int, latency_ms: float) -> dict[str, Any]:
    with running_sandbox(customers=0, ploomes_rpm=RPM, omie_rpm=RPM) as sb, \
            tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        seed_erp_only(sb, records)
        rows = write_source(sb, tmp / "source.sqlite")
        assert rows == records
        project, home = write_project(sb, tmp, tmp / "source.sqlite", writers)
        sb.crm.faults.latency_ms = latency_ms
        sb.crm.requests.reset()
        cmd = [str(drt), "run", "--threads", str(writers), "--output", "json"]
        started = time.perf_counter()
        proc = subprocess.run(cmd, cwd=project, env=drt_env(home), capture_output=True,
                              text=True, check=False, timeout=3600)
        seconds = time.perf_counter() - started
        if proc.returncode != 0:
            raise RuntimeError(f"drt run exited {proc.returncode}:\n{proc.stdout[-2000:]}\n"
                               f"{proc.stderr[-3000:]}")
        report: dict[str, Any] = json.loads(proc.stdout[proc.stdout.find("{"):])
        created = len(sb.crm.db["Contacts"])
        seen = requests_seen(sb)["crm"]
        version = drt_version(drt)
    rps = created / seconds
    inside = float(report["total_duration_seconds"])
    return {
        "tool": "drt", "drt_version": version, "records": records, "writers": writers,
        "latency_ms": latency_ms, "seconds": round(seconds, 2),
        "records_per_s": round(rps, 2),
        "efficiency": efficiency(rps, writers, latency_ms),
        "overhead_ms_per_write": round(seconds * 1000 * writers / records - latency_ms, 2),
        "drt_run_s": inside,
        "drt_overhead_ms_per_write": round(inside * 1000 * writers / records - latency_ms, 2),
        "rows_synced": sum(s["rows_synced"] for s in report["syncs"]),
        "rows_failed": sum(s["rows_failed"] for s in report["syncs"]),
        "created_in_sim": created, "requests_seen": seen,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drt", type=Path, required=True,
                        help="the drt executable of a separate venv (drt-core==1.2.1)")
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--writers", type=int, default=1,
                        help="syncs of records/writers rows each, run with drt run --threads")
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--json", action="store_true", help="the JSON object only")
    args = parser.parse_args()
    if not os.access(args.drt, os.X_OK):
        parser.error(f"--drt {args.drt}: not an executable")
    result = run_one(args.drt.resolve(), args.records, args.writers, args.latency_ms)
    print(json.dumps(result), flush=True)
    if not args.json:
        print(f"drt {result['drt_version']}: {result['records']:,} creates, "
              f"{result['writers']} writer(s), {result['latency_ms']:.0f} ms latency: "
              f"{result['seconds']} s, {result['records_per_s']} records/s, "
              f"efficiency {result['efficiency']:.1%}, "
              f"{result['overhead_ms_per_write']} ms per write beyond the latency, "
              f"{result['created_in_sim']:,} in the simulator")
    if result["created_in_sim"] != args.records:
        raise SystemExit(f"the simulator holds {result['created_in_sim']} contacts, "
                         f"not {args.records}")


if __name__ == "__main__":
    main()
