"""Webhook delivery, shared by both simulators: at-least-once POSTs from a background thread.

Each simulator owns one :class:`Deliverer`. A write that a registered webhook watches enqueues
one :class:`Delivery` (the JSON body is serialized once, so a retry or a duplicate sends the
very same bytes); the request that caused it never waits. The delivery thread starts on the
first enqueue, so a simulator with no webhook configured runs no thread and pays nothing.

Rules (reference B9, read as the common contract of both vendors):

* Deliveries to one URL go out in the order they were made (FIFO per URL); a delivery being
  retried holds back those behind it on its URL, never those of another URL.
* A 2xx answer is done. Anything else, a timeout or a refused connection is retried after
  :data:`BACKOFF_S` (0.2 s, 0.5 s, 1 s, 2 s, then 4 s), up to ``webhook_max_tries`` attempts in
  all; then the delivery goes to the dead-letter list (readable through the admin API).
* Fault knobs (``core.Faults``): ``webhook_delay_s`` (each delivery waits this long before its
  first attempt), ``webhook_duplicate_rate`` (share of deliveries enqueued twice, identical),
  ``webhook_reorder`` (share of deliveries held back and sent after the next one to the same
  URL; one held longer than :data:`REORDER_HOLD_S` goes alone). Drawn from the deliverer's own
  random generator, seeded like the simulator, so the request fault knobs keep their sequence.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 4.0)
REORDER_HOLD_S = 0.5
DEAD_LETTERS_KEPT = 1000
#: Fields of a body shown masked in the dead-letter list (a receiver's shared key).
MASKED = ("ValidationKey",)


@dataclass
class Delivery:
    """One POST to make: where, the exact body, and how it went so far."""

    url: str
    body: bytes
    due: float  # monotonic time of the next attempt
    attempts: int = 0
    last_error: str = ""
    held_since: float = 0.0


@dataclass
class Counts:
    delivered: int = 0  # 2xx answers
    retried: int = 0  # attempts that failed and were scheduled again
    dead_lettered: int = 0
    attempts: int = 0


@dataclass
class _Lane:
    """The deliveries waiting for one URL, in order, and the one held back by the reorder knob."""

    queue: deque[Delivery] = field(default_factory=deque)
    held: Delivery | None = None


@dataclass(frozen=True)
class Knobs:
    """The webhook knobs as the deliverer reads them (from the simulator's ``Faults``)."""

    delay_s: float = 0.0
    duplicate_rate: float = 0.0
    reorder: float = 0.0
    max_tries: int = 6
    timeout_s: float = 2.0


class Deliverer:
    """The delivery queue and thread of one simulator."""

    def __init__(self, knobs: Callable[[], Knobs], *, seed: int = 0, name: str = "sandbox"
                 ) -> None:
        self._knobs = knobs
        self._seed = seed
        self.rng = random.Random(seed)
        self.name = name
        self.counts = Counts()
        self.dead_letters: deque[dict[str, Any]] = deque(maxlen=DEAD_LETTERS_KEPT)
        self._lanes: dict[str, _Lane] = {}
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._in_flight = 0

    # --- the producer side (called from request handlers, under the simulator's lock) -------

    def enqueue(self, url: str, payload: dict[str, Any]) -> None:
        """Queue one delivery of ``payload`` to ``url`` (maybe twice, maybe held back, by the
        knobs); returns at once."""
        knobs = self._knobs()
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        now = time.monotonic()
        with self._cond:
            if self._stopping:
                return
            copies = 2 if knobs.duplicate_rate and self.rng.random() < knobs.duplicate_rate else 1
            lane = self._lanes.setdefault(url, _Lane())
            for _ in range(copies):
                item = Delivery(url, body, now + knobs.delay_s)
                if lane.held is not None:  # the held one goes after this one: neighbours swap
                    held, lane.held = lane.held, None
                    lane.queue.append(item)
                    held.due = max(held.due, item.due)
                    lane.queue.append(held)
                elif knobs.reorder and self.rng.random() < knobs.reorder:
                    item.held_since = now
                    lane.held = item
                else:
                    lane.queue.append(item)
            self._start()
            self._cond.notify()

    def pending(self) -> int:
        with self._cond:
            return self._in_flight + sum(len(lane.queue) + (lane.held is not None)
                                         for lane in self._lanes.values())

    def status(self) -> dict[str, Any]:
        """Counters and dead letters, for the admin API."""
        with self._cond:
            counts = {"delivered": self.counts.delivered, "retried": self.counts.retried,
                      "dead_lettered": self.counts.dead_lettered,
                      "attempts": self.counts.attempts}
            letters = list(self.dead_letters)
        return {**counts, "pending": self.pending(), "dead_letters": letters}

    def clear(self) -> None:
        """Forget queued deliveries, counters and dead letters (the simulator's reset)."""
        with self._cond:
            self._lanes.clear()
            self.counts = Counts()
            self.dead_letters.clear()
            self.rng = random.Random(self._seed)

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until nothing is pending (for tests and benchmarks); False on timeout."""
        deadline = time.monotonic() + timeout
        while self.pending():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread (pending deliveries are dropped: the simulator is going away)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)

    # --- the delivery thread ----------------------------------------------------------------

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"{self.name}-webhooks",
                                            daemon=True)
            self._thread.start()

    def _next(self) -> Delivery | None:
        """The next due delivery (FIFO per URL), waiting for one; None once stopping."""
        with self._cond:
            while not self._stopping:
                now = time.monotonic()
                wake = float("inf")
                for lane in self._lanes.values():
                    if lane.held is not None and now - lane.held.held_since >= REORDER_HOLD_S:
                        lane.queue.append(lane.held)  # no neighbour came: it goes alone
                        lane.held = None
                    if lane.held is not None:
                        wake = min(wake, lane.held.held_since + REORDER_HOLD_S)
                    if lane.queue:
                        head = lane.queue[0]
                        if head.due <= now:
                            self._in_flight += 1
                            return lane.queue.popleft()
                        wake = min(wake, head.due)
                self._cond.wait(None if wake == float("inf") else max(0.0, wake - now))
            return None

    def _run(self) -> None:
        with httpx.Client(headers={"User-Agent": f"{self.name}-webhooks"}) as client:
            while (item := self._next()) is not None:
                self._attempt(client, item)

    def _attempt(self, client: httpx.Client, item: Delivery) -> None:
        knobs = self._knobs()
        error = ""
        try:
            answer = client.post(item.url, content=item.body, timeout=knobs.timeout_s,
                                 headers={"Content-Type": "application/json"})
            if not 200 <= answer.status_code < 300:
                error = f"HTTP {answer.status_code}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        with self._cond:
            self._in_flight -= 1
            self.counts.attempts += 1
            item.attempts += 1
            lane = self._lanes.get(item.url)
            if lane is None:  # the simulator was reset meanwhile: forget it
                pass
            elif not error:
                self.counts.delivered += 1
            elif item.attempts >= knobs.max_tries:
                self.counts.dead_lettered += 1
                self.dead_letters.append(_dead_letter(item, error))
            else:
                self.counts.retried += 1
                item.last_error = error
                item.due = time.monotonic() + BACKOFF_S[min(item.attempts, len(BACKOFF_S)) - 1]
                lane.queue.appendleft(item)  # it keeps its place: FIFO per URL
            self._cond.notify_all()


def _dead_letter(item: Delivery, error: str) -> dict[str, Any]:
    """What the admin API shows of a delivery given up on (the receiver's key masked)."""
    body: Any = json.loads(item.body)
    if isinstance(body, dict):
        body = {k: ("***" if k in MASKED and v else v) for k, v in body.items()}
    return {"url": item.url, "attempts": item.attempts, "last_error": error, "body": body}
