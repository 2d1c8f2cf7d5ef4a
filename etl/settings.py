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
from typing import Annotated, Any, Literal

from dotenv import dotenv_values
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError
from pydantic_settings.sources import DotenvType

from etl.connectors import registry
from etl.connectors.spec import ConnectorSpec
from etl.errors import ConfigError
from etl.shipped import shipped_mappings_dir

#: The sandbox simulators' address and credentials (the built-in specs carry the same values as
#: their defaults, so that a fresh checkout talks to ``ponte sandbox`` as it starts).
SANDBOX_CRM_URL = "http://127.0.0.1:8701"
SANDBOX_ERP_URL = "http://127.0.0.1:8702/api/v1"
SANDBOX_USER_KEY = "sandbox-ploomes-user-key"
SANDBOX_APP_KEY = "1000000000001"
SANDBOX_APP_SECRET = "sandbox-omie-app-secret"

PREFIX = "PONTE_"
NESTED = "__"
#: Reserved for the test suite and its tools (PONTE_TEST_POSTGRES_URL, ...): never a setting.
RESERVED_PREFIX = "PONTE_TEST_"
MASK = "***"
#: loguru's levels, lowest first
LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL")


def _usable_secret(value: SecretStr) -> SecretStr:
    """A credential pasted with quotes, spaces or a line break never authenticates: say so now."""
    text = value.get_secret_value()
    if not text:
        raise ValueError("must not be empty")
    if any(ch.isspace() or ch in "\"'" for ch in text):
        raise ValueError("contains spaces, line breaks or quotes; copy the key without them")
    return value


class SideSettings(BaseModel):
    """One side (``PONTE_CRM__*`` / ``PONTE_ERP__*``): which connector (``KIND``, a spec in the
    registry), where, and with which credentials;
    credential names are the ones the spec declares (``PONTE_CRM__CREDENTIALS__<NAME>``).
    Empty means unset; :meth:`resolve` fills in the spec's values."""

    model_config = ConfigDict(extra="forbid")

    kind: str
    base_url: str = ""  # "": the spec's base URL (the sandbox for built-in connectors)
    credentials: dict[str, Annotated[SecretStr, AfterValidator(_usable_secret)]] = {}
    # unset (the default 0, never validated) = the spec's default; a value set must be >= 1
    requests_per_minute: int = Field(0, ge=1)
    max_concurrency: int = Field(0, ge=1)
    timeout_s: float = Field(0.0, gt=0)
    page_size: int = Field(0, ge=1)
    _spec: ConnectorSpec | None = PrivateAttr(None)

    @property
    def spec(self) -> ConnectorSpec:
        """The connector spec ``kind`` names (set when :class:`Settings` is built)."""
        if self._spec is None:
            raise ConfigError(f"connector {self.kind!r}: settings not resolved")
        return self._spec

    def credential(self, name: str) -> str:
        try:
            return self.credentials[name].get_secret_value()
        except KeyError:
            raise ConfigError(f"connector {self.kind!r} has no credential {name!r} (valid: "
                              f"{', '.join(sorted(self.credentials)) or 'none'})") from None

    def resolve(self, side: str, connectors_dir: Path | None) -> SideSettings:
        """A copy with the spec's defaults filled in; :class:`ConfigError` naming each
        variable that is wrong (unknown kind, a credential the spec does not declare, one it
        needs that is missing)."""
        var = f"{PREFIX}{side.upper()}{NESTED}"
        spec = registry.get(self.kind, connectors_dir, setting=f"{var}KIND", side=side).spec
        problems = []
        creds = dict(self.credentials)
        for name in sorted(set(creds) - set(spec.credentials)):
            problems.append(f"{var}CREDENTIALS{NESTED}{name.upper()}={MASK}: {spec.title} has no "
                            f"such credential (valid: {_credential_vars(var, spec)})")
        for name, declared in spec.credentials.items():
            if name not in creds:
                if declared.default is None:
                    problems.append(f"{var}CREDENTIALS{NESTED}{name.upper()}: required by "
                                    f"{spec.title} ({declared.description or 'a credential'})")
                else:
                    creds[name] = SecretStr(declared.default)
        d = spec.defaults
        if d.page_size_max is not None and self.page_size > d.page_size_max:
            problems.append(f"{var}PAGE_SIZE={str(self.page_size)!r}: must be <= {d.page_size_max} "
                            f"({spec.title}'s largest page)")
        base_url = self.base_url or spec.base_url or ""
        if not base_url:
            problems.append(f"{var}BASE_URL: required ({spec.title} has no default)")
        if problems:
            raise ConfigError(_join(problems))
        out = self.model_copy(update={
            "base_url": base_url, "credentials": creds,
            "requests_per_minute": self.requests_per_minute or d.requests_per_minute,
            "max_concurrency": self.max_concurrency or d.max_concurrency,
            "timeout_s": self.timeout_s or d.timeout_s,
            "page_size": self.page_size or d.page_size})
        out._spec = spec
        return out


def _credential_vars(var: str, spec: ConnectorSpec) -> str:
    names = [f"{var}CREDENTIALS{NESTED}{n.upper()}" for n in sorted(spec.credentials)]
    return ", ".join(names) or "none"


class CrmSettings(SideSettings):
    kind: str = registry.DEFAULT_KINDS["crm"]


