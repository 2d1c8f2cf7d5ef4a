"""Named connections: one deployment, many companies.

An integrator runs ponte for many companies, each a CRM/ERP pair with its own credentials,
mappings, schedules and scope. Each is a **connection**: a file ``<name>.env`` in
``PONTE_CONNECTIONS_DIR``, in the same ``PONTE_*`` form as ``.env``. A connection's settings are
its file, then the environment, then ``.env``: the file wins, so the deployment-wide values
(``PONTE_STATE_URL``, ``PONTE_BROKER_URL``, log format) are set once in the environment and each
file holds what is the company's own.

Every command takes ``--connection NAME`` (or ``PONTE_CONNECTION``); without it, the settings of
today (environment and ``.env``) are used, as a single-connection deployment always did. Each
connection has its own part of the state database (a schema on PostgreSQL, a file beside the
default on SQLite: :mod:`etl.state.db`), so one company's records, watermarks, locks, quarantine
and runs are never visible to another's commands.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path

from dotenv import dotenv_values

from etl.errors import ConfigError
from etl.settings import PREFIX, Settings, read_env_files

#: a connection's name: lower-case letters, digits, ``-`` and ``_``, at most 40 characters
NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")
SUFFIX = ".env"
#: set once for the whole deployment, never in a connection's file
DEPLOYMENT_ONLY = ("CONNECTIONS_DIR", "BROKER_URL", "CONNECTION", "STATE_URL", "LIMITER_URL")


def connections_dir() -> Path | None:
    """``PONTE_CONNECTIONS_DIR`` (environment, then ``.env``), without the rest of the settings."""
    value = os.environ.get(f"{PREFIX}CONNECTIONS_DIR")
    if value is None:
        value = read_env_files(".env").get(f"{PREFIX}CONNECTIONS_DIR")
    return Path(value).expanduser() if value else None


def selected(option: str | None) -> str | None:
    """The connection a command runs for: ``--connection``, else ``PONTE_CONNECTION``."""
    name = option if option is not None else os.environ.get(f"{PREFIX}CONNECTION")
    if name is None:
        name = read_env_files(".env").get(f"{PREFIX}CONNECTION")
    return name or None


def names(folder: Path | None = None) -> list[str]:
    """The connections of the deployment, sorted (each ``<name>.env`` of the folder)."""
    folder = folder if folder is not None else _folder()
    found = []
    for path in sorted(folder.glob(f"*{SUFFIX}")):
        name = path.name[:-len(SUFFIX)]
        if not NAME.fullmatch(name):
            raise ConfigError(f"{PREFIX}CONNECTIONS_DIR={str(folder)!r}: {path.name!r} is not a "
                              "valid connection file name (lower-case letters, digits, - and _, "
                              f"at most 40, then {SUFFIX})")
        found.append(name)
    by_schema: dict[str, str] = {}
    for name in found:
        other = by_schema.setdefault(state_part(name), name)
        if other != name:
            raise ConfigError(f"{PREFIX}CONNECTIONS_DIR: connections {other!r} and {name!r} would "
                              "share one part of the state database (- and _ are the same "
                              "there); rename one")
    return found


def settings_for(name: str | None, folder: Path | None = None) -> Settings:
    """The settings of connection ``name`` (None: the single-connection settings). Raises
    :class:`ConfigError` for an unknown name (with the closest one), a setting that belongs to
    the whole deployment, or anything :class:`Settings` refuses."""
    if name is None:
        return Settings()
    if not NAME.fullmatch(name):
        raise ConfigError(f"--connection {name!r}: not a valid connection name (lower-case "
                          "letters, digits, - and _, at most 40)")
    folder = folder if folder is not None else _folder()
    path = folder / f"{name}{SUFFIX}"
    if not path.is_file():
        known = names(folder)
        guess = difflib.get_close_matches(name, known, n=1)
        hint = (f"; did you mean {guess[0]!r}?" if guess else
                f" (known: {', '.join(known)})" if known else " (the folder has none)")
        raise ConfigError(f"--connection {name!r}: no file {path.name} in "
                          f"{PREFIX}CONNECTIONS_DIR={str(folder)!r}{hint}")
    problems = [f"{key} (in {path.name}): set once for the whole deployment (in the "
                "environment or .env), not per connection"
                for key in dotenv_values(path)
                if key.upper().removeprefix(PREFIX) in DEPLOYMENT_ONLY]
    if problems:
        raise ConfigError("\n".join(problems))
    cls = type(f"Settings_{state_part(name)}", (Settings,),
               {"connection_file": path, "connection_name": name, "__module__": __name__})
    settings: Settings = cls()
    return settings


def all_settings(folder: Path | None = None) -> dict[str, Settings]:
    """Every connection's settings, by name (the first bad file stops with its error)."""
    folder = folder if folder is not None else _folder()
    return {name: settings_for(name, folder) for name in names(folder)}


def state_part(name: str) -> str:
    """The name of a connection's part of the state database: ``acme-foods`` ->
    ``conn_acme_foods`` (a PostgreSQL schema; on SQLite, part of the file name)."""
    return "conn_" + name.replace("-", "_")


def _folder() -> Path:
    folder = connections_dir()
    if folder is None:
        raise ConfigError(f"{PREFIX}CONNECTIONS_DIR is not set: named connections are the "
                          f"files <name>{SUFFIX} of that folder")
    if not folder.is_dir():
        raise ConfigError(f"{PREFIX}CONNECTIONS_DIR={str(folder)!r}: no such folder")
    return folder


__all__ = ["DEPLOYMENT_ONLY", "NAME", "all_settings", "connections_dir", "names", "selected",
           "settings_for", "state_part"]
