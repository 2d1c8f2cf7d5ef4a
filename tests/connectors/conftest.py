"""Fixtures for the connector contract tests (Ploomes: ``ploomes_*``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from etl.connectors.generic import GenericConnector
from etl.connectors.http import RetryPolicy
from etl.connectors.registry import get
from etl.sandbox.ploomes import PloomesSim, create_app

PLOOMES_TEST_KEY = "connector-test-user-key"


@pytest.fixture
def ploomes_sim() -> PloomesSim:
    """A Ploomes simulator with a generous rate limit (tests that want 429s use faults)."""
    return PloomesSim(user_key=PLOOMES_TEST_KEY, rpm=100_000)


@pytest.fixture
def ploomes_http(ploomes_sim: PloomesSim) -> Iterator[TestClient]:
    """An in-process ``httpx.Client`` whose base URL is the simulator."""
    with TestClient(create_app(ploomes_sim), base_url="http://ploomes.test") as client:
        yield client


@pytest.fixture
def ploomes_connector(ploomes_http: TestClient) -> Callable[..., GenericConnector]:
    """Build the Ploomes connector (the built-in spec) on the simulator; retries never sleep."""

    def make(*, user_key: str = PLOOMES_TEST_KEY, **kwargs: Any) -> GenericConnector:
        options: dict[str, Any] = {
            "requests_per_minute": 100_000,
            "retry": RetryPolicy(attempts=4, base_s=0.0, cap_s=0.0),
            "sleep": lambda _s: None,
        }
        options.update(kwargs)
        return GenericConnector(get("ploomes").spec, ploomes_http, system="crm",
                                credentials={"user_key": user_key}, **options)

    return make
