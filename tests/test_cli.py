"""The ``ponte`` command's own behaviour: help, version, configuration errors, mappings check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from etl import __version__
from etl.cli import app
from etl.exitcodes import Exit

MAPPINGS = Path(__file__).resolve().parents[1] / "mappings" / "ploomes_omie"
runner = CliRunner()


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no .env from the working tree
    monkeypatch.setenv("PONTE_MAPPINGS_DIR", str(MAPPINGS))
    monkeypatch.setenv("PONTE_STATE_URL", f"sqlite:///{tmp_path / 'state.db'}")


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"ponte {__version__}"


@pytest.mark.parametrize("command", [[], ["sync"], ["plan"], ["verify"], ["sandbox"], ["demo"],
                                     ["mappings", "check"], ["db", "upgrade"]])
def test_help_of_every_command(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_top_level_help_documents_the_exit_codes() -> None:
    result = runner.invoke(app, ["--help"])
    assert "Exit codes" in result.output and "lock" in result.output


def test_mappings_check_ok() -> None:
    result = runner.invoke(app, ["mappings", "check"])
    assert result.exit_code == 0, result.output
    for entity in ("customers", "products", "orders"):
        assert f"{entity}: ok" in result.output


def test_bad_mapping_exits_2_naming_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "customers.yaml").write_text(
        (MAPPINGS / "customers.yaml").read_text().replace("conflict: erp_wins", "conflict: nope"))
    result = runner.invoke(app, ["mappings", "check", str(bad)])
    assert result.exit_code == Exit.CONFIG
    assert "customers.yaml: conflict" in result.output and "'manual'" in result.output


def test_bad_setting_exits_2_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PONTE_CRM__REQUESTS_PER_MINUTE", "lots")
    result = runner.invoke(app, ["sync"])
    assert result.exit_code == Exit.CONFIG
    assert "PONTE_CRM__REQUESTS_PER_MINUTE" in result.output


def test_unreachable_system_fails_with_exit_3_and_no_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PONTE_CRM__BASE_URL", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("PONTE_ERP__BASE_URL", "http://127.0.0.1:9/api/v1")
    monkeypatch.setenv("PONTE_CRM__USER_KEY", "very-secret-user-key-123")
    monkeypatch.setenv("PONTE_CRM__TIMEOUT_S", "0.5")
    result = runner.invoke(app, ["sync", "customers", "--json"])
    assert result.exit_code == Exit.FAILED, result.output
    assert "very-secret-user-key-123" not in result.output
    body = json.loads(result.stdout)  # one JSON document, never wrapped
    assert body["status"] == "failed" and "crm" in body["error"]


def test_db_upgrade() -> None:
    result = runner.invoke(app, ["db", "upgrade"])
    assert result.exit_code == 0 and "up to date" in result.output


def test_help_documents_the_internal_error_code() -> None:
    result = runner.invoke(app, ["--help"])
    assert "5 internal error" in " ".join(result.output.split())
    assert int(Exit.INTERNAL) == 5 and len({int(e) for e in Exit}) == len(Exit)


@pytest.mark.parametrize(("command", "env", "code", "words"), [
    (["sync", "--json"], {"PONTE_CRM__REQUESTS_PER_MINUTE": "lots"}, Exit.CONFIG,
     "PONTE_CRM__REQUESTS_PER_MINUTE"),
    (["plan", "nope", "--json"], {}, Exit.CONFIG, "nope"),
    (["verify", "--json"], {"PONTE_ERP__PAGE_SIZE": "0"}, Exit.CONFIG, "PONTE_ERP__PAGE_SIZE"),
    (["status", "--json"], {"PONTE_MAPPINGS_DIR": "/nonexistent-mappings"}, Exit.CONFIG,
     "nonexistent-mappings"),
], ids=["sync-bad-setting", "plan-unknown-entity", "verify-bad-setting", "status-no-mappings"])
def test_json_errors_print_exactly_one_json_object(monkeypatch: pytest.MonkeyPatch,
                                                   command: list[str], env: dict[str, str],
                                                   code: Exit, words: str) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    result = runner.invoke(app, command)
    assert result.exit_code == code, result.output
    body = json.loads(result.stdout)  # the whole stdout is one object
    assert body["status"] == "failed" and body["exit_code"] == code and words in body["error"]
    assert words in result.stderr  # and the human line on stderr
