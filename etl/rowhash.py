"""Row hashes: a 128-bit content hash of every row of a frame (:func:`hash_frame`).

Pure pandas/numpy/pyarrow, no I/O. The engine hashes the *normalized, mapped* fields of each
incoming record and :func:`etl.diff.diff` compares them with the hashes stored in the snapshot.

Each row gets a 128-bit content hash, stored as two signed 64-bit integers ``h1`` and ``h2``
(signed so that they fit a SQL ``BIGINT``). The two halves are computed from the same bytes with
different keys *and* different mixing functions, so a false "unchanged" needs both 64-bit hashes
to collide on the same pair of rows: modelling them as independent, about 2**-128 per pair
compared -- negligible (a trillion comparisons leave a ~3e-27 chance of a single miss). That is
how collisions are handled: made negligible, not detected. Checking each hash match against the
old values would need the snapshot's values loaded, which is what storing hashes avoids; a
collision would make a real change look unchanged, and ``verify`` (a full compare of both
sides) would still find it.

The hash is not cryptographic (its keys are public constants); it guards against accidents,
not against someone crafting colliding records. It is deterministic across processes, runs,
machines and row order (no ``PYTHONHASHSEED``, no per-frame state).

Values are hashed by content, not by dtype:

* strings by their UTF-8 bytes (``object`` columns of ``str``, ``str``/``string`` dtypes);
* numbers (int, float, bool -- numeric dtypes or ``object`` columns holding them) by their
  float64 value, so ``1``, ``1.0`` and ``True`` hash alike, as they compare equal in Python
  (integers beyond 2**53 lose precision like any float), and ``-0.0`` equals ``0.0``;
* ``None``, ``NaN``, ``pd.NA`` and ``NaT`` all hash as one "missing" value, distinct from ``""``;
* anything else (dates, decimals, ...) by its type name and ``repr`` -- the normalizer should
  turn such values into strings first; ponte's canonical values are strings or None.

Strings are hashed without going through Python objects: a column is viewed as an Arrow string
array (zero-copy for ``str`` columns), its UTF-8 buffer is read in 8-byte words, each word is
mixed with its position and the mixed words of a string are summed; the sum and the byte length
are mixed once more. Columns are folded left to right with a multiply-xor chain, so the same
value in another column, or two values swapped, give another hash.

Keys are hashed the same way (:func:`hash_strings`, one half) for the fast join of
:func:`etl.diff.diff`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

__all__ = ["as_arrow_strings", "hash_frame", "hash_strings", "is_missing"]

_U64 = np.uint64
_MASK64 = (1 << 64) - 1

# Word keys (odd) and length keys for the two halves; fixed forever: snapshots store the result.
_WORD_KEY = (_U64(0x8C97F9C7F5E69E9D), _U64(0xF76DDF2497B265A1))
_LEN_KEY = (_U64(0x15C5D8630AF6F5D5), _U64(0xD018EA1B771AB331))
_ROW_MULT = (_U64(0xE999373C7B254BF1), _U64(0xB88BE64169F70E75))
_MISSING = (_U64(0x6F11E9DAA8AF9A31), _U64(0xE04C7E942C1E73D7))
# A number's "length" term: no string is 2**63 bytes long, so numbers never meet strings by length.
_NUMBER_LEN = tuple(_U64(((1 << 63) * int(k)) & _MASK64) for k in _LEN_KEY)
# Two different 64-bit finalizers: murmur3's fmix64 and Stafford's mix13 (the splitmix64 one).
_MIXERS = (
    (33, _U64(0xFF51AFD7ED558CCD), 33, _U64(0xC4CEB9FE1A85EC53), 33),
    (30, _U64(0xBF58476D1CE4E5B9), 27, _U64(0x94D049BB133111EB), 31),
)
_TAIL_MASKS = np.array([0, *((1 << (8 * i)) - 1 for i in range(1, 8)), _MASK64], dtype=_U64)
_BLOCK = 1 << 16  # strings per block: a block's word arrays stay in cache
_SHORT_WORDS = 24  # strings up to 192 bytes are hashed word position by word position
_NUMERIC_INFERRED = frozenset({"integer", "floating", "mixed-integer-float", "boolean"})


def _mix(x: np.ndarray, which: int, scratch: np.ndarray | None = None) -> np.ndarray:
    """Finalize 64-bit words in place (a bijection with full avalanche) and return them.

    ``scratch`` (same shape and dtype) saves the temporary arrays in hot loops."""
    s1, m1, s2, m2, s3 = _MIXERS[which]
    tmp = np.empty_like(x) if scratch is None else scratch
    for shift, mult in ((s1, m1), (s2, m2)):
        np.right_shift(x, _U64(shift), out=tmp)
        x ^= tmp
        x *= mult
    np.right_shift(x, _U64(s3), out=tmp)
    x ^= tmp
    return x


def _hash_arrow_strings(arr: pa.Array, halves: Sequence[int] = (0, 1)) -> list[np.ndarray]:
    """The 64-bit hashes (``halves`` of 0, 1) of every string of one Arrow string array.

    Nulls hash as missing. Works on the UTF-8 buffer directly, block by block so that the
    dozen numpy passes over each block's words run in cache.
    """
    n = len(arr)
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        arr = arr.cast(pa.large_string())
    offset_type = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    _, offsets_buf, data_buf = arr.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=offset_type)[arr.offset : arr.offset + n + 1]
    data = (
        np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.empty(0, np.uint8)
    )
    out = [np.empty(n, dtype=_U64) for _ in halves]
    for start in range(0, n, _BLOCK):
        stop = min(start + _BLOCK, n)
        block = _hash_utf8_block(offsets[start : stop + 1].astype(np.int64), data, halves)
        for h, part in zip(out, block, strict=True):
            h[start:stop] = part
    if arr.null_count:
        missing = arr.is_null().to_numpy(zero_copy_only=False)
        for h, which in zip(out, halves, strict=True):
            h[missing] = _MISSING[which]
    return out


def _hash_utf8_block(
    offsets: np.ndarray, data: np.ndarray, halves: Sequence[int]
) -> list[np.ndarray]:
    """Hashes of the strings ``data[offsets[i]:offsets[i + 1]]``.

    Per string and half: ``mix(sum_j mix(word_j ^ (j + 1) * word_key) + length * len_key)``,
    the words read little-endian and the last one zero-padded. Strings up to
    ``_SHORT_WORDS`` words go word position by word position (few, cheap passes); longer ones
    through a flat word array (cost proportional to their bytes, whatever their length).
    """
    lo, hi = int(offsets[0]), int(offsets[-1])
    # 8 zero bytes of padding so that the last word of the last string can be read whole.
    chunk = np.zeros(hi - lo + 8, dtype=np.uint8)
    chunk[: hi - lo] = data[lo:hi]
    # A uint64 at every byte offset (an unaligned, overlapping view): gathers read words.
    all_words = np.ndarray(shape=(len(chunk) - 7,), dtype="<u8", buffer=chunk, strides=(1,))
    starts = offsets[:-1] - lo
    lengths = np.diff(offsets)
    n_words = (lengths + 7) >> 3
    acc = [np.zeros(len(lengths), dtype=_U64) for _ in halves]
    long = n_words > _SHORT_WORDS
    if long.any():
        short = np.flatnonzero(~long)
        for total, part in zip(
            acc, _sum_words_by_position(all_words, starts[short], lengths[short], halves)
        ):
            total[short] = part
        long_at = np.flatnonzero(long)
        for total, part in zip(
            acc, _sum_words_flat(all_words, starts[long_at], lengths[long_at], halves)
        ):
            total[long_at] = part
    else:
        acc = _sum_words_by_position(all_words, starts, lengths, halves)
    length_u = lengths.astype(_U64)
    for total, which in zip(acc, halves, strict=True):
        total += length_u * _LEN_KEY[which]
        _mix(total, which)
    return acc


def _sum_words_by_position(
    all_words: np.ndarray, starts: np.ndarray, lengths: np.ndarray, halves: Sequence[int]
) -> list[np.ndarray]:
    """Per-string sums of mixed words, one pass per word position over the strings that reach
    it (ordered longest first, so that those are always a prefix)."""
    n = len(lengths)
    n_words = (lengths + 7) >> 3
    order = np.argsort(n_words, kind="stable")[::-1]
    starts, lengths = starts[order], lengths[order]
    # reach[j]: how many strings have more than j words.
    reach = n - np.cumsum(np.bincount(n_words, minlength=1))
    sums = [np.zeros(n, dtype=_U64) for _ in halves]
    work, scratch = np.empty(n, dtype=_U64), np.empty(n, dtype=_U64)
    for j in range(len(reach) - 1):
        count, ending = int(reach[j]), int(reach[j + 1])
        words = all_words[starts[:count] + 8 * j]
        if ending < count:  # the last word of strings [ending:count]: keep their bytes only
            words[ending:] &= _TAIL_MASKS[np.minimum(lengths[ending:count] - 8 * j, 8)]
        for total, which in zip(sums, halves, strict=True):
            key = _U64(((j + 1) * int(_WORD_KEY[which])) & _MASK64)
            mixed = np.bitwise_xor(words, key, out=work[:count])
            total[:count] += _mix(mixed, which, scratch[:count])
    out = []
    for total in sums:
        back = np.empty_like(total)
        back[order] = total
        out.append(back)
    return out


def _sum_words_flat(
    all_words: np.ndarray, starts: np.ndarray, lengths: np.ndarray, halves: Sequence[int]
) -> list[np.ndarray]:
    """Per-string sums of mixed words through one flat array of all the strings' words."""
    n_words = (lengths + 7) >> 3
    ends = np.cumsum(n_words)
    firsts = ends - n_words
    total = int(ends[-1]) if len(ends) else 0
    # Word w belongs to string i = owner[w] and sits at position j in it.
    owner = np.repeat(np.arange(len(lengths), dtype=np.int64), n_words)
    j = np.arange(total, dtype=np.int64)
    j -= firsts[owner]
    byte_pos = starts[owner]
    byte_pos += j << 3
    words = all_words[byte_pos].astype(_U64, copy=False)
    tail = lengths[owner]
    tail -= j << 3
    np.minimum(tail, 8, out=tail)
    words &= _TAIL_MASKS[tail]
    j += 1
    position = j.astype(_U64)
    prefix = np.zeros(total + 1, dtype=_U64)
    out = []
    for which in halves:
        mixed = _mix(words ^ (position * _WORD_KEY[which]), which)
        # Per-string sums through a wrapping prefix sum.
        np.cumsum(mixed, out=prefix[1:])
        out.append(prefix[ends] - prefix[firsts])
    return out


