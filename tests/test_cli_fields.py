"""Custom fields from the command line, against the sandbox on loopback: ``ponte fields``, a
sync that fills a Ploomes custom field named by its label, and a missing label stopping a run
before anything is written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from etl.cli import app
from etl.exitcodes import Exit

MAPPINGS = Path(__file__).resolve().parents[1] / "mappings" / "ploomes_omie"
LIMIT = "contact_0B6E2D48-91C3-4F7A-B5E2-7C1D9A3F6B04"  # Limite de crédito (Decimal)
runner = CliRunner()


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no .env from the working tree
    monkeypatch.setenv("PONTE_MAPPINGS_DIR", str(MAPPINGS))
    monkeypatch.setenv("PONTE_STATE_URL", f"sqlite:///{tmp_path / 'state.db'}")


def _sandbox_env(monkeypatch: pytest.MonkeyPatch, sb: Any) -> None:
    monkeypatch.setenv("PONTE_CRM__BASE_URL", sb.crm_url)
    monkeypatch.setenv("PONTE_ERP__BASE_URL", sb.erp_url)


def _with_credit_limit(tmp_path: Path, label: str) -> Path:
    """The shipped mappings, the customers' credit limit in the Ploomes custom field ``label``."""
    folder = tmp_path / "mappings"
    folder.mkdir()
    for file in MAPPINGS.glob("*.yaml"):
        (folder / file.name).write_text(file.read_text(encoding="utf-8"), encoding="utf-8")
    text = (folder / "customers.yaml").read_text(encoding="utf-8")
    shipped = 'crm: {custom: "Limite de crédito"}'
    assert shipped in text
    (folder / "customers.yaml").write_text(text.replace(shipped, f'crm: {{custom: "{label}"}}'),
                                           encoding="utf-8")
    return folder


def _writes(sb: Any) -> int:
    crm = sum(n for (e, _s), n in sb.crm.requests.counts.items()
              if e.split(" ")[0] in ("POST", "PATCH", "DELETE"))
    erp = sum(n for (e, _s), n in sb.erp.requests.counts.items()
              if not e.rsplit("/", 1)[-1].startswith(("Listar", "Consultar")))
    return crm + erp


def _fields_requests(sb: Any) -> int:
    return sum(n for (e, _s), n in sb.crm.requests.counts.items() if e == "GET /Fields")


def test_fields_lists_the_schema_and_the_custom_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    from etl.sandbox.server import running_sandbox

    with running_sandbox() as sb:
        _sandbox_env(monkeypatch, sb)
        table = runner.invoke(app, ["fields", "crm", "Contacts"], terminal_width=240)
        assert table.exit_code == 0, table.output
        for text in ("Email", "Phones[0].PhoneNumber", "{custom: Limite de crédito}",
                     "Desconto especial (%)", "Volume de vendas 12m", "Última compra",
                     "DateTime", LIMIT):
            assert text in table.output, text
        assert _fields_requests(sb) >= 1
        result = runner.invoke(app, ["fields", "crm", "Contacts", "--json"])
        assert result.exit_code == 0, result.output
        body = json.loads(result.stdout)
        assert body["custom_listed"] is True
        custom = {r["label"]: (r["key"], r["type"]) for r in body["fields"]
                  if r["kind"] == "custom"}
        assert custom["Limite de crédito"] == (LIMIT, "Decimal")
        assert custom["Última compra"][1] == "DateTime"
        erp = runner.invoke(app, ["fields", "erp", "clientes", "--json"])
        assert erp.exit_code == 0, erp.output
        paths = {r["path"]: r for r in json.loads(erp.stdout)["fields"]}
        assert "tags[0].tag" in paths and paths["tags"]["kind"] == "list"
        assert paths["caracteristicas[campo=<name>].conteudo"]["kind"] == "custom"
        assert json.loads(erp.stdout)["custom_listed"] is False


