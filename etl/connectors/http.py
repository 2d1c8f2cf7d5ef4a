"""HTTP plumbing shared by every connector: timeouts, a client-side rate limiter, retries with
exponential backoff and jitter (honouring ``Retry-After`` up to a cap), and the translation of
httpx errors into ponte's tree. Connectors say what a response *means* through ``classify``.
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import httpx
from loguru import logger

from etl.connectors.base import ApiCalls, RetryStats
from etl.errors import NotSent, RetriableError, SystemUnavailable

Verdict = Literal["ok", "retry", "fail"]


class Limiter(Protocol):
    """What a session needs of a rate limiter: ``acquire`` returns when a request may be sent
    (:class:`RateLimiter` in this process; :mod:`etl.connectors.shared_limit` across them)."""

    per_minute: int

    def acquire(self) -> None: ...


#: how late a request may leave after its slot; the window guard allows for it
SEND_JITTER_S = 0.25
_GUARD_S = 60.0 + SEND_JITTER_S
#: absolute URLs a session keeps (:meth:`HttpSession._target`)
TARGETS_KEPT = 256


class RateLimiter:
    """At most ``per_minute`` requests in any sliding minute, shared by threads.

    ``acquire`` blocks until a slot is free. Spacing requests evenly (one every 60/N s) keeps us
    under a vendor's own sliding window even when our clock and theirs disagree slightly. The
    window guard counts a minute plus :data:`SEND_JITTER_S`: a request leaves a little after its
    slot (a busy thread, the GIL), so at full rate the vendor can see N + 1 arrivals in its
    minute where ours had N slots (seen: 7 HTTP 429 in 5,000 writes at 1,200 a minute).
    """

    def __init__(self, per_minute: int, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self.per_minute = per_minute
        self.interval = 60.0 / per_minute
        self._next = 0.0
        self._lock = threading.Lock()
        self._sleep = sleep
        self._window: deque[float] = deque()

    def acquire(self) -> None:
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            # sliding window guard: never more than per_minute starts in 60 s
            while self._window and self._window[0] <= start - _GUARD_S:
                self._window.popleft()
            if len(self._window) >= self.per_minute:
                start = max(start, self._window[0] + _GUARD_S)
            self._next = start + self.interval
            self._window.append(start)
        delay = start - time.monotonic()
        if delay > 0:
            self._sleep(delay)


@dataclass
class RetryPolicy:
    # failures (5xx, timeouts, dropped connections) before giving up: 8 attempts with backoff
    # capped at 30 s ride out about two minutes of trouble before a system is called down
    attempts: int = 8
    base_s: float = 0.5
    cap_s: float = 30.0  # longest single wait, also the cap on Retry-After
    # 429 means "up, but slow down": waiting it out does not use up ``attempts``, within this
    # much waiting per request (then each further 429 counts as a failure)
    throttle_budget_s: float = 300.0
    throttle_max: int = 60  # and at most this many 429s waited out

    def backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.cap_s)
        return float(min(self.cap_s, self.base_s * (2 ** (attempt - 1)))) * random.uniform(0.5, 1.0)


def never_sent(exc: httpx.TransportError) -> bool:
    """The request failed before any of it left: no connection could be made (refused, no
    route, a failed TLS handshake, a connect timeout) or none was free in the pool in time."""
    return isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))


def retry_after_seconds(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None


class HttpSession:
    """One system's HTTP access: rate limit, retries, counts. Thread-safe."""

    def __init__(
        self,
        client: httpx.Client,
        *,
        system: str,
        requests_per_minute: int,
        max_concurrency: int = 4,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.system = system
        self.limiter: Limiter = RateLimiter(requests_per_minute, sleep=sleep)
        self.concurrency = threading.BoundedSemaphore(max_concurrency)
        self.retry = retry or RetryPolicy()
        self.calls = ApiCalls()
        self.stats = RetryStats()
        self._sleep = sleep
        self._count_lock = threading.Lock()
        self._targets: dict[tuple[str, tuple[tuple[str, Any], ...]], httpx.URL] = {}

    def _target(self, url: str, params: Mapping[str, Any] | None) -> httpx.URL:
        """The absolute URL of ``url`` with ``params``, as httpx merges them, kept for the
        next request to it: httpx parses a URL three times a request, character by character,
        about a fifth of its CPU per write, and a run's writes go to a few URLs."""
        key = (url, tuple((k, tuple(v) if isinstance(v, list) else v)
                          for k, v in (params or {}).items()))
        target = self._targets.get(key)
        if target is None:
            target = self.client.build_request("GET", url, params=params).url
            if len(self._targets) >= TARGETS_KEPT:  # listings page through many; start over
                self._targets.clear()
            self._targets[key] = target
        return target

    def request(
        self,
        method: str,
        url: str,
        *,
        kind: Literal["read", "write"],
        classify: Callable[[httpx.Response], tuple[Verdict, float | None]],
        describe: str = "",
        attempts: int | None = None,
        pause: Callable[[float, str, bool], None] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """Send with retries. Returns the response judged ``ok`` or ``fail`` by ``classify``
        (the caller turns ``fail`` into a record error or a config error); raises
        :class:`SystemUnavailable` when retries run out. ``attempts`` overrides the policy's
        (1: a create that must not be repeated blindly; 429s are still waited out).
        ``pause(seconds, last_failure, unsent)`` waits before a retry instead of sleeping (a
        wait that gives way to a stop request raises from it); ``unsent`` is true while no
        attempt has reached the system (:func:`never_sent`). Raises :class:`NotSent` when none
        ever did."""
        last: str = ""
        wait_for = pause or (lambda seconds, _last, _unsent: self._sleep(seconds))
        unsent = True  # no attempt reached the system (so far)
        attempt = 0
        target = self._target(url, kwargs.pop("params", None))
        limit = attempts or self.retry.attempts
        throttled, throttles = 0.0, 0  # time waited and number of 429s for this request
        while attempt < limit:
            attempt += 1
            with self._count_lock:
                if kind == "read":
                    self.calls.read += 1
                else:
                    self.calls.write += 1
            started = time.perf_counter()
            try:
                # the slot is taken once a connection slot is ours, so the request leaves at
                # its slot (taken before, a wait for the connection would bunch requests up)
                with self.concurrency:
                    self.limiter.acquire()
                    started = time.perf_counter()
                    response = self.client.request(method, target, **kwargs)
            except httpx.TimeoutException as exc:
                self.stats.timeouts += 1
                unsent = unsent and never_sent(exc)
                last, wait = "timed out", None
                self._log_request(method, target, last, started)
            except httpx.TransportError as exc:
                self.stats.dropped += 1
                unsent = unsent and never_sent(exc)
                last, wait = f"connection failed ({type(exc).__name__})", None
                self._log_request(method, target, last, started)
            else:
                self._log_request(method, response.request.url, f"HTTP {response.status_code}",
                                  started)
                verdict, wait = classify(response)
                if verdict != "retry":
                    return response
                unsent = unsent and response.status_code == 429  # refused, not carried out
                if response.status_code == 429:
                    self.stats.got_429 += 1
                    delay = self.retry.backoff(1, wait)
                    throttles += 1
                    if (throttled + delay <= self.retry.throttle_budget_s
                            and throttles <= self.retry.throttle_max):
                        throttled += delay
                        attempt -= 1  # throttled, not failed
                        self.stats.retries += 1
                        logger.debug("{} {} {}: HTTP 429; waiting {:.2f}s", self.system, method,
                                     describe or url, delay)
                        wait_for(delay, "HTTP 429", unsent)
                        continue
                elif response.status_code >= 500:
                    self.stats.got_5xx += 1
                last = f"HTTP {response.status_code}"
            if attempt == limit:
                break
            delay = self.retry.backoff(attempt, wait)
            self.stats.retries += 1
            logger.debug(
                "{} {} {}: {}; retry {} in {:.2f}s", self.system, method, describe or url, last,
                attempt, delay,
            )
            wait_for(delay, last, unsent)
        message = (f"{describe or method + ' ' + url} failed {limit} times (last: {last}); the "
                   "system looks down — check its status and the base URL, then run again "
                   "(nothing past the last checkpoint was recorded)")
        if unsent:
            raise NotSent(self.system, message, last=last)
        raise SystemUnavailable(self.system, message)

    def _log_request(self, method: str, url: str | httpx.URL, outcome: str,
                     started: float) -> None:
        """One DEBUG line per request sent: method, path, outcome, milliseconds. The path only:
        a query string or a body may carry credentials, and headers are never logged."""
        if isinstance(url, str):
            url = self.client.base_url.join(url)
        logger.debug("{} {} {} -> {} in {:.0f} ms", self.system, method, url.path, outcome,
                     (time.perf_counter() - started) * 1000)


__all__ = [
    "HttpSession",
    "Limiter",
    "RateLimiter",
    "RetriableError",
    "RetryPolicy",
    "RetryStats",
    "never_sent",
    "retry_after_seconds",
]