def _hash_numbers(values: np.ndarray) -> list[np.ndarray]:
    """Both hashes of float64 values (NaN -> missing, -0.0 -> 0.0)."""
    values = values.astype(np.float64, copy=True)
    missing = np.isnan(values)
    values[values == 0.0] = 0.0
    bits = values.view(_U64)
    out = []
    for which in (0, 1):
        acc = _mix(bits ^ _WORD_KEY[which], which)
        acc += _NUMBER_LEN[which]
        h = _mix(acc, which)
        h[missing] = _MISSING[which]
        out.append(h)
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | np.number | np.bool_)


def _hash_mixed(values: np.ndarray) -> list[np.ndarray]:
    """The slow path for object columns that hold more than strings: split by kind."""
    n = len(values)
    h1 = np.empty(n, dtype=_U64)
    h2 = np.empty(n, dtype=_U64)
    missing = np.fromiter((is_missing(v) for v in values), dtype=bool, count=n)
    number = np.fromiter((_is_number(v) for v in values), dtype=bool, count=n) & ~missing
    text = ~(missing | number)
    h1[missing], h2[missing] = _MISSING
    if number.any():
        h1[number], h2[number] = _hash_numbers(values[number].astype(np.float64))
    if text.any():
        strings = [
            v if isinstance(v, str) else f"\x00{type(v).__qualname__}\x00{v!r}"
            for v in values[text]
        ]
        h1[text], h2[text] = _hash_arrow_strings(pa.array(strings, type=pa.large_string()))
    return [h1, h2]


