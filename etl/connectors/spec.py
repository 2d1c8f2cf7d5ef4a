"""A connector described as data: the typed models of a connector spec file (YAML).

A spec says how to reach a system (base URL, credentials, auth), what each of its entities is
(collection, key, updated-at, dependencies), how to list changes, read by keys, find by a natural
key, create, update and delete, how pages follow each other, what each error answer means, and
the field schema of each collection (what ``ponte mappings check`` checks mapping paths
against). :func:`load_spec` validates a file; every error names the file, the path inside it,
the bad value and the valid choices.

Templates: strings in ``params``, ``body`` and ``path`` may name values in braces: ``{since}``,
``{until}`` (the window edges, in the list's time format, or ``{since:%d/%m/%Y}`` for any
strftime pattern, in the list's zone), ``{key}``, ``{value}``, ``{page}``, ``{page_size}``,
``{offset}``, ``{cursor}``. A parameter whose template names a value that is not set (no
``since`` on a first run) is left out; a body string that is one placeholder alone keeps the
value's type (a page number stays a number).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from etl.errors import ConfigError

NAME = r"^[a-z][a-z0-9_]*$"
HTTP_METHOD = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


# --- credentials and auth -------------------------------------------------------------------


class Credential(Strict):
    """One named secret or value the operator sets (``PONTE_CRM__CREDENTIALS__<NAME>``)."""

    secret: bool = True
    description: str = ""
    default: str | None = None  # a sandbox value, so a fresh checkout talks to the simulator
    account: bool = False  # identifies the account (hashed into the state binding)


class NoAuth(Strict):
    type: Literal["none"]


class HeaderAuth(Strict):
    type: Literal["header"]
    name: str  # header name, e.g. X-Api-Key
    credential: str
    prefix: str = ""


class QueryAuth(Strict):
    type: Literal["query"]
    name: str
    credential: str


class BodyAuth(Strict):
    """Credentials as JSON body fields (JSON-RPC style APIs): body field -> credential."""

    type: Literal["body"]
    fields: dict[str, str]


class BearerAuth(Strict):
    type: Literal["bearer"]
    credential: str


class BasicAuth(Strict):
    type: Literal["basic"]
    username: str  # credential names
    password: str


class OAuth2Auth(Strict):
    """OAuth2 token endpoint; the token is cached and refreshed ``refresh_before_s`` before it
    expires."""

    type: Literal["oauth2"]
    token_url: str
    grant: Literal["client_credentials", "refresh_token"] = "client_credentials"
    client_id: str  # credential names
    client_secret: str
    refresh_token: str | None = None
    scope: str | None = None
    refresh_before_s: float = Field(60.0, ge=0)


Auth = Annotated[NoAuth | HeaderAuth | QueryAuth | BodyAuth | BearerAuth | BasicAuth | OAuth2Auth,
                 Field(discriminator="type")]


# --- paging ---------------------------------------------------------------------------------


class Paging(Strict):
    """Where paging values go: query parameters, or fields of the JSON body at ``body_path``
    (``params.0`` for a JSON-RPC call whose parameters are the first item of ``params``)."""

    where: Literal["query", "body"] = "query"
    body_path: str = ""


class OffsetPaging(Paging):
    """``offset``/``limit`` (or skip/top): the offset moves by the records received, so a
    server that silently serves fewer than asked is paged correctly."""

    type: Literal["offset"]
    offset_param: str = "offset"
    limit_param: str = "limit"


class PagePaging(Paging):
    """Page number (from ``first_page``), ending at ``total_pages_path`` when the answer has it."""

    type: Literal["page_number"]
    page_param: str = "page"
    size_param: str | None = "per_page"
    first_page: int = 1
    total_pages_path: str | None = None


class KeysetPaging(Paging):
    """Keyset on (updated-at, key): the next page adds ``clause`` (placeholders
    ``{last_updated}``, ``{last_key}``) to parameter ``param``, joined by ``join``."""

    type: Literal["keyset"]
    param: str
    clause: str
    join: str = " and "
    size_param: str | None = None


class CursorPaging(Paging):
    """A cursor in the answer (``cursor_path``) sent back as ``cursor_param``."""

    type: Literal["cursor"]
    cursor_path: str
    cursor_param: str
    size_param: str | None = None


class NextLinkPaging(Paging):
    """The answer names the next page's URL (``next_path``)."""

    type: Literal["next_link"]
    next_path: str
    size_param: str | None = None