def test_fields_names_an_unknown_collection_or_side() -> None:
    result = runner.invoke(app, ["fields", "crm", "Contatos"])
    assert result.exit_code == Exit.CONFIG
    assert "Ploomes has no collection 'Contatos'" in result.output and "Contacts" in result.output
    result = runner.invoke(app, ["fields", "both", "Contacts"])
    assert result.exit_code == Exit.CONFIG and "unknown side 'both'" in result.output


def test_a_sync_fills_a_custom_field_named_by_its_label(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from etl.sandbox.server import running_sandbox

    monkeypatch.setenv("PONTE_MAPPINGS_DIR", str(_with_credit_limit(tmp_path,
                                                                    "Limite de crédito")))
    monkeypatch.setenv("PONTE_SAFETY_LAG_S", "0")  # the edits below are seconds old
    with running_sandbox(customers=8, products=2, orders=1) as sb:
        _sandbox_env(monkeypatch, sb)
        limits = {}
        for i, row in enumerate(list(sb.erp.db["clientes"])[:3]):
            sb.erp.ui_update("clientes", row.id, {"valor_limite_credito": 1000 * (i + 1) + 0.5})
            limits[row.data["razao_social"]] = 1000 * (i + 1) + 0.5
        first = runner.invoke(app, ["sync", "customers"])
        assert first.exit_code == 0, first.output
        assert _fields_requests(sb) == 2  # one listing of Contacts' fields: a page + its end
        held = {}
        for row in sb.crm.db["Contacts"]:
            for item in row.data.get("OtherProperties") or []:
                if item.get("FieldKey") == LIMIT:
                    held[row.data.get("LegalName")] = item["DecimalValue"]
        assert held == limits
        writes = _writes(sb)
        second = runner.invoke(app, ["sync", "customers"])
        assert second.exit_code == 0, second.output
        assert _writes(sb) == writes  # converged: the second run writes nothing
        assert _fields_requests(sb) == 4  # each run lists the fields once
        first_client = next(iter(sb.erp.db["clientes"]))
        sb.erp.ui_update("clientes", first_client.id, {"valor_limite_credito": None})
        third = runner.invoke(app, ["sync", "customers"])
        assert third.exit_code == 0, third.output
        contact = next(r for r in sb.crm.db["Contacts"]
                       if r.data.get("LegalName") == first_client.data["razao_social"])
        assert contact.data["OtherProperties"] == []  # cleared, not written as 0


def test_a_missing_label_stops_the_run_before_any_write(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from etl.sandbox.server import running_sandbox

    monkeypatch.setenv("PONTE_MAPPINGS_DIR", str(_with_credit_limit(tmp_path,
                                                                    "Limite de credito")))
    with running_sandbox(customers=5, products=1, orders=1) as sb:
        _sandbox_env(monkeypatch, sb)
        for command in (["plan"], ["sync"]):
            result = runner.invoke(app, command, terminal_width=400)
            assert result.exit_code == Exit.CONFIG, result.output
            text = " ".join(result.output.split())
            assert ("customers.yaml: fields.credit_limit.crm.custom: no custom field labelled "
                    "'Limite de credito' in Ploomes Contacts; nearest: 'Limite de crédito'"
                    ) in text
        assert _writes(sb) == 0
        offline = runner.invoke(app, ["mappings", "check"])
        assert offline.exit_code == 0, offline.output
        assert "custom field 'Limite de credito'" in offline.output


def test_fields_lists_the_option_names_of_an_option_field(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    from etl.sandbox.server import running_sandbox

    with running_sandbox() as sb:
        _sandbox_env(monkeypatch, sb)
        result = runner.invoke(app, ["fields", "crm", "Contacts", "--json"])
        assert result.exit_code == 0, result.output
        custom = {r["label"]: r for r in json.loads(result.stdout)["fields"]
                  if r["kind"] == "custom"}
        assert custom["Porte"]["options"] == ["Pequeno", "Médio", "Grande"]
        assert custom["Limite de crédito"]["options"] == []
        table = runner.invoke(app, ["fields", "crm", "Contacts"], terminal_width=240)
        assert "Pequeno, Médio, Grande" in table.output, table.output
