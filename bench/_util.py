"""Small helpers shared by the benchmarks: child processes, timing and peak memory."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MB.

    Linux's VmHWM, the high-water mark of this process's own memory map. Not ru_maxrss there:
    after fork/vfork + exec it starts from the parent's peak, so a child started by a big
    parent would report the parent's figure. Elsewhere ru_maxrss (KiB on Linux, bytes on macOS).
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss / (1024 * 1024) if sys.platform == "darwin" else maxrss / 1024


@contextmanager
def stopwatch(into: dict[str, float], name: str) -> Iterator[None]:
    """Store the wall-clock seconds of the ``with`` block as ``into[name]``."""
    start = time.perf_counter()
    try:
        yield
    finally:
        into[name] = time.perf_counter() - start


def run_child(script: Path, args: Sequence[str]) -> dict[str, Any]:
    """Run ``python script *args`` in a fresh process and return the JSON object it prints last.

    One contender per process keeps each peak-memory figure its own.
    """
    proc = subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{script.name} {' '.join(args)} failed:\n{proc.stderr[-4000:]}")
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"{script.name} {' '.join(args)} printed no result:\n{proc.stdout}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result
