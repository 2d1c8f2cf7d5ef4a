"""The process's long-lived objects kept out of the cyclic garbage collector's walks.

A full collection stops every thread while it walks every object the collector tracks: ~118,000
once ponte, pandas and SQLAlchemy are imported (50 ms), more once a run has set itself up and
read a batch; 9-10 full collections of up to 0.13 s each in a run of 10,000 creates, each with
the target's writers stopped (measured: 0.9-1.0 s in all). :func:`settle` moves the
objects alive once a run has set itself up (modules, specs, mappings, clients) into the
collector's permanent generation (:func:`gc.freeze`), once per process: later collections walk
what runs create afterwards. A collection just before frees what is garbage already; reference
counting still frees frozen objects, so only a cycle among objects alive then and dropped later is
kept (once, at the first run of a process).
"""

from __future__ import annotations

import gc
import threading

_settled = threading.Event()


def settle() -> None:
    """Freeze what is alive now out of the collector's walks; once per process."""
    if not _settled.is_set():
        _settled.set()
        gc.collect()  # what is garbage already is freed, not frozen
        gc.freeze()


__all__ = ["settle"]
