"""The Celery app of ``ponte worker``, ``ponte schedule`` and ``ponte enqueue``, and its one
task: run a :class:`~etl.distributed.jobs.Job`.

Delivery: tasks are acknowledged late (``acks_late``, after the run), rejected back to the queue
when their worker is lost (``task_reject_on_worker_lost``), and each worker slot prefetches one
message (``worker_prefetch_multiplier = 1``), so a worker killed mid-run has its job redelivered
to another worker (RabbitMQ requeues a dead consumer's unacknowledged messages as soon as its
connection drops; Redis after ``visibility_timeout``). A job is idempotent, so running it again
converges.

The killed worker's entity lock: its lock row names the run, host and pid
(:mod:`etl.state.runs`). On the same host the next taker sees the pid is gone and takes the
lock over at once. On another host only the lease can tell, so a worker's runs hold their locks
with a short lease (``--lease``, default :data:`WORKER_LEASE_S`), renewed every third of it
while they run: a redelivered job waits at most that long for a dead host's lock. The 15-minute
lease of ``ponte sync`` stays for the single-machine commands.

A job that finds its entity held by a live run: a scheduled sync is skipped (as ``ponte run``
coalesces; the next one catches up); a job asked by hand, or one redelivered, is retried when
the holder's lease runs out (at most every :data:`WAIT_STEP_S` seconds, up to
:data:`MAX_LOCK_RETRIES` times).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from celery import Celery  # type: ignore[import-untyped]
from celery.exceptions import Reject  # type: ignore[import-untyped]
from loguru import logger

from etl.distributed.jobs import Job, lock_wait, run_job
from etl.errors import ConfigError, EtlError, LockHeld, Stopped

#: the task every job runs as
TASK = "ponte.run"
#: the queue of ``ponte worker``/``schedule``/``enqueue`` unless ``--queue`` names another
DEFAULT_QUEUE = "ponte"
#: the entity locks' lease of a worker's runs (renewed every third of it while they run)
WORKER_LEASE_S = 60.0
#: a job waiting for a lock looks again at least this often
WAIT_STEP_S = 30.0
#: how many times a job waits for a lock before it gives up (about an hour at WAIT_STEP_S)
MAX_LOCK_RETRIES = 120
#: Redis only: how long a message taken by a worker stays invisible to the others (a run longer
#: than this is delivered twice; the entity lock keeps the second one out)
VISIBILITY_TIMEOUT_S = 4 * 3600


class PonteCelery(Celery):  # type: ignore[misc]
    """The Celery app, with what the worker's runs share: ``stop`` (set when the worker is
    asked to shut down: runs stop after their current chunk) and ``lease_s``."""

    stop: threading.Event
    lease_s: float
    queue: str
    #: called with each job before it runs (the worker's log redaction of its secrets)
    before_job: Callable[[Job], None] | None


def make_app(broker_url: str, *, queue: str = DEFAULT_QUEUE,
             lease_s: float = WORKER_LEASE_S) -> PonteCelery:
    """The app for ``broker_url`` (``amqp://`` RabbitMQ, or ``redis://``) and ``queue``."""
    if not broker_url.strip():
        raise ConfigError("PONTE_BROKER_URL is empty: ponte worker, schedule and enqueue need "
                          "a broker (amqp://user:password@host:5672/vhost or redis://host/0)")
    scheme = broker_url.split("://", 1)[0].lower()
    if scheme not in ("amqp", "amqps", "pyamqp", "redis", "rediss"):
        raise ConfigError(f"PONTE_BROKER_URL: scheme {scheme!r} is not supported (amqp:// for "
                          "RabbitMQ, redis:// for Redis)")
    app = PonteCelery("ponte", broker=broker_url, set_as_current=False)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=queue,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT_S},
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        enable_utc=True,
    )
    app.stop = threading.Event()
    app.lease_s = lease_s
    app.queue = queue
    app.before_job = None
    _register(app)
    return app


