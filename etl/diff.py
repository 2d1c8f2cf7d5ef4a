"""Snapshot diff: which incoming rows are new, changed or unchanged.

Pure pandas/numpy/pyarrow, no I/O. The engine hashes the *normalized, mapped* fields of each
incoming record (:func:`etl.rowhash.hash_frame`), compares them with the hashes stored in the
snapshot (:func:`diff`) and drops what did not change -- overlap re-reads and echoes of ponte's
own writes.
:func:`changed_fields` explains a change field by field for ``plan``.

How rows are hashed, and why a false "unchanged" is negligible, is told in :mod:`etl.rowhash`.
The key join in :func:`diff` is exact: every key-hash match is confirmed on the key strings
themselves.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from etl.rowhash import as_arrow_strings, hash_frame, hash_strings, is_missing

__all__ = ["DiffResult", "changed_fields", "diff"]


@dataclass(frozen=True)
class DiffResult:
    """Incoming rows split against the snapshot, each part in incoming order.

    ``new`` and ``changed`` hold the incoming rows (all their columns, original index) plus
    their ``h1``/``h2``; ``unchanged`` holds the keys of rows whose hash equals the snapshot's.
    """

    new: pd.DataFrame
    changed: pd.DataFrame
    unchanged: pd.Index


def diff(
    incoming: pd.DataFrame,
    snapshot: pd.DataFrame,
    *,
    columns: Sequence[str],
    key: str = "key",
    hashes: pd.DataFrame | None = None,
) -> DiffResult:
    """Split ``incoming`` (``key`` + ``columns``) against ``snapshot`` (``key``, ``h1``, ``h2``).

    A key absent from the snapshot is new; a present key is changed when its hash differs and
    unchanged otherwise. When a key occurs more than once in ``incoming`` the last occurrence
    wins (pages are read in updated-at order, so the last one is the newest); the others are
    dropped. Keys must be non-null; snapshot keys must be unique (``ValueError`` otherwise).
    ``hashes`` may pass ``hash_frame(incoming, columns)`` when the caller already has it.

    The join is exact. Fast path: each key string is hashed to 64 bits, both sides are joined
    by a sort-merge on those integers, and every match is then checked by comparing the key
    strings themselves (one vectorized Arrow compare). If that check fails (a 64-bit key hash
    collision) or keys repeat, the join falls back to factorizing both key columns together.
    """
    if hashes is None:
        hashes = hash_frame(incoming, columns)
    elif len(hashes) != len(incoming):
        raise ValueError("diff: hashes must have one row per incoming row")
    rows, found = _locate(incoming[key], snapshot[key], key)
    is_new = found < 0

    inc_h1 = hashes["h1"].to_numpy(np.int64)[rows]
    inc_h2 = hashes["h2"].to_numpy(np.int64)[rows]
    present = ~is_new
    old = found[present]
    same_old = np.zeros(len(rows), dtype=bool)
    same_old[present] = (snapshot["h1"].to_numpy(np.int64)[old] == inc_h1[present]) & (
        snapshot["h2"].to_numpy(np.int64)[old] == inc_h2[present]
    )
    is_changed = present & ~same_old

    def pick(mask: np.ndarray) -> pd.DataFrame:
        part: pd.DataFrame = incoming.iloc[rows[mask]].copy()
        part["h1"] = inc_h1[mask]
        part["h2"] = inc_h2[mask]
        return part

    unchanged = pd.Index(incoming[key].iloc[rows[same_old]], name=key)
    return DiffResult(new=pick(is_new), changed=pick(is_changed), unchanged=unchanged)


def _locate(inc_keys: pd.Series, snap_keys: pd.Series, key: str) -> tuple[np.ndarray, np.ndarray]:
    """(kept incoming row positions, matching snapshot row position or -1 for each)."""
    located = _locate_by_hash(inc_keys, snap_keys)
    return located if located is not None else _locate_exact(inc_keys, snap_keys, key)


def _locate_by_hash(
    inc_keys: pd.Series, snap_keys: pd.Series
) -> tuple[np.ndarray, np.ndarray] | None:
    """The fast join of :func:`diff`, or None when it cannot prove its answer exact."""
    inc_s, snap_s = as_arrow_strings(inc_keys), as_arrow_strings(snap_keys)
    if inc_s is None or snap_s is None or inc_s.null_count or snap_s.null_count:
        return None
    inc_h = hash_strings(inc_s, (0,))[0].view(np.int64)
    snap_h = hash_strings(snap_s, (0,))[0].view(np.int64)
    # Sort-merge on the 64-bit key hashes (numpy's sort beats a hash table here); a repeated
    # hash on either side means a repeated key or a collision: leave both to the exact path.
    snap_order = np.argsort(snap_h)
    snap_sorted = snap_h[snap_order]
    inc_order = np.argsort(inc_h)
    inc_sorted = inc_h[inc_order]
    if (snap_sorted[1:] == snap_sorted[:-1]).any() or (inc_sorted[1:] == inc_sorted[:-1]).any():
        return None
    found = np.full(len(inc_h), -1, dtype=np.int64)
    if len(snap_h):
        at = np.searchsorted(snap_sorted, inc_sorted)
        np.minimum(at, len(snap_h) - 1, out=at)
        found[inc_order] = np.where(snap_sorted[at] == inc_sorted, snap_order[at], -1)
    matched = np.flatnonzero(found >= 0)
    if len(matched) == len(found):
        left = inc_s
    else:
        left = inc_s.take(pa.array(matched))
    right = snap_s.take(pa.array(found[matched]))
    if len(matched) and not pc.all(pc.equal(left, right)).as_py():
        return None
    return np.arange(len(inc_keys)), found


def _locate_exact(
    inc_keys: pd.Series, snap_keys: pd.Series, key: str
) -> tuple[np.ndarray, np.ndarray]:
    """Join by factorizing both key columns together; handles repeated incoming keys."""
    n, m = len(inc_keys), len(snap_keys)
    both = pd.concat(
        [
            inc_keys.reset_index(drop=True).astype(object),
            snap_keys.reset_index(drop=True).astype(object),
        ],
        ignore_index=True,
    )
    codes, uniques = pd.factorize(both)
    if (codes < 0).any():
        raise ValueError(f"diff: null values in key column {key!r}")
    inc_codes, snap_codes = codes[:n], codes[n:]
    n_keys = len(uniques)
    if m and np.bincount(snap_codes, minlength=n_keys).max() > 1:
        raise ValueError(f"diff: duplicate keys in snapshot column {key!r}")
    rows = np.arange(n)
    if n and np.bincount(inc_codes, minlength=n_keys).max() > 1:
        rows = rows[~pd.Series(inc_codes).duplicated(keep="last").to_numpy()]
        inc_codes = inc_codes[rows]
    snap_row = np.full(n_keys, -1, dtype=np.int64)
    snap_row[snap_codes] = np.arange(m)
    return rows, snap_row[inc_codes]



def changed_fields(
    old: Mapping[str, Any], new: Mapping[str, Any], columns: Sequence[str]
) -> dict[str, tuple[Any, Any]]:
    """``{field: (old, new)}`` for each of ``columns`` whose value differs, in column order.

    Absent fields and the missing values (None, NaN, pd.NA, NaT) all count as None, so they
    equal each other and are reported as None; ``""`` is not missing. Numbers compare by value
    (``1 == 1.0``), as the hash does.
    """
    out: dict[str, tuple[Any, Any]] = {}
    for column in columns:
        before, after = old.get(column), new.get(column)
        before = None if is_missing(before) else before
        after = None if is_missing(after) else after
        if before is None and after is None:
            continue
        if before is None or after is None or before != after:
            out[column] = (before, after)
    return out
