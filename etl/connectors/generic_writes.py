"""Writing through a spec: creates, updates, deletes and deactivations of the generic
connector (:mod:`etl.connectors.generic`).

Creates with ``idempotency: lookup`` are sent once; after an ambiguous failure (5xx, timeout,
dropped connection) the record is looked up by its external id (or natural key) before trying
again, and an ``already_exists`` answer is resolved the same way. Answers without the stored
record (or without the fields ``complete`` names) are read back, all of a batch in one go.
"""

from __future__ import annotations

import copy
import re
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Literal

from loguru import logger

from etl.connectors.auth import Call
from etl.connectors.base import Capabilities, Record, WriteOp, WriteResult
from etl.connectors.errors import Outcome
from etl.connectors.hooks import HOOKS, before_write
from etl.connectors.http import HttpSession
from etl.connectors.spec import ConnectorSpec, EntitySpec, Request, WriteSpec
from etl.connectors.templates import dig, put
from etl.errors import NotSent, RecordError, SystemUnavailable


class Refused(SystemUnavailable):
    """The system refused us for good (credentials, blocked): never retried."""


class PendingWrites:
    """Writes sent on a connector's writer threads, in their order: :meth:`done` tells
    without waiting, :meth:`results` waits for all (raising what a write raised, e.g.
    :class:`SystemUnavailable`), :meth:`cancel` drops those not sent yet, :meth:`settle`
    waits for the others to end."""

    def __init__(self, futures: list[Future[WriteResult]],
                 finish: Callable[[list[WriteResult]], list[WriteResult]]) -> None:
        self._futures, self._finish = futures, finish

    def done(self) -> bool:
        return all(f.done() for f in self._futures)

    def results(self) -> list[WriteResult]:
        return self._finish([f.result() for f in self._futures])

    def cancel(self) -> None:
        for f in self._futures:
            f.cancel()

    def settle(self) -> None:
        """Wait until every write not cancelled has ended (its outcome is not asked for)."""
        wait(self._futures)


