"""Time seeding both simulators (in memory), including building the Faker pools.

    .venv/bin/python bench/seed.py [--customers 100000] [--products 1000] [--orders 1000]

Prints one JSON line: {"customers": N, "seconds": S, ...}. Target: 100,000 customers < 30 s.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime

from etl.sandbox.seed import seed
from etl.sandbox.server import build_sims


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--products", type=int, default=1_000)
    parser.add_argument("--orders", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()

    crm, erp = build_sims(seed=args.seed)
    started = time.perf_counter()
    summary = seed(crm, erp, customers=args.customers, products=args.products,
                   orders=args.orders, seed=args.seed, now=datetime(2026, 1, 1, tzinfo=UTC))
    seconds = time.perf_counter() - started
    print(json.dumps({"customers": args.customers, "seconds": round(seconds, 2),
                      "products": args.products, "orders": args.orders,
                      "crm_contacts": summary.crm_customers, "erp_clientes": summary.erp_customers,
                      "shared": summary.shared_customers}))


if __name__ == "__main__":
    main()
