"""Files shipped with ponte: the mapping folders of each system pair.

The mappings live in the repository's top-level ``mappings/`` folder; an installed ponte carries
them as package data (``etl/shipped_mappings/``, see ``pyproject.toml``), a checkout (or an
editable install) reads them where they are.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
DEFAULT_PAIR = "ploomes_omie"


def shipped_mappings_dir(pair: str = DEFAULT_PAIR) -> Path:
    """The folder of the mapping files shipped for ``pair``.

    Installed: ``<site-packages>/etl/shipped_mappings/<pair>``; from a checkout:
    ``<checkout>/mappings/<pair>``. When neither exists the installed location is returned, so
    that the loader's error names a path an operator can look for.
    """
    installed = _PACKAGE / "shipped_mappings" / pair
    checkout = _PACKAGE.parent / "mappings" / pair
    if installed.is_dir() or not checkout.is_dir():
        return installed
    return checkout


__all__ = ["DEFAULT_PAIR", "shipped_mappings_dir"]
