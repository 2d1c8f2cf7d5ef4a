"""The ``ponte`` command's own behaviour: help, version, configuration errors, mappings check."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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
    monkeypatch.setenv("PONTE_CRM__CREDENTIALS__USER_KEY", "very-secret-user-key-123")
    monkeypatch.setenv("PONTE_CRM__TIMEOUT_S", "0.5")
    result = runner.invoke(app, ["sync", "customers", "--json"])
    assert result.exit_code == Exit.FAILED, result.output
    assert "very-secret-user-key-123" not in result.output
    body = json.loads(result.stdout)  # one JSON document, never wrapped
    assert body["status"] == "failed" and "crm" in body["error"]


def test_db_upgrade() -> None:
    result = runner.invoke(app, ["db", "upgrade"])
    assert result.exit_code == 0 and "up to date" in result.output


# --- native paths against the systems' field schemas ---------------------------------------

CUSTOM_KEY = "contact_5E1A0C7B-3D2F-4A8B-9C61-2F7D0B9E4A13"  # seeded in the Ploomes simulator


def _mappings_with(tmp_path: Path, old: str, new: str) -> Path:
    folder = tmp_path / "mappings"
    folder.mkdir(parents=True)
    for file in MAPPINGS.glob("*.yaml"):
        (folder / file.name).write_text(file.read_text())
    text = (folder / "customers.yaml").read_text()
    assert old in text
    (folder / "customers.yaml").write_text(text.replace(old, new, 1))
    return folder


def _with_custom_field(tmp_path: Path, key: str) -> Path:
    return _mappings_with(tmp_path, "fields:\n", (
        "fields:\n  erp_code:\n    crm: {path: 'OtherProperties[FieldKey=" + key
        + "].StringValue', read_only: true}\n"))


def test_mappings_check_names_a_typo_in_a_native_path(tmp_path: Path) -> None:
    folder = _mappings_with(tmp_path, "path: Email,", "path: Emial,")
    result = runner.invoke(app, ["mappings", "check", str(folder)])
    assert result.exit_code == Exit.CONFIG
    assert ("customers.yaml: fields.email.crm.path: unknown Ploomes Contacts field 'Emial'; "
            "did you mean 'Email'?") in " ".join(result.output.split())


def _sandbox_env(monkeypatch: pytest.MonkeyPatch, sb: Any) -> None:
    monkeypatch.setenv("PONTE_CRM__BASE_URL", sb.crm_url)
    monkeypatch.setenv("PONTE_ERP__BASE_URL", sb.erp_url)


def _writes(sb: Any) -> int:
    crm = sum(n for (e, _s), n in sb.crm.requests.counts.items()
              if e.split(" ")[0] in ("POST", "PATCH", "DELETE"))
    erp = sum(n for (e, _s), n in sb.erp.requests.counts.items()
              if not e.rsplit("/", 1)[-1].startswith(("Listar", "Consultar")))
    return crm + erp


@pytest.mark.parametrize("command", [["plan"], ["sync"], ["sync", "customers"]])
def test_plan_and_sync_with_a_path_typo_exit_2_and_write_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]) -> None:
    from etl.sandbox.server import running_sandbox

    monkeypatch.setenv("PONTE_MAPPINGS_DIR",
                       str(_mappings_with(tmp_path, "path: Email,", "path: Emial,")))
    with running_sandbox(customers=10, products=3, orders=2) as sb:
        _sandbox_env(monkeypatch, sb)
        result = runner.invoke(app, command)
        assert result.exit_code == Exit.CONFIG, result.output
        text = " ".join(result.output.split())
        assert "unknown Ploomes Contacts field 'Emial'; did you mean 'Email'?" in text
        assert text.count("'Emial'") == 1, text  # said once: no alert evaluation repeats it
        assert _writes(sb) == 0
        assert sum(sb.crm.requests.counts.values()) + sum(sb.erp.requests.counts.values()) == 0


def test_custom_fields_offline_are_listed_and_online_are_checked_against_fields(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from etl.sandbox.server import running_sandbox

    good = _with_custom_field(tmp_path / "good", CUSTOM_KEY)
    bad = _with_custom_field(tmp_path / "bad", CUSTOM_KEY[:-1] + "0")
    offline = runner.invoke(app, ["mappings", "check", str(good)])
    assert offline.exit_code == 0, offline.output
    assert "not checked offline" in offline.output and CUSTOM_KEY in offline.output
    with running_sandbox() as sb:
        _sandbox_env(monkeypatch, sb)
        online = runner.invoke(app, ["mappings", "check", "--online", str(good)])
        assert online.exit_code == 0, online.output
        assert "not checked offline" not in online.output
        assert sb.crm.requests.counts[("GET /Fields", 200)] >= 1
        wrong = runner.invoke(app, ["mappings", "check", "--online", str(bad)])
        assert wrong.exit_code == Exit.CONFIG
        text = " ".join(wrong.output.split())
        assert ("customers.yaml: fields.erp_code.crm.path: unknown Ploomes Contacts custom "
                f"field '{CUSTOM_KEY[:-1]}0' (not in its /Fields); did you mean '{CUSTOM_KEY}'?"
                ) in text
        monkeypatch.setenv("PONTE_MAPPINGS_DIR", str(bad))
        plan = runner.invoke(app, ["plan"])  # a run asks /Fields before anything else
        assert plan.exit_code == Exit.CONFIG, plan.output
        assert "not in its /Fields" in plan.output
        assert _writes(sb) == 0


@pytest.mark.parametrize("command", [["run", "customers"], ["backfill", "customers"],
                                     ["verify"]])
def test_daemon_backfill_and_verify_refuse_a_path_typo_before_starting(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]) -> None:
    monkeypatch.setenv("PONTE_MAPPINGS_DIR",
                       str(_mappings_with(tmp_path, "path: Email,", "path: Emial,")))
    monkeypatch.setenv("PONTE_SCHEDULE__CUSTOMERS", "every:60")
    monkeypatch.setenv("PONTE_CRM__BASE_URL", "http://127.0.0.1:9")  # never reached
    result = runner.invoke(app, command)
    assert result.exit_code == Exit.CONFIG, result.output
    assert "unknown Ploomes Contacts field 'Emial'" in result.output
    assert result.output.count("'Emial'") == 1, result.output


@pytest.mark.parametrize(("folder", "hint"), [
    ("pairs", "its folders ploomes_omie have some: set PONTE_MAPPINGS_DIR to one of them"),
    ("yml", "customers.yml end in .yml: rename them to .yaml"),
    ("empty", "leave PONTE_MAPPINGS_DIR empty for the mappings shipped with ponte"),
])
def test_a_mappings_folder_without_mappings_stops_sync_instead_of_syncing_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, folder: str, hint: str) -> None:
    # the parent of a pair's folder, a file saved as .yml: a run would have said "ok"
    where = tmp_path / folder
    if folder == "pairs":
        _mappings_with(where, "fields:\n", "fields:\n")
        (where / "mappings").rename(where / "ploomes_omie")
    else:
        where.mkdir()
    if folder == "yml":
        (where / "customers.yml").write_text((MAPPINGS / "customers.yaml").read_text())
    monkeypatch.setenv("PONTE_MAPPINGS_DIR", str(where))
    monkeypatch.setenv("PONTE_CRM__BASE_URL", "http://127.0.0.1:9")  # never reached
    monkeypatch.setenv("PONTE_STATE_URL", f"sqlite:///{tmp_path / 'state.db'}")
    result = runner.invoke(app, ["sync"])
    assert result.exit_code == Exit.CONFIG, result.output
    text = " ".join(result.output.split())
    assert f"mappings directory {where} has no mapping files (*.yaml)" in text
    assert hint in text
    assert not (tmp_path / "state.db").exists()  # stopped before the state was opened


@pytest.mark.parametrize("command", [["sync"], ["run"], ["status"], ["db", "upgrade"],
                                     ["backfill", "customers"]])
@pytest.mark.parametrize(("name", "value", "message"), [
    ("PONTE_LOOKBACK", "600", "PONTE_LOOKBACK=600: unknown setting; did you mean PONTE_LOOKBACK_S?"),
    ("PONTE_CRM__CREDENTIALS__USER_KEYY", "k-123456", ("PONTE_CRM__CREDENTIALS__USER_KEYY=***: unknown setting; did you mean "
                                         "PONTE_CRM__CREDENTIALS__USER_KEY?")),
    ("PONTE_ERP__CREDENTIALS__APP_SECRET", "has space-654321", "PONTE_ERP__CREDENTIALS__APP_SECRET=***: contains spaces"),
])
def test_an_unknown_or_bad_setting_exits_2_before_anything_is_written(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, command: list[str], name: str,
        value: str, message: str) -> None:
    monkeypatch.setenv(name, value)
    result = runner.invoke(app, command)
    assert result.exit_code == Exit.CONFIG, result.output
    assert f"bad configuration: {message}" in result.stderr
    if "***" in message:
        assert value not in result.output
    assert not (tmp_path / "state.db").exists()  # nothing written, not even the state


def test_demo_json_prints_exactly_one_object(tmp_path: Path) -> None:
    result = runner.invoke(app, ["demo", "--json", "--customers", "12", "--products", "4",
                                 "--orders", "3", "--state", str(tmp_path / "demo.db")])
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)  # the whole of stdout is one JSON document
    assert body["status"] == "ok" and body["state"] == str(tmp_path / "demo.db")
    assert [s["title"][:2] for s in body["steps"]] == ["1.", "2.", "3."]
    assert body["steps"][1]["edits"] and body["steps"][1]["report"]["changes"]
    third = body["steps"][2]["report"]
    assert third["api_calls"]["crm"]["write"] == 0 and third["api_calls"]["erp"]["write"] == 0
    # the ERP's facts, as the CRM's custom fields hold them after step 2, field by field
    facts = body["steps"][1]["crm_custom_fields"]
    assert "    Limite de crédito: 25000.0" in facts
    volume = [line for line in facts if line.startswith("    Volume de vendas 12m: ")]
    assert any(float(line.split(": ")[1]) > 0 for line in volume if not line.endswith("-"))
    assert any(line.startswith("    Última compra: 20") for line in facts)


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
