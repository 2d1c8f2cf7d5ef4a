"""Vendor hooks: small named facts the specs reference."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from etl.connectors.hooks import HOOKS, wait_hooks
from etl.connectors.hooks.omie import redundant_wait
from etl.connectors.registry import get
from etl.connectors.spec import parse_spec
from etl.errors import ConfigError

NOW = datetime(2026, 3, 10, 22, 3, 0, tzinfo=UTC)  # 19:03:00 in Brasília


@pytest.mark.parametrize(("text", "wait"), [
    ("Consumo redundante detectado. Aguarde 42 segundos para tentar novamente.", 43.0),
    ("Consumo redundante. Tente novamente às 19:04:08.", 69.0),  # 68 s from now, + 1
    ("Consumo redundante. Tente novamente às 23:00:00.", 61.0),  # too far: the 60-s rule
    ("Consumo redundante.", 61.0),
], ids=["seconds", "clock-time", "far-clock-time", "no-number"])
def test_omie_redundant_wait(text: str, wait: float) -> None:
    assert redundant_wait(text, NOW) == wait
    assert HOOKS["omie_redundant_wait"] is redundant_wait


def test_a_spec_naming_an_unknown_hook_is_refused() -> None:
    raw = get("ploomes").spec.model_dump(by_alias=True, exclude_none=True)
    raw["errors"] = [{"status": [500], "action": "retry", "hook": "omie_redundant_waits"}]
    with pytest.raises(ConfigError, match="unknown hook 'omie_redundant_waits' \\(valid: "
                                          "(.+, )?omie_redundant_wait, ploomes_city_state, "):
        wait_hooks(parse_spec(raw, "x.yaml"))


@pytest.mark.parametrize(("value", "clause"), [
    ("11222333000181", ("Register eq '11222333000181' or CNPJ eq '11222333000181' or CNPJ eq "
     "'11.222.333/0001-81' or CPF eq '11222333000181' or CPF eq '11.222.333/0001-81'")),
    ("12345678909", ("Register eq '12345678909' or CNPJ eq '12345678909' or CNPJ eq "
     "'123.456.789-09' or CPF eq '12345678909' or CPF eq '123.456.789-09'")),
    ("O'Neil", "Register eq 'O''Neil' or CNPJ eq 'O''Neil' or CPF eq 'O''Neil'"),
], ids=["cnpj", "cpf", "not-a-document"])
def test_ploomes_document_clause(value: str, clause: str) -> None:
    assert HOOKS["ploomes_document_clause"]("Register", value) == clause
