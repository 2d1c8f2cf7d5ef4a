"""``ponte status`` shows the pilot scope in force, through the real ``ponte`` app."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from etl.cli import app
from tests.ops.conftest import MAPPINGS, Env

runner = CliRunner()


def test_status_shows_the_scope_in_force(cli_env: Env, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "scoped"
    shutil.copytree(MAPPINGS, folder)
    file = folder / "customers.yaml"
    data = yaml.safe_load(file.read_text())
    data["scope"] = {"field": "owner", "values": ["ana.souza@example.com.br"]}
    file.write_text(yaml.safe_dump(data, allow_unicode=True))
    monkeypatch.setenv("PONTE_MAPPINGS_DIR", str(folder))
    assert runner.invoke(app, ["sync", "customers"]).exit_code in (0, 1)
    table = runner.invoke(app, ["status"], catch_exceptions=False, terminal_width=200)
    assert table.exit_code == 0, table.output
    assert "pilot scope" in table.stdout and "owner in ana.souza@example.com.br" in table.stdout
    shown = json.loads(runner.invoke(app, ["status", "--json"]).stdout)
    cust = next(e for e in shown["entities"] if e["entity"] == "customers")
    assert cust["scope"] == "owner in ana.souza@example.com.br"
    assert cust["scope_widened"] is False
    products = next(e for e in shown["entities"] if e["entity"] == "products")
    assert products["scope"] is None
