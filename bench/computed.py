"""Benchmark the sales-volume aggregation of computed fields at 1,000,000 orders / 100,000
customers: seconds and peak memory, each phase in its own process.

    .venv/bin/python bench/computed.py [--orders 1000000] [--customers 100000] [--touched 100]
        [--phases pandas,state]

* ``pandas``: the aggregation itself (``etl.engine.computed.aggregate``: sum, count and last
  date inside a 12-month window, and the last date ever) over a frame of every order's facts —
  every customer at once, as when the whole table is computed again — and over the facts of
  ``--touched`` customers (an incremental run's share).
* ``state``: through a SQLite state store, as a run does it: the facts of every order recorded
  in chunks of 2,000 (``Store.record_facts``, as an orders backfill reads them); the facts of
  ``--touched`` customers and of one read chunk of 2,000 customers loaded and aggregated
  (``Store.facts_for`` + ``aggregate``, what a customers run does per chunk); every customer's
  facts loaded and aggregated in chunks of 2,000 (what a first customers run after enabling the
  fields costs); the customers a moved window reaches (``Store.links_crossing`` over one day).

Seconds are the best of 3 runs; memory is the process's peak RSS (VmHWM) before and after the
measured part, plus the peak of Python-tracked allocations (``tracemalloc``, numpy's included)
during one more run of each measured step.
Prints one JSON object, then a table. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._util import peak_rss_mb, run_child
from etl.engine.computed import aggregate, cutoff
from etl.mapping.computed import ComputedRef, ComputedSource
from etl.state import Store
from etl.state.computed import FactRow

NOW = datetime(2026, 12, 2, tzinfo=UTC)
TARGET, SOURCE_NAME = "customers", "invoiced_orders"
SOURCE = ComputedSource.model_validate({
    "entity": "orders", "link": "cabecalho.codigo_cliente",
    "amount": "total_pedido.valor_total_pedido",
    "date": {"path": "infoCadastro.dFat", "format": "%d/%m/%Y"},
    "where": {"infoCadastro.faturado": ["S"]}, "window": {"months": 12}})
REFS = {"sales_12m": ComputedRef(source=SOURCE_NAME, agg="sum"),
        "orders_12m": ComputedRef(source=SOURCE_NAME, agg="count"),
        "last_12m": ComputedRef(source=SOURCE_NAME, agg="max"),
        "last_ever": ComputedRef(source=SOURCE_NAME, agg="max", windowed=False)}
CHUNK = 2000


def facts_frame(orders: int, customers: int, seed: int = 7) -> pd.DataFrame:
    """Facts of ``orders`` orders spread over ``customers`` customers and the last 2 years, 85 %
    invoiced."""
    rng = np.random.default_rng(seed)
    days = rng.integers(0, 730, orders)
    return pd.DataFrame({
        "link": pd.Series(rng.integers(1, customers + 1, orders)).astype(str).astype(object),
        "amount": np.round(rng.uniform(10, 5000, orders), 2),
        "at": pd.Timestamp(NOW) - pd.to_timedelta(days, unit="D"),
        "counts": rng.random(orders) < 0.85,
    })


def timed(fn: Any) -> tuple[Any, float, float]:
    """``fn()``'s result, its seconds (best of 3 untraced runs: tracing slows Python down),
    and the peak MB of tracked allocations during one more, traced run."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return out, best, peak


def phase_pandas(orders: int, customers: int, touched: int) -> dict[str, Any]:
    frame = facts_frame(orders, customers)
    rss_before = peak_rss_mb()
    start = cutoff(SOURCE, NOW)
    out, all_s, all_mb = timed(lambda: aggregate(frame, REFS, window_start=start))
    some = [str(k) for k in range(1, touched + 1)]
    small = frame[frame["link"].isin(some)]
    _, few_s, few_mb = timed(lambda: aggregate(small, REFS, window_start=start))
    return {"phase": "pandas", "orders": orders, "customers": customers,
            "customers_aggregated": len(out), "all_s": round(all_s, 3),
            "all_traced_peak_mb": round(all_mb, 1), "touched": touched,
            "touched_s": round(few_s, 4), "touched_traced_peak_mb": round(few_mb, 2),
            "rss_before_mb": round(rss_before, 1), "peak_rss_mb": round(peak_rss_mb(), 1)}


