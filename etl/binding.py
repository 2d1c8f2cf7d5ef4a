"""Which systems a state database belongs to.

A state database pairs records of one CRM with records of one ERP (links, snapshots,
watermarks). Used with another CRM or ERP it would pair unrelated companies and overwrite their
tax ids and names, so the state is *bound* to the systems it was built with: per side, the
connector kind, the normalized base URL and the account behind the credentials.

The account is identified by the credential that names it (the one the connector spec marks
``account: true``; Ploomes: the User-Key — neither the
vendor reference nor the simulator offers an account id to ask for, and ``/Self`` names a user,
not the account; Omie: the app_key). Only a salted scrypt hash of it is stored, with a random
salt per side; messages show kinds and URLs, never the credential or its hash.

The first command that writes binds the state (``ensure(..., bind=True)``); every command that
reads or writes checks it before touching anything; ``ponte db rebind`` moves a state to the
configured systems deliberately and records that in the run history.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

import httpx
from loguru import logger

from etl.connectors.spec import ConnectorSpec
from etl.errors import ConfigError, StateBoundElsewhere
from etl.settings import Settings
from etl.state import BindingRow, Store

SIDES = ("crm", "erp")
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}  # ~16 MiB, tens of ms: no cheap guessing


@dataclass(frozen=True)
class Identity:
    """One side as configured. ``account`` is the credential itself: never shown or stored."""

    side: str
    kind: str
    base_url: str  # normalized
    account: str
    account_setting: str  # the variable that carries it, e.g. PONTE_CRM__CREDENTIALS__USER_KEY

    def __repr__(self) -> str:  # keep the credential out of tracebacks and logs
        return f"Identity(side={self.side!r}, kind={self.kind!r}, base_url={self.base_url!r})"


@dataclass(frozen=True)
class Difference:
    side: str
    what: str  # kind | base URL | account
    stored: str | None  # None for the account: nothing about it is shown
    configured: str | None
    setting: str

    def describe(self) -> str:
        if self.what == "account":
            return (f"{self.side}: account differs — {self.setting} is not the credential this "
                    "state was built with (another account, or a new key)")
        return (f"{self.side}: {self.what} differs — stored {self.stored}, configured "
                f"{self.configured} ({self.setting})")


@dataclass(frozen=True)
class BindingStatus:
    """The stored binding against the configured systems."""

    state_url: str
    bound: dict[str, BindingRow]
    configured: dict[str, Identity]
    differences: list[Difference]

    @property
    def unbound(self) -> list[str]:
        return [s for s in SIDES if s not in self.bound]

    @property
    def ok(self) -> bool:
        return not self.differences

    def as_dict(self) -> dict[str, Any]:
        """Non-secret view (for ``status --json``)."""
        return {
            "matches": self.ok,
            "bound": {s: {"kind": b.kind, "base_url": b.base_url,
                          "bound_at": b.bound_at.isoformat()} for s, b in self.bound.items()},
            "differences": [d.describe() for d in self.differences],
        }

    def message(self) -> str:
        head = (f"the state database {self.state_url} was built with other systems than the "
                "configured ones; nothing was read or written:")
        lines = [head]
        lines += [f"  {d.describe()}" for d in self.differences]
        lines.append(
            "Using this state with them could pair records of unrelated companies. Either start "
            "a new state for these systems (set PONTE_STATE_URL to a new SQLite file or "
            "PostgreSQL database, e.g. PONTE_STATE_URL=sqlite:///other-systems.db), or, if they "
            "are the same systems under a new address or key, rebind this state deliberately: "
            "ponte db rebind")
        return "\n".join(lines)


def normalize_url(url: str) -> str:
    """Scheme and host lower-cased, default port and trailing slashes dropped, no query."""
    try:
        u = httpx.URL(url.strip())
    except httpx.InvalidURL as exc:
        raise ConfigError(f"base URL {url!r} is not a URL: {exc}") from None
    host = u.host.lower()
    if ":" in host:
        host = f"[{host}]"
    port = f":{u.port}" if u.port is not None else ""
    return f"{u.scheme.lower()}://{host}{port}{u.path.rstrip('/')}"


def identities(settings: Settings) -> dict[str, Identity]:
    out: dict[str, Identity] = {}
    for side in SIDES:
        conf = getattr(settings, side)
        field = account_credential(conf.spec)
        out[side] = Identity(side, conf.kind, normalize_url(conf.base_url),
                             conf.credential(field) if field else "",
                             f"PONTE_{side.upper()}__CREDENTIALS__{(field or '').upper()}")
    return out


def account_credential(spec: ConnectorSpec) -> str | None:
    """The credential that names the account: the one the spec marks ``account``, else its
    first secret one; ``None`` for a system without credentials (its URL identifies it)."""
    marked = [n for n, c in spec.credentials.items() if c.account]
    secret = [n for n, c in spec.credentials.items() if c.secret]
    names = marked or secret
    return names[0] if names else None


@lru_cache(maxsize=64)
def account_hash(account: str, salt: str) -> str:
    """Salted scrypt hash (hex) of an account credential."""
    return hashlib.scrypt(account.encode(), salt=bytes.fromhex(salt), **_SCRYPT).hex()


def account_hashes(pairs: Sequence[tuple[str, str]]) -> list[str]:
    """:func:`account_hash` of each (account, salt), on threads of their own: scrypt lets go of
    the interpreter lock, so both sides cost the time of one (~45 ms, at every command)."""
    if len(pairs) < 2:
        return [account_hash(account, salt) for account, salt in pairs]
    with ThreadPoolExecutor(max_workers=len(pairs), thread_name_prefix="ponte-hash") as pool:
        return list(pool.map(lambda pair: account_hash(*pair), pairs))


def compare(store: Store, settings: Settings) -> BindingStatus:
    """The stored binding against the configured systems; reads only the state."""
    bound = store.bindings()
    configured = identities(settings)
    bound_sides = [side for side in SIDES if side in bound]
    hashes = dict(zip(bound_sides, account_hashes(
        [(configured[side].account, bound[side].salt) for side in bound_sides]), strict=True))
    diffs: list[Difference] = []
    for side in bound_sides:
        b, c = bound[side], configured[side]
        if b.kind != c.kind:
            diffs.append(Difference(side, "kind", b.kind, c.kind, f"PONTE_{side.upper()}__KIND"))
        if b.base_url != c.base_url:
            diffs.append(Difference(side, "base URL", b.base_url, c.base_url,
                                    f"PONTE_{side.upper()}__BASE_URL"))
        if not hmac.compare_digest(b.account_hash, hashes[side]):
            diffs.append(Difference(side, "account", None, None, c.account_setting))
    return BindingStatus(store.safe_url, bound, configured, diffs)


def _rows(configured: dict[str, Identity], sides: list[str], now: datetime) -> list[BindingRow]:
    salts = {side: secrets.token_hex(16) for side in sides}
    hashes = account_hashes([(configured[side].account, salts[side]) for side in sides])
    return [BindingRow(side, configured[side].kind, configured[side].base_url, hashed,
                       salts[side], now)
            for side, hashed in zip(sides, hashes, strict=True)]


def ensure(store: Store, settings: Settings, *, bind: bool, now: datetime) -> BindingStatus:
    """Raise :class:`StateBoundElsewhere` (exit 2) when the state belongs to other systems.
    With ``bind``, a side not bound yet (first use) is bound to the configured system."""
    status = compare(store, settings)
    if not status.ok:
        raise StateBoundElsewhere(status.message())
    if bind and status.unbound:
        store.set_bindings(_rows(status.configured, status.unbound, now), replace=False)
        status = compare(store, settings)  # a concurrent first use may have won
        if not status.ok:
            raise StateBoundElsewhere(status.message())
        for side in SIDES:
            c = status.configured[side]
            logger.info("state {} bound to {} {} {}", store.safe_url, side, c.kind, c.base_url)
    return status


@dataclass(frozen=True)
class RebindResult:
    run_id: str
    changes: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "changes": self.changes}


def rebind_plan(store: Store, settings: Settings) -> list[str]:
    """What ``rebind`` would change, one line per side (empty: already bound as configured)."""
    status = compare(store, settings)
    lines = [d.describe() for d in status.differences]
    for side in status.unbound:
        c = status.configured[side]
        lines.append(f"{side}: not bound yet — will bind to {c.kind} {c.base_url}")
    return lines


def rebind(store: Store, settings: Settings, *, now: datetime) -> RebindResult:
    """Bind the state to the configured systems, whatever it was bound to; recorded as a run
    of kind ``rebind`` whose report says what changed (kinds and URLs only)."""
    status = compare(store, settings)
    if status.ok and not status.unbound:
        raise ConfigError("the state is already bound to the configured systems; nothing to do")
    changes = []
    for side in SIDES:
        c, b = status.configured[side], status.bound.get(side)
        what = {d.what for d in status.differences if d.side == side}
        if b is not None and not what:
            continue
        old = f"{b.kind} {b.base_url}" if b is not None else "(not bound)"
        note = " (new account credential)" if "account" in what else ""
        changes.append(f"{side}: {old} -> {c.kind} {c.base_url}{note}")
    run_id = store.start_run("rebind", [], now=now)
    configured = status.configured
    store.set_bindings(_rows(configured, list(SIDES), now), replace=True)
    bound = {s: f"{c.kind} {c.base_url}" for s, c in configured.items()}
    store.finish_run(run_id, "ok", {"summary": "; ".join(changes), "bound": bound}, now=now)
    logger.bind(run_id=run_id[:8]).warning("state {} rebound by an operator: {}",
                                           store.safe_url, "; ".join(changes))
    return RebindResult(run_id, changes)
