"""Settings: .env.example lists every setting with the defaults as values; an unknown PONTE_*
name or a bad value is a ConfigError naming the variable (secrets masked)."""

from __future__ import annotations

from pathlib import Path

import pytest
from dotenv import dotenv_values

from etl.errors import ConfigError
from etl.settings import (
    CrmSettings,
    ErpSettings,
    Settings,
    check_names,
    credential_names,
    read_env_files,
    setting_names,
)
from etl.settings_serve import AlertSettings, ServeSettings

EXAMPLE = Path(__file__).resolve().parents[1] / ".env.example"


def example_values() -> dict[str, str]:
    """The file as ponte reads it (python-dotenv: quotes removed)."""
    return {k: v or "" for k, v in dotenv_values(EXAMPLE).items()}


def expected_names() -> set[str]:
    names = {f"PONTE_{k.upper()}" for k in Settings.model_fields
             if k not in ("crm", "erp", "schedule", "serve", "alerts")}
    # one schedule per entity that has a default
    names |= {"PONTE_SCHEDULE__CUSTOMERS", "PONTE_SCHEDULE__PRODUCTS", "PONTE_SCHEDULE__ORDERS"}
    names.add("PONTE_CONNECTION")  # which named connection: not a field, read before the settings
    names |= {f"PONTE_CRM__{k.upper()}" for k in CrmSettings.model_fields if k != "credentials"}
    names |= {f"PONTE_ERP__{k.upper()}" for k in ErpSettings.model_fields if k != "credentials"}
    names |= {f"PONTE_SERVE__{k.upper()}" for k in ServeSettings.model_fields}
    names |= {f"PONTE_ALERTS__{k.upper()}" for k in AlertSettings.model_fields}
    # the credentials the default connectors' specs declare
    names |= {"PONTE_CRM__CREDENTIALS__USER_KEY", "PONTE_ERP__CREDENTIALS__APP_KEY",
              "PONTE_ERP__CREDENTIALS__APP_SECRET", "PONTE_CRM__WEBHOOK_KEY", "PONTE_ERP__WEBHOOK_KEY",
        "PONTE_SERVE__STATUS_TOKEN", "PONTE_SERVE__STATUS_PASSWORD", "PONTE_ALERTS__WEBHOOK_URL",
        "PONTE_ALERTS__SMTP_URL"}
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


# ------------------------------------------------------------------ unknown names, bad values

UNKNOWN_NAMES = [
    # (variable, value, the message)
    ("PONTE_LOOKBACK", "600", "PONTE_LOOKBACK=600: unknown setting; did you mean PONTE_LOOKBACK_S?"),
    ("PONTE_CRM__CREDENTIALS__USER_KEYY", "live-key-1", ("PONTE_CRM__CREDENTIALS__USER_KEYY=***: unknown setting; did you "
                                           "mean PONTE_CRM__CREDENTIALS__USER_KEY?")),
    ("PONTE_ERP__APPKEY", "4242", ("PONTE_ERP__APPKEY=***: unknown setting; did you mean "
                                  "PONTE_ERP__CREDENTIALS__APP_KEY?")),
    ("PONTE_ERP__PAGESIZE", "50", ("PONTE_ERP__PAGESIZE=50: unknown setting; did you mean "
                                  "PONTE_ERP__PAGE_SIZE?")),
    ("ponte_log_levl", "DEBUG", ("ponte_log_levl=DEBUG: unknown setting; did you mean "
                                "PONTE_LOG_LEVEL?")),
    ("PONTE_STATE_UR", "postgresql+psycopg://ponte:pw-77@db/ponte",
     ("PONTE_STATE_UR=postgresql+psycopg://ponte:***@db/ponte: unknown setting; did you mean "
     "PONTE_STATE_URL?")),
    ("PONTE_ZZZ", "1", "PONTE_ZZZ=1: unknown setting; no setting has a similar name"),
    ("PONTE_CRM", '{"base_url": "x"}', ("PONTE_CRM: a group, not a setting; set its fields one "
                                       "by one: PONTE_CRM__BASE_URL")),
]


def _settings_error(monkeypatch: pytest.MonkeyPatch, folder: Path, name: str, value: str) -> str:
    """The configuration error Settings() raises in an empty folder with ``name=value`` set."""
    monkeypatch.chdir(folder)
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        Settings()
    return str(info.value)


@pytest.mark.parametrize(("name", "value", "message"), UNKNOWN_NAMES)
def test_an_unknown_setting_is_named_with_the_closest_valid_name(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str, value: str,
        message: str) -> None:
    error = _settings_error(monkeypatch, tmp_path, name, value)
    assert error.startswith(message)
    for secret in ("live-key-1", "4242", "pw-77"):
        assert secret not in error


