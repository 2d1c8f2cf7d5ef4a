"""Benchmark an incremental run's cost against the size of the state: 100 changed customers with
a snapshot of 1,000 and of 1,000,000 records, on SQLite and on PostgreSQL.

    .venv/bin/python bench/incremental.py [--small 1000] [--large 1000000] [--changed 100]
        [--rounds 5] [--backends sqlite,postgresql] [--pg-url URL] [--profile FILE]

Per backend and size: both simulators run as real servers on loopback (``running_sandbox``) with
the same 1,000 customers on both sides (``overlap=1.0``); the state is primed directly, as if
ponte had synced them: each record's canonical values (``read_record``, through the connectors),
snapshots with ``hash_frame`` hashes and links, in bulk with ``Store.checkpoint``. For the large
size, the state also gets ``large - 1000`` more customers (snapshots on both sides and links)
that the simulators do not hold -- the point is the size of the state, not of the simulators,
whose own listings scan their tables. Watermarks are set to "now"; on PostgreSQL the tables are
then analyzed (what autovacuum does within a minute of a bulk load). Both sizes are primed
first, then their rounds alternate, so that other load on the machine falls on both alike.

Each round moves the clocks 400 s (as the tests' ``World.tick`` does, by more), edits
``--changed`` customers in the CRM simulator (as a user would), and times one
``Ponte(settings).sync(["customers"])``. A warm-up round runs first (not timed) so that every
timed round has the same shape: its CRM edits, the previous round's edits re-read through the
lookback (and dropped by the diff), and the ERP echoes of the previous round's writes. The figure is the median of the timed rounds
(and the median of the round-by-round ratios); the baseline is the small state in the same
process. Goal: large / small <= 1.3.

Prints one JSON object, then a table. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import sqlalchemy as sa

from etl.connectors.factory import build_connectors
from etl.engine.run import build_context
from etl.mapping import load_mappings, read_record
from etl.ponte import Ponte
from etl.rowhash import hash_frame
from etl.sandbox.seed import seed
from etl.sandbox.server import running_sandbox
from etl.settings import CrmSettings, ErpSettings, Settings
from etl.state import Checkpoint, SnapshotRow, Store
from etl.watermark import Window

ROOT = Path(__file__).resolve().parents[1]
MAPPINGS = ROOT / "mappings" / "ploomes_omie"
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
ENTITY = "customers"
LOOKBACK_S = 300
FAST = 1_000_000  # requests per minute: no client- or server-side throttling here
SIM_CUSTOMERS = 1_000
PRIME_CHUNK = 50_000
FILLER_CRM = 50_000_000  # filler keys, far from the simulators' ids
FILLER_ERP = 9_000_000_000


@contextmanager
def state_url(backend: str, pg_url: str) -> Iterator[str]:
    """A fresh state database URL (temporary SQLite file or PostgreSQL schema), removed after."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite:///{Path(tmp) / 'state.db'}"
        return
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(pg_url)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        url = sa.make_url(pg_url).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def loopback_clients(crm_url: str, erp_url: str) -> tuple[httpx.Client, httpx.Client]:
    """HTTP clients for the sandbox servers, one connection per request.

    The sandbox's servers answer a kept-alive connection's requests ~40 ms late (their sockets
    lack TCP_NODELAY: the response body waits for the client's delayed ACK of its headers), a
    loopback artifact that would swamp what is measured here; a fresh connection per request
    starts in quick-ACK mode and costs ~1 ms on loopback.
    """
    limits = httpx.Limits(max_keepalive_connections=0)
    return (httpx.Client(base_url=crm_url, timeout=30, limits=limits),
            httpx.Client(base_url=erp_url.rstrip("/") + "/", timeout=30, limits=limits))


class Clocks:
    """ponte's clock and both simulators' clocks, moved together (as ``World.tick``)."""

    def __init__(self, sims: list[Any]) -> None:
        self.sims = sims
        self.offset = 0.0

    def tick(self, seconds: float = 2.0) -> None:
        self.offset += seconds
        for sim in self.sims:
            sim.clock.advance(seconds)

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.offset)


def _hashed(
    side: str,
    columns: list[str],
    items: list[tuple[str, dict[str, Any], datetime | None]],
    natural_key: str,
) -> list[SnapshotRow]:
    frame = pd.DataFrame(
        [[v.get(c) for c in columns] for _, v, _ in items], columns=columns, dtype=object
    )
    h = hash_frame(frame, columns)
    return [
        SnapshotRow(side, ENTITY, key, int(h1), int(h2), values, values.get(natural_key), updated)
        for (key, values, updated), h1, h2 in zip(
            items, h["h1"].tolist(), h["h2"].tolist(), strict=True
        )
    ]


