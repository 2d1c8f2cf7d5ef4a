"""The settings of one side (``PONTE_CRM__*`` / ``PONTE_ERP__*``): which connector, where, and
with which credentials. Part of :mod:`etl.settings`, which re-exports what is public here."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    field_validator,
)

from etl.connectors import registry
from etl.connectors.spec import ConnectorSpec
from etl.errors import ConfigError

PREFIX = "PONTE_"
NESTED = "__"
MASK = "***"


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
    # writes in flight at once (unset: max_concurrency); never above max_concurrency, nor
    # above an entity's write_concurrency in the spec (a vendor rule)
    write_concurrency: int | None = Field(None, ge=1)  # empty: unset
    timeout_s: float = Field(0.0, gt=0)
    page_size: int = Field(0, ge=1)
    # the secret a vendor's webhook calls must carry (Ploomes: the ValidationKey ponte registers)
    webhook_key: SecretStr | None = None
    _empty_writers = field_validator("write_concurrency", mode="before")(
        lambda value: None if value in ("", None) else value)
    _empty_key = field_validator("webhook_key", mode="before")(
        lambda value: None if value in ("", None) else value)
    _spec: ConnectorSpec | None = PrivateAttr(None)

    @property
    def spec(self) -> ConnectorSpec:
        """The connector spec ``kind`` names (set when the settings are built)."""
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
        most = self.max_concurrency or d.max_concurrency
        if self.write_concurrency is not None and self.write_concurrency > most:
            problems.append(f"{var}WRITE_CONCURRENCY={str(self.write_concurrency)!r}: must be <= "
                            f"{var}MAX_CONCURRENCY ({most}): writes are requests too")
        base_url = self.base_url or spec.base_url or ""
        if not base_url:
            problems.append(f"{var}BASE_URL: required ({spec.title} has no default)")
        if problems:
            raise ConfigError(join_problems(problems))
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


def join_problems(problems: list[str]) -> str:
    """One problem as is; several as a count and one indented line each."""
    if len(problems) == 1:
        return problems[0]
    return f"{len(problems)} settings are wrong:\n  " + "\n  ".join(problems)


__all__ = ["MASK", "NESTED", "PREFIX", "CrmSettings", "ErpSettings", "SideSettings",
           "credential_names", "join_problems"]
