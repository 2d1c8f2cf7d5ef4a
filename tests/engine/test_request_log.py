"""At DEBUG every HTTP request of a sync is one log line (side, method, path, outcome,
milliseconds) and no line carries a credential: Omie sends app_key/app_secret in the JSON body,
Ploomes the User-Key header."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from loguru import logger

from tests.engine.conftest import World

LINE = re.compile(r"^(crm|erp) (GET|POST|PATCH|DELETE) (/\S*) -> HTTP (\d{3}) in (\d+) ms$")


@pytest.fixture
def debug_lines() -> Iterator[list[str]]:
    """Every DEBUG message as written, before any redaction (so a leak cannot hide)."""
    lines: list[str] = []
    handler = logger.add(lambda m: lines.append(str(m).rstrip("\n")), level="DEBUG",
                         format="{message}", filter=lambda r: r["level"].name == "DEBUG")
    yield lines
    logger.remove(handler)


def test_debug_logs_one_line_per_request_without_secrets(world: World,
                                                         debug_lines: list[str]) -> None:
    report = world.sync()
    assert report.status == "ok", report.error
    requests = [m for line in debug_lines if (m := LINE.match(line))]
    sent = {side: report.api_calls[side]["read"] + report.api_calls[side]["write"]
            for side in ("crm", "erp")}
    assert {side: sum(m[1] == side for m in requests) for side in sent} == sent
    paths = {(m[1], m[2], m[3]) for m in requests}
    assert ("crm", "GET", "/Contacts") in paths
    assert ("erp", "POST", "/api/v1/geral/clientes/") in paths
    secrets = world.settings.secrets()
    assert len(secrets) == 3
    for line in debug_lines:
        assert "?" not in line.split(" -> ")[0], line  # no query string
        for secret in secrets:
            assert secret not in line, line
