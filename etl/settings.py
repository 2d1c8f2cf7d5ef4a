"""Settings, built once at the edge (CLI) and passed down. Nothing below reads os.environ."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from etl.shipped import shipped_mappings_dir

#: Sandbox defaults, so that a fresh checkout talks to ``ponte sandbox`` as it starts.
SANDBOX_CRM_URL = "http://127.0.0.1:8701"
SANDBOX_ERP_URL = "http://127.0.0.1:8702/api/v1"
SANDBOX_USER_KEY = "sandbox-ploomes-user-key"
SANDBOX_APP_KEY = "1000000000001"
SANDBOX_APP_SECRET = "sandbox-omie-app-secret"


class CrmSettings(BaseModel):
    """The CRM side (``PONTE_CRM__*``)."""

    kind: Literal["ploomes"] = "ploomes"
    base_url: str = SANDBOX_CRM_URL
    user_key: SecretStr = SecretStr(SANDBOX_USER_KEY)
    requests_per_minute: int = Field(120, ge=1)
    max_concurrency: int = Field(4, ge=1)
    timeout_s: float = Field(30.0, gt=0)


class ErpSettings(BaseModel):
    """The ERP side (``PONTE_ERP__*``)."""

    kind: Literal["omie"] = "omie"
    base_url: str = SANDBOX_ERP_URL
    app_key: SecretStr = SecretStr(SANDBOX_APP_KEY)
    app_secret: SecretStr = SecretStr(SANDBOX_APP_SECRET)
    requests_per_minute: int = Field(240, ge=1)
    max_concurrency: int = Field(4, ge=1)
    timeout_s: float = Field(30.0, gt=0)
    page_size: int = Field(100, ge=1, le=500)


class Settings(BaseSettings):
    """Everything ponte reads from the environment or ``.env``."""

    model_config = SettingsConfigDict(
        env_prefix="PONTE_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
    )

    state_url: str = "sqlite:///ponte.db"
    # unset or empty: the mappings shipped with ponte (found by an installed ponte too)
    mappings_dir: Path = Field(default_factory=shipped_mappings_dir)
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

    @field_validator("mappings_dir", mode="before")
    @classmethod
    def _empty_is_shipped(cls, value: object) -> object:
        return shipped_mappings_dir() if value in ("", None) else value

    @field_validator("metrics_file", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value in ("", None) else value

    def secrets(self) -> list[str]:
        """Every secret value, for redaction."""
        values = [
            self.crm.user_key.get_secret_value(),
            self.erp.app_key.get_secret_value(),
            self.erp.app_secret.get_secret_value(),
        ]
        return [v for v in values if v]
