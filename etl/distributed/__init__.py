"""ponte on a distributed engine: Celery workers over RabbitMQ (or Redis), state in PostgreSQL.

An integrator runs ponte for many companies (named connections, :mod:`etl.connections`). Here
each run of one entity of one connection — a sync, a backfill, a verify — is a Celery task:

* :mod:`etl.distributed.jobs` — what one task does (a :class:`Job` in, an :class:`Outcome`
  out), through the library façade; nothing Celery-specific;
* :mod:`etl.distributed.app` — the Celery app (late acknowledgement, prefetch 1) and its one
  task, with the retry rules for a lock held by another run;
* :mod:`etl.distributed.enqueue` — jobs onto the queue: by hand (``ponte enqueue``) and by
  the scheduler, one chain per connection in dependency order;
* :mod:`etl.distributed.lease` and :mod:`etl.distributed.schedule` — ``ponte schedule``: the
  connections' schedules, run by one scheduler at a time under a lease in the state database;
  a second one waits as standby and takes over when the first dies.

The single-machine default (``ponte run``, SQLite, no broker) does not use any of this.
"""

from __future__ import annotations

from etl.distributed.jobs import KINDS, Job, Outcome, run_job

__all__ = ["KINDS", "Job", "Outcome", "run_job"]