def analyze(store: Store) -> None:
    """ANALYZE on PostgreSQL (what autovacuum does within a minute of a bulk load): planning a
    ``key IN (...)`` lookup on a table whose statistics still say "a few rows" can scan it."""
    if store.dialect == "postgresql":
        with store.engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(sa.text("ANALYZE"))


def prime(settings: Settings, size: int, now: datetime) -> dict[str, Any]:
    """Write the state a finished sync of ``size`` customers leaves behind."""
    mapping = load_mappings(settings.mappings_dir, [ENTITY])[ENTITY]
    columns = mapping.columns()
    nk = mapping.natural_key or "tax_id"
    crm_client, erp_client = loopback_clients(settings.crm.base_url, settings.erp.base_url)
    conns = build_connectors(settings, crm_client=crm_client, erp_client=erp_client)
    started = time.perf_counter()
    with Store.open(settings.state_url) as store:
        ctx = build_context(store)
        seen: dict[str, list[tuple[str, dict[str, Any], datetime | None]]] = {}
        for side, c in conns.items():
            items = []
            for page in c.list_changed(ENTITY, Window(None, None)):
                for record in page:
                    values = read_record(mapping, side, record, ctx)  # type: ignore[arg-type]
                    items.append((c.key_of(ENTITY, record), values, c.updated_at(ENTITY, record)))
            seen[side] = items
        by_tax = {v[nk]: k for k, v, _ in seen["erp"]}
        links = [(k, by_tax[v[nk]]) for k, v, _ in seen["crm"]]
        assert len(links) == len(seen["crm"]) == len(seen["erp"]), "overlap=1.0 expected"
        store.checkpoint(
            Checkpoint(
                ENTITY,
                snapshots=[
                    *_hashed("crm", columns, seen["crm"], nk),
                    *_hashed("erp", columns, seen["erp"], nk),
                ],
                links=links,
            ),
            now=now,
        )
        template = {side: seen[side][0][1] for side in seen}
        filler = size - len(links)
        for start in range(0, filler, PRIME_CHUNK):
            n = min(PRIME_CHUNK, filler - start)
            snaps: list[SnapshotRow] = []
            pairs = []
            for side, base in (("crm", FILLER_CRM), ("erp", FILLER_ERP)):
                items = []
                for i in range(start, start + n):
                    values = dict(template[side])
                    values[nk] = f"{i:015d}"  # 15 digits: never a real CNPJ/CPF
                    values["name"] = f"Cliente {i}"
                    items.append((str(base + i), values, now - timedelta(days=1)))
                snaps += _hashed(side, columns, items, nk)
            pairs = [(str(FILLER_CRM + i), str(FILLER_ERP + i)) for i in range(start, start + n)]
            store.checkpoint(Checkpoint(ENTITY, snapshots=snaps, links=pairs), now=now)
            analyze(store)  # keep the planner's statistics current while the tables grow
        for side in ("crm", "erp"):
            store.set_watermark(ENTITY, side, now, now=now)
        analyze(store)
        counts = {side: store.count_snapshots(side, ENTITY) for side in ("crm", "erp")}
        n_links = len(store.links(ENTITY)) if size <= 10_000 else None
    for c in conns.values():
        c.close()
    crm_client.close()
    return {
        "prime_s": round(time.perf_counter() - started, 1),
        "snapshots": counts,
        "links": n_links,
    }


