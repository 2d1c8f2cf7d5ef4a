"""Run the Ploomes and Omie simulators as real HTTP servers on loopback.

Two entry points:

* :func:`serve` — ``ponte sandbox``: both servers in the foreground until Ctrl-C, seeded on first
  start, optionally kept in SQLite. With ``--db sandbox.db`` the two simulators keep their data in
  two files derived from it, ``sandbox.crm.db`` and ``sandbox.erp.db`` (each simulator's
  ``Database`` owns its file's ``records`` table, so they cannot share one). A restart with the
  same ``--db`` keeps the data and does not seed again.
* :func:`running_sandbox` — for tests and benchmarks: both servers on free loopback ports in a
  background thread, in memory, yielding a :class:`Sandbox` with URLs, credentials and the two
  simulators (to seed, inspect or turn fault knobs in-process).
"""

from __future__ import annotations

import asyncio
import ipaddress
import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from starlette.applications import Starlette

from etl.errors import ConfigError
from etl.sandbox.keys import SANDBOX_APP_KEY, SANDBOX_APP_SECRET, SANDBOX_USER_KEY
from etl.sandbox.omie import OmieSim
from etl.sandbox.omie import create_app as omie_app
from etl.sandbox.ploomes import PloomesSim
from etl.sandbox.ploomes import create_app as ploomes_app
from etl.sandbox.seed import SeedSummary
from etl.sandbox.seed import seed as seed_sims

#: Tables whose records come from the seeder (not the simulators' own lookups).
SEEDED_TABLES = {"crm": ("Contacts", "Products", "Orders"), "erp": ("clientes", "produtos")}
START_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Sandbox:
    """Both simulators, running: where they listen and how to authenticate."""

    crm_url: str  # Ploomes base URL, e.g. http://127.0.0.1:8701
    erp_url: str  # Omie base URL, ending in /api/v1
    crm: PloomesSim
    erp: OmieSim
    user_key: str = SANDBOX_USER_KEY
    app_key: str = SANDBOX_APP_KEY
    app_secret: str = SANDBOX_APP_SECRET


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signals to whoever runs it (two servers share one process)."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def check_loopback(host: str) -> None:
    """The simulators have no real auth and an open admin API: loopback only."""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ConfigError(f"the sandbox listens on loopback only; --host {host!r} is not a "
                          "loopback address (use 127.0.0.1, ::1 or localhost)")


def db_paths(db: str) -> tuple[str, str]:
    """The two SQLite files kept for ``--db FILE``: ``<stem>.crm<suffix>``, ``<stem>.erp<suffix>``."""
    p = Path(db)
    suffix = p.suffix or ".db"
    return str(p.with_name(f"{p.stem}.crm{suffix}")), str(p.with_name(f"{p.stem}.erp{suffix}"))


def build_sims(*, db: str | None = None, ploomes_rpm: int = 120, omie_rpm: int = 240,
               seed: int = 42) -> tuple[PloomesSim, OmieSim]:
    crm_path, erp_path = db_paths(db) if db else (None, None)
    crm = PloomesSim(user_key=SANDBOX_USER_KEY, rpm=ploomes_rpm, db_path=crm_path, seed=seed)
    erp = OmieSim(app_key=SANDBOX_APP_KEY, app_secret=SANDBOX_APP_SECRET, rpm=omie_rpm,
                  db_path=erp_path, seed=seed)
    return crm, erp


