"""Helpers for the tests against real Tryton and BottleCRM servers on loopback.

``make realsys`` installs and starts them and writes their addresses and credentials to
``realsys.env`` in the cache folder (``.cache/realsys/`` or ``PONTE_TEST_REALSYS_DIR``). When a
server is absent its tests are skipped with a message saying so;
``PONTE_TEST_REQUIRE_REALSYS=1`` turns that skip into a failure.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
SETUP_SCRIPT = ROOT / "tests" / "realsys" / "setup" / "realsys.py"
HOW_TO_ENABLE = ("start them with `make realsys` (tests/realsys/setup/realsys.py); "
                 "PONTE_TEST_REQUIRE_REALSYS=1 makes this a failure instead of a skip")


def realsys_dir() -> Path:
    return Path(os.environ.get("PONTE_TEST_REALSYS_DIR") or ROOT / ".cache" / "realsys")


def unavailable(reason: str) -> None:
    """Skip (or fail, with PONTE_TEST_REQUIRE_REALSYS=1) naming what is missing and the fix."""
    message = f"{reason}: {HOW_TO_ENABLE}"
    if os.environ.get("PONTE_TEST_REQUIRE_REALSYS", "") not in ("", "0"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def b64(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode()


@dataclass(frozen=True)
class Tryton:
    url: str
    database: str
    key: str = field(repr=False)  # never in test output
    company: int

    @property
    def rest(self) -> str:
        return f"{self.url}/{self.database}/rest"

    def client(self, *, key: str | None = None) -> httpx.Client:
        headers = {"X-Tryton-Context": b64({"company": self.company})}
        if key != "":
            headers["Authorization"] = f"Bearer {self.key if key is None else key}"
        return httpx.Client(base_url=self.rest, headers=headers, timeout=30)


@dataclass(frozen=True)
class BottleCrm:
    url: str
    token: str = field(repr=False)  # never in test output

    def client(self, *, token: str | None = None) -> httpx.Client:
        headers = {} if token == "" else {
            "Authorization": f"Bearer {self.token if token is None else token}"}
        return httpx.Client(base_url=f"{self.url}/api", headers=headers, timeout=30)