def as_arrow_strings(column: pd.Series) -> pa.Array | pa.ChunkedArray | None:
    """The column as an Arrow string array (zero-copy when Arrow-backed); None if not text."""
    dtype = column.dtype
    if isinstance(dtype, pd.ArrowDtype):
        pa_type = dtype.pyarrow_dtype
        if pa.types.is_string(pa_type) or pa.types.is_large_string(pa_type):
            return pa.array(column.array)
        return None
    if isinstance(dtype, pd.StringDtype) and dtype.storage != "python":
        return pa.array(column.array)
    if not (pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype)):
        try:
            return pa.array(column.to_numpy(dtype=object), type=pa.large_string(), from_pandas=True)
        except (pa.ArrowTypeError, pa.ArrowInvalid):
            return None
    return None


def hash_strings(
    strings: pa.Array | pa.ChunkedArray, halves: Sequence[int] = (0, 1)
) -> list[np.ndarray]:
    if isinstance(strings, pa.Array):
        return _hash_arrow_strings(strings, halves)
    if strings.num_chunks == 1:
        return _hash_arrow_strings(strings.chunk(0), halves)
    if strings.num_chunks == 0:
        return [np.empty(0, dtype=_U64) for _ in halves]
    parts = [_hash_arrow_strings(chunk, halves) for chunk in strings.chunks]
    return [np.concatenate([p[i] for p in parts]) for i in range(len(halves))]