def _register(app: PonteCelery) -> None:
    @app.task(name=TASK, bind=True, acks_late=True, reject_on_worker_lost=True,  # type: ignore[untyped-decorator]
              shared=False)
    def run(self: Any, job: dict[str, Any], wait: bool = False) -> dict[str, Any]:
        delivery = self.request.delivery_info or {}
        redelivered = bool(delivery.get("redelivered"))
        return execute(app, Job.from_dict(job), wait=wait or redelivered,
                       retries=int(self.request.retries or 0),
                       retry=lambda countdown: self.retry(
                           kwargs={"job": job, "wait": True}, countdown=countdown,
                           max_retries=MAX_LOCK_RETRIES))


def execute(app: PonteCelery, job: Job, *, wait: bool, retries: int,
            retry: Callable[[float], BaseException]) -> dict[str, Any]:
    """The task's body: run the job; an entity held by a live run is waited for (``retry``)
    or skipped as the module's rules say; a run stopped by the worker's shutdown goes back to
    the queue. Returns the status (and run id): Celery logs it with its own logger, which does
    not mask secrets, so no error text goes there; ponte's own log lines say why."""
    log = logger.bind(job=job.label())
    if wait and retries == 0:
        log.info("{}: delivered again (its worker died?); running it", job.label())
    try:
        if app.before_job is not None:
            app.before_job(job)
        # a busy entity is seen before a run is recorded (a failed "lock held" run would
        # raise the run_failed alert); the run's own lock attempt still settles a race
        left = lock_wait(job)
        if left is None:
            try:
                outcome = run_job(job, lease_s=app.lease_s, should_stop=app.stop.is_set)
            except LockHeld:
                left = lock_wait(job)
            else:
                if outcome.status == "stopped" and app.stop.is_set():
                    log.warning("{}: stopped by the worker's shutdown; back to the queue",
                                job.label())
                    raise Reject(requeue=True)
                log.info("{}: {}{}", job.label(), outcome.status,
                         f" (run {outcome.run_id[:8]})" if outcome.run_id else "")
                return {"status": outcome.status, "run_id": outcome.run_id}
    except Stopped:  # a verify stopped between pages
        if app.stop.is_set():
            log.warning("{}: stopped by the worker's shutdown; back to the queue", job.label())
            raise Reject(requeue=True) from None
        raise
    except ConfigError as exc:  # retrying does not help: said once, acknowledged
        log.error("{}: bad configuration, not run: {}", job.label(), exc)
        return {"status": "failed"}
    except EtlError as exc:
        log.error("{}: failed: {}", job.label(), exc)
        return {"status": "failed"}
    except Reject:
        raise
    except Exception as exc:  # noqa: BLE001 - a bug: its run is recorded failed; acknowledged
        import traceback

        log.error("{}: internal error (please report it): {}: {}", job.label(),
                  type(exc).__name__, " ".join(str(exc).split()))
        log.debug("traceback:\n{}", "".join(traceback.format_exception(exc)).rstrip())
        return {"status": "failed"}
    return _busy(job, left, wait=wait, retries=retries, retry=retry)


def _busy(job: Job, left: float | None, *, wait: bool, retries: int,
          retry: Callable[[float], BaseException]) -> dict[str, Any]:
    """Another live run holds the job's entity (its lease ends in ``left`` seconds): a
    scheduled sync is skipped; a job by hand or delivered again waits (raises ``retry``)."""
    log = logger.bind(job=job.label())
    if not (wait or job.origin == "hand"):
        log.info("{}: skipped, another run holds it (the next scheduled run catches up)",
                 job.label())
        return {"status": "skipped"}
    if retries >= MAX_LOCK_RETRIES:
        log.error("{}: gave up waiting for the lock after {} tries", job.label(), retries)
        return {"status": "failed"}
    countdown = 1.0 if left is None else min(left + 1.0, WAIT_STEP_S)
    log.info("{}: another run holds it; trying again in {:.0f} s", job.label(), countdown)
    raise retry(countdown)


__all__ = ["DEFAULT_QUEUE", "MAX_LOCK_RETRIES", "TASK", "WAIT_STEP_S", "WORKER_LEASE_S",
           "PonteCelery", "execute", "make_app"]
