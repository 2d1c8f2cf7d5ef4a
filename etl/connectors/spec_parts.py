"""The building blocks of a connector spec (:mod:`etl.connectors.spec`): credentials, auth,
paging, time formats, error rules and the messages of a bad spec."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

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


def paths_problem(paths: list[str]) -> str | None:
    """What is wrong with a list of dotted paths given where one path may be (``records``,
    ``total_path``): each must name a field, once."""
    if not paths:
        return "an empty list names no path (give one path or several)"
    if any(not p.strip() for p in paths):
        return f"each path of the list must name a field (\"\" is not one); got {paths!r}"
    if len(set(paths)) < len(paths):
        return f"a path is listed twice; got {paths!r}"
    return None


class Paging(Strict):
    """Where paging values go: query parameters, or fields of the JSON body at ``body_path``
    (``params.0`` for a JSON-RPC call whose parameters are the first item of ``params``)."""

    where: Literal["query", "body"] = "query"
    body_path: str = ""


class OffsetPaging(Paging):
    """``offset``/``limit`` (or skip/top): the offset moves by the records received, so a
    server that silently serves fewer than asked is paged correctly. ``total_path``: where the
    answer states how many records the listing holds (it ends there). A listing whose
    ``records`` are several lists paged by one offset moves by the longest list of a page; its
    ``total_path`` may name each list's total (it ends at the largest)."""

    type: Literal["offset"]
    offset_param: str = "offset"
    limit_param: str = "limit"
    total_path: str | list[str] | None = None

    @model_validator(mode="after")
    def _totals(self) -> OffsetPaging:
        if isinstance(self.total_path, list):
            problem = paths_problem(self.total_path)
            if problem:
                raise ValueError(f"total_path: {problem}")
        return self


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
    key: str | None = None  # path of ``{last_key}`` in a record; unset: the entity's key
    key_pattern: str | None = None  # a key not matching it is a malformed record (ValueError)


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


class WindowFields(Paging):
    """Changed-since fields (templates naming ``{since}``/``{until}``) sent only when the window
    has a start: a first, full read goes out unfiltered. Placed like paging values."""

    fields: dict[str, str]


Paginator = Annotated[OffsetPaging | PagePaging | KeysetPaging | CursorPaging | NextLinkPaging
                      | RangePaging | NoPaging, Field(discriminator="type")]


class ReadCache(Strict):
    """The system refuses an identical read repeated within ``seconds``: a read is answered
    from the run's own copy for that long (kept compressed); a write to a path forgets the
    answers read from it."""

    seconds: float = Field(gt=0)


# --- time -----------------------------------------------------------------------------------


class Myself(Strict):
    """A read that says which user the credentials are: a GET of ``path``, the first record
    of the list at ``records`` (a dotted path; "" = the answer itself), its field ``value``."""

    path: str
    params: dict[str, str] = Field(default_factory=dict)
    records: str = ""
    value: str = "Id"


class LastUpdater(Strict):
    """Who last changed a record, where the system records it: ``field`` (a dotted path of a
    record) holds that user, ``me`` reads which user ponte's credentials are. A listing of an
    incremental run then leaves out the records whose last change was ponte's own (their
    content is what ponte wrote, already in its snapshot): server-side with ``exclude``, one
    more clause of the listing's filter naming ``{me}``, else client-side."""

    field: str
    me: Myself
    exclude: str | None = None


class TimeFormat(Strict):
    """How a system writes instants: ``iso`` (with or without offset), ``iso_offset`` (an ISO
    value without an offset is not an instant), ``epoch_s``, ``epoch_ms``, ``tagged``
    (class-tagged JSON: ``{"__class__": "datetime", "year": ...}``), or a strftime pattern;
    naive values are in ``zone``."""

    format: str = "iso"
    zone: str = "UTC"
    precision_ms: int = Field(1000, ge=1)


class UpdatedAt(TimeFormat):
    """Where a record's updated-at is: the first of ``paths`` that parses. A path may join
    several fields: ``"{info.dAlt} {info.hAlt}"``, or name a field of every item of a list:
    ``lines[].write_date``."""

    paths: list[str] = Field(min_length=1)
    # the latest of all the paths that parse, not the first (``lines[].write_date``: a
    # child list's stamps count: a record whose line changed has changed)
    latest: bool = False


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
    field; ``hook`` names a hook that computes the wait instead; ``hint`` is said with it."""

    status: list[int | str] = []
    code_path: str | None = None
    code: list[str] = []
    message_path: str | None = None
    message: str | None = None
    action: Action
    wait_header: str | None = None
    wait_group: int | None = None
    field_group: int | None = None
    field_fold: bool = False  # a field named in capitals (``Tag [NAME]``) is given in lower case
    hook: str | None = None
    hint: str | None = None  # what to do, said with the error (``{prefix}``: PONTE_<SIDE>)

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


# --- messages -------------------------------------------------------------------------------


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


# --- custom fields --------------------------------------------------------------------------


class CustomFieldType(Strict):
    """One type of the system's custom fields: which item property holds its value, and the
    transform (with args) a mapping gets when it names such a field and sets none."""

    name: str  # shown by ``ponte fields``: String, Decimal, DateTime, Options, …
    value: str  # the item property, e.g. ``DecimalValue``
    transform: str = "text"
    args: dict[str, object] = Field(default_factory=dict)


# --- schema ---------------------------------------------------------------------------------


class CustomFields(Strict):
    """Custom fields live in list ``list``, one item per field named by ``key``; the system's
    field list (``discovery``) says which exist."""

    list_field: str = Field(alias="list")
    key: str = "FieldKey"
    entity_id: int | None = None  # the system's id for the collection in its field list
    value: str | None = None  # the item field holding every value (no typed field list: Omie)


class SchemaSpec(Strict):
    """Fields as a tree: ``_`` = leaf names (space separated), other keys = nested objects
    (``Phones[]`` = a list of objects); a string value = an object with only those leaves."""

    fields: dict[str, Any]
    always_sent: str | None = None  # paths every record carries; unset = every field
    custom: CustomFields | None = None
