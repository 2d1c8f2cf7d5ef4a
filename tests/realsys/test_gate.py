"""Without the real servers the realsys tests skip, saying how to enable them; with
PONTE_TEST_REQUIRE_REALSYS=1 they fail instead (what CI will set)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from realsys_servers import ROOT

SERVER_TESTS = "tests/realsys/test_servers.py"


def run_server_tests(cache: Path, require: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PONTE_TEST_REALSYS")
           and k != "PONTE_TEST_REQUIRE_REALSYS"}
    env["PONTE_TEST_REALSYS_DIR"] = str(cache)
    if require is not None:
        env["PONTE_TEST_REQUIRE_REALSYS"] = require
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rsf", "-p", "no:cacheprovider",
                           SERVER_TESTS], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=240, check=False)


@pytest.mark.parametrize(("require", "exit_code", "outcome"), [
    (None, 0, "skipped"),
    ("1", 1, "error"),  # a failing fixture: each test is reported as an error, exit 1
], ids=["unset", "required"])
def test_absent_servers_skip_or_fail_naming_make_realsys(tmp_path: Path, require: str | None,
                                                         exit_code: int, outcome: str) -> None:
    done = run_server_tests(tmp_path / "empty-cache", require)
    assert done.returncode == exit_code, done.stdout[-2000:]
    summary = done.stdout.strip().splitlines()[-1]
    assert outcome in summary and "passed" not in summary, summary
    assert "the real servers are not set up" in done.stdout
    assert "start them with `make realsys`" in done.stdout
