"""Build the connectors a pair of settings asks for: each side's ``KIND`` names a spec in the
registry (:mod:`etl.connectors.registry`); the spec is run by the generic connector, or by a
hand-written implementation it names (no built-in spec does)."""

from __future__ import annotations

import importlib
import ssl
import time
from collections.abc import Callable
from functools import cache
from typing import Any

import httpx

from etl.connectors.base import Connector
from etl.connectors.schema import SCHEMAS
from etl.connectors.spec import ConnectorSpec
from etl.errors import ConfigError
from etl.mapping.models import Side
from etl.settings import Settings, SideSettings


def _check_url(name: str, url: str) -> None:
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"{name} must be an http(s) URL, got {url!r}")


def implementation(spec: ConnectorSpec) -> Any:
    """The class that runs ``spec``: its ``implementation`` or the generic connector."""
    if spec.implementation is None:
        from etl.connectors.generic import GenericConnector

        return GenericConnector
    module, _, name = spec.implementation.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"connector {spec.name!r}: implementation {spec.implementation!r} "
                          f"cannot be loaded ({exc})") from None


@cache
def tls_context() -> ssl.SSLContext:
    """The TLS context every client of this process verifies servers with, as httpx makes it
    by default (``SSL_CERT_FILE``/``SSL_CERT_DIR``, else certifi's bundle). Made once: loading
    the bundle takes ~33 ms a context, and every command made one per side."""
    return httpx.create_ssl_context()


def build_connector(side: Side, conf: SideSettings, client: httpx.Client | None = None, *,
                    sleep: Callable[[float], None] = time.sleep) -> Connector:
    """One side's connector; ``client`` may be injected (tests use in-process simulators), and
    ``sleep`` (every wait: backoff, rate limits, a wait the system asks for)."""
    spec = conf.spec
    if client is None:
        _check_url(f"PONTE_{side.upper()}__BASE_URL", conf.base_url)
        client = httpx.Client(base_url=conf.base_url.rstrip("/") + "/", timeout=conf.timeout_s,
                              verify=tls_context())
    SCHEMAS.register(spec)  # a spec from another source may override a built-in one
    connector: Connector = implementation(spec).from_settings(side, conf, client, sleep=sleep)
    return connector


def build_connectors(
    settings: Settings,
    *,
    crm_client: httpx.Client | None = None,
    erp_client: httpx.Client | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[Side, Connector]:
    """Connectors for both sides. Clients may be injected (tests use the in-process sandbox),
    and so may ``sleep``, so that retries and waits cost a test no time. With
    ``PONTE_LIMITER_URL`` set, each side's rate limit is the vendor account's, shared by every
    process (:mod:`etl.connectors.shared_limit`)."""
    conns: dict[Side, Connector] = {
        "crm": build_connector("crm", settings.crm, crm_client, sleep=sleep),
        "erp": build_connector("erp", settings.erp, erp_client, sleep=sleep)}
    if settings.limiter_url:
        for side, conn in conns.items():
            share_limit(conn, settings.crm if side == "crm" else settings.erp,
                        settings.limiter_url, sleep=sleep)
    return conns


def share_limit(conn: Connector, conf: SideSettings, limiter_url: str, *,
                sleep: Callable[[float], None] = time.sleep) -> None:
    """Make ``conn``'s HTTP session wait for its vendor account's limit in Redis at
    ``limiter_url`` (:class:`ConfigError` naming PONTE_LIMITER_URL when it cannot be used)."""
    from etl.binding import account_credential
    from etl.connectors.http import HttpSession
    from etl.connectors.shared_limit import SharedRateLimiter, account_key, client_for

    session = getattr(conn, "session", None)
    if not isinstance(session, HttpSession):
        return  # a hand-written connector with its own HTTP access keeps its own limiter
    field = account_credential(conf.spec)
    key = account_key(conf.kind, conf.base_url, conf.credential(field) if field else "")
    session.limiter = SharedRateLimiter(client_for(limiter_url), key,
                                        session.limiter.per_minute, url=limiter_url, sleep=sleep)
