"""Benchmark state writes: snapshot rows per second through ``Store.checkpoint``, on SQLite and
PostgreSQL, against a row-by-row baseline; and the load of 100 keys from the written table.

    .venv/bin/python bench/state.py [--rows 100000] [--load-keys 100] [--backends sqlite,postgresql]
        [--pg-url postgresql+psycopg://postgres@127.0.0.1:5432/test]

Per backend, each contender writes into its own fresh store (a temporary SQLite file; a fresh
PostgreSQL schema, dropped afterwards):

* baseline: one ``INSERT ... ON CONFLICT DO UPDATE`` statement per row, all in one transaction
  (what a store without bulk writes does);
* bulk: ``Store.checkpoint`` with every row in one checkpoint (a backfill page, or a test of the
  statement path itself);
* chunked: ``Store.checkpoint`` per 200 rows, as the engine checkpoints per chunk;
* upsert: ``Store.checkpoint`` of the same rows again, changed (the conflict path).

Then ``Store.snapshots`` of ``--load-keys`` random keys from the full table (median of 20); on
PostgreSQL again after ``ANALYZE`` (right after a bulk load the planner still believes the table
nearly empty and may pick the natural-key index, filtering every row of the entity).
Prints one JSON object, then a table. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from etl.state import Checkpoint, SnapshotRow, Store
from etl.state import models as m

ENTITY = "customers"
SYSTEM = "erp"
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
ENGINE_CHUNK = 200
NOW = datetime(2026, 1, 1, tzinfo=UTC)


@contextmanager
def fresh_store(backend: str, pg_url: str) -> Iterator[Store]:
    """An empty, migrated store that is removed afterwards."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            store = Store.open(f"sqlite:///{Path(tmp) / 'state.db'}")
            try:
                yield store
            finally:
                store.close()
        return
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(pg_url)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = sa.make_url(pg_url).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        store = Store.open(url.render_as_string(hide_password=False))
        try:
            yield store
        finally:
            store.close()
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def make_rows(n: int, seed: int, *, version: int = 0) -> list[SnapshotRow]:
    """Customer-like canonical snapshots (14 mapped fields, as the customers mapping has)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        tax = f"{rng.randrange(10**13, 10**14)}"
        data: dict[str, Any] = {
            "tax_id": tax,
            "kind": "company",
            "legal_name": f"Empresa {i} Comércio Ltda",
            "name": f"Empresa {i}",
            "email": f"contato{i}@empresa{i}.com.br",
            "phones": f"+55 11 9{rng.randrange(10**7, 10**8)}",
            "street": "Rua das Flores",
            "number": str(rng.randint(1, 3999)),
            "complement": "" if i % 3 else "Sala 2",
            "district": "Centro",
            "zip": f"{rng.randrange(10**7, 10**8)}",
            "city_ibge": "3550308",
            "state": "SP",
            "inactive": "N" if version == 0 else "S",
        }
        rows.append(
            SnapshotRow(
                SYSTEM,
                ENTITY,
                str(1_000_000 + i),
                rng.getrandbits(63),
                rng.getrandbits(63),
                data,
                tax,
                NOW - timedelta(seconds=rng.randrange(86400 * 90)),
            )
        )
    return rows


def row_by_row(store: Store, rows: list[SnapshotRow]) -> None:
    """The baseline: one upsert statement per row, one transaction."""
    t = m.snapshots
    insert = store._insert  # the dialect's insert with ON CONFLICT
    stmt = insert(t)
    ex = stmt.excluded
    stmt = stmt.on_conflict_do_update(
        index_elements=[t.c.system, t.c.entity, t.c.key],
        set_={
            "h1": ex.h1,
            "h2": ex.h2,
            "data": ex.data,
            "natural_key": ex.natural_key,
            "source_updated": ex.source_updated,
            "seen_at": ex.seen_at,
        },
    )
    with store._writer.begin() as conn:
        for s in rows:
            conn.execute(
                stmt,
                {
                    "system": s.system,
                    "entity": s.entity,
                    "key": s.key,
                    "h1": s.h1,
                    "h2": s.h2,
                    "data": s.data,
                    "natural_key": s.natural_key,
                    "source_updated": s.source_updated,
                    "seen_at": NOW,
                },
            )


def timed(fn: Any, *args: Any) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def load(store: Store, rows: list[SnapshotRow], load_keys: int) -> float:
    """Median milliseconds of ``Store.snapshots`` for ``load_keys`` random keys (20 tries)."""
    rng = random.Random(1)
    times = []
    for _ in range(20):
        keys = [r.key for r in rng.sample(rows, load_keys)]
        start = time.perf_counter()
        frame = store.snapshots(SYSTEM, ENTITY, keys)
        times.append(time.perf_counter() - start)
        assert len(frame) == load_keys
    return statistics.median(times) * 1000


def bench_backend(
    backend: str, rows: list[SnapshotRow], changed: list[SnapshotRow], load_keys: int, pg_url: str
) -> dict[str, Any]:
    n = len(rows)
    out: dict[str, Any] = {}
    with fresh_store(backend, pg_url) as store:
        out["baseline_s"] = timed(row_by_row, store, rows)
    with fresh_store(backend, pg_url) as store:
        out["bulk_s"] = timed(lambda: store.checkpoint(Checkpoint(ENTITY, snapshots=rows), now=NOW))
        out["upsert_s"] = timed(
            lambda: store.checkpoint(Checkpoint(ENTITY, snapshots=changed), now=NOW)
        )
        assert store.count_snapshots(SYSTEM, ENTITY) == n
        out["load_ms"] = load(store, rows, load_keys)
        if backend == "postgresql":  # what autovacuum does within a minute of a bulk load
            with store.engine.connect() as conn:
                conn.execution_options(isolation_level="AUTOCOMMIT").execute(
                    sa.text("ANALYZE snapshots"))
            out["load_analyzed_ms"] = round(load(store, rows, load_keys), 2)
    with fresh_store(backend, pg_url) as store:

        def chunked() -> None:
            for i in range(0, n, ENGINE_CHUNK):
                store.checkpoint(Checkpoint(ENTITY, snapshots=rows[i : i + ENGINE_CHUNK]), now=NOW)

        out["chunked_s"] = timed(chunked)
    for name in ("baseline", "bulk", "upsert", "chunked"):
        out[f"{name}_rows_per_s"] = round(n / out[f"{name}_s"])
        out[f"{name}_s"] = round(out[f"{name}_s"], 3)
    out["load_ms"] = round(out["load_ms"], 2)
    out["bulk_vs_baseline"] = round(out["baseline_s"] / out["bulk_s"], 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--load-keys", type=int, default=100)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--pg-url", default=PG_URL)
    args = parser.parse_args()

    rows = make_rows(args.rows, seed=7)
    changed = make_rows(args.rows, seed=7, version=1)
    report: dict[str, Any] = {
        "rows": args.rows,
        "load_keys": args.load_keys,
        "baseline": "one upsert statement per row, one transaction",
    }
    for backend in args.backends.split(","):
        report[backend] = bench_backend(backend, rows, changed, args.load_keys, args.pg_url)
    print(json.dumps(report))
    render(report)


def render(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"state writes: {report['rows']:,} snapshot rows")
    table.add_column("backend")
    for col in (
        "baseline rows/s",
        "bulk rows/s",
        "chunked (200) rows/s",
        "upsert rows/s",
        "bulk vs baseline",
        f"load {report['load_keys']} keys",
    ):
        table.add_column(col, justify="right")
    for backend in ("sqlite", "postgresql"):
        r = report.get(backend)
        if r is None:
            continue
        table.add_row(
            backend,
            f"{r['baseline_rows_per_s']:,}",
            f"{r['bulk_rows_per_s']:,}",
            f"{r['chunked_rows_per_s']:,}",
            f"{r['upsert_rows_per_s']:,}",
            f"{r['bulk_vs_baseline']}x",
            f"{r['load_ms']} ms"
            + (f" ({r['load_analyzed_ms']} ms analyzed)" if "load_analyzed_ms" in r else ""),
        )
    Console().print(table)


if __name__ == "__main__":
    main()
