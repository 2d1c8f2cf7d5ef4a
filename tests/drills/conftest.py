"""Short versions of bench/drills.py: the sandbox runs in a process of its own and ponte runs
as ``ponte`` child processes, so the drills can kill ponte and skew the simulators' clocks."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "drills.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ponte_drills", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["ponte_drills"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def drills() -> ModuleType:
    return _load()
