"""Where connector specs come from, and which one a ``KIND`` names.

Three sources, later ones overriding earlier ones by name:

* **built-in**: the specs shipped inside ponte (``etl/connectors/specs/*.yaml``);
* **package**: third-party packages, through the entry point group ``ponte.connectors``; an
  entry point loads to the path of a spec file or of a folder of them (or a callable returning
  one);
* **dir**: the operator's own folder, ``PONTE_CONNECTORS_DIR`` (every ``*.yaml`` in it).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Literal

from etl.connectors.spec import ConnectorSpec, load_spec
from etl.errors import ConfigError

BUILT_IN_DIR = Path(__file__).resolve().parent / "specs"
ENTRY_POINT_GROUP = "ponte.connectors"
#: The connectors a side uses when ``PONTE_<SIDE>__KIND`` is not set.
DEFAULT_KINDS = {"crm": "ploomes", "erp": "omie"}
Source = Literal["built-in", "package", "dir"]


@dataclass(frozen=True)
class Registered:
    spec: ConnectorSpec
    source: Source
    origin: str  # the file (or the package's entry point) it came from


def _folder(path: Path, source: Source, origin: str | None = None) -> list[Registered]:
    files = sorted(path.glob("*.yaml")) if path.is_dir() else [path]
    out = []
    for f in files:
        where = origin or (f"etl/connectors/specs/{f.name}" if source == "built-in" else str(f))
        out.append(Registered(load_spec(f), source, where))
    return out


@lru_cache(maxsize=1)
def built_in() -> tuple[Registered, ...]:
    return tuple(_folder(BUILT_IN_DIR, "built-in", None))


def from_packages() -> list[Registered]:
    out: list[Registered] = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            target = ep.load()
            if callable(target):
                target = target()
            path = Path(str(target))
        except (ImportError, AttributeError, TypeError, ValueError, OSError) as exc:
            raise ConfigError(f"entry point {ep.name!r} ({ep.value}) of group "
                              f"{ENTRY_POINT_GROUP}: cannot load it ({exc})") from None
        if not path.exists():
            raise ConfigError(f"entry point {ep.name!r} ({ep.value}) of group "
                              f"{ENTRY_POINT_GROUP}: {path} does not exist")
        out += _folder(path, "package", f"{ep.value} ({path})")
    return out


def available(connectors_dir: Path | None = None) -> dict[str, Registered]:
    """Every connector by name: built-in, then packages, then ``connectors_dir``."""
    found: dict[str, Registered] = {r.spec.name: r for r in built_in()}
    found.update({r.spec.name: r for r in from_packages()})
    if connectors_dir is not None:
        if not connectors_dir.is_dir():
            raise ConfigError(f"PONTE_CONNECTORS_DIR={str(connectors_dir)!r}: not a folder")
        found.update({r.spec.name: r for r in _folder(connectors_dir, "dir")})
    return found


def get(name: str, connectors_dir: Path | None = None, *, setting: str = "KIND",
        side: str | None = None) -> Registered:
    """The connector ``name``; a :class:`ConfigError` naming the setting and the valid names."""
    found = available(connectors_dir)
    usable = sorted(n for n, r in found.items() if side is None or r.spec.kind in (side, "any"))
    if name not in found:
        raise ConfigError(f"{setting}={name!r}: unknown connector (valid: {', '.join(usable)})")
    reg = found[name]
    if side is not None and reg.spec.kind not in (side, "any"):
        raise ConfigError(f"{setting}={name!r}: {reg.spec.title} is a connector for the "
                          f"{reg.spec.kind} side, not the {side} (valid: {', '.join(usable)})")
    return reg


def check_file(path: Path) -> ConnectorSpec:
    """Validate one spec file (``ponte connectors check``)."""
    spec = load_spec(path)
    from etl.connectors.schema import system_schema  # the schema trees must build too
    system_schema(spec, source=str(path))
    return spec


def listing(connectors_dir: Path | None = None) -> list[dict[str, Any]]:
    """``ponte connectors list``: one row per connector."""
    rows: list[dict[str, Any]] = []
    for name, reg in sorted(available(connectors_dir).items()):
        rows.append({"name": name, "title": reg.spec.title, "kind": reg.spec.kind,
                     "source": reg.source, "origin": reg.origin,
                     "collections": [e.collection for e in reg.spec.entities.values()],
                     "entities": list(reg.spec.entities)})
    return rows


