"""The read-only routes of ``ponte serve``: the status page (``GET /``), ``GET /metrics`` and
``GET /healthz``.

``/`` and ``/metrics`` show the state of the sync (record keys, vendor error text), so they are
never open by default: they need ``PONTE_SERVE__STATUS_TOKEN`` (sent as ``Authorization: Bearer
<token>`` or ``?token=<token>``) or ``PONTE_SERVE__STATUS_USER`` and
``PONTE_SERVE__STATUS_PASSWORD`` (HTTP basic auth); with both set either is accepted. With
neither they answer 403 naming the settings. ``/healthz`` is open (a load balancer's probe): it
says only whether the state database answers.

The page is rendered on the server (jinja2, autoescaped: quarantine reasons and errors are
vendor text), reloads itself every 30 s and needs no JavaScript. Each request opens the state
database, reads, and closes it (see :mod:`etl.serve.status_data`).
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Callable
from datetime import UTC, datetime

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from etl.errors import ConfigError
from etl.serve import status_view
from etl.serve.status_data import metrics_text, page_data, ping
from etl.settings import Settings
from etl.settings_serve import ServeSettings

__all__ = ["METRICS_CONTENT_TYPE", "status_routes"]

METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
REALM = 'realm="ponte"'
NOT_CONFIGURED = (
    "the status page and /metrics are off: set PONTE_SERVE__STATUS_TOKEN (or "
    "PONTE_SERVE__STATUS_USER and PONTE_SERVE__STATUS_PASSWORD) to open them\n")

Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def status_routes(settings: Settings, *, now: Clock = _utcnow) -> list[BaseRoute]:
    """``/``, ``/metrics`` and ``/healthz`` for ``settings``; ``now`` is the clock the page and
    the lag figures read (tests pass a fixed one)."""
    env = Environment(loader=PackageLoader("etl.serve", "templates"),
                      autoescape=select_autoescape(default=True, default_for_string=True))
    status_view.install_filters(env)
    template = env.get_template("status.html")

    async def page(request: Request) -> Response:
        refused = check_auth(request, settings.serve)
        if refused is not None:
            return refused
        try:
            data = await run_in_threadpool(page_data, settings, now=now())
        except ConfigError as exc:  # the state or the mappings cannot be read: say which
            return PlainTextResponse(f"status unavailable: {exc}\n", status_code=503)
        html = template.render(page=data, view=status_view.PageView(data))
        return HTMLResponse(html, headers=_NO_STORE)

    async def metrics(request: Request) -> Response:
        refused = check_auth(request, settings.serve)
        if refused is not None:
            return refused
        try:
            text = await run_in_threadpool(metrics_text, settings, now=now())
        except ConfigError as exc:
            return PlainTextResponse(f"metrics unavailable: {exc}\n", status_code=503)
        return Response(text, media_type=METRICS_CONTENT_TYPE, headers=_NO_STORE)

    async def healthz(request: Request) -> Response:
        try:
            await run_in_threadpool(ping, settings)
        except ConfigError as exc:  # names PONTE_STATE_URL, its password hidden
            return PlainTextResponse(f"unavailable: {exc}\n", status_code=503,
                                     headers=_NO_STORE)
        return PlainTextResponse("ok\n", headers=_NO_STORE)

    return [Route("/", page, methods=["GET"], name="status"),
            Route("/metrics", metrics, methods=["GET"], name="metrics"),
            Route("/healthz", healthz, methods=["GET"], name="healthz")]


_NO_STORE = {"Cache-Control": "no-store"}


# ------------------------------------------------------------------------------ authentication


def check_auth(request: Request, serve: ServeSettings) -> Response | None:
    """None when the request may see the status; otherwise the response refusing it: 403 when
    no credential is configured (never open by default), 401 when the request's is missing or
    wrong (with a ``WWW-Authenticate`` challenge)."""
    token = serve.status_token.get_secret_value() if serve.status_token else ""
    password = serve.status_password.get_secret_value() if serve.status_password else ""
    basic = bool(serve.status_user and password)
    if not token and not basic:
        return PlainTextResponse(NOT_CONFIGURED, status_code=403)
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    value = value.strip()
    if token:
        offered = value if scheme.lower() == "bearer" else request.query_params.get("token", "")
        if offered and _same(offered, token):
            return None
    if basic and scheme.lower() == "basic" and _basic_ok(value, serve.status_user, password):
        return None
    challenge = f"Basic {REALM}" if basic else f"Bearer {REALM}"
    how = "HTTP basic auth" if basic else ""
    if token:
        how = ("a bearer token (Authorization: Bearer ... or ?token=...)"
               + (" or HTTP basic auth" if basic else ""))
    return PlainTextResponse(f"authentication required: send {how}\n", status_code=401,
                             headers={"WWW-Authenticate": challenge})


def _same(offered: str, expected: str) -> bool:
    """Constant-time comparison (of the UTF-8 bytes: compare_digest takes ASCII text only)."""
    return hmac.compare_digest(offered.encode(), expected.encode())


def _basic_ok(value: str, user: str, password: str) -> bool:
    try:
        decoded = base64.b64decode(value, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return False
    got_user, sep, got_password = decoded.partition(":")
    # both compared, whatever the first gives: no timing hint of which one was wrong
    user_ok = _same(got_user, user)
    password_ok = _same(got_password, password)
    return bool(sep) and user_ok and password_ok
