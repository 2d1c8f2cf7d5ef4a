"""Fixtures for the tests against the real servers (see realsys_servers.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from dotenv import dotenv_values
from realsys_servers import BottleCrm, Tryton, realsys_dir, unavailable


@pytest.fixture(scope="session")
def realsys_env() -> dict[str, str]:
    env_file = realsys_dir() / "realsys.env"
    if not env_file.is_file():
        unavailable(f"the real servers are not set up ({env_file} is missing)")
    return {k: v for k, v in dotenv_values(env_file).items() if v is not None}


def _answers(method: str, url: str, **kwargs: Any) -> bool:
    try:
        return httpx.request(method, url, timeout=5, **kwargs).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="session")
def tryton(realsys_env: dict[str, str]) -> Tryton:
    if "TRYTON_KEY" not in realsys_env:
        unavailable("Tryton is not set up (no TRYTON_KEY in realsys.env)")
    server = Tryton(realsys_env["TRYTON_URL"], realsys_env["TRYTON_DATABASE"],
                    realsys_env["TRYTON_KEY"], int(realsys_env["TRYTON_COMPANY"]))
    if not _answers("POST", f"{server.url}/rpc/",
                    json={"method": "common.server.version", "params": [], "id": 1}):
        unavailable(f"Tryton does not answer on {server.url}")
    return server


@pytest.fixture(scope="session")
def bottlecrm(realsys_env: dict[str, str]) -> BottleCrm:
    if "BOTTLECRM_TOKEN" not in realsys_env:
        unavailable("BottleCRM is not set up (no BOTTLECRM_TOKEN in realsys.env; it needs "
                    "Python >= 3.12)")
    server = BottleCrm(realsys_env["BOTTLECRM_URL"], realsys_env["BOTTLECRM_TOKEN"])
    if not _answers("GET", f"{server.url}/healthz/"):
        unavailable(f"BottleCRM does not answer on {server.url}")
    return server


@pytest.fixture
def tryton_client(tryton: Tryton) -> Iterator[httpx.Client]:
    with tryton.client() as client:
        yield client


@pytest.fixture
def bottlecrm_client(bottlecrm: BottleCrm) -> Iterator[httpx.Client]:
    with bottlecrm.client() as client:
        yield client
