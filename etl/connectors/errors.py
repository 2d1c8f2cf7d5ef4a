"""The error map: what an answer means, from its status, a code in its body and its message
(spec ``errors:`` rules first, then the HTTP defaults), and how each meaning maps onto the tree
of :mod:`etl.errors`."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import httpx

from etl.connectors.http import Verdict, retry_after_seconds
from etl.connectors.spec import Action, ErrorRule
from etl.connectors.templates import dig

#: A hook that reads the wait (seconds) out of an answer's message.
WaitHook = Callable[[str], float]


@dataclass(frozen=True)
class Outcome:
    action: Action
    status: int
    message: str  # the system's own words (never a credential: answers do not echo them)
    wait: float | None = None  # seconds, for ``retry``
    field: str | None = None  # for ``rejected``
    stated: bool = False  # the wait is the one the system states in its message
    hint: str | None = None  # the rule's advice (what to do, or what the rule is)


def answer_of(response: httpx.Response) -> object:
    """The answer's JSON; None when it has none (empty, or not JSON)."""
    try:
        return response.json()
    except ValueError:
        return None


#: :func:`classify` reads the answer itself
_UNREAD = object()


def _text(body: object, response: httpx.Response, path: str | None) -> str:
    if path is not None:
        value = dig(body, path)
        if value is not None:
            return str(value)
    if isinstance(body, dict):
        for key in ("message", "error", "detail", "faultstring"):
            value = body.get(key)
            if isinstance(value, dict) and value.get("message"):
                return str(value["message"])
            if value:
                return str(value)
    return response.text[:200] or response.reason_phrase


def _status_matches(wanted: Sequence[int | str], status: int) -> bool:
    return not wanted or any(s == status or (isinstance(s, str) and int(s[0]) == status // 100)
                             for s in wanted)


def _code_matches(wanted: Sequence[str], code: object) -> bool:
    if not wanted:
        return True
    if code is None:
        return False
    text = str(code)
    return any(text.startswith(w[:-1]) if w.endswith("*") else text == w for w in wanted)


def classify(response: httpx.Response, rules: Sequence[ErrorRule],
             hooks: dict[str, WaitHook] | None = None, *, body: object = _UNREAD) -> Outcome:
    """What ``response`` means; ``body``: its JSON, when the caller parsed it already."""
    body = answer_of(response) if body is _UNREAD else body
    status = response.status_code
    for rule in rules:
        if not _status_matches(rule.status, status):
            continue
        code = dig(body, rule.code_path or "code") if rule.code else None
        if rule.code and not _code_matches(rule.code, code):
            continue
        text = _text(body, response, rule.message_path)
        match = re.search(rule.message, text) if rule.message is not None else None
        if rule.message is not None and match is None:
            continue
        wait: float | None = None
        stated = False
        if rule.wait_header:
            value = response.headers.get(rule.wait_header)
            wait = float(value) if value and value.replace(".", "", 1).isdigit() else None
        if match is not None and rule.wait_group is not None:
            wait, stated = float(match.group(rule.wait_group)), True
        if rule.hook is not None and hooks is not None:
            wait, stated = hooks[rule.hook](text), True
        field = match.group(rule.field_group) if match and rule.field_group else None
        if field and rule.field_fold and field.isupper():
            field = field.lower()
        said = f"{code}: {text}" if code is not None else text  # a fault code is named too
        return Outcome(rule.action, status, said, wait, field, stated, rule.hint)
    return default_outcome(response, body)


def default_outcome(response: httpx.Response, body: object = None) -> Outcome:
    """What the status alone says."""
    status = response.status_code
    text = "" if status < 400 else _text(body, response, None)
    if status < 400:
        return Outcome("ok", status, text)
    if status in (408, 429) or status >= 500:
        return Outcome("retry", status, text, retry_after_seconds(response))
    action: Action = {401: "bad_credentials", 403: "bad_credentials", 404: "not_found",
                      409: "already_exists"}.get(status, "rejected")  # type: ignore[assignment]
    return Outcome(action, status, text)


def verdict(outcome: Outcome) -> tuple[Verdict, float | None]:
    """For :class:`etl.connectors.http.HttpSession`: a transient failure is retried there
    (with backoff and the 429 budget); a wait the system states in its message is the
    connector's to honour (it may exceed the session's cap)."""
    if outcome.action == "retry" and not outcome.stated:
        return "retry", outcome.wait
    return "ok", None
