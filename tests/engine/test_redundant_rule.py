"""Omie's redundant-call rule (an identical call within 60 s is refused) never costs a wait
inside one run: the first sync, a plan and a backfill against the sandbox with the rule on."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from loguru import logger

from etl.engine.report import RunReport
from tests.engine.conftest import World, make_world


@pytest.fixture
def strict_world(tmp_path: Path) -> World:
    """The default sandbox's sizes, with Omie's redundant-call rule on (its default)."""
    w = make_world(f"sqlite:///{tmp_path / 'state.db'}", customers=200, products=50, orders=30)
    w.erp.faults.redundant_rule = True
    return w


@pytest.fixture
def waits() -> Iterator[list[str]]:
    """Every log line about the redundant-call rule (at any level)."""
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(m.record["message"]), level="DEBUG",
                      filter=lambda r: "redundant" in r["message"])
    yield lines
    logger.remove(sink)


def backfill(w: World) -> RunReport:
    return w.ponte().backfill("customers")


RUNS: dict[str, Callable[[World], RunReport]] = {
    "first sync": lambda w: w.sync(),
    "plan": lambda w: w.sync(dry_run=True),
    "backfill": backfill,
}


@pytest.mark.parametrize("run", list(RUNS))
def test_one_run_never_repeats_a_call_within_omies_window(strict_world: World, run: str,
                                                          waits: list[str]) -> None:
    report = RUNS[run](strict_world)
    assert report.status in ("ok", "partial"), report.error
    assert report.writes > 0  # it did the work (planned it, for the plan)
    assert waits == []  # no redundant fault was met, so nothing was waited for
    assert report.duration_s < 30  # a single wait for the rule would take 61 s
    # every identical list call was sent once: no ListarClientes answered with a fault
    counts = {(c["endpoint"], c["status"]): c["count"]
              for c in strict_world.erp.requests.as_list()}
    assert counts.get(("geral/clientes/ListarClientes", 500), 0) == 0, counts
