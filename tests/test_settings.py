""".env.example lists every setting, and its values are the defaults (the sandbox's)."""

from __future__ import annotations

from pathlib import Path

import pytest
from dotenv import dotenv_values

from etl.settings import CrmSettings, ErpSettings, Settings

EXAMPLE = Path(__file__).resolve().parents[1] / ".env.example"


def example_values() -> dict[str, str]:
    """The file as ponte reads it (python-dotenv: quotes removed)."""
    return {k: v or "" for k, v in dotenv_values(EXAMPLE).items()}


def expected_names() -> set[str]:
    names = {f"PONTE_{k.upper()}" for k in Settings.model_fields if k not in ("crm", "erp")}
    names |= {f"PONTE_CRM__{k.upper()}" for k in CrmSettings.model_fields}
    names |= {f"PONTE_ERP__{k.upper()}" for k in ErpSettings.model_fields}
    return names


def test_every_setting_is_listed_with_a_comment() -> None:
    values = example_values()
    assert set(values) == expected_names()
    text = EXAMPLE.read_text()
    for name in values:
        before = text[: text.index(f"\n{name}=")]
        assert "#" in before.rsplit("\n\n", 1)[-1], f"{name} has no comment above it"


def test_the_example_values_are_the_defaults(monkeypatch: pytest.MonkeyPatch,
                                             tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no .env
    defaults = Settings()
    for name, value in example_values().items():
        monkeypatch.setenv(name, value)
    from_example = Settings()
    assert from_example.model_dump() == defaults.model_dump()


@pytest.mark.parametrize("env_value", [None, ""])
def test_default_mappings_are_the_shipped_ones_from_any_folder(
        env_value: str | None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no mappings/ here
    if env_value is None:
        monkeypatch.delenv("PONTE_MAPPINGS_DIR", raising=False)
    else:
        monkeypatch.setenv("PONTE_MAPPINGS_DIR", env_value)
    found = Settings().mappings_dir
    assert found.is_absolute()
    assert sorted(p.name for p in found.glob("*.yaml")) == [
        "customers.yaml", "orders.yaml", "products.yaml"]


def test_a_mappings_dir_that_is_set_is_kept(monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    monkeypatch.setenv("PONTE_MAPPINGS_DIR", str(tmp_path))
    assert Settings().mappings_dir == tmp_path
