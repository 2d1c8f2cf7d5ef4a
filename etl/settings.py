"""Settings, built once at the edge (CLI) and passed down. Nothing below reads os.environ.

Building :class:`Settings` checks what the operator wrote before anything runs: every
``PONTE_*`` name in the environment or ``.env`` must be a known setting (a typo is named with the
closest valid name), and a bad value names its variable and the value (secrets shown as ``***``).
Both raise :class:`~etl.errors.ConfigError`, so every entry point stops before writing anything.
Names starting with ``PONTE_TEST_`` are reserved for the test suite and never read here.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from dotenv import dotenv_values
from loguru import logger
from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError
from pydantic_settings.sources import DotEnvSettingsSource, DotenvType

from etl.errors import ConfigError
from etl.settings_serve import AlertSettings, ServeSettings
from etl.settings_sides import (
    MASK,
    NESTED,
    PREFIX,
    CrmSettings,
    ErpSettings,
    SideSettings,
    credential_names,
    join_problems,
)
from etl.shipped import shipped_mappings_dir

if TYPE_CHECKING:
    from etl.state import Store

#: Reserved for the test suite and its tools (PONTE_TEST_POSTGRES_URL, ...): never a setting.
RESERVED_PREFIX = "PONTE_TEST_"
#: loguru's levels, lowest first
LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL")
#: ``ponte run``'s schedule of an entity the operator gives none (``PONTE_SCHEDULE__<ENTITY>``)
DEFAULT_SCHEDULES = {"customers": "*/5 * * * *", "products": "*/15 * * * *",
                     "orders": "*/5 * * * *"}
#: the form before schedules became one map: ``PONTE_SCHEDULE_CUSTOMERS`` (still read, with a
#: warning naming the new variable)
_OLD_SCHEDULE = re.compile(rf"{PREFIX}SCHEDULE_([A-Z0-9][A-Z0-9_]*)")


class Settings(BaseSettings):
    """Everything ponte reads from the environment or ``.env``.

    Raises :class:`ConfigError` (never pydantic's errors) for an unknown ``PONTE_*`` name or a
    bad value; the message names each variable.
    """

    model_config = SettingsConfigDict(
        env_prefix=PREFIX,
        env_nested_delimiter=NESTED,
        env_file=".env",
        # unknown names are found by check_names (which knows the reserved PONTE_TEST_ prefix)
        extra="ignore",
    )

    state_url: str = "sqlite:///ponte.db"
    # unset or empty: the mappings shipped with ponte (found by an installed ponte too)
    mappings_dir: Path = Field(default_factory=shipped_mappings_dir)
    # unset or empty: only the built-in connector specs (and those of installed packages)
    connectors_dir: Path | None = None
    crm: CrmSettings = CrmSettings()
    erp: ErpSettings = ErpSettings()
    serve: ServeSettings = ServeSettings()
    alerts: AlertSettings = AlertSettings()
    log_format: Literal["text", "json"] = "text"
    log_level: str = "INFO"
    metrics_file: Path | None = None
    # must exceed the worst clock skew between ponte and a source plus how late a write can
    # become visible after its timestamp: with lookback == skew (300/300) the drill missed
    # edits at the boundary; 600 covers a 5-minute skew with 5 minutes to spare
    lookback_s: int = Field(600, ge=0, description="overlap re-read below the watermark")
    safety_lag_s: int = Field(5, ge=0, description="signpost = run start minus this lag")
    lock_lease_s: int = Field(900, ge=10)
    max_delete_share: float = Field(0.1, ge=0, le=1)
    # PONTE_SCHEDULE__<ENTITY> (or PONTE_SCHEDULE as JSON), entity -> schedule; once built:
    # those set, plus the DEFAULT_SCHEDULES of the connectors' other entities
    schedule: dict[str, str] = Field(default_factory=dict)
    # many companies (etl/connections.py): the folder of the named connections' files, and the
    # Celery broker of ``ponte worker`` / ``ponte schedule``
    connections_dir: Path | None = None
    broker_url: str = "amqp://guest:guest@127.0.0.1:5672//"
    # where the rate limits of a vendor account are shared by every process using it (a
    # redis:// URL); empty: each process limits its own requests
    limiter_url: str = ""

    #: a named connection's file and name (set on the subclass etl/connections.py builds for
    #: it): the file's values win over the environment and .env
    connection_file: ClassVar[Path | None] = None
    connection_name: ClassVar[str | None] = None

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        if cls.connection_file is None:
            return init_settings, env_settings, dotenv_settings, file_secret_settings
        own = DotEnvSettingsSource(settings_cls, env_file=cls.connection_file)
        return init_settings, own, env_settings, dotenv_settings, file_secret_settings

    @property
    def connection(self) -> str | None:
        """The named connection these settings are of (None: the single-connection settings)."""
        return self.connection_name

    def open_state(self, *, migrate: bool = True) -> Store:
        """The state store of these settings' connection (each connection has its own part of
        the state database: etl/state/db.py)."""
        from etl.state import Store

        return Store.open(self.state_url, migrate=migrate, connection=self.connection)

    def __init__(self, **values: Any) -> None:
        env_file = values.get("_env_file", self.model_config.get("env_file"))
        file_values = read_env_files(env_file)
        problems = check_names(os.environ, file_values)
        if self.connection_file is not None:
            problems += check_names({}, dotenv_values(self.connection_file),
                                    file_label=self.connection_file.name)
        problems += _unknown_arguments(values)
        if problems:
            raise ConfigError(join_problems(problems))
        message = ""
        try:
            super().__init__(**values)
        except ValidationError as exc:
            from etl.settings_errors import describe_errors

            message = join_problems(describe_errors(exc, sources=_sources(env_file)))
        except SettingsError as exc:
            message = str(exc)
        if message:  # raised outside the except: the pydantic error (with inputs) is not chained
            raise ConfigError(message)
        problems = []
        for side in ("crm", "erp"):
            try:
                setattr(self, side, getattr(self, side).resolve(side, self.connectors_dir))
            except ConfigError as exc:
                problems.append(str(exc))
        if problems:
            raise ConfigError("\n".join(problems))
        old = old_schedules(os.environ, file_values)
        new = {k.lower(): v for k, v in self.schedule.items()}
        self.schedule = {k: v for k, v in {**old, **new}.items() if v.strip()}
        problems = self._check_schedules(set(old) - set(new))
        if problems:
            raise ConfigError(join_problems(problems))
        entities = set(self.crm.spec.entities) | set(self.erp.spec.entities)
        self.schedule = {**{e: s for e, s in DEFAULT_SCHEDULES.items() if e in entities},
                         **self.schedule}

    def _check_schedules(self, old: set[str]) -> list[str]:
        """Each schedule set names an entity of the connector specs and is a valid schedule
        (``old``: the entities whose schedule came from an old-form variable)."""
        from etl.scheduler import trigger_for

        valid = sorted(set(self.crm.spec.entities) | set(self.erp.spec.entities))
        problems = []
        for name, value in sorted(self.schedule.items()):
            var = f"{PREFIX}SCHEDULE_{name.upper()}" if name in old else schedule_var(name)
            if name not in valid:
                guess = difflib.get_close_matches(name, valid, n=1)
                hint = f"; did you mean {schedule_var(guess[0])}?" if guess else ""
                problems.append(f"{var}={value!r}: {self.crm.spec.title} and "
                                f"{self.erp.spec.title} have no entity {name!r} (valid: "
                                f"{', '.join(valid)}){hint}")
                continue
            try:
                trigger_for(value, setting=var.removeprefix(PREFIX))
            except ConfigError as exc:
                problems.append(str(exc))
        return problems

    def schedule_of(self, entity: str) -> str | None:
        """``ponte run``'s schedule of ``entity``: the one set, else its default, else None."""
        return self.schedule.get(entity)

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
        return level

    @field_validator("mappings_dir", mode="before")
    @classmethod
    def _empty_is_shipped(cls, value: object) -> object:
        return shipped_mappings_dir() if value in ("", None) else value

    @field_validator("connectors_dir", "connections_dir", mode="before")
    @classmethod
    def _empty_dir_is_none(cls, value: object) -> object:
        return None if value in ("", None) else value

    @field_validator("metrics_file", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value in ("", None) else value

    def secrets(self) -> list[str]:
        """Every secret value, for redaction."""
        values = [v.get_secret_value() for side in (self.crm, self.erp)
                  for v in side.credentials.values()]
        more = [self.crm.webhook_key, self.erp.webhook_key, self.serve.status_token,
                self.serve.status_password, self.alerts.webhook_url, self.alerts.smtp_url]
        values += [v.get_secret_value() for v in more if v is not None]
        values += [url_password(u) for u in (self.broker_url, self.state_url, self.limiter_url)]
        return [v for v in values if v and v != "guest"]


def url_password(url: str) -> str:
    """The password in a URL such as ``amqp://user:password@host/`` ('' when none)."""
    match = _URL_PASSWORD.search(url)
    return match.group(0)[len(match.group(1)):-1] if match else ""


def connectors_dir_setting(env_file: Any = ".env") -> Path | None:
    """``PONTE_CONNECTORS_DIR`` alone (environment, then ``.env``): what ``ponte connectors
    list`` needs, without the rest of the settings having to be right."""
    value = os.environ.get(f"{PREFIX}CONNECTORS_DIR")
    if value is None:
        value = read_env_files(env_file).get(f"{PREFIX}CONNECTORS_DIR")
    return Path(value) if value else None


def schedule_var(entity: str) -> str:
    """The variable of ``entity``'s schedule: ``PONTE_SCHEDULE__CUSTOMERS``."""
    return f"{PREFIX}SCHEDULE{NESTED}{entity.upper()}"


def old_schedules(*sources: Mapping[str, str | None]) -> dict[str, str]:
    """Schedules set in the old form ``PONTE_SCHEDULE_<ENTITY>`` (entity -> schedule; the first
    source wins, as the environment wins over ``.env``), each with a warning naming the new
    variable. A schedule set both ways keeps the new one."""
    found: dict[str, str] = {}
    for source in reversed(sources):
        for name, value in source.items():
            match = _OLD_SCHEDULE.fullmatch(name.upper())
            if match and value is not None:
                found[match.group(1).lower()] = value
    for entity in sorted(found):
        logger.warning("{}SCHEDULE_{} is deprecated: rename it {}", PREFIX, entity.upper(),
                       schedule_var(entity))
    return found


# ----------------------------------------------------------------------------- names


def _groups() -> dict[str, type[BaseModel]]:
    """Nested setting groups: field name -> model (``crm`` -> CrmSettings)."""
    out: dict[str, type[BaseModel]] = {}
    for name, field in Settings.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out[name] = ann
    return out


def setting_names() -> dict[str, bool]:
    """Every valid variable name -> whether it holds a secret. Of the schedules, those of the
    entities with a default (any ``PONTE_SCHEDULE__<ENTITY>`` is accepted: see check_names)."""
    groups = _groups()
    names = {schedule_var(entity): False for entity in DEFAULT_SCHEDULES}
    names[f"{PREFIX}CONNECTION"] = False  # which named connection (etl/connections.py)
    for name, field in Settings.model_fields.items():
        if name == "schedule":
            continue
        if name in groups:
            for sub, subfield in groups[name].model_fields.items():
                if sub == "credentials":  # named by the connector spec: credential_names()
                    continue
                names[f"{PREFIX}{name.upper()}{NESTED}{sub.upper()}"] = _is_secret(subfield.annotation)
        else:
            names[f"{PREFIX}{name.upper()}"] = _is_secret(field.annotation)
    return names


def _is_secret(annotation: Any) -> bool:
    return annotation is SecretStr or SecretStr in getattr(annotation, "__args__", ())


_SECRET_WORDS = re.compile(r"KEY|SECRET|PASS|TOKEN|HASH", re.IGNORECASE)
_URL_PASSWORD = re.compile(r"(//[^/:@\s]*:)[^@/\s]*@")


def shown(value: object, *, secret: bool, quote: bool = True) -> str:
    """A value as an error message may show it: secrets masked, URL passwords masked, short."""
    if secret:
        return MASK
    text = _URL_PASSWORD.sub(rf"\1{MASK}@", str(value))
    if len(text) > 60:
        text = text[:57] + "..."
    return repr(text) if quote else text


def closest(name: str, valid: Iterable[str]) -> str | None:
    """The valid name closest to ``name`` (compared without the common prefix), if any is close."""
    by_tail = {v[len(PREFIX):]: v for v in valid}
    tail = name.upper().removeprefix(PREFIX)
    match = difflib.get_close_matches(tail, list(by_tail), n=1, cutoff=0.6)
    return by_tail[match[0]] if match else None


def check_names(environ: Mapping[str, str],
                env_file: Mapping[str, str | None] | None = None, *,
                file_label: str = ".env") -> list[str]:
    """One message per unknown ``PONTE_*`` name in ``environ`` or the ``.env`` values.

    Names are compared case-insensitively (as pydantic-settings reads them); names starting with
    :data:`RESERVED_PREFIX` are skipped.
    """
    valid = setting_names() | credential_names([environ, env_file or {}])
    groups = {f"{PREFIX}{g.upper()}" for g in _groups()}
    groups |= {f"{PREFIX}{g.upper()}{NESTED}CREDENTIALS" for g in _groups()}
    seen: dict[str, tuple[str, str | None, str]] = {}
    for where, source in (("the environment", environ), (file_label, env_file or {})):
        for name, value in source.items():
            upper = name.upper()
            if (upper.startswith(PREFIX) and not upper.startswith(RESERVED_PREFIX)
                    and upper not in valid and upper not in seen and not _schedule_name(upper)):
                seen[upper] = (name, value, where)
    problems = []
    for upper in sorted(seen):
        name, value, where = seen[upper]
        suffix = "" if where == "the environment" else f" (in {where})"
        if upper in groups:
            fields = sorted(v for v in valid if v.startswith(upper + NESTED))
            problems.append(f"{name}{suffix}: a group, not a setting; set its fields one by "
                            f"one: {', '.join(fields)}")
            continue
        guess = closest(upper, valid)
        secret = bool(_SECRET_WORDS.search(upper)) or (guess is not None and valid[guess])
        hint = (f"did you mean {guess}?" if guess else
                "no setting has a similar name (every setting is listed in .env.example)")
        problems.append(f"{name}={shown(value or '', secret=secret, quote=False)}{suffix}: "
                        f"unknown setting; {hint}")
    return problems


def _schedule_name(upper: str) -> bool:
    """``PONTE_SCHEDULE__<ENTITY>``, ``PONTE_SCHEDULE`` (the map as JSON) or the old
    ``PONTE_SCHEDULE_<ENTITY>``: entities are checked against the connector specs once those
    are known (:class:`Settings`)."""
    var = schedule_var("")
    return ((upper.startswith(var) and len(upper) > len(var)) or upper == var[:-len(NESTED)]
            or _OLD_SCHEDULE.fullmatch(upper) is not None)


def _unknown_arguments(values: Mapping[str, Any]) -> list[str]:
    """Keyword arguments given in code that are not settings (pydantic would ignore them)."""
    problems = []
    for k in sorted(values):
        if k.startswith("_") or k in Settings.model_fields:
            continue
        guess = closest(PREFIX + k, setting_names())
        hint = f"did you mean {guess[len(PREFIX):].lower()}?" if guess else "no such setting"
        problems.append(f"Settings({k}=...): unknown setting; {hint}")
    return problems


def read_env_files(env_file: DotenvType | None) -> dict[str, str | None]:
    """The values of the ``.env`` file(s) pydantic-settings would read (later files win)."""
    if env_file is None:
        return {}
    paths: Sequence[Path | str] = [env_file] if isinstance(env_file, Path | str) else env_file
    values: dict[str, str | None] = {}
    for p in paths:
        path = Path(p).expanduser()
        if path.is_file():
            values.update(dotenv_values(path))
    return values


def _sources(env_file: DotenvType | None) -> dict[str, str]:
    env = {k.upper(): "" for k in os.environ}
    return {k.upper(): " (in .env)" for k in read_env_files(env_file) if k.upper() not in env}


__all__ = ["DEFAULT_SCHEDULES", "LOG_LEVELS", "MASK", "NESTED", "PREFIX", "RESERVED_PREFIX",
           "CrmSettings", "ErpSettings", "Settings", "SideSettings", "check_names", "closest",
           "connectors_dir_setting", "credential_names", "old_schedules",
           "read_env_files", "schedule_var", "setting_names", "shown"]
