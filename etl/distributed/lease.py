"""A named lease in the state database, through the store's lock API (:mod:`etl.state.runs`):
what keeps ``ponte schedule`` to one active scheduler per queue.

The holder renews it every third of the lease; a standby tries to take it at the same pace. A
holder that dies on the same host is replaced at once (the lock row names its pid, which the
store finds gone); one on another host, or cut off from the database, when its lease runs out.
A holder that fails to renew (the lease was taken over) stops acting as the holder at once.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime

from etl.state import Store


class Lease:
    """The lease ``name`` in ``store``, held for ``lease_s`` seconds from each acquire or
    renewal; ``now`` is the clock (aware datetimes)."""

    def __init__(self, store: Store, name: str, *, lease_s: float,
                 now: Callable[[], datetime]) -> None:
        self.store, self.name, self.lease_s, self.now = store, name, lease_s, now
        self.owner = uuid.uuid4().hex

    def acquire(self) -> bool:
        """Take the lease if it is free, expired, ours, or held by a dead process of this
        host."""
        return self.store.acquire_lock(self.name, self.owner, lease_s=self.lease_s,
                                       now=self.now())

    def renew(self) -> bool:
        """Extend it; False when it is no longer ours."""
        return self.store.renew_lock(self.name, self.owner, lease_s=self.lease_s,
                                     now=self.now())

    def release(self) -> None:
        self.store.release_lock(self.name, self.owner)

    def holder(self) -> tuple[str, datetime] | None:
        """(owner, lease end) of whoever holds it, expired or not."""
        return self.store.lock_holder(self.name)


__all__ = ["Lease"]
