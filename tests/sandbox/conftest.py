"""Fixtures for the simulator tests (Ploomes: ``ploomes_*``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from etl.sandbox.ploomes import PloomesSim, create_app

PLOOMES_KEY = "test-ploomes-key"


@pytest.fixture
def ploomes_key() -> str:
    return PLOOMES_KEY


@pytest.fixture
def ploomes_sim() -> PloomesSim:
    return PloomesSim(user_key=PLOOMES_KEY)


@pytest.fixture
def ploomes_client(ploomes_sim: PloomesSim) -> Iterator[TestClient]:
    """An in-process client of the Ploomes simulator that sends the valid User-Key."""
    with TestClient(create_app(ploomes_sim), headers={"User-Key": PLOOMES_KEY}) as client:
        yield client