def is_empty(crm: PloomesSim, erp: OmieSim) -> bool:
    return not any(len(crm.db[t]) for t in SEEDED_TABLES["crm"]) and not any(
        len(erp.db[t]) for t in SEEDED_TABLES["erp"])


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _bind(host: str, port: int) -> socket.socket:
    """Bind the listening socket here, so a busy port is a clear error (and port 0 works)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # accepted connections inherit it: without it each kept-alive answer waits ~40 ms for the
    # client's delayed ACK, and every benchmark over real HTTP measures that instead of ponte
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    return sock


def _server(app: Starlette) -> _Server:
    # httptools, not h11: each answer leaves ~1 ms sooner, so an answer at ``latency_ms``
    # comes close to that (measured: POST /Contacts at 20 ms, 22.3 -> 21.4 ms a request)
    return _Server(uvicorn.Config(app, log_level="warning", lifespan="off", http="httptools",
                                  access_log=False))


def _servers(crm: PloomesSim, erp: OmieSim) -> tuple[_Server, _Server]:
    return _server(ploomes_app(crm)), _server(omie_app(erp))


def run_servers(servers: tuple[_Server, ...], socks: tuple[socket.socket, ...], *,
                handle_signals: bool) -> None:
    """Serve until told to stop, on uvloop where it is installed (Linux, macOS): both
    simulators share one event loop, and asyncio's own spends about as much of the process's
    CPU per request as the simulators' handlers do (measured 2026-12-03: 10,000 creates from
    four writers, 72.7-74.2 s on asyncio's loop, 69.7-70.7 s on uvloop; drt's four syncs
    69.0 and 66.3 s). A writer's answer waits for whatever the loop is doing when it is due,
    so a busy loop is latency the benchmarks would count against the client."""
    try:
        import uvloop  # optional: Windows has none
    except ImportError:
        asyncio.run(_run(servers, socks, handle_signals=handle_signals))
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_run(servers, socks, handle_signals=handle_signals))


async def _run(servers: tuple[_Server, ...], socks: tuple[socket.socket, ...], *,
               handle_signals: bool) -> None:
    if handle_signals:
        loop = asyncio.get_running_loop()

        def stop() -> None:
            for s in servers:
                s.force_exit = s.should_exit  # a second Ctrl-C stops without waiting
                s.should_exit = True

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop)
    await asyncio.gather(*(s.serve(sockets=[sock]) for s, sock in zip(servers, socks,
                                                                      strict=True)))


def serve(*, host: str, crm_port: int, erp_port: int, customers: int, products: int,
          orders: int, seed: int, db: str | None, ploomes_rpm: int, omie_rpm: int) -> None:
    """``ponte sandbox``: both simulators in the foreground until Ctrl-C or SIGTERM."""
    check_loopback(host)
    socks = (_bind(host, crm_port), _bind(host, erp_port))
    crm, erp = build_sims(db=db, ploomes_rpm=ploomes_rpm, omie_rpm=omie_rpm, seed=seed)
    if is_empty(crm, erp):
        summary: SeedSummary | None = seed_sims(crm, erp, customers=customers,
                                                products=products, orders=orders, seed=seed)
        crm.db.save()
        erp.db.save()
    else:
        summary = None
    crm_url, erp_url = _url(host, crm_port), _url(host, erp_port) + "/api/v1/"
    counts = ", ".join(f"{t} {len(sim.db[t])}" for sim, side in ((crm, "crm"), (erp, "erp"))
                       for t in SEEDED_TABLES[side])
    lines = [
        f"Ploomes simulator  {crm_url}   User-Key: {SANDBOX_USER_KEY}",
        f"Omie simulator     {erp_url}   app_key: {SANDBOX_APP_KEY}"
        + f"  app_secret: {SANDBOX_APP_SECRET}",
        f"{'seeded (seed ' + str(seed) + ')' if summary else 'kept from ' + str(db)}: {counts}",
        f"admin API: {crm_url}/_sandbox/ and {_url(host, erp_port)}/_sandbox/",
        f"data file(s): {', '.join(db_paths(db))}" if db else "data: in memory (use --db FILE "
                                                             "to keep it)",
        "point ponte at it: cp .env.example .env"
        + (f"  (and set PONTE_CRM__BASE_URL={crm_url} PONTE_ERP__BASE_URL={erp_url[:-1]})"
           if (crm_port, erp_port) != (8701, 8702) or host != "127.0.0.1" else ""),
        "Ctrl-C to stop.",
    ]
    print("\n".join(lines), flush=True)
    try:
        run_servers(_servers(crm, erp), socks, handle_signals=True)
    finally:
        crm.deliveries.close()
        erp.deliveries.close()
        crm.db.save()
        erp.db.save()
        for sock in socks:
            sock.close()
        print("sandbox stopped" + (f"; data saved to {', '.join(db_paths(db))}" if db else ""),
              flush=True)


@contextmanager
def running_sandbox(*, customers: int = 0, products: int = 0, orders: int = 0, seed: int = 42,
                    ploomes_rpm: int = 120, omie_rpm: int = 240, overlap: float = 0.3
                    ) -> Iterator[Sandbox]:
    """Both simulators on free loopback ports in a background thread, in memory, seeded."""
    crm, erp = build_sims(ploomes_rpm=ploomes_rpm, omie_rpm=omie_rpm, seed=seed)
    seed_sims(crm, erp, customers=customers, products=products, orders=orders, seed=seed,
              overlap=overlap)
    socks = (_bind("127.0.0.1", 0), _bind("127.0.0.1", 0))
    servers = _servers(crm, erp)

    def run() -> None:  # an exception here is printed by threading's excepthook
        run_servers(servers, socks, handle_signals=False)

    thread = threading.Thread(target=run, name="ponte-sandbox", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not all(s.started for s in servers):
            if not thread.is_alive():
                raise RuntimeError("sandbox servers did not start (see the traceback above)")
            if time.monotonic() > deadline:
                raise RuntimeError(f"sandbox servers did not start within {START_TIMEOUT_S} s")
            time.sleep(0.01)
        crm_port, erp_port = (sock.getsockname()[1] for sock in socks)
        yield Sandbox(crm_url=_url("127.0.0.1", crm_port),
                      erp_url=_url("127.0.0.1", erp_port) + "/api/v1", crm=crm, erp=erp)
    finally:
        for s in servers:
            s.should_exit = True
        thread.join(timeout=START_TIMEOUT_S)
        crm.deliveries.close()
        erp.deliveries.close()
        for sock in socks:
            sock.close()


@contextmanager
def serving_ploomes(sim: PloomesSim, port: int = 0) -> Iterator[str]:
    """``sim`` served on one more loopback port (``port``, or a free one), in a thread of its
    own, until the block ends; yields its base URL. Leaving the block shuts that server down
    as a server going away does (answers in progress are sent, kept-alive connections closed,
    later connections refused); a new block on the same port brings it back with the same
    data: a Ploomes that goes down in the middle of a run and returns."""
    sock = _bind("127.0.0.1", port)
    server = _server(ploomes_app(sim))
    thread = threading.Thread(target=run_servers, args=((server,), (sock,)),
                              kwargs={"handle_signals": False}, name="ponte-sandbox-ploomes",
                              daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the Ploomes simulator's server did not start")
            time.sleep(0.01)
        yield _url("127.0.0.1", sock.getsockname()[1])
    finally:
        server.should_exit = True
        thread.join(timeout=START_TIMEOUT_S)
        sock.close()
