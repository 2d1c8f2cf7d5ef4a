"""Fixtures of the operator-command tests: the in-process World of the engine tests, and real
sandbox servers on loopback with the environment pointing ``ponte`` at them."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from etl.sandbox.server import Sandbox, running_sandbox
from tests.engine.conftest import MAPPINGS, World, empty_world, world  # noqa: F401  (fixtures reused)

FAST = 1_000_000


@dataclass
class Env:
    """Sandbox servers on loopback, the environment set for ``ponte``, and a state database."""

    sandbox: Sandbox
    state_url: str
    metrics: Path
    env: dict[str, str]

    def write_requests(self) -> int:
        return World(self.sandbox.crm, self.sandbox.erp, None).write_requests()  # type: ignore[arg-type]


def env_for(sb: Sandbox, tmp_path: Path) -> dict[str, str]:
    return {
        "PONTE_CRM__BASE_URL": sb.crm_url,
        "PONTE_ERP__BASE_URL": sb.erp_url,
        "PONTE_CRM__REQUESTS_PER_MINUTE": str(FAST),
        "PONTE_ERP__REQUESTS_PER_MINUTE": str(FAST),
        "PONTE_STATE_URL": f"sqlite:///{tmp_path / 'state.db'}",
        "PONTE_MAPPINGS_DIR": str(MAPPINGS),
        "PONTE_METRICS_FILE": str(tmp_path / "metrics" / "ponte.prom"),
        "PONTE_SAFETY_LAG_S": "0",
    }


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    with running_sandbox(customers=20, products=5, orders=4, ploomes_rpm=FAST,
                         omie_rpm=FAST) as sb:
        sb.erp.faults.redundant_rule = False  # Omie's 60 s "redundant call" wait: not here
        env = env_for(sb, tmp_path)
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        monkeypatch.chdir(tmp_path)  # no stray .env
        yield Env(sb, env["PONTE_STATE_URL"], Path(env["PONTE_METRICS_FILE"]), env)


def wait_for(pred: Callable[[], bool], timeout: float = 60.0) -> bool:
    """Poll ``pred`` until it holds or ``timeout`` seconds pass (real processes in tests)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False
