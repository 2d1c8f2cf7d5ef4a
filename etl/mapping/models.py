"""Typed mapping models. A mapping file describes one entity of one system pair.

Every *mapped field* has a canonical name (``tax_id``, ``email``) and, per side, the native path
that carries it plus a named transform. Canonical values are strings or ``None`` after
normalization, so both sides compare equal when they hold the same fact.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Side = Literal["crm", "erp"]
SIDES: tuple[Side, Side] = ("crm", "erp")
Policy = Literal["crm_wins", "erp_wins", "newest_wins", "manual"]


def other(side: Side) -> Side:
    return "erp" if side == "crm" else "crm"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SideField(Strict):
    """Where one mapped field lives in one system."""

    path: str | None = None  # dotted native path, e.g. ``City.IBGECode``, ``cabecalho.etapa``
    paths: list[str] | None = None  # several native paths for one value (Omie DDD + number)
    transform: str = "text"
    args: dict[str, Any] = Field(default_factory=dict)
    fallback: str | None = None  # native path read when ``path`` is empty
    max_length: int | None = None  # the system's limit for this field, checked before writing
    read_only: bool = False  # read for comparison, never written

    @model_validator(mode="after")
    def _one_path(self) -> SideField:
        if (self.path is None) == (self.paths is None):
            raise ValueError("give exactly one of 'path' or 'paths'")
        return self

    def native_paths(self) -> list[str]:
        return list(self.paths) if self.paths is not None else [self.path]  # type: ignore[list-item]


class FieldSpec(Strict):
    crm: SideField | None = None
    erp: SideField | None = None
    owner: Side | None = None  # only the owner's changes flow; the other side seeds it on create
    required: bool = False  # a source record without it is quarantined

    def side(self, side: Side) -> SideField | None:
        return self.crm if side == "crm" else self.erp


class SystemSpec(Strict):
    collection: str  # native collection, for messages
    external_id_field: str | None = None  # native field holding ponte's external id
    natural_key_field: str | None = None  # native field to search by natural key


class Precondition(Strict):
    """``field`` holds the (canonical) key of a record of ``entity``, which must have the
    ``require``d fields filled before this record may be sent."""

    field: str
    entity: str
    require: list[str]
    message: str | None = None


class EntityMapping(Strict):
    entity: str
    description: str = ""
    systems: dict[Side, SystemSpec]
    owner: Side | None = None  # default owner of fields that name none (one-way entities)
    create_in: list[Side] = Field(default_factory=list)
    natural_key: str | None = None
    conflict: Policy = "manual"
    on_match: Literal["crm_wins", "erp_wins", "newest_wins"] = "erp_wins"
    deletes: Literal["ignore", "deactivate", "delete"] = "ignore"
    deactivate: dict[str, str] = Field(default_factory=dict)  # canonical field -> value
    depends_on: list[str] = Field(default_factory=list)
    create_defaults: dict[Side, dict[str, Any]] = Field(default_factory=dict)
    preconditions: list[Precondition] = Field(default_factory=list)
    fields: dict[str, FieldSpec]

    # --- derived views -----------------------------------------------------------------------

    def field_owner(self, name: str) -> Side | None:
        return self.fields[name].owner or self.owner

    def flows(self, name: str, source: Side, *, create: bool = False) -> bool:
        """Does field ``name`` flow from ``source`` into the other side?"""
        spec = self.fields[name]
        src, dst = spec.side(source), spec.side(other(source))
        if src is None or dst is None or dst.read_only:
            return False
        owner = self.field_owner(name)
        return create or owner is None or owner == source

    def sources(self) -> list[Side]:
        """Sides whose records carry changes that flow out (read each run)."""
        return [s for s in SIDES if any(self.flows(f, s) for f in self.fields)]

    def columns(self) -> list[str]:
        return list(self.fields)

    def side_columns(self, side: Side) -> list[str]:
        return [f for f, spec in self.fields.items() if spec.side(side) is not None]
