"""Rate limits shared by every process that uses one vendor account (``PONTE_LIMITER_URL``).

Celery workers syncing entities of the same company each build their own connectors; a limiter
per process would let two workers together send twice the vendor's rate. With
``PONTE_LIMITER_URL=redis://...`` every session's limiter reserves its slot in Redis instead:
one atomic script keeps, per vendor account, a sliding one-minute window of the slots reserved
(a sorted set) and the next free slot of the even spacing (one every 60/N s), on Redis's own
clock, so workers on machines whose clocks disagree still space their requests evenly. The
caller then sleeps until its slot.

The key names the vendor account, never a secret: ``ponte:limit:<kind>:<base URL>:<hash>``,
the hash a salted scrypt of the credential that identifies the account (the one the spec marks
``account``, as the state binding uses). Two connections with the same account share one limit;
different accounts do not slow each other.

The connectors' limit is one rate per system (the spec's ``requests_per_minute``), not one per
method: a vendor that limits each method (Omie: per app_key and call) is kept under every one of
its limits by keeping all calls together under that one rate.

Redis unreachable: :class:`ConfigError` when the connectors are built (before anything is
sent or written), :class:`SystemUnavailable` if it goes away during a run; both name
``PONTE_LIMITER_URL`` with its password hidden. Never a silent run without limits.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import redis

from etl.errors import ConfigError, SystemUnavailable

#: slot starts are kept this long past the window (then the keys expire on their own)
_KEEP_MS = 120_000

# KEYS[1]: the sorted set of reserved slot starts (ms); KEYS[2]: the next free slot (ms).
# ARGV: interval ms, requests per window, window ms, a unique member. Returns [wait ms, slot].
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local start = math.max(now, tonumber(redis.call('GET', KEYS[2]) or '0'))
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', start - window)
if redis.call('ZCARD', KEYS[1]) >= limit then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  start = math.max(start, tonumber(oldest[2]) + window)
end
redis.call('ZADD', KEYS[1], start, ARGV[4])
redis.call('SET', KEYS[2], start + interval, 'PX', window + tonumber(ARGV[5]))
redis.call('PEXPIRE', KEYS[1], window + tonumber(ARGV[5]))
return {start - now, start}
"""

_CLIENTS: dict[str, redis.Redis] = {}
_CLIENTS_LOCK = threading.Lock()


def safe_url(url: str) -> str:
    """``url`` with its password shown as ``***``."""
    return re.sub(r"(//[^:/@]*:)[^@/]*@", r"\1***@", url)


def client_for(url: str) -> redis.Redis:
    """One Redis client (a thread-safe connection pool) per URL and process, checked with a
    PING: :class:`ConfigError` naming ``PONTE_LIMITER_URL`` when the URL is bad or Redis does
    not answer."""
    with _CLIENTS_LOCK:
        client = _CLIENTS.get(url)
        if client is not None:
            return client
        try:
            client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
            client.ping()
        except ValueError as exc:
            raise ConfigError(f"PONTE_LIMITER_URL={safe_url(url)!r}: not a Redis URL "
                              f"({_scrub(str(exc), url)}); e.g. redis://127.0.0.1:6379/0") from None
        except redis.RedisError as exc:
            raise ConfigError(f"PONTE_LIMITER_URL={safe_url(url)!r}: the shared rate limiter "
                              f"cannot be reached ({_scrub(str(exc), url)}); start Redis or fix "
                              "the URL (empty: each process limits only its own requests)"
                              ) from None
        _CLIENTS[url] = client
        return client


def account_key(kind: str, base_url: str, account: str) -> str:
    """The Redis key of a vendor account's limit: kind, normalized base URL and a hash of the
    account credential (``account`` itself never appears in it)."""
    from etl.binding import account_hash, normalize_url  # etl.binding imports the settings

    salt = account_hash(f"{kind}|{normalize_url(base_url)}", "00" * 16)[:32]
    return f"ponte:limit:{kind}:{normalize_url(base_url)}:{account_hash(account, salt)[:32]}"


class SharedRateLimiter:
    """At most ``per_minute`` requests in any sliding ``window_s`` (one minute) and one every
    ``window_s / per_minute`` seconds, over every process using ``key``."""

    def __init__(self, client: redis.Redis, key: str, per_minute: int, *, url: str = "",
                 window_s: float = 60.0, sleep: Callable[[float], None] = time.sleep) -> None:
        self.client, self.key, self.per_minute = client, key, per_minute
        self.window_ms = max(1, round(window_s * 1000))
        self.interval_ms = self.window_ms / per_minute
        self._url = url
        self._sleep = sleep
        self._script = client.register_script(_RESERVE)

    def acquire(self) -> None:
        """Reserve the next slot of the account and wait for it."""
        try:
            reply: Any = self._script(
                keys=[f"{self.key}:slots", f"{self.key}:next"],
                args=[self.interval_ms, self.per_minute, self.window_ms, uuid.uuid4().hex,
                      _KEEP_MS])
        except redis.RedisError as exc:
            raise SystemUnavailable("rate limiter", (
                f"PONTE_LIMITER_URL={safe_url(self._url)!r}: the shared rate limiter cannot be "
                f"reached ({_scrub(str(exc), self._url)}); the run stops rather than exceed the "
                "vendor's rate (nothing past the last checkpoint was recorded)")) from None
        wait_ms = float(reply[0])
        if wait_ms > 0:
            self._sleep(wait_ms / 1000)


def _scrub(text: str, url: str) -> str:
    from etl.settings import url_password  # the one rule for a URL's password

    password = url_password(url)
    return text.replace(password, "***") if password else text


__all__ = ["SharedRateLimiter", "account_key", "client_for", "safe_url"]
