"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os

import pytest


def service_url(what: str, name: str, example: str) -> str:
    """The URL of a real service in ``PONTE_TEST_<NAME>_URL``; without it the test is skipped
    with a message naming the variable, or fails where ``PONTE_TEST_REQUIRE_<NAME>`` is set
    (``.ci/run`` sets both: there these tests are mandatory)."""
    url = os.environ.get(f"PONTE_TEST_{name}_URL")
    if not url:
        if os.environ.get(f"PONTE_TEST_REQUIRE_{name}"):
            pytest.fail(f"PONTE_TEST_REQUIRE_{name} is set but PONTE_TEST_{name}_URL is not")
        pytest.skip(f"{what} tests need PONTE_TEST_{name}_URL (e.g. {example})")
    return url


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """A PostgreSQL URL for tests that need one."""
    return service_url("PostgreSQL", "POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def redis_url() -> str:
    """A Redis URL for tests that need one (the shared rate limiter)."""
    return service_url("Redis", "REDIS", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="session")
def rabbitmq_url() -> str:
    """The RabbitMQ broker for the distributed tests (ponte worker and schedule)."""
    return service_url("distributed", "RABBITMQ", "amqp://guest:guest@127.0.0.1:5672//")