BAD_VALUES = [
    ("PONTE_CRM__REQUESTS_PER_MINUTE", "fast",
     "PONTE_CRM__REQUESTS_PER_MINUTE='fast': not a valid integer"),
    ("PONTE_CRM__REQUESTS_PER_MINUTE", "0", "PONTE_CRM__REQUESTS_PER_MINUTE='0': must be >= 1"),
    ("PONTE_ERP__PAGE_SIZE", "900", "PONTE_ERP__PAGE_SIZE='900': must be <= 500"),
    ("PONTE_CRM__WRITE_CONCURRENCY", "8", ("PONTE_CRM__WRITE_CONCURRENCY='8': must be <= "
                                           "PONTE_CRM__MAX_CONCURRENCY (4)")),
    ("PONTE_ERP__TIMEOUT_S", "soon", "PONTE_ERP__TIMEOUT_S='soon': not a valid number"),
    ("PONTE_LOG_FORMAT", "xml", "PONTE_LOG_FORMAT='xml': must be 'text' or 'json'"),
    ("PONTE_CRM__KIND", "hubspot", "PONTE_CRM__KIND='hubspot': unknown connector (valid: bottlecrm, ploomes)"),
    ("PONTE_ERP__KIND", "ploomes", ("PONTE_ERP__KIND='ploomes': Ploomes is a connector for the crm "
                                    "side, not the erp (valid: omie, tryton)")),
    ("PONTE_MAX_DELETE_SHARE", "2", "PONTE_MAX_DELETE_SHARE='2': must be <= 1"),
    ("PONTE_LOG_LEVEL", "VERBOSE", ("PONTE_LOG_LEVEL='VERBOSE': must be one of TRACE, DEBUG, "
                                   "INFO, SUCCESS, WARNING, ERROR, CRITICAL")),
    # secrets: the value never appears, only ***
    ("PONTE_CRM__CREDENTIALS__USER_KEY", "live key 9f8e",
     "PONTE_CRM__CREDENTIALS__USER_KEY=***: contains spaces"),
    ("PONTE_ERP__CREDENTIALS__APP_SECRET", '"s3cr3t-omie"',
     "PONTE_ERP__CREDENTIALS__APP_SECRET=***: contains spaces, line breaks or quotes"),
    ("PONTE_ERP__CREDENTIALS__APP_KEY", "",
     "PONTE_ERP__CREDENTIALS__APP_KEY=***: must not be empty"),
]


@pytest.mark.parametrize(("name", "value", "message"), BAD_VALUES)
def test_a_bad_value_names_the_variable_and_the_value_with_secrets_masked(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str, value: str,
        message: str) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        Settings()
    assert str(info.value).startswith(message)
    assert info.value.__cause__ is None and info.value.__context__ is None  # no pydantic inputs
    for secret in ("9f8e", "s3cr3t-omie"):
        assert secret not in str(info.value)


