"""The ``webhooks:`` section of a connector spec: what a system's webhook calls look like, as
data, so that ``ponte serve`` receives them without knowing which system sent them.

A section says:

* ``path``: the URL path segment the calls arrive at (``/webhooks/<path>``);
* ``auth``: where the shared secret is in a call (a body path and/or a header) and what it is
  compared with: the side's ``webhook_key`` setting, or one of the spec's credentials;
* ``ping``: a body that is only a test call (answered 200, never stored);
* ``event_id``: the body path of the vendor's event identity; unset, the identity is a
  digest of the body without its secrets (an identical redelivery is the same event);
* how the collection, the action and the record are found: a ``topic`` that names both
  (``topics``), or a query parameter of the callback URL naming the collection
  (``collection_param``) and a body path naming the action (``action`` and ``actions``);
  ``record`` (``record_on_delete``) is the body path of the record, ``keys`` the key's path
  inside it per collection;
* ``drop``: more body paths never stored (a hash of the secret);
* ``registration``: how ponte registers its callbacks in the system, when it has an API for
  that (otherwise ``ponte webhooks register`` prints what to set by hand: ``manual``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from etl.connectors.spec_parts import NAME, Strict

EventAction = Literal["create", "update", "delete", "other"]
EVENT_ACTIONS: tuple[EventAction, ...] = ("create", "update", "delete", "other")


class WebhookAuth(Strict):
    """Where the secret is in a call, and what it must equal: ``compare_with`` is
    ``webhook_key`` (PONTE_<SIDE>__WEBHOOK_KEY) or ``credentials.<name>``."""

    body_path: str | None = None
    header: str | None = None
    compare_with: str = "webhook_key"

    @model_validator(mode="after")
    def _somewhere(self) -> WebhookAuth:
        if not self.body_path and not self.header:
            raise ValueError("auth: name where the secret is (body_path and/or header)")
        if self.compare_with != "webhook_key" and not self.compare_with.startswith(
                "credentials."):
            raise ValueError(f"auth.compare_with: {self.compare_with!r} (valid: webhook_key, "
                             "credentials.<name>)")
        return self


class WebhookTopic(Strict):
    """What one topic value means: the collection it is about and the action."""

    collection: str
    action: EventAction


class WebhookRegistration(Strict):
    """Registering callbacks through the system's API (Ploomes ``/Webhooks``): one callback per
    (collection, action), each with ponte's URL and the validation key. The field names of a
    registered callback (``fields``: id, entity, action, url, secret) and the system's ids of
    collections (``entity_ids``) and actions (``action_ids``, keyed as in ``actions``); the
    action ids listed by ``actions_list`` (when it answers) take precedence."""

    path: str  # the collection of callbacks: listed (GET), created (POST)
    item: str  # one callback, ``{id}`` in it: updated (PATCH), removed (DELETE)
    records: str = "value"  # where a listing's callbacks are
    actions_list: str | None = None  # the system's list of action ids, when it has one
    action_name: str = "Name"  # the action's name in that list
    action_id: str = "Id"
    fields: dict[Literal["id", "entity", "action", "url", "secret"], str]
    entity_ids: dict[str, int]  # collection -> the system's entity id
    action_ids: dict[str, int]  # action name (a key of ``actions``) -> the system's action id
    # the actions registered for each collection (``default_actions`` unless listed here)
    default_actions: list[str] = Field(default_factory=list)
    collection_actions: dict[str, list[str]] = Field(default_factory=dict)
    collection_param: str | None = None  # the callback URL's query parameter naming it


class WebhookSpec(Strict):
    path: str = Field(pattern=NAME)
    auth: WebhookAuth
    ping: dict[str, Any] | None = None
    event_id: str | None = None
    drop: list[str] = Field(default_factory=list)
    collection_param: str | None = None
    action: str | None = None  # body path of the action name
    actions: dict[str, EventAction] = Field(default_factory=dict)
    topic: str | None = None  # body path of a topic naming collection and action
    topics: dict[str, WebhookTopic] = Field(default_factory=dict)
    record: str = ""
    record_on_delete: str | None = None
    keys: dict[str, str] = Field(min_length=1)  # collection -> the key's path in the record
    registration: WebhookRegistration | None = None
    manual: str | None = None  # where to register by hand (no registration API)

    @model_validator(mode="after")
    def _consistent(self) -> WebhookSpec:
        problems: list[str] = []
        if self.topic is None and (self.collection_param is None or self.action is None):
            problems.append("name the topic (topic + topics), or the collection_param and the "
                            "action (action + actions)")
        for name, t in self.topics.items():
            if t.collection not in self.keys:
                problems.append(f"topics.{name}.collection: {t.collection!r} has no key path "
                                f"in keys (valid: {', '.join(sorted(self.keys))})")
        reg = self.registration
        if reg is not None:
            named = [*reg.action_ids, *reg.default_actions,
                     *(n for names in reg.collection_actions.values() for n in names)]
            for name in dict.fromkeys(named):
                if name not in self.actions:
                    problems.append(f"registration: action {name!r} is not a key of actions "
                                    f"(valid: {', '.join(sorted(self.actions))})")
            for coll in reg.entity_ids:
                if coll not in self.keys:
                    problems.append(f"registration.entity_ids.{coll}: no key path in keys")
        if problems:
            raise ValueError("webhooks: " + "; ".join(problems))
        return self

    def registered_actions(self, collection: str) -> list[str]:
        """The action names ponte registers for ``collection``."""
        reg = self.registration
        if reg is None:
            return []
        return list(reg.collection_actions.get(collection, reg.default_actions))


__all__ = ["EVENT_ACTIONS", "EventAction", "WebhookAuth", "WebhookRegistration",
           "WebhookSpec", "WebhookTopic"]
