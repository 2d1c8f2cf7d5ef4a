"""Hooks: what a spec cannot say as data, each a small named fact about one vendor.

A spec names a hook in an error rule (``hook: omie_redundant_wait``: the wait read out of the
message) or per entity (``hooks: {before_write: NAME}``: the payload changed before it is
sent). Hooks register here by name; third-party hooks register with :func:`hook` when their
package is imported. A ``before_write`` hook is called ``fn(conn, entity, payload)``; one
registered with ``hook(name, with_op=True)`` also gets the write (its action and the record's
key) as ``op=`` (:func:`before_write`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from etl.connectors.base import Record, WriteOp
from etl.connectors.spec import ConnectorSpec
from etl.errors import ConfigError

F = TypeVar("F", bound=Callable[..., Any])

#: Every hook by name.
HOOKS: dict[str, Callable[..., Any]] = {}
#: The hooks that take the write as ``op=`` (registered with ``with_op=True``).
WITH_OP: set[str] = set()


def hook(name: str, *, with_op: bool = False) -> Callable[[F], F]:
    def register(fn: F) -> F:
        HOOKS[name] = fn
        (WITH_OP.add if with_op else WITH_OP.discard)(name)
        return fn
    return register


def before_write(name: str, conn: Any, entity: str, payload: Record, op: WriteOp) -> Record:
    """The payload as the ``before_write`` hook ``name`` changes it; ``op`` (action, key) is
    passed to the hooks that asked for it."""
    fn = HOOKS[name]
    out: Record = fn(conn, entity, payload, op=op) if name in WITH_OP else fn(conn, entity, payload)
    return out


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
