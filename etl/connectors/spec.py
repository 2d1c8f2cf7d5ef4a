"""A connector described as data: the typed models of a connector spec file (YAML).

A spec says how to reach a system (base URL, credentials, auth), what each of its entities is
(collection, key, updated-at, dependencies), how to list changes, read by keys, find by a natural
key, create, update, delete and deactivate, how pages follow each other, what each error answer
means, and the field schema of each collection (what ``ponte mappings check`` checks mapping paths
against). :func:`load_spec` validates a file; every error names the file, the path inside it,
the bad value and the valid choices.

Templates: strings in ``params``, ``body`` and ``path`` may name values in braces: ``{since}``,
``{until}`` (the window edges, in the list's time format, or ``{since:%d/%m/%Y}`` for any
strftime pattern, in the list's zone), ``{key}``, ``{value}``, ``{page}``, ``{page_size}``,
``{offset}``, ``{cursor}``, ``{values}`` (the values a ``find_by``/``read_by_keys`` request
looks for; ``{values:json}`` = as a JSON list), ``{credentials.NAME}`` (a credential declared
``secret: false``, such as a database name). A parameter whose template names a value that is not set (no
``since`` on a first run) is left out; a body string that is one placeholder alone keeps the
value's type (a page number stays a number; ``{key!i}`` makes it an integer).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from etl.connectors.spec_parts import (
    ACTIONS,
    HTTP_METHOD,
    NAME,
    Action,
    Auth,
    BasicAuth,
    BearerAuth,
    BodyAuth,
    Credential,
    CursorPaging,
    CustomFields,
    CustomFieldType,
    ErrorRule,
    HeaderAuth,
    KeysetPaging,
    LastUpdater,
    Myself,
    NextLinkPaging,
    NoAuth,
    NoPaging,
    OAuth2Auth,
    OffsetPaging,
    PagePaging,
    Paginator,
    Paging,
    QueryAuth,
    RangePaging,
    ReadCache,
    SchemaSpec,
    Strict,
    TimeFormat,
    UpdatedAt,
    WindowFields,
    describe,
    paths_problem,
)
from etl.connectors.spec_webhooks import WebhookSpec
from etl.errors import ConfigError

# --- requests -------------------------------------------------------------------------------


class Request(Strict):
    """One request. ``filter``: clauses (templates) of one parameter, those whose values are set
    joined by ``join`` (each parenthesised when there are several); paging may add its own."""

    method: HTTP_METHOD = "GET"
    path: str
    params: dict[str, str | list[str]] = Field(default_factory=dict)  # a list: repeated
    body: Any = None
    headers: dict[str, str] = Field(default_factory=dict)
    filter: Filter | None = None
    # parameters or headers sent encoded once filled (a JSON domain as base64url text)
    encode: dict[str, Literal["base64url"]] = Field(default_factory=dict)


class Filter(Strict):
    param: str
    clauses: list[str] = Field(default_factory=list)
    join: str = " and "


class Paged(Request):
    """A request answered with records: the list at ``records`` (a dotted path; "" = the answer
    itself), or the lists at several paths, one page together (their concatenation) — lists
    that share one offset (``offset`` paginator) or come whole (``none``)."""

    records: str | list[str] = ""
    paginator: Paginator = NoPaging(type="none")

    @model_validator(mode="after")
    def _lists(self) -> Paged:
        if isinstance(self.records, list):
            problem = paths_problem(self.records)
            if problem:
                raise ValueError(f"records: {problem}")
            if self.paginator.type not in ("offset", "none"):
                raise ValueError(f"records: several lists page only together by one offset "
                                 f"(valid paginators: offset, none); got {self.paginator.type!r}")
        return self


class ListSpec(Paged):
    """``edges``: ``widened`` trims the answer to the window at the source's precision,
    ``exact`` to the window itself (a window holding no whole step asks nothing); ``until:
    inclusive``: the system's upper bound includes its value (``{until}`` is the last step
    before the window's end); ``collect``: an unsorted listing is ordered by the whole window,
    or page by page (memory follows the page; the engine takes the system's order)."""

    changed_since: Literal["filter", "none"] = "filter"
    sorted: bool = False  # the answer is ordered by (updated-at, key) already
    window: WindowFields | None = None
    edges: Literal["widened", "exact"] = "widened"
    until: Literal["exclusive", "inclusive"] = "exclusive"
    collect: Literal["window", "page"] = "window"
    time: TimeFormat = TimeFormat()
    page_size: int | None = Field(None, ge=1)
    last_updater: LastUpdater | None = None  # ponte's own last changes left out (spec_parts)

    @model_validator(mode="after")
    def _updater(self) -> ListSpec:
        if self.last_updater is not None and self.last_updater.exclude and self.filter is None:
            raise ValueError("last_updater.exclude: a clause of the listing's filter, but the "
                             "listing has no filter (set filter, or leave exclude out to drop "
                             "ponte's own changes client-side)")
        return self


class ByValues(Paged):
    """Read records by several values at once: ``param`` = ``join`` of ``item`` per value
    (``"Id eq {value}"`` joined by ``" or "``, or ``"{value}"`` by ``","``), ``chunk`` values
    per request; with ``repeat`` the parameter is sent once per value instead; with
    ``body_path`` the items (templates, objects too) go into the JSON body there as a list.
    ``normalize: digits`` compares values and the records' field as digits only; above
    ``scan_above`` values the entity's whole listing is read once instead. A request that
    sends no value (no ``param``, ``filter``, ``body_path`` or ``{value}``) is one listing
    matched client-side for all values at once."""

    param: str | None = None  # with ``filter``: joined values become one more clause of it
    body_path: str | None = None
    item: Any = "{value}"  # ``{value}``, ``{field}`` (the field searched)
    normalize: Literal["none", "digits"] = "none"
    scan_above: int | None = Field(None, ge=1)
    item_hook: str | None = None  # a hook that writes the item instead: (field, value) -> text
    join: str = ","
    repeat: bool = False
    chunk: int = Field(50, ge=1)
    value_pattern: str | None = None  # values not matching it are dropped (never sent)
    unique: bool = False  # each value matches at most one record: stop once all are found
    verify: bool = True  # keep only records whose field equals a value (find_by)


class WriteSpec(Request):
    """A create/update/delete. ``answer: record`` = the answer (at ``record_path``) is the stored
    record; ``reread`` = read it back by the key at ``key_path``; ``none`` = nothing to read."""

    answer: Literal["record", "reread", "none"] = "record"
    record_path: str = ""
    key_path: str | None = None
    wrap: str | None = None  # send the payload inside this body field (the body's own win)
    omit: list[str] = Field(default_factory=list)  # payload fields never sent
    complete: list[str] = Field(default_factory=list)  # fields an answer lacks -> read back
    key_pattern: str | None = None  # a key not matching it is refused before sending
    # workflow steps (a button: Tryton's quote) sent with ``{key}`` before an update / after
    # a create or update, then the record is read back; a step refused rejects an update (a
    # create is kept, with a warning: it exists, and a rejected create would be made again)
    before: list[Request] = Field(default_factory=list)
    then: list[Request] = Field(default_factory=list)


class Idempotency(Strict):
    """How a create whose answer was lost is never made twice: ``upsert`` (the create is keyed
    by ``external_id_field``, resending it updates) or ``lookup`` (after an ambiguous failure,
    find by ``external_id_field`` before sending again); ``none``: resent as is."""

    strategy: Literal["upsert", "lookup", "none"] = "none"
    external_id_field: str | None = None
    natural_key_field: str | None = None  # lookup by this payload field when no external id


# --- entities and the whole spec ------------------------------------------------------------


class ReferenceList(Request):
    """A small list another system's records point into (users, sellers, tags): read whole
    once per run, ``key`` -> ``value``; ``create`` (``{value}`` in its body) adds a missing one."""

    records: str = ""
    key: str = "Id"
    value: str = "Name"
    noun: str = ""  # what one item is called in messages ("seller (vendedor)")
    paginator: Paginator = NoPaging(type="none")
    create: WriteSpec | None = None


class OptionList(ReferenceList):
    table: str = "TableId"


class CustomFieldList(Paged):
    key: str = "Key"  # the field of each item that names a custom field
    label: str | None = None  # its label, as users see it (a mapping may name it by that)
    type: str | None = None  # its type id, looked up in ``types``
    types: dict[str, CustomFieldType] = Field(default_factory=dict)
    # option fields: the field's attribute naming its options' table, and every option (``key``
    # its id, ``value`` its name, ``table`` the attribute naming its table), listed with them
    options_table: str | None = None
    options: OptionList | None = None


class EntitySpec(Strict):
    collection: str  # the native collection, as mapping files name it
    depends_on: list[str] = Field(default_factory=list)
    key: str | None = None  # dotted path of the record's key
    updated_at: UpdatedAt | None = None
    listing: ListSpec | None = Field(None, alias="list")
    read_by_keys: ByValues | None = None
    # one record by key: reads back a lone written record (where a one-key listing would be
    # a repeated request some systems refuse)
    read_one: ByValues | None = None
    find_by: dict[str, ByValues] = Field(default_factory=dict)
    create: WriteSpec | None = None
    update: WriteSpec | None = None
    delete: WriteSpec | None = None
    # how the system deactivates a record (a PATCH of a status field, an action call): run by
    # ``ponte verify --fix`` where the mapping says ``deletes: deactivate``
    deactivate: WriteSpec | None = None
    idempotency: Idempotency = Idempotency()
    write_concurrency: int | None = Field(None, ge=1)  # unset: the side's max_concurrency
    hooks: dict[str, str] = Field(default_factory=dict)  # hook point -> hook name


class Defaults(Strict):
    requests_per_minute: int = Field(60, ge=1)
    max_concurrency: int = Field(4, ge=1)
    page_size: int = Field(100, ge=1)
    page_size_max: int | None = Field(None, ge=1)  # the largest page the system serves
    timeout_s: float = Field(30.0, gt=0)


class ConnectorSpec(Strict):
    name: str = Field(pattern=NAME)
    kind: Literal["crm", "erp", "any"]
    title: str
    base_url: str | None = None  # default (the sandbox for built-ins)
    credentials: dict[str, Credential] = Field(default_factory=dict)
    auth: Auth = NoAuth(type="none")
    defaults: Defaults = Defaults()
    clock_zone: str = "UTC"
    # a hand-written connector ("module:Class"); unset = the generic connector runs this spec
    implementation: str | None = None
    errors: list[ErrorRule] = Field(default_factory=list)
    procedure: str | None = None  # body path naming the remote procedure (JSON-RPC), for messages
    read_cache: ReadCache | None = None
    entities: dict[str, EntitySpec] = Field(min_length=1)
    schemas: dict[str, SchemaSpec] = Field(default_factory=dict)
    # the system's list of custom fields (``{entity_id}``), read for ``mappings check --online``
    custom_fields: CustomFieldList | None = None
    references: dict[str, ReferenceList] = Field(default_factory=dict)  # mapping ``table:``s
    webhooks: WebhookSpec | None = None  # its webhook calls (etl/connectors/spec_webhooks.py)

    @model_validator(mode="after")
    def _consistent(self) -> ConnectorSpec:
        problems = [f"credentials.{n}: a credential name is lower case letters, digits and _"
                    for n in self.credentials if not re.fullmatch(NAME, n)]
        named = {f"auth.{k}": v for k, v in self.auth.model_dump().items()
                 if k in ("credential", "username", "password", "client_id", "client_secret",
                          "refresh_token") and v}
        if isinstance(self.auth, BodyAuth):
            named.update({f"auth.fields.{k}": v for k, v in self.auth.fields.items()})
        for where, cred in named.items():
            if cred not in self.credentials:
                problems.append(f"{where}: {cred!r} is not a declared credential (valid: "
                                f"{', '.join(sorted(self.credentials)) or 'none declared'})")
        for name, entity in self.entities.items():
            for dep in entity.depends_on:
                if dep not in self.entities:
                    problems.append(f"entities.{name}.depends_on: {dep!r} is not an entity "
                                    f"(valid: {', '.join(sorted(self.entities))})")
            if entity.deactivate is not None and entity.deactivate.method == "GET":
                problems.append(f"entities.{name}.deactivate.method: 'GET' changes nothing "
                                "(valid: POST, PUT, PATCH, DELETE)")
            if self.implementation is None:
                for need, attr in (("key", "key"), ("updated_at", "updated_at"),
                                   ("list", "listing")):
                    if getattr(entity, attr) is None:
                        problems.append(f"entities.{name}.{need}: required (the generic "
                                        "connector runs this spec)")
        if problems:
            raise ValueError("; ".join(problems))
        entity_order(self.entities)  # a cycle is an error
        return self


def entity_order(entities: Mapping[str, Any]) -> list[str]:
    """Entities (anything with ``depends_on``) with each after the ones it depends on (ties in
    the given order); a ``ValueError`` names a cycle."""
    done: list[str] = []
    visiting: list[str] = []

    def visit(name: str) -> None:
        if name in done:
            return
        if name in visiting:
            cycle = " -> ".join([*visiting[visiting.index(name):], name])
            raise ValueError(f"entities: depends_on forms a cycle: {cycle}")
        visiting.append(name)
        for dep in entities[name].depends_on:
            if dep in entities:
                visit(dep)
        visiting.pop()
        done.append(name)

    for name in entities:
        visit(name)
    return done


def parse_spec(raw: object, source: str) -> ConnectorSpec:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: a connector spec must be a YAML object with 'name', "
                          "'kind', 'title' and 'entities'")
    try:
        return ConnectorSpec.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(describe(exc, source)) from None


