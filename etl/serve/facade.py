"""The façade methods of :class:`etl.ponte.Ponte` that serve webhook events: a targeted sync
of named records, mirrored deletions, and what ``ponte serve`` and ``ponte webhooks`` call.
A mixin, so that ``etl/ponte.py`` stays small; it uses the façade's settings, clock and
session."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import httpx

from etl import api, scheduler
from etl.clock import Clock
from etl.connectors.base import ApiCalls, RetryStats
from etl.connectors.factory import build_connectors
from etl.connectors.http import HttpSession, Limiter
from etl.engine import RunReport, run_sync
from etl.engine.deletes import apply_deletes
from etl.engine.references import RunReferences
from etl.engine.run import build_context, lock_name
from etl.errors import ConfigError, LockHeld
from etl.mapping import EntityMapping, load_mappings
from etl.mapping.models import SIDES, Side
from etl.settings import Settings
from etl.state import Store

if TYPE_CHECKING:
    from etl.connectors.base import Connector
    from etl.serve.app import ServeResult
    from etl.serve.register import WebhookReport

#: a wait a system states (Omie's 60-s redundant-call rule) longer than this stops an event
#: run and postpones its events instead of holding the worker (see etl/serve/worker.py)
INLINE_WAIT_S = 5.0
#: how long event runs share one session (connectors, checked mappings, reference lists)
SESSION_TTL_S = 60.0

Session = AbstractContextManager[tuple[Store, dict[Side, Any], dict[str, EntityMapping]]]


@dataclass
class _EventSession:
    opening: AbstractContextManager[Any]
    store: Store
    conns: dict[Side, Any]
    maps: dict[str, EntityMapping]
    refs: RunReferences
    opened: float


@dataclass
class MirroredDeletes:
    """What delete events of one entity and side came to: per key, what was done."""

    entity: str
    side: str
    run_id: str | None = None
    outcomes: dict[str, str] = field(default_factory=dict)
    blocked: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"entity": self.entity, "side": self.side, "outcomes": self.outcomes,
                "blocked": self.blocked}


def parse_side(side: str) -> Side:
    if side not in SIDES:
        raise ConfigError(f"side {side!r} is not crm or erp")
    return side


class EventsFacade:
    """Targeted syncs and mirrored deletions (mixed into :class:`etl.ponte.Ponte`)."""

    settings: Settings
    clock: Clock
    crm_client: httpx.Client | None
    erp_client: httpx.Client | None

    def _session(self, *, bind: bool, should_stop: Callable[[], bool] | None = None
                 ) -> Session:  # provided by Ponte
        raise NotImplementedError

    def check_binding(self) -> object:  # provided by Ponte
        raise NotImplementedError

    def scheduled_sync(self, entity: str, should_stop: Callable[[], bool]) -> object:
        raise NotImplementedError  # provided by Ponte

    def after_run(self) -> None:  # provided by Ponte: the metrics file, then the alerts
        raise NotImplementedError

    def sync_keys(self, entity: str, side: str, keys: Sequence[str]) -> RunReport:
        """Sync only the records ``keys`` of ``side`` through the normal pipeline (read by
        key, diff, pair, plan, write, checkpoint), recorded as a run of kind ``event``. No
        window is read and no watermark moves; a key the side no longer has is not synced.
        Raises :class:`LockHeld` when another run holds the entity."""
        chosen = parse_side(side)
        load_mappings(self.settings.mappings_dir, [entity])  # an unknown one: before any request
        with self._event_session() as (store, conns, maps):
            self._not_busy(store, entity)
            return run_sync(store=store, connectors=conns, mappings=maps, entities=[entity],
                            kind="event", now=self.clock.now,
                            options=api.options_from(self.settings, keys={chosen: list(keys)},
                                                     references=self._event_references()))

    def mirror_deletes(self, entity: str, side: str, keys: Sequence[str]) -> MirroredDeletes:
        """Apply the mapping's ``deletes`` policy to the partners of records of ``side``
        that delete events named: only records ponte linked (not tombstoned), and only those a
        read by key confirms gone; within PONTE_MAX_DELETE_SHARE. Recorded as a run of kind
        ``event`` under the entity's lock (:class:`LockHeld` when another run holds it)."""
        chosen = parse_side(side)
        with self._event_session() as (store, conns, maps):
            self._not_busy(store, entity)
            m = maps[entity]
            return self._mirror(store, conns, m, chosen, list(dict.fromkeys(keys)))

    def _not_busy(self, store: Store, entity: str) -> None:
        """:class:`LockHeld` before a run is recorded when another run holds ``entity`` (a
        polling run, a backfill): the events wait for it without a failed run for each try,
        which would also start a ``run_failed`` alert."""
        holder = store.lock_busy(lock_name(entity), now=self.clock.now())
        if holder is not None:
            raise LockHeld(f"another ponte run holds the lock of {entity!r} (run "
                           f"{holder[0][:8]}); its events wait for it")

    def serve_events(self, *, host: str | None = None, port: int | None = None,
                     poll: bool = False) -> ServeResult:
        """``ponte serve``: receive webhook events and sync what they name, until SIGTERM/
        SIGINT. ``poll``: the entities' ``ponte run`` schedules run in the same process too
        (polling stays the safety net). Mappings and the state's binding are checked first."""
        from etl.serve.app import run
        from etl.serve.status import status_routes

        mappings = api.check_mappings(self.settings).mappings
        self.check_binding()
        also = None
        if poll:
            schedules = {n: self.settings.schedule_of(n) or "" for n in mappings}
            also = partial(scheduler.poll, {n: s for n, s in schedules.items() if s},
                           self.scheduled_sync)
        try:
            return run(self.settings, self, mappings, now=self.clock.now, host=host,
                       port=port, also=also,
                       extra_routes=status_routes(self.settings, now=self.clock.now))
        finally:
            self.close_event_session()

    def share_limiters(self, conns: dict[Side, Any]) -> None:
        """Make ``conns`` use this façade's one rate limiter per side (and, for event runs, no
        long in-line waits): runs of this process that overlap or follow each other closely
        (event syncs, the scheduled runs of ``ponte run`` and ``--poll``) must not together
        exceed a system's rate, nor each start with a burst of its own."""
        limiters: dict[str, Limiter] = self.__dict__.setdefault("_limiters", {})
        for side, conn in conns.items():
            http = getattr(conn, "session", None)
            if isinstance(http, HttpSession):
                http.limiter = limiters.setdefault(side, http.limiter)

    @contextmanager
    def _event_session(self) -> Iterator[tuple[Store, dict[Side, Any],
                                                dict[str, EntityMapping]]]:
        """The session of event runs, kept open for :data:`SESSION_TTL_S` and shared by the
        event runs of that time: the mappings checked, the custom fields and the reference
        lists (users, sellers, tags) read once, not for every event. Dropped when a run raises
        (a connector may be in a bad state) and by :meth:`close_event_session`."""
        cached: _EventSession | None = self.__dict__.get("_event_cache")
        if cached is not None and time.monotonic() - cached.opened > SESSION_TTL_S:
            self.close_event_session()
            cached = None
        if cached is None:
            opening = self._session(bind=True)
            store, conns, maps = opening.__enter__()
            self.share_limiters(conns)
            for conn in conns.values():
                if hasattr(conn, "inline_wait_limit_s"):  # the other events must not stand
                    conn.inline_wait_limit_s = INLINE_WAIT_S  # behind a long stated wait
            cached = _EventSession(opening, store, conns, maps, RunReferences(conns, store=store),
                                   time.monotonic())
            self.__dict__["_event_cache"] = cached
        else:  # each run reports its own calls (the first one's include opening the session)
            for conn in cached.conns.values():  # and reads what an event names as it is now
                http = getattr(conn, "session", None)
                if isinstance(http, HttpSession):
                    http.calls, http.stats = ApiCalls(), RetryStats()
                if hasattr(conn, "forget_reads"):
                    conn.forget_reads()
            cached.refs.new_run()
        try:
            yield cached.store, cached.conns, cached.maps
        except LockHeld:
            raise  # nothing was sent: the session is as good as before
        except BaseException:
            self.close_event_session()
            raise

    def close_event_session(self) -> None:
        cached: _EventSession | None = self.__dict__.pop("_event_cache", None)
        if cached is not None:
            cached.opening.__exit__(None, None, None)

    def _event_references(self) -> RunReferences | None:
        cached: _EventSession | None = self.__dict__.get("_event_cache")
        return None if cached is None else cached.refs

    def webhooks_register(self) -> WebhookReport:
        """Register ponte's callbacks in the systems with an API for it (idempotent: a second
        run changes nothing); the others get what to set by hand."""
        from etl.serve import register

        with self._connectors() as (conns, maps):
            return register.register(self.settings, conns, maps)

    def webhooks_status(self) -> WebhookReport:
        """The callbacks registered at ponte's address, and the local event counts."""
        from etl.serve import register

        with self._connectors() as (conns, maps):
            out = register.status(self.settings, conns, maps)
        with self.settings.open_state() as store:
            out.events = store.event_counts()
        return out

    @contextmanager
    def _connectors(self) -> Iterator[tuple[dict[Side, Connector], dict[str, EntityMapping]]]:
        maps = load_mappings(self.settings.mappings_dir)
        conns = build_connectors(self.settings, crm_client=self.crm_client,
                                 erp_client=self.erp_client)
        try:
            yield conns, maps
        finally:
            for c in conns.values():
                c.close()

    def _mirror(self, store: Store, conns: dict[Side, Connector], m: EntityMapping,
                side: Side, keys: list[str]) -> MirroredDeletes:
        out = MirroredDeletes(m.entity, side)
        if m.deletes == "ignore":
            out.outcomes = dict.fromkeys(keys, "ignored (deletes: ignore)")
            return out
        links = store.links(m.entity, **{f"{side}_keys": keys})
        tombstones = store.tombstones(m.entity)
        mine = {(c if side == "crm" else e): (c, e) for c, e in links
                if (c if side == "crm" else e) in keys}
        for key in keys:
            if key not in mine:
                out.outcomes[key] = "nothing done: never linked by ponte"
            elif mine[key] in tombstones:
                out.outcomes[key] = "nothing done: already deleted on one side"
                del mine[key]
        if not mine:
            return out
        still = {conns[side].key_of(m.entity, r)
                 for r in conns[side].read_by_keys(m.entity, list(mine))}
        for key in still:
            out.outcomes[key] = f"nothing done: the record still exists in the {side}"
        vanished = [(c, e, side) for key, (c, e) in mine.items() if key not in still]
        if not vanished:
            return out
        now = self.clock.now()
        run_id = store.start_run("event", [m.entity], now=now)
        out.run_id = run_id
        status = "failed"
        if not store.acquire_lock(lock_name(m.entity), run_id, lease_s=float(
                self.settings.lock_lease_s), now=now):
            store.finish_run(run_id, "failed", {"error": "lock held"}, now=now)
            raise LockHeld(f"another ponte run holds the lock of {m.entity!r}; the delete "
                           "events wait for the next try")
        try:
            done = apply_deletes(m, conns, store, build_context(store, conns), vanished,
                                 store.count_links(m.entity),
                                 max_delete_share=self.settings.max_delete_share,
                                 run_id=run_id, now=now, allowed=1)
            out.blocked = done.blocked
            failed = {c if side == "crm" else e: err for c, e, err in done.failed}
            for c, e, _ in vanished:
                key = c if side == "crm" else e
                out.outcomes[key] = (f"failed: {failed[key]}" if key in failed else
                                     f"blocked: {done.blocked}" if done.blocked else
                                     f"{m.deletes}d in the {'erp' if side == 'crm' else 'crm'}")
            status = "failed" if done.blocked or done.failed else "ok"
        finally:
            store.release_lock(lock_name(m.entity), run_id)
            store.finish_run(run_id, status, {"kind": "event", "deletes": out.as_dict()},
                             now=self.clock.now())
        return out


__all__ = ["EventsFacade", "MirroredDeletes"]
