"""Hooks: what a spec cannot say as data, each a small named fact about one vendor.

A spec names a hook in an error rule (``hook: omie_redundant_wait``: the wait read out of the
message) or per entity (``hooks: {before_write: NAME}``: the payload changed before it is
sent). Hooks register here by name; third-party hooks register with :func:`hook` when their
package is imported.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from etl.connectors.spec import ConnectorSpec
from etl.errors import ConfigError

F = TypeVar("F", bound=Callable[..., Any])

#: Every hook by name.
HOOKS: dict[str, Callable[..., Any]] = {}


def hook(name: str) -> Callable[[F], F]:
    def register(fn: F) -> F:
        HOOKS[name] = fn
        return fn
    return register


def _load() -> None:
    from etl.connectors.hooks import (  # noqa: F401  (register their hooks)
        bottlecrm,
        omie,
        ploomes,
        tryton,
    )


def wait_hooks(spec: ConnectorSpec) -> dict[str, Callable[[str], float]]:
    """The hooks the spec's error rules name; a :class:`ConfigError` for an unknown one."""
    _load()
    out = {}
    names = [r.hook for r in spec.errors if r.hook]
    names += [n for e in spec.entities.values() for n in e.hooks.values()]
    names += [b.item_hook for e in spec.entities.values() for b in e.find_by.values()
              if b.item_hook]
    for name in names:
        if name not in HOOKS:
            raise ConfigError(f"connector {spec.name!r}: unknown hook {name!r} (valid: "
                              f"{', '.join(sorted(HOOKS))})")
        out[name] = HOOKS[name]
    return {r.hook: out[r.hook] for r in spec.errors if r.hook}