def phase_state(orders: int, customers: int, touched: int) -> dict[str, Any]:
    frame = facts_frame(orders, customers)
    rows = [FactRow(str(i), link, float(a), at.to_pydatetime(), bool(c)) for i, (link, a, at, c)
            in enumerate(zip(frame["link"], frame["amount"], frame["at"], frame["counts"],
                             strict=True))]
    del frame
    out: dict[str, Any] = {"phase": "state", "orders": orders, "customers": customers}
    with tempfile.TemporaryDirectory() as tmp, \
            Store.open(f"sqlite:///{Path(tmp) / 'state.db'}") as store:
        start = time.perf_counter()
        for i in range(0, len(rows), CHUNK):
            store.record_facts(TARGET, SOURCE_NAME, rows[i:i + CHUNK])
        out["record_all_s"] = round(time.perf_counter() - start, 1)
        start = time.perf_counter()
        again = sum(store.record_facts(TARGET, SOURCE_NAME, rows[i:i + CHUNK])
                    for i in range(0, len(rows), CHUNK))
        out["rerecord_unchanged_s"] = round(time.perf_counter() - start, 1)
        out["rerecord_changed"] = again
        del rows
        out["marks"] = len(store.computed_marks(TARGET))
        window_start = cutoff(SOURCE, NOW)

        def load_and_aggregate(keys: list[str]) -> pd.DataFrame:
            return aggregate(store.facts_for(TARGET, SOURCE_NAME, keys), REFS,
                             window_start=window_start)

        rss_before = peak_rss_mb()
        some = [str(k) for k in range(1, touched + 1)]
        _, out["touched_s"], out["touched_traced_peak_mb"] = timed(
            lambda: load_and_aggregate(some))
        chunk = [str(k) for k in range(1, CHUNK + 1)]
        _, out["read_chunk_s"], out["read_chunk_traced_peak_mb"] = timed(
            lambda: load_and_aggregate(chunk))

        def every_customer() -> int:
            n = 0
            for i in range(1, customers + 1, CHUNK):
                n += len(load_and_aggregate([str(k) for k in
                                             range(i, min(i + CHUNK, customers + 1))]))
            return n

        out["all_customers"], out["all_s"], out["all_traced_peak_mb"] = timed(every_customer)
        assert window_start is not None
        crossing, out["window_day_s"], _ = timed(lambda: store.links_crossing(
            TARGET, SOURCE_NAME, window_start - timedelta(days=1), window_start))
        out["window_day_customers"] = len(crossing)
        out["rss_before_mb"] = round(rss_before, 1)
        out["peak_rss_mb"] = round(peak_rss_mb(), 1)
    for k, v in list(out.items()):
        if isinstance(v, float):
            out[k] = round(v, 4 if v < 1 else 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--orders", type=int, default=1_000_000)
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--touched", type=int, default=100)
    ap.add_argument("--phases", default="pandas,state")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        fn = phase_pandas if args.child == "pandas" else phase_state
        print(json.dumps(fn(args.orders, args.customers, args.touched)))
        return
    results = {}
    for phase in args.phases.split(","):
        results[phase] = run_child(Path(__file__), [
            "--child", phase, "--orders", str(args.orders), "--customers", str(args.customers),
            "--touched", str(args.touched)])
    print(json.dumps(results))
    for phase, res in results.items():
        print(f"\n{phase}")
        for k, v in res.items():
            print(f"  {k:28} {v}")


if __name__ == "__main__":
    main()
