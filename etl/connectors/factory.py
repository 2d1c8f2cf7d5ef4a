"""Build the connectors a pair of settings asks for. The one place that maps a connector kind
(``ploomes``, ``omie``) to its class."""

from __future__ import annotations

import httpx

from etl.connectors.base import Connector
from etl.errors import ConfigError
from etl.mapping.models import Side
from etl.settings import Settings


def _check_url(name: str, url: str) -> None:
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"{name} must be an http(s) URL, got {url!r}")


def build_connectors(
    settings: Settings,
    *,
    crm_client: httpx.Client | None = None,
    erp_client: httpx.Client | None = None,
) -> dict[Side, Connector]:
    """Connectors for both sides. Clients may be injected (tests use the in-process sandbox)."""
    from etl.connectors.omie import OmieConnector
    from etl.connectors.ploomes import PloomesConnector

    crm, erp = settings.crm, settings.erp
    if crm.kind != "ploomes":
        raise ConfigError(f"PONTE_CRM__KIND: unknown connector {crm.kind!r} (valid: ploomes)")
    if erp.kind != "omie":
        raise ConfigError(f"PONTE_ERP__KIND: unknown connector {erp.kind!r} (valid: omie)")
    if crm_client is None:
        _check_url("PONTE_CRM__BASE_URL", crm.base_url)
        crm_client = httpx.Client(base_url=crm.base_url, timeout=crm.timeout_s)
    if erp_client is None:
        _check_url("PONTE_ERP__BASE_URL", erp.base_url)
        base = erp.base_url.rstrip("/") + "/"
        erp_client = httpx.Client(base_url=base, timeout=erp.timeout_s)
    return {
        "crm": PloomesConnector(
            crm_client,
            user_key=crm.user_key.get_secret_value(),
            requests_per_minute=crm.requests_per_minute,
            max_concurrency=crm.max_concurrency,
        ),
        "erp": OmieConnector(
            erp_client,
            app_key=erp.app_key.get_secret_value(),
            app_secret=erp.app_secret.get_secret_value(),
            requests_per_minute=erp.requests_per_minute,
            max_concurrency=erp.max_concurrency,
            page_size=erp.page_size,
        ),
    }