class ErpSettings(SideSettings):
    kind: str = registry.DEFAULT_KINDS["erp"]


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
    schedule_customers: str = "*/5 * * * *"
    schedule_products: str = "*/15 * * * *"
    schedule_orders: str = "*/5 * * * *"

    def __init__(self, **values: Any) -> None:
        env_file = values.get("_env_file", self.model_config.get("env_file"))
        problems = check_names(os.environ, read_env_files(env_file))
        problems += _unknown_arguments(values)
        if problems:
            raise ConfigError(_join(problems))
        message = ""
        try:
            super().__init__(**values)
        except ValidationError as exc:
            message = _join(describe_errors(exc, sources=_sources(env_file)))
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

    @field_validator("connectors_dir", mode="before")
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
        return [v for v in values if v]


def connectors_dir_setting(env_file: Any = ".env") -> Path | None:
    """``PONTE_CONNECTORS_DIR`` alone (environment, then ``.env``): what ``ponte connectors
    list`` needs, without the rest of the settings having to be right."""
    value = os.environ.get(f"{PREFIX}CONNECTORS_DIR")
    if value is None:
        value = read_env_files(env_file).get(f"{PREFIX}CONNECTORS_DIR")
    return Path(value) if value else None


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
    """Every valid variable name -> whether it holds a secret."""
    groups = _groups()
    names: dict[str, bool] = {}
    for name, field in Settings.model_fields.items():
        if name in groups:
            for sub, subfield in groups[name].model_fields.items():
                if sub == "credentials":  # named by the connector spec: credential_names()
                    continue
                names[f"{PREFIX}{name.upper()}{NESTED}{sub.upper()}"] = _is_secret(subfield.annotation)
        else:
            names[f"{PREFIX}{name.upper()}"] = _is_secret(field.annotation)
    return names


def credential_names(sources: Iterable[Mapping[str, str | None]]) -> dict[str, bool]:
    """``PONTE_<SIDE>__CREDENTIALS__<NAME>`` for each credential the spec of each side's kind
    (as set in ``sources``, or the default) declares -> whether it is a secret. A kind that is
    not found adds none (building the settings names it)."""
    merged: dict[str, str | None] = {}
    for source in sources:
        merged.update({k.upper(): v for k, v in source.items()})
    folder = merged.get(f"{PREFIX}CONNECTORS_DIR") or None
    names: dict[str, bool] = {}
    for side in ("crm", "erp"):
        var = f"{PREFIX}{side.upper()}{NESTED}"
        kind = merged.get(f"{var}KIND") or registry.DEFAULT_KINDS[side]
        try:
            spec = registry.get(kind, Path(folder) if folder else None, side=side).spec
        except ConfigError:
            continue
        for name, declared in spec.credentials.items():
            names[f"{var}CREDENTIALS{NESTED}{name.upper()}"] = declared.secret
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
                env_file: Mapping[str, str | None] | None = None) -> list[str]:
    """One message per unknown ``PONTE_*`` name in ``environ`` or the ``.env`` values.

    Names are compared case-insensitively (as pydantic-settings reads them); names starting with
    :data:`RESERVED_PREFIX` are skipped.
    """
    valid = setting_names() | credential_names([environ, env_file or {}])
    groups = {f"{PREFIX}{g.upper()}" for g in _groups()}
    groups |= {f"{PREFIX}{g.upper()}{NESTED}CREDENTIALS" for g in _groups()}
    seen: dict[str, tuple[str, str | None, str]] = {}
    for where, source in (("the environment", environ), (".env", env_file or {})):
        for name, value in source.items():
            upper = name.upper()
            if (upper.startswith(PREFIX) and not upper.startswith(RESERVED_PREFIX)
                    and upper not in valid and upper not in seen):
                seen[upper] = (name, value, where)
    problems = []
    for upper in sorted(seen):
        name, value, where = seen[upper]
        suffix = "" if where == "the environment" else " (in .env)"
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


# ----------------------------------------------------------------------------- values

_PLAIN = {
    "int_parsing": "not a valid integer",
    "int_type": "not a valid integer",
    "int_from_float": "not a valid integer (it has decimals)",
    "float_parsing": "not a valid number",
    "float_type": "not a valid number",
    "bool_parsing": "not a valid boolean (use true or false)",
    "path_type": "not a valid path",
}
_BOUNDS = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<",
           "less_than_equal": "<="}


def _what(error: ErrorDetails) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind in _PLAIN:
        return _PLAIN[kind]
    if kind in _BOUNDS:
        bound = next(iter(ctx.values()), "?")
        return f"must be {_BOUNDS[kind]} {bound}"
    if kind == "literal_error":
        return f"must be {ctx.get('expected', '?')}"
    if kind == "extra_forbidden":
        return "unknown setting"
    msg = str(error["msg"])
    msg = msg.removeprefix("Value error, ")
    return msg[:1].lower() + msg[1:]


def describe_errors(exc: ValidationError, *, sources: Mapping[str, str] | None = None) -> list[str]:
    """One line per pydantic error: ``VARIABLE='value': what is wrong`` (secrets masked)."""
    secret_of = setting_names()
    lines = []
    for e in exc.errors():
        var = PREFIX + NESTED.join(str(p).upper() for p in e["loc"])
        secret = secret_of.get(var, True)  # a name we cannot place is treated as a secret
        where = (sources or {}).get(var, "")
        value = "" if e["type"] == "missing" else f"={shown(e.get('input'), secret=secret)}"
        lines.append(f"{var}{value}{where}: {_what(e)}")
    return lines


def _join(problems: list[str]) -> str:
    if len(problems) == 1:
        return problems[0]
    return f"{len(problems)} settings are wrong:\n  " + "\n  ".join(problems)
