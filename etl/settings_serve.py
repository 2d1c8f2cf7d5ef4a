"""The settings of ``ponte serve`` (``PONTE_SERVE__*``) and of its alerts (``PONTE_ALERTS__*``).
Part of :mod:`etl.settings`, which re-exports what is public here.

Secrets (the status page's token and password, the SMTP URL with its password) are SecretStr:
never logged, never shown in an error."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator


def empty_is_none(value: object) -> object:
    """An empty variable (``NAME=`` in ``.env``) is unset."""
    return None if value in ("", None) else value


class ServeSettings(BaseModel):
    """``ponte serve``: where it listens, how the status page is protected, how webhook events
    are turned into syncs."""

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    # the status page, /metrics: a bearer token (or ?token=), and/or HTTP basic auth
    status_token: SecretStr | None = None
    status_user: str = ""
    status_password: SecretStr | None = None
    # the address the vendors reach ponte's webhooks at (behind the reverse proxy), for
    # ``ponte webhooks register``: e.g. https://ponte.example.com
    public_url: str = ""
    # an event waits this long for more events of the same record before its sync runs
    debounce_s: float = Field(1.0, ge=0)

    _empty = field_validator("status_token", "status_password", mode="before")(empty_is_none)


class AlertSettings(BaseModel):
    """Alerts: where they go, and when a condition starts."""

    model_config = ConfigDict(extra="forbid")

    webhook_url: SecretStr | None = None  # a chat tool's incoming-webhook URL (JSON POST)
    smtp_url: SecretStr | None = None  # smtp://user:password@host:port (smtps:// for TLS)
    email_from: str = ""
    email_to: str = ""  # comma-separated
    quarantine_threshold: int = Field(50, ge=0)  # records waiting, over all entities
    lag_threshold_s: int = Field(3600, ge=0)  # a side's watermark older than this
    backlog_stall_s: int = Field(300, ge=0)  # pending webhook events older than this

    _empty = field_validator("webhook_url", "smtp_url", mode="before")(empty_is_none)


__all__ = ["AlertSettings", "ServeSettings", "empty_is_none"]
