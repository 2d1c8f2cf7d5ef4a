"""How soon a writer whose answer came gets the interpreter back.

A run's threads share one interpreter lock: the main thread reads, normalizes, diffs, plans and
checkpoints while the target's writers wait for answers. A writer whose answer arrived while
the main thread computes gets the lock back when the main thread waits for something, or when
the interpreter makes it let go: after the switch interval, 5 ms by default. That is a quarter
of the whole 20 ms a write takes on a fast system, paid by a share of the writes that grows with
the main thread's work. :func:`quick_switches` shortens the interval to :data:`SWITCH_S` for
the process.

Measured on 2026-12-03, 07:35-08:20 (``bench/push.py``'s run, 10,000 creates at 20 ms): four
writers took 62.2, 62.7, 63.0 and 62.6 s at 5 ms, 60.95, 60.92 and 62.0 s at 0.5 ms; one writer
225.5 s at 5 ms and 226.6 s at 0.5 ms (no difference). The cost is more switching: the process's
CPU time went from 20.3 to 22.0 s (four writers) and from 21.4 to 22.7 s (one writer).
"""

from __future__ import annotations

import sys

#: the interpreter's switch interval while ponte runs, in seconds (Python's default: 0.005)
SWITCH_S = 0.0005


def quick_switches() -> None:
    """Shorten the interpreter's switch interval to :data:`SWITCH_S` (at every run: two calls);
    an interval already shorter, set by a program that embeds ponte, is kept."""
    if sys.getswitchinterval() > SWITCH_S:
        sys.setswitchinterval(SWITCH_S)


__all__ = ["SWITCH_S", "quick_switches"]