class RangePaging(Strict):
    """``Range: <unit>=first-last`` request header; the answer's ``Content-Range`` names the
    total."""

    type: Literal["range"]
    unit: str = "items"


class NoPaging(Strict):
    type: Literal["none"]


Paginator = Annotated[OffsetPaging | PagePaging | KeysetPaging | CursorPaging | NextLinkPaging
                      | RangePaging | NoPaging, Field(discriminator="type")]


# --- time -----------------------------------------------------------------------------------


class TimeFormat(Strict):
    """How a system writes instants: ``iso`` (with or without offset), ``epoch_s``,
    ``epoch_ms``, or a strftime pattern; naive values are in ``zone``."""

    format: str = "iso"
    zone: str = "UTC"
    precision_ms: int = Field(1000, ge=1)


class UpdatedAt(TimeFormat):
    """Where a record's updated-at is: the first of ``paths`` that parses. A path may join
    several fields: ``"{info.dAlt} {info.hAlt}"``."""

    paths: list[str] = Field(min_length=1)


# --- requests -------------------------------------------------------------------------------


class Request(Strict):
    method: HTTP_METHOD = "GET"
    path: str
    params: dict[str, str] = {}
    body: Any = None
    headers: dict[str, str] = {}


class ListSpec(Request):
    records: str = ""  # dotted path of the records' list in the answer; "" = the answer itself
    changed_since: Literal["filter", "none"] = "filter"
    sorted: bool = False  # the answer is ordered by (updated-at, key) already
    time: TimeFormat = TimeFormat()
    paginator: Paginator = NoPaging(type="none")
    page_size: int | None = Field(None, ge=1)


class ByValues(Request):
    """Read records by several values at once: ``param`` = ``join`` of ``item`` per value
    (``"Id eq {value}"`` joined by ``" or "``, or ``"{value}"`` by ``","``), ``chunk`` values
    per request; with ``repeat`` the parameter is sent once per value instead."""

    param: str | None = None
    item: str = "{value}"
    join: str = ","
    repeat: bool = False
    chunk: int = Field(50, ge=1)
    records: str = ""
    paginator: Paginator = NoPaging(type="none")


class WriteSpec(Request):
    """A create/update/delete. ``answer: record`` = the answer (at ``record_path``) is the stored
    record; ``reread`` = read it back by the key at ``key_path``; ``none`` = nothing to read."""

    answer: Literal["record", "reread", "none"] = "record"
    record_path: str = ""
    key_path: str | None = None
    wrap: str | None = None  # send the payload inside this body field


class Idempotency(Strict):
    """How a create whose answer was lost is never made twice: ``upsert`` (the create is keyed
    by ``external_id_field``, resending it updates) or ``lookup`` (after an ambiguous failure,
    find by ``external_id_field`` before sending again); ``none``: resent as is."""

    strategy: Literal["upsert", "lookup", "none"] = "none"
    external_id_field: str | None = None


# --- errors ---------------------------------------------------------------------------------

ACTIONS = ("ok", "retry", "end_of_list", "not_found", "already_exists", "rejected",
           "bad_credentials", "unavailable", "bad_request")
Action = Literal["ok", "retry", "end_of_list", "not_found", "already_exists", "rejected",
                 "bad_credentials", "unavailable", "bad_request"]