def test_every_problem_is_reported_at_once(monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PONTE_CRM__REQUESTS_PER_MINUTE", "fast")
    monkeypatch.setenv("PONTE_ERP__MAX_CONCURRENCY", "many")
    with pytest.raises(ConfigError) as info:
        Settings()
    text = str(info.value)
    assert text.startswith("2 settings are wrong:")
    assert "PONTE_CRM__REQUESTS_PER_MINUTE='fast'" in text
    assert "PONTE_ERP__MAX_CONCURRENCY='many'" in text


def test_the_dot_env_file_is_checked_too_and_named(monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("OTHER_TOOL=1\nPONTE_LOCK_LEASE=60\n")
    with pytest.raises(ConfigError) as info:
        Settings()
    assert str(info.value) == ("PONTE_LOCK_LEASE=60 (in .env): unknown setting; did you mean "
                               "PONTE_LOCK_LEASE_S?")
    (tmp_path / ".env").write_text("PONTE_LOCK_LEASE_S=soon\n")
    with pytest.raises(ConfigError) as info:
        Settings()
    assert str(info.value) == "PONTE_LOCK_LEASE_S='soon' (in .env): not a valid integer"


@pytest.mark.parametrize("name", ["PONTE_TEST_POSTGRES_URL", "PONTE_TEST_REQUIRE_POSTGRES",
                                  "PONTE_TEST_INSTALL", "ponte_test_anything"])
def test_the_test_prefix_is_reserved_and_ignored(monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path, name: str) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(name, "1")
    (tmp_path / ".env").write_text(f"{name}=2\n")
    assert Settings().lookback_s == 600


def test_the_example_file_is_accepted_as_dot_env(monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(EXAMPLE.read_text())
    assert Settings().model_dump() == Settings(_env_file=None).model_dump()


def test_an_unknown_keyword_in_code_is_an_error(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"Settings\(lookbak_s=...\): unknown setting; did you "
                                          r"mean lookback_s\?"):
        Settings(lookbak_s=5)
    with pytest.raises(ConfigError, match=r"Settings\(zzz=...\): unknown setting; no such setting"):
        Settings(zzz=5)
    with pytest.raises(ConfigError, match=r"PONTE_CRM__BASE_ULR=\*\*\*: unknown setting"):
        Settings(crm={"base_ulr": "http://x"})


def test_every_valid_name_is_known(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    names = setting_names() | credential_names([{}])
    assert set(names) == expected_names()
    assert {n for n, secret in names.items() if secret} == {
        "PONTE_CRM__CREDENTIALS__USER_KEY", "PONTE_ERP__CREDENTIALS__APP_KEY",
        "PONTE_ERP__CREDENTIALS__APP_SECRET", "PONTE_CRM__WEBHOOK_KEY", "PONTE_ERP__WEBHOOK_KEY",
        "PONTE_SERVE__STATUS_TOKEN", "PONTE_SERVE__STATUS_PASSWORD", "PONTE_ALERTS__WEBHOOK_URL",
        "PONTE_ALERTS__SMTP_URL"}


def test_the_shipped_env_files_use_only_known_names() -> None:
    root = EXAMPLE.parent
    for path in (EXAMPLE, root / "cron" / "ponte.env.example"):
        assert check_names({}, read_env_files(path)) == [], path.name


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


# ------------------------------------------------------------------------------- schedules


def test_schedules_are_one_map_with_a_variable_per_entity(monkeypatch: pytest.MonkeyPatch,
                                                          tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PONTE_SCHEDULE__ORDERS", "every:60")
    (tmp_path / ".env").write_text("PONTE_SCHEDULE__Products='0 * * * *'\n")
    s = Settings()
    assert s.schedule == {"orders": "every:60", "products": "0 * * * *",
                          "customers": "*/5 * * * *"}
    assert s.schedule_of("orders") == "every:60"
    assert s.schedule_of("products") == "0 * * * *"
    assert s.schedule_of("customers") == "*/5 * * * *"  # not set: its default
    assert s.schedule_of("invoices") is None  # no default: `ponte run` asks for one


def test_the_whole_map_may_be_given_as_json(monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PONTE_SCHEDULE", '{"customers": "every:30", "orders": ""}')
    s = Settings()
    assert s.schedule_of("customers") == "every:30"
    assert s.schedule_of("orders") == "*/5 * * * *"  # empty = not set


@pytest.mark.parametrize(("name", "value", "message"), [
    ("PONTE_SCHEDULE__CUSTOMER", "every:60",
     ("PONTE_SCHEDULE__CUSTOMER='every:60': Ploomes and Omie have no entity 'customer' (valid: "
     "customers, orders, products); did you mean PONTE_SCHEDULE__CUSTOMERS?")),
    ("PONTE_SCHEDULE__INVOICES", "every:60",
     ("PONTE_SCHEDULE__INVOICES='every:60': Ploomes and Omie have no entity 'invoices' (valid: "
     "customers, orders, products)")),
    ("PONTE_SCHEDULE_INVOICES", "every:60",  # the old form is checked alike
     "PONTE_SCHEDULE_INVOICES='every:60': Ploomes and Omie have no entity 'invoices'"),
    ("PONTE_SCHEDULE__ORDERS", "hourly",
     "PONTE_SCHEDULE__ORDERS: 'hourly' is not a schedule; use a 5-field crontab"),
])
def test_a_bad_schedule_is_named_before_anything_runs(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str, value: str,
        message: str) -> None:
    assert _settings_error(monkeypatch, tmp_path, name, value).startswith(message)


def test_the_old_schedule_names_still_work_with_a_warning(monkeypatch: pytest.MonkeyPatch,
                                                          tmp_path: Path) -> None:
    from loguru import logger

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PONTE_SCHEDULE_PRODUCTS", "every:120")
    monkeypatch.setenv("PONTE_SCHEDULE_ORDERS", "every:7")
    monkeypatch.setenv("PONTE_SCHEDULE__ORDERS", "every:9")  # set both ways: the new one wins
    warnings: list[str] = []
    sink = logger.add(warnings.append, level="WARNING", format="{message}")
    try:
        s = Settings()
    finally:
        logger.remove(sink)
    assert s.schedule_of("products") == "every:120"
    assert s.schedule_of("orders") == "every:9"
    assert [w.strip() for w in warnings] == [
        "PONTE_SCHEDULE_ORDERS is deprecated: rename it PONTE_SCHEDULE__ORDERS",
        "PONTE_SCHEDULE_PRODUCTS is deprecated: rename it PONTE_SCHEDULE__PRODUCTS"]
