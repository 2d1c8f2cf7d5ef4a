"""What one task of a ``ponte worker`` does: one run of one entity of one connection.

A :class:`Job` is plain data (it travels through the broker as JSON); :func:`run_job` runs it
through the library façade (:class:`etl.ponte.Ponte`) exactly as the commands do — the same
pipeline, the same entity lock, the same run record — and returns an :class:`Outcome`.

Every job is idempotent: a sync or backfill run twice finds the second time that the records it
already wrote diff as unchanged, and a verify only reads (``--fix`` repairs what is left). That
is what lets the broker redeliver a job whose worker died mid-run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from etl.errors import ConfigError
from etl.settings import Settings

#: the kinds of run a job can be
KINDS = ("sync", "backfill", "verify")


@dataclass(frozen=True)
class Job:
    """One run of ``entity`` of ``connection`` (None: the single-connection settings).

    ``since``/``until``/``side``: a backfill's window and side (text as ``ponte backfill``
    takes it); ``fix``: a verify that repairs. ``origin`` says who asked: ``schedule`` (``ponte
    schedule``: a sync that finds its entity busy is skipped, the next one catches up) or
    ``hand`` (``ponte enqueue``: it waits for the lock)."""

    connection: str | None
    kind: str
    entity: str
    since: str | None = None
    until: str | None = None
    side: str | None = None
    fix: bool = False
    origin: str = "hand"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"job kind {self.kind!r}: must be one of {', '.join(KINDS)}")
        if self.origin not in ("hand", "schedule"):
            raise ConfigError(f"job origin {self.origin!r}: must be hand or schedule")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Job:
        return cls(**data)

    def label(self) -> str:
        """``acme/customers sync`` — how logs name the job."""
        return f"{self.connection or '(default)'}/{self.entity} {self.kind}"


@dataclass(frozen=True)
class Outcome:
    """How a job ended: ``status`` is the run's (``ok``, ``partial``, ``failed``, ``stopped``;
    a verify: ``ok`` or ``drift``), ``run_id`` its run record, ``error`` why it failed."""

    job: Job
    status: str
    run_id: str | None = None
    error: str | None = None
    drift: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"job": self.job.as_dict(), "status": self.status, "run_id": self.run_id,
                "error": self.error, "drift": self.drift}


def job_settings(job: Job, *, lease_s: float | None = None) -> Settings:
    """The settings of the job's connection; ``lease_s`` replaces the entity locks' lease (a
    worker's shorter lease, so a run on a dead host is taken over soon: see
    :mod:`etl.distributed.app`)."""
    from etl.connections import settings_for

    settings = settings_for(job.connection)
    if lease_s is not None:
        settings = settings.model_copy(update={"lock_lease_s": int(lease_s)})
    return settings


def run_job(job: Job, *, lease_s: float | None = None,
            should_stop: Callable[[], bool] | None = None) -> Outcome:
    """Run ``job`` once. Raises :class:`~etl.errors.LockHeld` when another run holds the
    entity (the caller decides whether to wait), :class:`~etl.errors.ConfigError` for bad
    settings (nothing was written), :class:`~etl.errors.Stopped` when a verify is stopped;
    a sync or backfill that fails or stops returns that status."""
    from etl.ponte import Ponte

    p = Ponte(job_settings(job, lease_s=lease_s))
    if job.kind == "verify":
        report = p.verify([job.entity], fix=job.fix, should_stop=should_stop)
        left = report.drift if not job.fix else sum(
            max(0, e.drift - e.fixed) for e in report.entities.values())
        return Outcome(job, "ok" if left == 0 else "drift", report.run_id, drift=left)
    if job.kind == "backfill":
        run = p.backfill(job.entity, since=job.since, until=job.until,
                         sides=(job.side,) if job.side else None, should_stop=should_stop)
    else:
        run = p.sync([job.entity], should_stop=should_stop)
    return Outcome(job, run.status, run.run_id, run.error)


def lock_wait(job: Job, *, now: datetime | None = None) -> float | None:
    """Seconds until the lease of the run holding the job's entity runs out (None: no live
    run holds it now — it finished, or its process on this host is dead)."""
    from etl.engine.run import lock_name

    at = now or datetime.now(UTC)
    with job_settings(job).open_state() as store:
        busy = store.lock_busy(lock_name(job.entity), now=at)
    return None if busy is None else max(0.0, (busy[1] - at).total_seconds())


__all__ = ["KINDS", "Job", "Outcome", "job_settings", "lock_wait", "run_job"]
