"""The rate limit shared in Redis by every process using one vendor account
(etl/connectors/shared_limit.py), against a real Redis and the Ploomes simulator."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from etl.connectors.factory import build_connectors
from etl.connectors.generic import GenericConnector
from etl.connectors.http import RateLimiter, RetryPolicy
from etl.connectors.registry import get
from etl.connectors.shared_limit import SharedRateLimiter, account_key, client_for
from etl.errors import ConfigError, SystemUnavailable
from etl.sandbox.core import RateLimiter as SimLimiter
from etl.sandbox.ploomes import PloomesSim, create_app
from etl.settings import CrmSettings, ErpSettings, Settings

KEY = "shared-limit-user-key"


def _unique_url() -> str:
    """A base URL of its own: each test's keys never meet another test's (or run's)."""
    return f"http://ploomes-{uuid.uuid4().hex[:8]}.test"


def _hammer(sim: PloomesSim, limiters: list[SharedRateLimiter], requests: int) -> None:
    """One thread per limiter, each with its own session and client, sending ``requests``."""
    errors: list[BaseException] = []

    def work(limiter: SharedRateLimiter) -> None:
        try:
            with TestClient(create_app(sim), base_url="http://ploomes.test") as http:
                conn = GenericConnector(get("ploomes").spec, http, system="crm",
                                        credentials={"user_key": KEY},
                                        retry=RetryPolicy(attempts=4, base_s=0.0, cap_s=0.0),
                                        sleep=lambda _s: None)
                conn.session.limiter = limiter
                for _ in range(requests):
                    conn.session.request("GET", "Users", kind="read", headers={"User-Key": KEY},
                                         classify=lambda r: ("ok", None) if r.status_code < 400
                                         else ("retry", 0.0))
        except BaseException as exc:  # noqa: BLE001 - re-raised below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(lim,)) for lim in limiters]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def _statuses(sim: PloomesSim) -> dict[int, int]:
    out: dict[int, int] = {}
    for row in sim.requests.as_list():
        out[row["status"]] = out.get(row["status"], 0) + row["count"]
    return out


def test_two_workers_with_one_account_are_never_refused(redis_url: str) -> None:
    """Two sessions (separate limiter objects, as in two worker processes) on one account: the
    simulator, which allows 12 requests per 2 s, refuses none of their 24 requests at 10 per
    2 s together. Each limiting only itself, they would send 20 per 2 s and be refused."""
    sim = PloomesSim(user_key=KEY, rpm=12)
    sim.limiter = SimLimiter(12, window_s=2.0)
    client = client_for(redis_url)
    key = account_key("ploomes", _unique_url(), KEY)
    limiters = [SharedRateLimiter(client, key, 10, url=redis_url, window_s=2.0)
                for _ in range(2)]
    _hammer(sim, limiters, 12)
    assert _statuses(sim) == {200: 24}


def send_from_a_process(base_url: str, user_key: str, redis_url: str, key: str,
                        requests: int) -> None:
    """A worker process's part: its own connector, session and limiter object."""
    import httpx

    with httpx.Client(base_url=base_url) as http:
        conn = GenericConnector(get("ploomes").spec, http, system="crm",
                                credentials={"user_key": user_key},
                                retry=RetryPolicy(attempts=4, base_s=0.0, cap_s=0.0),
                                sleep=lambda _s: None)
        conn.session.limiter = SharedRateLimiter(client_for(redis_url), key, 10, url=redis_url,
                                                 window_s=2.0)
        for _ in range(requests):
            conn.session.request("GET", "Users", kind="read", headers={"User-Key": user_key},
                                 classify=lambda r: ("ok", None) if r.status_code < 400
                                 else ("retry", 0.0))


def test_two_processes_with_one_account_are_never_refused(redis_url: str) -> None:
    """As above, from two processes against the simulator on a loopback port."""
    import multiprocessing

    from etl.sandbox.server import running_sandbox

    with running_sandbox() as sb:
        sb.crm.limiter = SimLimiter(12, window_s=2.0)
        key = account_key("ploomes", _unique_url(), sb.crm.user_key)
        spawn = multiprocessing.get_context("spawn")
        procs = [spawn.Process(target=send_from_a_process,
                               args=(sb.crm_url, sb.crm.user_key, redis_url, key, 12))
                 for _ in range(2)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout=120)
        assert [p.exitcode for p in procs] == [0, 0]
        assert _statuses(sb.crm) == {200: 24}


def test_limiters_each_for_itself_are_refused() -> None:
    """The same load with a limiter per session (what the shared one replaces): refused. Shows
    the test above can fail."""
    sim = PloomesSim(user_key=KEY, rpm=12)
    sim.limiter = SimLimiter(12, window_s=2.0)
    # the in-process limiter's minute is fixed: 300 a minute spaces requests 0.2 s apart, as
    # 10 per 2 s above
    limiters = [RateLimiter(300) for _ in range(2)]
    _hammer(sim, limiters, 12)  # type: ignore[arg-type]
    assert _statuses(sim).get(429, 0) > 0


class Waits(list[float]):
    """The waits a limiter asks for, in seconds, instead of sleeping them (0 when none)."""

    def __call__(self, seconds: float) -> None:
        self[-1] = seconds

    def acquire(self, limiter: SharedRateLimiter) -> None:
        self.append(0.0)
        limiter.acquire()


def test_same_account_shares_slots_other_accounts_do_not(redis_url: str) -> None:
    """60 a minute is one slot a second. Two limiter objects of one account reserve one
    sequence of slots (the last of 10 about 9 s out); another account starts its own (the last
    of 5 about 4 s out), whatever the first account has reserved."""
    client = client_for(redis_url)
    url = _unique_url()
    waits_a, waits_b = Waits(), Waits()
    a1, a2 = (SharedRateLimiter(client, account_key("ploomes", url, "key-a"), 60, url=redis_url,
                                sleep=waits_a) for _ in range(2))
    b = SharedRateLimiter(client, account_key("ploomes", url, "key-b"), 60, url=redis_url,
                          sleep=waits_b)
    for _ in range(5):
        waits_a.acquire(a1)
        waits_a.acquire(a2)
    for _ in range(5):
        waits_b.acquire(b)
    assert [round(w) for w in waits_a] == list(range(10))
    assert [round(w) for w in waits_b] == list(range(5))


def test_the_key_names_the_account_never_its_secret() -> None:
    key = account_key("ploomes", "https://api2.ploomes.com/", "s3cret-user-key")
    assert key.startswith("ponte:limit:ploomes:https://api2.ploomes.com:")
    assert "s3cret" not in key
    assert key == account_key("ploomes", "HTTPS://api2.ploomes.com", "s3cret-user-key")
    assert key != account_key("ploomes", "https://api2.ploomes.com/", "other-key")
    assert key != account_key("omie", "https://api2.ploomes.com/", "s3cret-user-key")


def test_build_connectors_shares_per_account(redis_url: str, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """With PONTE_LIMITER_URL, both sides' sessions wait in Redis; two connections with the same
    accounts get the same keys, another CRM account another key."""
    monkeypatch.chdir(tmp_path)
    url = _unique_url()

    def keys(user_key: str) -> dict[str, str]:
        settings = Settings(limiter_url=redis_url, crm=CrmSettings(
            base_url=url, credentials={"user_key": user_key}), erp=ErpSettings())
        conns = build_connectors(settings)
        limiters = {side: c.session.limiter for side, c in conns.items()}  # type: ignore[attr-defined]
        assert all(isinstance(lim, SharedRateLimiter) for lim in limiters.values())
        return {side: lim.key for side, lim in limiters.items()}

    first, again, other = keys("acct-1"), keys("acct-1"), keys("acct-2")
    assert first == again
    assert first["crm"] != other["crm"] and first["erp"] == other["erp"]


@pytest.mark.parametrize("url", ["redis://:hunter2@127.0.0.1:1/0", "http://:hunter2@x/"])
def test_unreachable_or_bad_url_is_a_config_error_without_the_password(
        url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings(limiter_url=url)
    with pytest.raises(ConfigError) as caught:
        build_connectors(settings)
    assert "PONTE_LIMITER_URL=" in str(caught.value)
    assert "hunter2" not in str(caught.value)
    assert "***" in str(caught.value)


def test_redis_gone_during_a_run_stops_it() -> None:
    """A limiter whose Redis stops answering raises SystemUnavailable (never an unlimited run)."""
    import redis

    dead = redis.Redis.from_url("redis://:hunter2@127.0.0.1:1/0", socket_connect_timeout=1)
    limiter = SharedRateLimiter(dead, "ponte:limit:test", 60,
                                url="redis://:hunter2@127.0.0.1:1/0")
    with pytest.raises(SystemUnavailable) as caught:
        limiter.acquire()
    assert "PONTE_LIMITER_URL" in str(caught.value) and "hunter2" not in str(caught.value)