def _hash_column(column: pd.Series) -> list[np.ndarray]:
    """Both 64-bit content hashes of one column, as uint64 arrays."""
    dtype = column.dtype
    if pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_numeric_dtype(dtype):
        return _hash_numbers(column.to_numpy(dtype=np.float64, na_value=np.nan))
    strings = as_arrow_strings(column)
    if strings is not None:
        return hash_strings(strings)
    values = column.to_numpy(dtype=object)
    if dtype == object and pd.api.types.infer_dtype(values, skipna=True) in _NUMERIC_INFERRED:
        numbers = pd.to_numeric(pd.Series(values, dtype=object))
        return _hash_numbers(numbers.to_numpy(dtype=np.float64, na_value=np.nan))
    return _hash_mixed(values)


def hash_frame(
    frame: pd.DataFrame, columns: Sequence[str], *, workers: int | None = None
) -> pd.DataFrame:
    """The 128-bit content hash of ``columns`` (in that order) for every row of ``frame``.

    Returns a frame with int64 columns ``h1`` and ``h2`` on ``frame.index``. Equal values give
    equal hashes whatever the row order, index, dtype holding them, process or machine; see the
    module docstring for the value rules and collisions (~2**-128 per pair of rows).

    ``workers`` threads hash columns in parallel (numpy releases the GIL); default: the CPU
    count, at most 4 and at most one per column.
    """
    columns = list(columns)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise KeyError(f"hash_frame: columns not in frame: {missing}")
    n = len(frame)
    if workers is None:
        workers = min(4, os.cpu_count() or 1, max(1, len(columns)))
    series = [frame[c] for c in columns]
    rows = [np.full(n, _U64(len(columns)), dtype=_U64) for _ in (0, 1)]

    def fold(per_column: Iterable[list[np.ndarray]]) -> None:
        # Left to right, consumed as they come so that one column's hashes are alive at a time.
        for hashes in per_column:
            for which in (0, 1):
                rows[which] ^= hashes[which]
                rows[which] *= _ROW_MULT[which]

    if workers > 1 and n >= 10_000 and len(columns) > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            fold(pool.map(_hash_column, series))
    else:
        fold(map(_hash_column, series))
    halves = [_mix(rows[which], which).view(np.int64) for which in (0, 1)]
    return pd.DataFrame({"h1": halves[0], "h2": halves[1]}, index=frame.index)


def is_missing(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, (float, np.floating)):
        return math.isnan(value)
    return isinstance(value, np.datetime64 | np.timedelta64) and np.isnat(value)


