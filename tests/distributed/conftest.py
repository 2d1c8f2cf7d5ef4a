"""Fixtures of the distributed tests: the real RabbitMQ and PostgreSQL of the machine, sandbox
pairs (one per connection, each with its own seed), their connection files, and ``ponte
worker`` processes.

Each test gets its own queue and its own connection names (so its own PostgreSQL schemas): no
message or state of an earlier run is seen. Skipped unless PONTE_TEST_RABBITMQ_URL and
PONTE_TEST_POSTGRES_URL are set (``.ci/run`` sets both and makes them mandatory)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy as sa

from etl.connections import state_part
from etl.sandbox.server import Sandbox, running_sandbox
from etl.state import RunRow, Store

PONTE = str(Path(sys.executable).with_name("ponte"))
FAST = 1_000_000


def connection_file(sb: Sandbox, **extra: object) -> str:
    values = {
        "PONTE_CRM__BASE_URL": sb.crm_url,
        "PONTE_CRM__CREDENTIALS__USER_KEY": sb.user_key,
        "PONTE_ERP__BASE_URL": sb.erp_url,
        "PONTE_ERP__CREDENTIALS__APP_KEY": sb.app_key,
        "PONTE_ERP__CREDENTIALS__APP_SECRET": sb.app_secret,
        "PONTE_CRM__REQUESTS_PER_MINUTE": FAST,
        "PONTE_ERP__REQUESTS_PER_MINUTE": FAST,
        "PONTE_SAFETY_LAG_S": 0,
        "PONTE_LOOKBACK_S": 300,
        **extra,
    }
    return "".join(f"{k}='{v}'\n" for k, v in values.items())


@dataclass
class Fleet:
    """Sandbox pairs, one per connection, with what a ``ponte`` process needs to reach them."""

    folder: Path
    state_url: str
    broker_url: str
    queue: str
    pairs: dict[str, Sandbox]
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return sorted(self.pairs)

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PONTE_")
               or k.startswith("PONTE_TEST_")}
        env.update(PONTE_CONNECTIONS_DIR=str(self.folder), PONTE_STATE_URL=self.state_url,
                   PONTE_BROKER_URL=self.broker_url, PONTE_LOG_LEVEL="INFO")
        return env

    def ponte(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([PONTE, *args], env=self.env(), cwd=self.folder.parent,
                              capture_output=True, text=True, timeout=120, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"ponte {' '.join(args)} exited {proc.returncode}:\n"
                                 f"{proc.stdout}\n{proc.stderr}")
        return proc

    def spawn(self, log: str, *args: str) -> subprocess.Popen[bytes]:
        """``ponte ARGS...`` in the background, its output in the file ``log``."""
        with open(self.folder.parent / log, "wb") as out:
            proc = subprocess.Popen([PONTE, *args], env=self.env(), cwd=self.folder.parent,
                                    stdout=out, stderr=subprocess.STDOUT)
        self.workers.append(proc)
        return proc

    def start_worker(self, *, concurrency: int = 2, lease: int = 60) -> subprocess.Popen[bytes]:
        n = sum(1 for p in self.folder.parent.glob("worker*.log"))
        proc = self.spawn(f"worker{n}.log", "worker", "--queue", self.queue, "--concurrency",
                          str(concurrency), "--lease", str(lease))
        self.wait_log(f"worker{n}.log", " ready.")  # consuming: the jobs sent next reach it
        return proc

    def log(self, name: str) -> str:
        return (self.folder.parent / name).read_text(errors="replace")

    def worker_log(self, n: int) -> str:
        return self.log(f"worker{n}.log")

    def wait_log(self, name: str, text: str, *, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log(name):
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not in {name} within {timeout:.0f} s:\n"
                                     f"{self.log(name)[-3000:]}")
            time.sleep(0.2)

    def store(self, name: str) -> Store:
        return Store.open(self.state_url, connection=name)

    def runs(self, name: str) -> list[RunRow]:
        with self.store(name) as store:
            return store.runs(limit=200)

    def wait_runs(self, count: int, *, kind: str = "sync", timeout: float = 120.0,
                  until: Callable[[], bool] | None = None) -> None:
        """Until each connection has ``count`` finished runs of ``kind`` and none running."""
        deadline = time.monotonic() + timeout
        while True:
            pending = {}
            for name in self.names:
                runs = [r for r in self.runs(name) if r.kind == kind]
                done = [r for r in runs if r.status != "running"]
                if len(done) < count or len(done) != len(runs):
                    pending[name] = [(r.status, r.entities) for r in runs]
            if not pending and (until is None or until()):
                return
            if time.monotonic() > deadline:
                logs = "\n".join(p.read_text(errors="replace")[-3000:]
                                  for p in self.folder.parent.glob("*.log"))
                raise AssertionError(f"runs not done within {timeout:.0f} s: {pending}\n{logs}")
            time.sleep(0.5)

    def stop_workers(self) -> None:
        for proc in self.workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.workers:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _drop(broker_url: str, queue: str) -> None:
    from kombu import Connection

    with Connection(broker_url) as conn, contextlib.suppress(Exception):
        conn.default_channel.queue_delete(queue)  # it may never have been declared


@pytest.fixture
def make_fleet(tmp_path: Path, rabbitmq_url: str, postgres_url: str
               ) -> Iterator[Callable[..., Fleet]]:
    """``make_fleet(n, customers=, products=, orders=)``: ``n`` sandbox pairs seeded with
    different seeds, a connection file for each, a fresh queue; everything removed after."""
    stack = ExitStack()
    tag = uuid.uuid4().hex[:6]
    made: list[Fleet] = []

    def make(n: int, *, customers: int = 8, products: int = 4, orders: int = 4,
             **settings: object) -> Fleet:
        folder = tmp_path / "connections"
        folder.mkdir()
        pairs = {}
        for i in range(n):
            sb = stack.enter_context(running_sandbox(customers=customers, products=products,
                                                     orders=orders, seed=1000 + i,
                                                     ploomes_rpm=FAST, omie_rpm=FAST))
            sb.erp.faults.redundant_rule = False  # fast: no 60 s between identical listings
            name = f"t{tag}-{i:02d}"
            (folder / f"{name}.env").write_text(connection_file(sb, **settings))
            pairs[name] = sb
        fleet = Fleet(folder, postgres_url, rabbitmq_url, f"ponte-test-{tag}", pairs)
        made.append(fleet)
        return fleet

    try:
        yield make
    finally:
        for fleet in made:
            fleet.stop_workers()
            _drop(rabbitmq_url, fleet.queue)
            admin = sa.create_engine(postgres_url)
            with admin.begin() as conn:
                for name in fleet.names:
                    conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{state_part(name)}" CASCADE'))
                if _has_locks(conn):
                    conn.execute(sa.text("DELETE FROM locks WHERE name = :n"),
                                 {"n": f"scheduler:{fleet.queue}"})
            admin.dispose()
        stack.close()


def _has_locks(conn: sa.Connection) -> bool:
    return bool(conn.scalar(sa.text("SELECT to_regclass('public.locks') IS NOT NULL")))