class Case:
    """One size of state, primed, with its own simulators; runs one round at a time."""

    def __init__(self, stack: ExitStack, backend: str, size: int,
                 args: argparse.Namespace) -> None:
        self.size, self.args = size, args
        self.sb = sb = stack.enter_context(
            running_sandbox(customers=0, ploomes_rpm=FAST, omie_rpm=FAST))
        url = stack.enter_context(state_url(backend, args.pg_url))
        sb.erp.faults.redundant_rule = False
        self.clocks = Clocks([sb.crm, sb.erp])
        seed(sb.crm, sb.erp, customers=SIM_CUSTOMERS, products=0, orders=0, seed=42,
             overlap=1.0, now=sb.crm.clock.now() - timedelta(hours=1))
        self.settings = Settings(
            state_url=url, mappings_dir=MAPPINGS, lookback_s=LOOKBACK_S, safety_lag_s=0,
            crm=CrmSettings(base_url=sb.crm_url, requests_per_minute=FAST),
            erp=ErpSettings(base_url=sb.erp_url, requests_per_minute=FAST),
        )
        self.out = prime(self.settings, size, self.clocks.now())
        self.ids = sorted(r.id for r in sb.crm.db["Contacts"])
        self.rng = random.Random(42)  # the same edits for every size
        self.times: list[float] = []
        self.runs: list[dict[str, Any]] = []
        self.profiler = cProfile.Profile() if args.profile else None

    def round(self, rnd: int) -> None:
        sb, clocks = self.sb, self.clocks
        clocks.tick(LOOKBACK_S + 100)
        for rid in self.rng.sample(self.ids, self.args.changed):
            row = sb.crm.db["Contacts"].get(rid)
            assert row is not None
            sb.crm.ui_update("Contacts", rid, {"Name": f"{row.data['Name']} r{rnd}"})
        clocks.tick(2)
        timed = rnd > 0
        if self.profiler and timed:
            self.profiler.enable()
        started = time.perf_counter()
        crm_client, erp_client = loopback_clients(sb.crm_url, sb.erp_url)
        report = Ponte(self.settings, clock=clocks, crm_client=crm_client,
                       erp_client=erp_client).sync([ENTITY])
        seconds = time.perf_counter() - started
        if self.profiler and timed:
            self.profiler.disable()
        r = report.entities[ENTITY]
        run = {"s": round(seconds, 3), "status": report.status, "crm_read": r.crm.read,
               "erp_read": r.erp.read, "erp_updated": r.erp.updated,
               "crm_updated": r.crm.updated, "created": r.crm.created + r.erp.created,
               "api_calls": report.api_calls}
        if report.status != "ok" or r.erp.updated != self.args.changed or run["created"]:
            raise RuntimeError(f"unexpected run: {run} {report.error}")
        if timed:
            self.times.append(seconds)
            self.runs.append(run)

    def result(self, backend: str) -> dict[str, Any]:
        if self.profiler:
            self.profiler.dump_stats(f"{self.args.profile}.{backend}.{self.size}")
        return {**self.out, "seconds": round(statistics.median(self.times), 3),
                "rounds": [t["s"] for t in self.runs], "last_run": self.runs[-1]}


def measure(backend: str, args: argparse.Namespace) -> dict[str, Any]:
    """Prime both sizes, then alternate their rounds (small, large, small, ...), so that load
    from anything else on the machine falls on both alike."""
    with ExitStack() as stack:
        small = Case(stack, backend, args.small, args)
        large = Case(stack, backend, args.large, args)
        for rnd in range(args.rounds + 1):
            small.round(rnd)
            large.round(rnd)
        out = {"small": small.result(backend), "large": large.result(backend)}
    paired = [b / a for a, b in zip(small.times, large.times, strict=True)]
    out["ratio"] = round(out["large"]["seconds"] / out["small"]["seconds"], 2)
    out["paired_ratio_median"] = round(statistics.median(paired), 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--changed", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--pg-url", default=PG_URL)
    parser.add_argument("--profile", help="write cProfile stats of the timed runs to FILE.<db>.<size>")
    args = parser.parse_args()
    if args.small < SIM_CUSTOMERS or args.large < SIM_CUSTOMERS:
        parser.error(f"sizes start at the {SIM_CUSTOMERS} customers the simulators hold")

    report: dict[str, Any] = {
        "small": args.small,
        "large": args.large,
        "changed": args.changed,
        "rounds": args.rounds,
        "goal_ratio": 1.3,
        "baseline": f"the same run against a state of {args.small}",
    }
    for backend in args.backends.split(","):
        report[backend] = measure(backend, args)
        print(f"{backend}: {report[backend]['small']['seconds']} s / "
              f"{report[backend]['large']['seconds']} s", file=sys.stderr)
    print(json.dumps(report))
    render(report)


def render(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"incremental run: {report['changed']} changed customers")
    for col in (
        "backend",
        f"state {report['small']:,} (s)",
        f"state {report['large']:,} (s)",
        "ratio",
        "goal",
        "prime large (s)",
    ):
        table.add_column(col, justify="right")
    for backend in ("sqlite", "postgresql"):
        r = report.get(backend)
        if r is None:
            continue
        ok = "ok" if r["ratio"] <= report["goal_ratio"] else "MISS"
        table.add_row(
            backend,
            f"{r['small']['seconds']:.3f}",
            f"{r['large']['seconds']:.3f}",
            f"{r['ratio']}",
            f"<= {report['goal_ratio']} {ok}",
            f"{r['large']['prime_s']}",
        )
    Console().print(table)


if __name__ == "__main__":
    main()
