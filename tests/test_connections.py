"""Named connections (etl/connections.py): which value wins, what a connection's file may not
set, the names it accepts, the hint for a mistyped one, and where each one's state lives."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click
import pytest
import sqlalchemy as sa

from etl.cli import hoist_connection
from etl.connections import (
    DEPLOYMENT_ONLY,
    all_settings,
    connections_dir,
    names,
    selected,
    settings_for,
    state_part,
)
from etl.errors import ConfigError
from etl.state.db import connection_url


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty connections folder, PONTE_CONNECTIONS_DIR pointing at it, no stray .env."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    for name in ("PONTE_CONNECTION", "PONTE_SAFETY_LAG_S", "PONTE_LOG_LEVEL", "PONTE_LOG_FORMAT"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "connections"
    path.mkdir()
    monkeypatch.setenv("PONTE_CONNECTIONS_DIR", str(path))
    monkeypatch.setenv("PONTE_STATE_URL", f"sqlite:///{tmp_path / 'ponte.db'}")
    return path


def write(folder: Path, name: str, text: str = "") -> None:
    (folder / f"{name}.env").write_text(text)


# ---------------------------------------------------------------- which value wins


def test_the_file_wins_over_the_environment_which_wins_over_dotenv(
        folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Path(".env").write_text("PONTE_SAFETY_LAG_S=1\nPONTE_LOG_FORMAT=json\nPONTE_LOG_LEVEL=ERROR\n")
    monkeypatch.setenv("PONTE_SAFETY_LAG_S", "2")
    monkeypatch.setenv("PONTE_LOG_LEVEL", "DEBUG")
    write(folder, "acme", "PONTE_SAFETY_LAG_S=3\n")
    write(folder, "beta")
    acme, beta = settings_for("acme"), settings_for("beta")
    assert acme.safety_lag_s == 3 and beta.safety_lag_s == 2  # file > environment
    assert acme.log_level == "DEBUG"  # environment > .env
    assert acme.log_format == "json"  # .env, when nothing else sets it
    assert acme.connection == "acme" and beta.connection == "beta"
    assert settings_for(None).connection is None and settings_for(None).safety_lag_s == 2
    assert set(all_settings()) == {"acme", "beta"}


def test_selected_is_the_option_then_ponte_connection(folder: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    assert selected(None) is None
    monkeypatch.setenv("PONTE_CONNECTION", "beta")
    assert selected(None) == "beta"
    assert selected("acme") == "acme"
    monkeypatch.delenv("PONTE_CONNECTION")
    Path(".env").write_text("PONTE_CONNECTION=gamma\n")
    assert selected(None) == "gamma"
    assert connections_dir() == folder


# ---------------------------------------------------------------- what a file may not set


@pytest.mark.parametrize("name", DEPLOYMENT_ONLY)
def test_a_deployment_setting_in_a_connection_file_is_refused(folder: Path, name: str) -> None:
    write(folder, "acme", f"PONTE_{name}=x\nPONTE_SAFETY_LAG_S=3\n")
    with pytest.raises(ConfigError) as caught:
        settings_for("acme")
    text = str(caught.value)
    assert f"PONTE_{name} (in acme.env)" in text and "whole deployment" in text


def test_an_unknown_setting_in_a_connection_file_names_the_file_and_the_closest(
        folder: Path) -> None:
    write(folder, "acme", "PONTE_SAFETY_LAG=3\n")
    with pytest.raises(ConfigError) as caught:
        settings_for("acme")
    assert str(caught.value) == ("PONTE_SAFETY_LAG=3 (in acme.env): unknown setting; did you "
                                 "mean PONTE_SAFETY_LAG_S?")


# ---------------------------------------------------------------- names


@pytest.mark.parametrize("bad", ["Acme", "-acme", "acme foods", "a" * 41, "acme.env", ""])
def test_a_bad_connection_name_is_refused(folder: Path, bad: str) -> None:
    with pytest.raises(ConfigError, match="not a valid connection name"):
        settings_for(bad)


def test_a_bad_file_name_in_the_folder_is_refused(folder: Path) -> None:
    write(folder, "acme")
    write(folder, "Beta Foods")
    with pytest.raises(ConfigError) as caught:
        names()
    assert "'Beta Foods.env' is not a valid connection file name" in str(caught.value)
    assert "PONTE_CONNECTIONS_DIR" in str(caught.value)


def test_two_names_that_would_share_a_schema_are_refused(folder: Path) -> None:
    write(folder, "acme-foods")
    write(folder, "acme_foods")
    with pytest.raises(ConfigError, match="would share one part of the state database"):
        names()


def test_names_are_sorted_and_other_files_ignored(folder: Path) -> None:
    for name in ("zeta", "acme", "beta"):
        write(folder, name)
    (folder / "README.txt").write_text("not a connection")
    assert names() == ["acme", "beta", "zeta"]


# ---------------------------------------------------------------- a mistyped name


def test_a_mistyped_name_names_the_closest(folder: Path) -> None:
    write(folder, "acme-foods")
    write(folder, "beta")
    with pytest.raises(ConfigError) as caught:
        settings_for("acme-food")
    assert "did you mean 'acme-foods'?" in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        settings_for("zzz")
    assert "(known: acme-foods, beta)" in str(caught.value)


def test_an_empty_or_missing_folder_says_so(folder: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match=r"the folder has none"):
        settings_for("acme")
    monkeypatch.setenv("PONTE_CONNECTIONS_DIR", str(folder / "nowhere"))
    with pytest.raises(ConfigError, match="PONTE_CONNECTIONS_DIR=.*no such folder"):
        settings_for("acme")
    monkeypatch.delenv("PONTE_CONNECTIONS_DIR")
    with pytest.raises(ConfigError, match="PONTE_CONNECTIONS_DIR is not set"):
        names()


# ---------------------------------------------------------------- where the state lives


@pytest.mark.parametrize(("url", "expected"), [
    ("sqlite:///var/ponte.db", "var/ponte.conn_acme_foods.db"),
    ("sqlite:////srv/ponte/state.sqlite3", "/srv/ponte/state.conn_acme_foods.sqlite3"),
    ("sqlite:///state", "state.conn_acme_foods"),
    ("sqlite:///./dir.v2/state", "./dir.v2/state.conn_acme_foods"),
])
def test_a_connection_has_its_own_sqlite_file(url: str, expected: str) -> None:
    parsed, schema = connection_url(sa.make_url(url), "acme-foods")
    assert (parsed.database, schema) == (expected, None)
    assert connection_url(sa.make_url(url), None) == (sa.make_url(url), None)


def test_postgresql_gets_a_schema_and_in_memory_sqlite_is_refused() -> None:
    url = sa.make_url("postgresql+psycopg://u:p@h/db")
    assert connection_url(url, "acme-foods") == (url, "conn_acme_foods")
    assert state_part("acme-foods") == "conn_acme_foods"
    for memory in ("sqlite://", "sqlite:///:memory:"):
        with pytest.raises(ConfigError, match="in-memory SQLite"):
            connection_url(sa.make_url(memory), "acme")


def test_each_connection_opens_its_own_sqlite_file(folder: Path, tmp_path: Path) -> None:
    write(folder, "acme")
    write(folder, "beta")
    with settings_for("acme").open_state() as store:
        store.start_run("sync", ["customers"], now=datetime.now(UTC))
    with settings_for("beta").open_state() as store:
        assert store.runs(limit=5) == []
    with settings_for("acme").open_state() as store:
        assert len(store.runs(limit=5)) == 1
    assert (tmp_path / "ponte.conn_acme.db").is_file()
    assert (tmp_path / "ponte.conn_beta.db").is_file()
    assert not (tmp_path / "ponte.db").exists()


# ------------------------------------------------------------------ --connection after the command


@pytest.mark.parametrize(("argv", "expected"), [
    (["sync", "--connection", "acme", "customers"], ["--connection", "acme", "sync", "customers"]),
    (["status", "--connection=acme"], ["--connection=acme", "status"]),
    (["--connection", "acme", "status"], ["--connection", "acme", "status"]),
    (["sync", "--", "--connection", "x"], ["sync", "--", "--connection", "x"]),
])
def test_the_option_is_read_wherever_it_is_written(argv: list[str], expected: list[str]) -> None:
    assert hoist_connection(argv) == expected


@pytest.mark.parametrize("argv", [["sync", "--connection"], ["sync", "--connection", "--json"]])
def test_the_option_without_a_name_is_a_usage_error(argv: list[str]) -> None:
    with pytest.raises(click.UsageError, match="needs a NAME"):
        hoist_connection(argv)
