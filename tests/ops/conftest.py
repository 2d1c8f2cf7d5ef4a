"""Fixtures of the operator-command tests: the in-process World of the engine tests, and real
sandbox servers on loopback with the environment pointing ``ponte`` at them."""

from __future__ import annotations

from tests.engine.conftest import empty_world, world  # noqa: F401  (fixtures reused)
