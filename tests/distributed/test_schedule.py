"""``ponte schedule`` over the real RabbitMQ and PostgreSQL: one scheduler leads, a second
stands by and takes over when the first is killed; and a job asked by hand waits for an entity
lock another live run holds, then runs."""

from __future__ import annotations

import signal
import time
from datetime import UTC, datetime, timedelta

from etl.engine.run import lock_name


def sync_runs(fleet, name: str) -> int:
    return sum(1 for r in fleet.runs(name) if r.kind == "sync")


def test_a_standby_scheduler_takes_over_when_the_leader_dies(make_fleet) -> None:
    every = {f"PONTE_SCHEDULE__{e}": "every:2" for e in ("CUSTOMERS", "PRODUCTS", "ORDERS")}
    fleet = make_fleet(2, customers=4, products=2, orders=0, **every)
    fleet.start_worker(concurrency=2)
    leader = fleet.spawn("schedule0.log", "schedule", "--queue", fleet.queue)
    fleet.wait_log("schedule0.log", "leading: 6 schedules of 2 connection(s)")
    standby = fleet.spawn("schedule1.log", "schedule", "--queue", fleet.queue)
    fleet.wait_log("schedule1.log", "standby: another ponte schedule holds the lease")
    fleet.wait_runs(2)  # the leader's schedules reach the workers, for every connection
    assert "leading" not in fleet.log("schedule1.log")

    leader.send_signal(signal.SIGKILL)
    leader.wait()
    before = {name: sync_runs(fleet, name) for name in fleet.names}
    fleet.wait_log("schedule1.log", "leading: 6 schedules", timeout=30)
    deadline = time.monotonic() + 60
    while any(sync_runs(fleet, n) < before[n] + 3 for n in fleet.names):
        assert time.monotonic() < deadline, f"no new runs after the takeover: {before}"
        time.sleep(0.5)

    standby.send_signal(signal.SIGTERM)
    assert standby.wait(timeout=30) == 0
    assert "scheduler stopped" in fleet.log("schedule1.log")


def test_a_job_by_hand_waits_for_a_lock_another_run_holds(make_fleet) -> None:
    fleet = make_fleet(1, customers=4, products=2, orders=0)
    (name, sb), = fleet.pairs.items()
    now = datetime.now(UTC)
    held_until = now + timedelta(seconds=6)
    with fleet.store(name) as store:  # a live run elsewhere (this process), leased for 6 s
        assert store.acquire_lock(lock_name("customers"), "run-elsewhere", lease_s=6, now=now)
    fleet.start_worker(concurrency=1)
    fleet.ponte("enqueue", "--connection", name, "--queue", fleet.queue, "customers")
    fleet.wait_runs(1, timeout=60)
    runs = fleet.runs(name)  # the busy entity was seen before a run was recorded
    assert [r.status for r in runs] == ["ok"], [(r.status, r.report) for r in runs]
    assert runs[0].started_at >= held_until, "it ran while the lock was held"
    assert "another run holds it; trying again in" in fleet.worker_log(0)
    assert len(sb.crm.db["Contacts"]) == len(sb.erp.db["clientes"])
