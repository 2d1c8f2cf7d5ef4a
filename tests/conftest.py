"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """A PostgreSQL URL for tests that need one; skipped unless PONTE_TEST_POSTGRES_URL is set
    (``.ci/run`` sets it and PONTE_TEST_REQUIRE_POSTGRES, which turns the skip into a failure)."""
    url = os.environ.get("PONTE_TEST_POSTGRES_URL")
    if not url:
        if os.environ.get("PONTE_TEST_REQUIRE_POSTGRES"):
            pytest.fail("PONTE_TEST_REQUIRE_POSTGRES is set but PONTE_TEST_POSTGRES_URL is not")
        pytest.skip("PostgreSQL tests need PONTE_TEST_POSTGRES_URL (e.g. "
                    "postgresql+psycopg://postgres@127.0.0.1:5432/test)")
    return url


@pytest.fixture(scope="session")
def redis_url() -> str:
    """A Redis URL for tests that need one (the shared rate limiter); skipped unless
    PONTE_TEST_REDIS_URL is set (``.ci/run`` sets it and PONTE_TEST_REQUIRE_REDIS, which turns
    the skip into a failure)."""
    url = os.environ.get("PONTE_TEST_REDIS_URL")
    if not url:
        if os.environ.get("PONTE_TEST_REQUIRE_REDIS"):
            pytest.fail("PONTE_TEST_REQUIRE_REDIS is set but PONTE_TEST_REDIS_URL is not")
        pytest.skip("Redis tests need PONTE_TEST_REDIS_URL (e.g. redis://127.0.0.1:6379/0)")
    return url