class ErrorRule(Strict):
    """What an answer means. Every condition given must hold: ``status`` (codes, or ``4xx`` /
    ``5xx``), the body's ``code`` at ``code_path`` (``*`` ending = prefix), ``message`` (regex
    on the text at ``message_path``, or the whole body). ``wait_header`` / ``wait_group`` (a
    regex group, seconds) set the wait of a ``retry``; ``field_group`` names the rejected
    field; ``hook`` names a hook that computes the wait instead."""

    status: list[int | str] = []
    code_path: str | None = None
    code: list[str] = []
    message_path: str | None = None
    message: str | None = None
    action: Action
    wait_header: str | None = None
    wait_group: int | None = None
    field_group: int | None = None
    hook: str | None = None

    @model_validator(mode="after")
    def _valid(self) -> ErrorRule:
        for s in self.status:
            if isinstance(s, str) and not re.fullmatch(r"[1-5]xx", s):
                raise ValueError(f"status {s!r}: a code or 1xx..5xx")
        if self.message is not None:
            try:
                re.compile(self.message)
            except re.error as exc:
                raise ValueError(f"message {self.message!r}: not a valid regex ({exc})") from None
        return self


# --- schema ---------------------------------------------------------------------------------


class CustomFields(Strict):
    """Custom fields live in list ``list``, one item per field named by ``key``; the system's
    field list (``discovery``) says which exist."""

    list_field: str = Field(alias="list")
    key: str = "FieldKey"
    entity_id: int | None = None


class SchemaSpec(Strict):
    """Fields as a tree: ``_`` = leaf names (space separated), other keys = nested objects
    (``Phones[]`` = a list of objects); a string value = an object with only those leaves."""

    fields: dict[str, Any]
    always_sent: str | None = None  # paths every record carries; unset = every field
    custom: CustomFields | None = None


# --- entities and the whole spec ------------------------------------------------------------


class EntitySpec(Strict):
    collection: str  # the native collection, as mapping files name it
    depends_on: list[str] = []
    key: str | None = None  # dotted path of the record's key
    updated_at: UpdatedAt | None = None
    listing: ListSpec | None = Field(None, alias="list")
    read_by_keys: ByValues | None = None
    find_by: dict[str, ByValues] = {}
    create: WriteSpec | None = None
    update: WriteSpec | None = None
    delete: WriteSpec | None = None
    idempotency: Idempotency = Idempotency()
    write_concurrency: int = Field(1, ge=1)
    hooks: dict[str, str] = {}  # hook point -> hook name


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
    credentials: dict[str, Credential] = {}
    auth: Auth = NoAuth(type="none")
    defaults: Defaults = Defaults()
    clock_zone: str = "UTC"
    # a hand-written connector ("module:Class"); unset = the generic connector runs this spec
    implementation: str | None = None
    errors: list[ErrorRule] = []
    entities: dict[str, EntitySpec] = Field(min_length=1)
    schemas: dict[str, SchemaSpec] = {}

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


def entity_order(entities: dict[str, EntitySpec]) -> list[str]:
    """Entities with each after the ones it depends on (ties in declaration order)."""
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


def _where(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def describe(exc: ValidationError, source: str) -> str:
    """One line per problem: ``file: path: what (valid: ...); got value``."""
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        ctx = err.get("ctx") or {}
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "union_tag_invalid":
            msg = (f"unknown {ctx.get('discriminator', 'type')} {ctx.get('tag')!r} "
                   f"(valid: {ctx.get('expected_tags')})")
            loc = loc + ("type",)
        elif "expected" in ctx and str(ctx["expected"]) not in msg:
            msg += f" (valid: {ctx['expected']})"
        # the tag of a discriminated union is part of pydantic's path: drop it
        loc = tuple(p for p in loc if not (isinstance(p, str) and p in _TAGS))
        bad = err.get("input")
        shown = f"; got {bad!r}" if not isinstance(bad, dict | list) and bad is not None else ""
        lines.append(f"{source}: {_where(loc)}: {msg}{shown}")
    return "\n".join(lines)


_TAGS = {"none", "header", "query", "body", "bearer", "basic", "oauth2", "offset", "page_number",
         "keyset", "cursor", "next_link", "range"}


def parse_spec(raw: object, source: str) -> ConnectorSpec:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: a connector spec must be a YAML object with 'name', "
                          "'kind', 'title' and 'entities'")
    try:
        return ConnectorSpec.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(describe(exc, source)) from None


def load_spec(path: Path) -> ConnectorSpec:
    """One spec file, validated (:class:`ConfigError` naming file, path, value and choices)."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: connector spec not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the connector spec ({exc})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return parse_spec(raw, str(path))
