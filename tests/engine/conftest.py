"""An in-process world for end-to-end tests: both simulators, seeded, reached through their
HTTP APIs (Starlette's TestClient is an httpx.Client), and a real state database."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from etl.engine.report import RunReport
from etl.ponte import Ponte
from etl.sandbox.omie import OmieSim
from etl.sandbox.omie import create_app as omie_app
from etl.sandbox.ploomes import PloomesSim
from etl.sandbox.ploomes import create_app as ploomes_app
from etl.sandbox.seed import seed
from etl.settings import CrmSettings, ErpSettings, Settings
from etl.state import Store

MAPPINGS = Path(__file__).resolve().parents[2] / "mappings" / "ploomes_omie"
FAST = 1_000_000


@dataclass
class World:
    crm: PloomesSim
    erp: OmieSim
    settings: Settings
    offset_s: float = 0.0

    def tick(self, seconds: float = 2.0) -> None:
        """Move both simulators' clocks and ponte's together, so that edits made right after a
        sync fall inside the next run's window (runs are minutes apart in real life)."""
        self.offset_s += seconds
        self.crm.clock.advance(seconds)
        self.erp.clock.advance(seconds)

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.offset_s)

    def clients(self) -> tuple[TestClient, TestClient]:
        return (
            TestClient(ploomes_app(self.crm), base_url="http://ploomes.test",
                       raise_server_exceptions=False),
            TestClient(omie_app(self.erp), base_url="http://omie.test/api/v1",
                       raise_server_exceptions=False),
        )

    def ponte(self) -> Ponte:
        """The library façade on this world: its clients, and the world as its clock (the
        World is a :class:`etl.clock.Clock`)."""
        crm_client, erp_client = self.clients()
        return Ponte(self.settings, clock=self, crm_client=crm_client, erp_client=erp_client)

    def sync(self, *entities: str, dry_run: bool = False) -> RunReport:
        self.tick()
        report = self.ponte().sync(list(entities) or None, dry_run=dry_run)
        self.tick()
        return report

    def store(self) -> Store:
        return Store.open(self.settings.state_url)

    def write_requests(self) -> int:
        """Write requests the simulators received (Ploomes POST/PATCH/DELETE, Omie writes)."""
        n = 0
        for (endpoint, _status), count in self.crm.requests.counts.items():
            if endpoint.split(" ")[0] in ("POST", "PATCH", "DELETE"):
                n += count
        for (endpoint, _status), count in self.erp.requests.counts.items():
            call = endpoint.rsplit("/", 1)[-1]
            if not call.startswith(("Listar", "Consultar", "Status")):
                n += count
        return n


def make_world(state_url: str, *, customers: int = 0, products: int = 0, orders: int = 0,
               overlap: float = 0.3, seed_value: int = 7) -> World:
    crm = PloomesSim(rpm=FAST)
    erp = OmieSim(rpm=FAST)
    erp.faults.redundant_rule = False
    if customers or products or orders:
        seed(crm, erp, customers=customers, products=products, orders=orders, seed=seed_value,
             overlap=overlap)
    settings = Settings(
        state_url=state_url, mappings_dir=MAPPINGS, lookback_s=300, safety_lag_s=0,
        crm=CrmSettings(requests_per_minute=FAST), erp=ErpSettings(requests_per_minute=FAST),
    )
    return World(crm, erp, settings)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    yield make_world(f"sqlite:///{tmp_path / 'state.db'}", customers=30, products=10, orders=8)


@pytest.fixture
def empty_world(tmp_path: Path) -> Iterator[World]:
    yield make_world(f"sqlite:///{tmp_path / 'state.db'}")