class Writes:
    """The write half of :class:`etl.connectors.generic.GenericConnector`."""

    spec: ConnectorSpec
    system: str
    kind: str
    session: HttpSession
    capabilities: Capabilities
    hook_state: dict[str, Any]
    _sleep: Callable[[float], None]
    _write_lock: threading.Lock
    _writer_pools: dict[int, ThreadPoolExecutor]  # the writer threads, by their number
    write_concurrency: int | None

    if TYPE_CHECKING:  # provided by the connector this mixes into
        def _entity(self, entity: str) -> EntitySpec: ...
        def key_of(self, entity: str, record: Record) -> str: ...
        def read_by_keys(self, entity: str, keys: Sequence[str]) -> list[Record]: ...
        def _by_values(self, entity: str, spec: Any, values: Sequence[str]) -> list[Record]: ...
        def find_by(self, entity: str, native_field: str, values: Sequence[str]
                    ) -> list[Record]: ...
        def _send(self, call: Call, kind: Literal["read", "write"], *,
                  attempts: int | None = None) -> tuple[Outcome, Any, Any]: ...
        def _call(self, req: Any, values: dict[str, Any], fmt: Any = None) -> Call: ...
        def for_write(self, *, resent: bool = False) -> AbstractContextManager[None]: ...
        def _what(self, call: Call) -> str: ...
        def _again(self, what: str, seconds: float, last: str) -> str: ...
        def _pause(self, seconds: float, kind: Literal["read", "write"], why: str, *,
                   unsent: bool = False) -> None: ...

    def write_batch(self, entity: str, ops: Sequence[WriteOp]) -> list[WriteResult]:
        pending = self.start_batch(entity, ops)
        try:
            return pending.results()
        finally:  # aborted: writes not yet sent are never sent
            pending.cancel()

    def writers(self, entity: str) -> int:
        """How many writes of ``entity`` may be in flight at once: the side's
        ``PONTE_<SIDE>__WRITE_CONCURRENCY`` and the spec's ``write_concurrency`` for the
        entity (a vendor rule), the smaller of those set, else ``PONTE_<SIDE>__MAX_CONCURRENCY``
        (the spec's default); never more than the latter, which bounds reads and writes."""
        most = self.capabilities.max_concurrency
        limits = [n for n in (self.write_concurrency, self._entity(entity).write_concurrency) if n]
        return min([*limits, most])

    def start_batch(self, entity: str, ops: Sequence[WriteOp]) -> PendingWrites:
        """Send these writes on the connector's writer threads and return at once: the
        writes queue behind those already in flight (a sliding window as wide as
        :meth:`writers`), so the caller plans and checkpoints while they go."""
        e = self._entity(entity)
        if "before_batch" in e.hooks:  # e.g. reference lookups primed once for the batch
            HOOKS[e.hooks["before_batch"]](self, entity, ops)
        pool = self._writer_pool(self.writers(entity))
        futures = [pool.submit(self._write_tied, entity, op) for op in ops]
        return PendingWrites(futures, lambda results: self._read_back(entity, results))

    def _write_tied(self, entity: str, op: WriteOp) -> WriteResult:
        # its look-ups wait out their retries, a stop or not; an update's retries give way
        with self.for_write(resent=op.action == "update"):
            return self._write_one(entity, op)

    def _writer_pool(self, workers: int) -> ThreadPoolExecutor:
        with self._write_lock:
            pool = self._writer_pools.get(workers)
            if pool is None:
                pool = self._writer_pools[workers] = ThreadPoolExecutor(
                    max_workers=workers, thread_name_prefix=f"{self.kind}-write")
            return pool

    def close_writers(self) -> None:
        """Stop the writer threads (writes queued and not yet sent are never sent)."""
        with self._write_lock:
            pools, self._writer_pools = self._writer_pools, {}
        for pool in pools.values():
            pool.shutdown(wait=True, cancel_futures=True)

    def _read_back(self, entity: str, results: list[WriteResult]) -> list[WriteResult]:
        """Written, answer without the (whole) record: read them back in one go."""
        e = self._entity(entity)
        todo = [r for r in results if r.ok and r.record is None and r.key]
        if todo:
            keys = [str(t.key) for t in todo]
            with self.for_write():  # the writes landed: their records are read, a stop or not
                back = (self._by_values(entity, e.read_one, keys)
                        if e.read_one and len(todo) == 1 else self.read_by_keys(entity, keys))
            found = {self.key_of(entity, r): r for r in back}
            for r in todo:
                r.record = found.get(str(r.key))
        return results

    def _write_one(self, entity: str, op: WriteOp) -> WriteResult:
        e = self._entity(entity)
        spec = e.create if op.action == "create" else e.update
        if spec is None:
            return WriteResult(op, key=op.key, error=RecordError(
                f"{self.spec.title} {entity}: the spec has no {op.action}", kind="rejected"))
        if op.action == "update" and not _key_ok(spec, op.key):
            return WriteResult(op, key=op.key, error=RecordError(
                f"cannot update {self.spec.title} {entity}: invalid key {op.key!r}"))
        payload = copy.deepcopy(op.payload)
        for name in spec.omit:
            payload.pop(name, None)
        try:  # a vendor's payload fix-up (a hook the spec names)
            if "before_write" in e.hooks:
                payload = before_write(e.hooks["before_write"], self, entity, payload, op)
        except RecordError as exc:
            return WriteResult(op, key=op.key, error=exc)
        idem = e.idempotency
        field, ident = idem.external_id_field, op.external_id
        if op.action == "create" and ident and field and idem.strategy != "none":
            put(payload, field, ident)
        elif op.action == "create" and idem.natural_key_field:
            field = idem.natural_key_field
            ident = str(dig(payload, field) or "").strip() or None
        if op.action == "update" and (refused := self._steps(entity, op, spec.before, op.key)):
            return WriteResult(op, key=op.key, error=refused)
        call = self._write_call(spec, payload, {"key": op.key, "external_id": op.external_id})
        lookup = op.action == "create" and idem.strategy == "lookup" and bool(field and ident)
        for attempt in range(1, self.session.retry.attempts + 1):
            try:
                outcome, answer, _ = self._send(call, "write", attempts=1 if lookup else None)
            except NotSent as exc:  # never reached the system: nothing to look up
                if not lookup or attempt == self.session.retry.attempts:
                    raise
                delay = self.session.retry.backoff(attempt, None)
                self._pause(delay, "write", self._again(self._what(call), delay, exc.last),
                            unsent=True)
                continue
            except SystemUnavailable as exc:
                if isinstance(exc, Refused) or not lookup or attempt == self.session.retry.attempts:
                    raise
                outcome, answer = Outcome("already_exists", 0, "answer lost"), None
            if outcome.action == "already_exists" and field and ident:
                found = self.find_by(entity, field, [ident])
                if found:  # created by an earlier attempt whose answer never came
                    return self._complete(entity, op, spec, found[0])
                if outcome.status == 0:
                    self._sleep(self.session.retry.backoff(attempt, None))
                    continue
            result = self._result(entity, op, spec, outcome, answer)
            if result.ok and spec.then:
                failed = self._steps(entity, op, spec.then, result.key)
                result.record = None  # the step changed it: read back
                if failed is not None and op.action == "create":  # it exists: keep the key
                    logger.warning("{}; left as created (the next update tries again)", failed)
                else:
                    result.error = failed
            return result
        raise SystemUnavailable(self.system, f"{self.spec.title} create in {entity} kept failing")

    def _steps(self, entity: str, op: WriteOp, steps: Sequence[Request], key: str | None
               ) -> RecordError | None:
        """Workflow steps of a write (``before``/``then``); the first refused one, if any."""
        for step in steps:
            call = self._call(step, {"key": key})
            outcome, _, _ = self._send(call, "write")
            if outcome.action != "ok":
                return RecordError(f"{self.spec.title}: the {op.action} of {entity} {key}: "
                                   f"{call.method} {call.path}: HTTP {outcome.status}: "
                                   f"{outcome.message}", field=outcome.field, kind="rejected")
        return None

    def _write_call(self, spec: WriteSpec, payload: Record, values: dict[str, Any]) -> Call:
        call = self._call(spec, values)
        if spec.wrap:
            call.body = call.body if isinstance(call.body, dict) else {}
            put(call.body, spec.wrap, _merged(payload, dig(call.body, spec.wrap)))
        elif payload or spec.method != "DELETE":
            call.body = payload
        return call

    def _complete(self, entity: str, op: WriteOp, spec: WriteSpec, record: Record
                  ) -> WriteResult:
        """The record as written; read back (by ``write_batch``) when it lacks a field
        ``complete`` names."""
        key = self.key_of(entity, record)
        if any(f not in record for f in spec.complete):
            return WriteResult(op, key=key)
        return WriteResult(op, key=key, record=record)

    def _result(self, entity: str, op: WriteOp, spec: WriteSpec, outcome: Outcome,
                answer: Any) -> WriteResult:
        if outcome.action != "ok":
            gone = outcome.action == "not_found" and op.action == "update"
            what = "no longer exists" if gone else "was rejected"
            return WriteResult(op, key=op.key, error=RecordError(
                f"{self.spec.title}: the {op.action} of {entity} {op.key or ''} {what}: HTTP "
                f"{outcome.status}: {outcome.message}".replace("  ", " "), field=outcome.field,
                kind="rejected"))
        if spec.answer == "record":
            record = dig(answer, spec.record_path)
            record = record[0] if isinstance(record, list) and record else record
            if isinstance(record, dict) and dig(record, self._entity(entity).key or ""):
                return self._complete(entity, op, spec, record)
        key = dig(answer, spec.key_path) if spec.key_path else None
        key = key if key is not None else op.key
        if key is None:
            raise SystemUnavailable(self.system, f"{self.spec.title} {entity}: the {op.action} "
                                    "answer names no record")
        return WriteResult(op, key=str(key))  # read back by write_batch

    def delete(self, entity: str, key: str) -> RecordError | None:
        e = self._entity(entity)
        return self._keyed(entity, "delete", e.delete, key)

    def can_deactivate(self, entity: str) -> bool:
        """The spec declares a ``deactivate`` request for ``entity``."""
        return self._entity(entity).deactivate is not None

    def deactivate(self, entity: str, key: str) -> RecordError | None:
        """Deactivate one record with the spec's ``deactivate`` request (its body as the spec
        gives it, e.g. a status field set): ``None`` when done or the record is gone."""
        return self._keyed(entity, "deactivate", self._entity(entity).deactivate, key)

    def request(self, method: str, path: str, body: Any = None) -> tuple[Outcome, Any]:
        """One request outside the entities (a system's webhook settings), with the spec's
        auth, error rules, retries and rate limit: the classified outcome and the answer."""
        req = Request.model_validate({"method": method, "path": path, "body": body})
        outcome, answer, _ = self._send(self._call(req, {}), "read" if method == "GET"
                                        else "write")
        return outcome, answer

    def _keyed(self, entity: str, action: str, spec: WriteSpec | None, key: str
               ) -> RecordError | None:
        if spec is None:
            return RecordError(f"{self.spec.title} {entity}: the spec has no {action}",
                               kind="rejected")
        if not _key_ok(spec, key):
            return RecordError(f"cannot {action} {self.spec.title} {entity}: invalid key "
                               f"{key!r}", kind="rejected")
        call = (self._write_call(spec, {}, {"key": key}) if action == "delete"
                else self._call(spec, {"key": key}))
        outcome, _, _ = self._send(call, "write")
        if outcome.action in ("ok", "not_found"):
            return None
        return RecordError(f"{self.spec.title} refused to {action} {entity} {key}: HTTP "
                           f"{outcome.status}: {outcome.message}", kind="rejected")


def _merged(payload: Any, fixed: Any) -> Any:
    """``payload`` with what the spec's body already holds at its place laid over it (a key
    the spec puts there wins over the payload's)."""
    if not isinstance(payload, dict) or not isinstance(fixed, dict):
        return payload if fixed in (None, {}) else fixed
    out = dict(payload)
    for name, value in fixed.items():
        out[name] = _merged(out.get(name), value)
    return out


def _key_ok(spec: WriteSpec, key: str | None) -> bool:
    return spec.key_pattern is None or (key is not None
                                        and re.fullmatch(spec.key_pattern, str(key)) is not None)


__all__ = ["PendingWrites", "Refused", "Writes"]
