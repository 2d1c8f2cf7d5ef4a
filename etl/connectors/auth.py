"""Authentication as the spec describes it: a header, a query parameter, JSON body fields, a
bearer token, HTTP basic, or OAuth2 (client credentials or refresh token; the token is cached
and fetched again ``refresh_before_s`` before it expires). Credentials never reach a log line
or an error message."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from etl.connectors.spec import (
    BasicAuth,
    BearerAuth,
    BodyAuth,
    HeaderAuth,
    NoAuth,
    OAuth2Auth,
    QueryAuth,
)
from etl.errors import SystemUnavailable


@dataclass
class Call:
    """One request, before it is sent: what auth and paging add to."""

    method: str
    path: str
    params: dict[str, Any] = field(default_factory=dict)
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    # filter clauses of one parameter, joined when sent (see etl.connectors.templates.compose)
    filters: dict[str, list[str]] = field(default_factory=dict)
    joins: dict[str, str] = field(default_factory=dict)


class Authenticator:
    """Adds a system's credentials to a :class:`Call`."""

    def __init__(self, auth: NoAuth | HeaderAuth | QueryAuth | BodyAuth | BearerAuth | BasicAuth
                 | OAuth2Auth, credentials: Mapping[str, str], *, system: str,
                 client: httpx.Client | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.auth = auth
        self._creds = dict(credentials)
        self._system = system
        self._client = client
        self._clock = clock
        self._token: str | None = None
        self._expires = 0.0
        self._lock = threading.Lock()
        self.token_requests = 0

    def apply(self, call: Call) -> None:
        a = self.auth
        if isinstance(a, HeaderAuth):
            call.headers[a.name] = a.prefix + self._creds[a.credential]
        elif isinstance(a, QueryAuth):
            call.params[a.name] = self._creds[a.credential]
        elif isinstance(a, BodyAuth):
            body = call.body if isinstance(call.body, dict) else {}
            call.body = {**body, **{k: self._creds[c] for k, c in a.fields.items()}}
        elif isinstance(a, BearerAuth):
            call.headers["Authorization"] = f"Bearer {self._creds[a.credential]}"
        elif isinstance(a, BasicAuth):
            pair = f"{self._creds[a.username]}:{self._creds[a.password]}".encode()
            call.headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        elif isinstance(a, OAuth2Auth):
            call.headers["Authorization"] = f"Bearer {self.token()}"

    def forget_token(self) -> None:
        """After a 401: the next call fetches a new token."""
        with self._lock:
            self._token = None

    def token(self) -> str:
        a = self.auth
        assert isinstance(a, OAuth2Auth)
        with self._lock:
            if self._token is not None and self._clock() < self._expires - a.refresh_before_s:
                return self._token
            data = {"grant_type": a.grant, "client_id": self._creds[a.client_id],
                    "client_secret": self._creds[a.client_secret]}
            if a.grant == "refresh_token" and a.refresh_token:
                data["refresh_token"] = self._creds[a.refresh_token]
            if a.scope:
                data["scope"] = a.scope
            if self._client is None:
                raise SystemUnavailable(self._system, "OAuth2: no HTTP client to ask for a token")
            self.token_requests += 1
            try:
                response = self._client.post(a.token_url, data=data)
            except httpx.HTTPError as exc:
                raise SystemUnavailable(self._system, f"OAuth2 token endpoint {a.token_url}: "
                                        f"{type(exc).__name__}") from None
            if response.status_code != 200:
                raise SystemUnavailable(self._system, f"OAuth2 token endpoint {a.token_url} "
                                        f"refused the credentials (HTTP {response.status_code})")
            answer = response.json()
            self._token = str(answer["access_token"])
            self._expires = self._clock() + float(answer.get("expires_in") or 3600)
            if a.grant == "refresh_token" and a.refresh_token and answer.get("refresh_token"):
                self._creds[a.refresh_token] = str(answer["refresh_token"])  # rotated
            return self._token