#: libyaml's safe loader when PyYAML was built with it: the same documents, ~10 times faster
#: (every command loads the connector specs; ``ponte serve`` the mappings for every event sync)
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@lru_cache(maxsize=64)
def _parsed(text: str) -> Any:
    return yaml.load(text, Loader=SAFE_LOADER)


def parse_yaml(text: str) -> Any:
    """``text`` parsed by :data:`SAFE_LOADER`, once per process for the same text (a command
    loads the same mappings several times: checks, then the run; ``ponte serve`` for every
    event); each caller gets its own copy, a fraction of a parse's cost."""
    return copy.deepcopy(_parsed(text))


def load_spec(path: Path) -> ConnectorSpec:
    """One spec file, validated (:class:`ConfigError` naming file, path, value and choices)."""
    try:
        raw = parse_yaml(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: connector spec not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the connector spec ({exc})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return parse_spec(raw, str(path))


__all__ = [
    "ACTIONS",
    "HTTP_METHOD",
    "NAME",
    "Action",
    "Auth",
    "BasicAuth",
    "BearerAuth",
    "BodyAuth",
    "ByValues",
    "ConnectorSpec",
    "Credential",
    "CursorPaging",
    "CustomFields",
    "Defaults",
    "EntitySpec",
    "ErrorRule",
    "HeaderAuth",
    "Idempotency",
    "KeysetPaging",
    "LastUpdater",
    "ListSpec",
    "Myself",
    "NextLinkPaging",
    "NoAuth",
    "NoPaging",
    "OAuth2Auth",
    "OffsetPaging",
    "OptionList",
    "PagePaging",
    "Paged",
    "Paginator",
    "Paging",
    "QueryAuth",
    "RangePaging",
    "ReadCache",
    "ReferenceList",
    "Request",
    "SchemaSpec",
    "Strict",
    "TimeFormat",
    "UpdatedAt",
    "WindowFields",
    "WriteSpec",
    "describe",
    "entity_order",
    "load_spec",
    "parse_spec",
    "parse_yaml",
]
