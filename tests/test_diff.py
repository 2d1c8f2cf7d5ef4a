"""Tests for etl.rowhash and etl.diff: row hashes, the snapshot diff and field-level changes."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from etl import rowhash
from etl.diff import DiffResult, _locate_exact, changed_fields, diff
from etl.rowhash import hash_frame

COLUMNS = ["name", "city"]


def _hashes(rows: list[tuple[Any, ...]], columns: list[str] | None = None) -> list[tuple[int, int]]:
    columns = columns or [f"c{i}" for i in range(len(rows[0]))]
    frame = pd.DataFrame(rows, columns=columns, dtype=object)
    hashed = hash_frame(frame, columns)
    return list(zip(hashed["h1"].tolist(), hashed["h2"].tolist(), strict=True))


def _snapshot(frame: pd.DataFrame, columns: list[str], key: str = "key") -> pd.DataFrame:
    return pd.concat([frame[[key]], hash_frame(frame, columns)], axis=1).reset_index(drop=True)


# --- hash_frame: which values hash alike ------------------------------------------------------

SAME = [
    ("None and NaN", (None,), (math.nan,)),
    ("None and pd.NA", (None,), (pd.NA,)),
    ("NaN and NaT", (math.nan,), (pd.NaT,)),
    ("int and float", (1,), (1.0,)),
    ("numpy and python float", (np.float64(2.5),), (2.5,)),
    ("minus zero", (-0.0,), (0.0,)),
    ("same accents", ("São Paulo",), ("São Paulo",)),
    ("same emoji", ("🚀 café",), ("🚀 café",)),
]

DIFFERENT = [
    ("missing vs empty string", (None,), ("",)),
    ("missing vs 'None'", (None,), ("None",)),
    ("missing vs 'nan'", (math.nan,), ("nan",)),
    ("empty vs space", ("",), (" ",)),
    ("column order", ("a", "b"), ("b", "a")),
    ("value moves column", ("a", None), (None, "a")),
    ("value moves column, empty", ("a", ""), ("", "a")),
    ("split point", ("ab", "c"), ("a", "bc")),
    ("case", ("Ana",), ("ana",)),
    ("composed vs decomposed accent", ("é",), ("e\u0301",)),
    ("trailing NUL", ("a",), ("a\x00",)),
    ("8-byte boundary", ("abcdefgh",), ("abcdefgh\x00",)),
    ("long strings differ at the end", ("x" * 100 + "a",), ("x" * 100 + "b",)),
    ("words swapped", ("abcdefgh12345678",), ("12345678abcdefgh",)),
    ("number vs its text", (1.5,), ("1.5",)),
    ("different floats", (0.1,), (0.2,)),
    ("emoji", ("🚀",), ("🛸",)),
]


@pytest.mark.parametrize(("label", "left", "right"), SAME, ids=[c[0] for c in SAME])
def test_values_that_hash_alike(label: str, left: tuple[Any, ...], right: tuple[Any, ...]) -> None:
    assert _hashes([left]) == _hashes([right])


@pytest.mark.parametrize(("label", "left", "right"), DIFFERENT, ids=[c[0] for c in DIFFERENT])
def test_values_that_hash_apart(label: str, left: tuple[Any, ...], right: tuple[Any, ...]) -> None:
    a, b = _hashes([left]), _hashes([right])
    assert a[0][0] != b[0][0] and a[0][1] != b[0][1]


@pytest.mark.parametrize(
    ("label", "values", "dtype"),
    [
        ("object strings", ["a", None, "", "ção"], object),
        ("str dtype", ["a", None, "", "ção"], "str"),
        ("string[python]", ["a", None, "", "ção"], "string[python]"),
        ("string[pyarrow]", ["a", None, "", "ção"], "string[pyarrow]"),
        ("float64", [1.5, None, 0.0, 3.0], "float64"),
        ("Float64", [1.5, None, 0.0, 3.0], "Float64"),
        ("Int64 vs float", [1, None, 0, 3], "Int64"),
        ("int64", [1, 2, 0, 3], "int64"),
        ("category", ["a", "b", "a", "c"], "category"),
    ],
)
def test_hash_does_not_depend_on_dtype(label: str, values: list[Any], dtype: Any) -> None:
    typed = pd.DataFrame({"v": pd.Series(values, dtype=dtype)})
    as_objects = pd.DataFrame({"v": pd.Series(values, dtype=object)})
    if dtype in ("Int64", "int64"):
        as_objects = pd.DataFrame(
            {"v": pd.Series([float(v) if v is not None else None for v in values], dtype=object)}
        )
    pd.testing.assert_frame_equal(hash_frame(typed, ["v"]), hash_frame(as_objects, ["v"]))


def test_mixed_object_column_hashes_each_kind_like_its_own_column() -> None:
    mixed = pd.DataFrame(
        {"v": pd.Series(["a", 1.5, None, 2, "", pd.Timestamp("2024-01-01")], dtype=object)}
    )
    got = hash_frame(mixed, ["v"])
    texts = hash_frame(pd.DataFrame({"v": ["a", ""]}, dtype=object), ["v"])
    numbers = hash_frame(pd.DataFrame({"v": [1.5, 2.0]}), ["v"])
    assert got.iloc[[0, 4]].to_numpy().tolist() == texts.to_numpy().tolist()
    assert got.iloc[[1, 3]].to_numpy().tolist() == numbers.to_numpy().tolist()
    assert len({tuple(r) for r in got.to_numpy().tolist()}) == 6


def test_hash_frame_shape_index_and_dtypes() -> None:
    frame = pd.DataFrame({"a": ["x", "y"], "b": [1.0, 2.0]}, index=[10, 20])
    hashed = hash_frame(frame, ["a", "b"])
    assert list(hashed.columns) == ["h1", "h2"]
    assert list(hashed.index) == [10, 20]
    assert (hashed.dtypes == np.int64).all()


def test_hash_frame_of_empty_frame() -> None:
    frame = pd.DataFrame({"a": pd.Series([], dtype=object), "b": pd.Series([], dtype=float)})
    hashed = hash_frame(frame, ["a", "b"])
    assert len(hashed) == 0 and list(hashed.columns) == ["h1", "h2"]


def test_hash_frame_rejects_unknown_columns() -> None:
    with pytest.raises(KeyError, match="nope"):
        hash_frame(pd.DataFrame({"a": ["x"]}), ["a", "nope"])


def test_threads_and_chunks_do_not_change_hashes() -> None:
    rng = np.random.default_rng(7)
    n = 20_000
    frame = pd.DataFrame(
        {
            "a": pd.Series(rng.integers(0, 10**9, n).astype(str), dtype="str"),
            "b": pd.Series([f"é{i}" if i % 7 else None for i in range(n)], dtype=object),
            "c": rng.random(n),
        }
    )
    chunked = pd.concat([frame.iloc[: n // 3], frame.iloc[n // 3 :]])  # Arrow columns in 2 chunks
    one = hash_frame(frame, ["a", "b", "c"], workers=1)
    pd.testing.assert_frame_equal(one, hash_frame(frame, ["a", "b", "c"], workers=4))
    pd.testing.assert_frame_equal(one, hash_frame(chunked, ["a", "b", "c"]))
    pd.testing.assert_frame_equal(one.iloc[5:9], hash_frame(frame.iloc[5:9], ["a", "b", "c"]))


# Known values: a change to the hash function would orphan every stored snapshot.
GOLDEN_ROWS = [("Ana", "São Paulo", 1.5), (None, "", 0.0)]
GOLDEN_HASHES = [
    [-5021219758403504625, 118528371046666418],
    [-2377181704388243771, 58277692414548648],
]


def test_hash_values_are_pinned() -> None:
    frame = pd.DataFrame(GOLDEN_ROWS, columns=["a", "b", "c"])
    assert hash_frame(frame, ["a", "b", "c"]).to_numpy().tolist() == GOLDEN_HASHES


def test_hash_is_stable_across_processes() -> None:
    code = (
        "import json, pandas as pd; from etl.rowhash import hash_frame;"
        f"f = pd.DataFrame({GOLDEN_ROWS!r}, columns=['a','b','c'], dtype=object);"
        "print(json.dumps(hash_frame(f, ['a','b','c']).to_numpy().tolist()))"
    )
    runs = [
        subprocess.run(
            [sys.executable, "-c", code],
            check=True,
            capture_output=True,
            text=True,
            env={"PYTHONHASHSEED": seed, "PATH": ""},
        ).stdout
        for seed in ("1", "2")
    ]
    assert json.loads(runs[0]) == json.loads(runs[1]) == GOLDEN_HASHES


# A plain-Python statement of the string hash, to check the vectorized paths against.
_M64 = (1 << 64) - 1


def _mix_ref(x: int, which: int) -> int:
    s1, m1, s2, m2, s3 = (int(v) for v in rowhash._MIXERS[which])
    x ^= x >> s1
    x = (x * m1) & _M64
    x ^= x >> s2
    x = (x * m2) & _M64
    return x ^ (x >> s3)


def _string_hash_ref(text: str, which: int) -> int:
    data = text.encode()
    total = 0
    for j in range(0, len(data), 8):
        word = int.from_bytes(data[j : j + 8].ljust(8, b"\0"), "little")
        key = ((j // 8 + 1) * int(rowhash._WORD_KEY[which])) & _M64
        total = (total + _mix_ref(word ^ key, which)) & _M64
    total = (total + len(data) * int(rowhash._LEN_KEY[which])) & _M64
    return _mix_ref(total, which)


def test_string_hash_matches_reference_for_short_long_and_mixed_blocks() -> None:
    limit = rowhash._SHORT_WORDS * 8
    texts = ["", "a", "ção", "🚀" * 3, "x" * 8, "y" * 9, "z" * limit, "w" * (limit + 1)]
    texts += ["é" * 3000, "long " * 500 + "end", "abc"]
    got = rowhash.hash_strings(pa.array(texts, type=pa.large_string()))
    for which in (0, 1):
        assert got[which].tolist() == [_string_hash_ref(t, which) for t in texts]


def test_block_boundaries_do_not_change_hashes() -> None:
    block = rowhash._BLOCK
    texts = [("q" * (i % 300)) + str(i) for i in range(block + 700)]
    frame = pd.DataFrame({"t": pd.Series(texts, dtype="str")})
    whole = hash_frame(frame, ["t"])
    around = frame.iloc[block - 700 :]  # straddles the first block boundary of `whole`
    pd.testing.assert_frame_equal(hash_frame(around, ["t"]), whole.iloc[block - 700 :])


# --- diff ------------------------------------------------------------------------------------


def _frame(rows: list[tuple[Any, ...]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["key", *COLUMNS], dtype=object)


DIFF_CASES = [
    (
        "new, changed, unchanged",
        [("1", "Ana", "Rio"), ("2", "Bia", "Recife")],
        [("3", "Caio", "Natal"), ("2", "Bia", "Olinda"), ("1", "Ana", "Rio")],
        {"new": ["3"], "changed": ["2"], "unchanged": ["1"]},
    ),
    (
        "null vs empty string is a change",
        [("1", "Ana", None)],
        [("1", "Ana", "")],
        {"new": [], "changed": ["1"], "unchanged": []},
    ),
    (
        "None vs NaN is not a change",
        [("1", "Ana", None)],
        [("1", "Ana", math.nan)],
        {"new": [], "changed": [], "unchanged": ["1"]},
    ),
    (
        "swapped columns is a change",
        [("1", "Rio", "Ana")],
        [("1", "Ana", "Rio")],
        {"new": [], "changed": ["1"], "unchanged": []},
    ),
    (
        "duplicate incoming keys: the last one wins",
        [("1", "Ana", "Rio"), ("2", "Bia", "Recife")],
        [
            ("1", "Ana", "Niterói"),
            ("2", "Bia", "Olinda"),
            ("1", "Ana", "Rio"),
            ("4", "D", "X"),
            ("4", "E", "Y"),
        ],
        {"new": ["4"], "changed": ["2"], "unchanged": ["1"]},
    ),
    (
        "unicode keys and values",
        [("ção-1", "José 🚀", "São Paulo"), ("ß", "Ü", "ñ")],
        [("ß", "Ü", "ñ"), ("ção-1", "José 🛸", "São Paulo")],
        {"new": [], "changed": ["ção-1"], "unchanged": ["ß"]},
    ),
    (
        "empty incoming",
        [("1", "Ana", "Rio")],
        [],
        {"new": [], "changed": [], "unchanged": []},
    ),
    (
        "empty snapshot",
        [],
        [("2", "Bia", "Recife"), ("1", "Ana", "Rio")],
        {"new": ["2", "1"], "changed": [], "unchanged": []},
    ),
    ("both empty", [], [], {"new": [], "changed": [], "unchanged": []}),
]


@pytest.mark.parametrize("key_dtype", [object, "str"])
@pytest.mark.parametrize(
    ("label", "old", "incoming", "expected"), DIFF_CASES, ids=[c[0] for c in DIFF_CASES]
)
def test_diff_cases(
    label: str,
    old: list[tuple[Any, ...]],
    incoming: list[tuple[Any, ...]],
    expected: dict[str, list[str]],
    key_dtype: Any,
) -> None:
    snapshot = _snapshot(_frame(old), COLUMNS).astype({"key": key_dtype})
    result = diff(_frame(incoming).astype({"key": key_dtype}), snapshot, columns=COLUMNS)
    assert isinstance(result, DiffResult)
    assert result.new["key"].tolist() == expected["new"]
    assert result.changed["key"].tolist() == expected["changed"]
    assert result.unchanged.tolist() == expected["unchanged"]
    assert result.unchanged.name == "key"


def test_diff_keeps_incoming_columns_index_order_and_hashes() -> None:
    snapshot = _snapshot(_frame([("1", "Ana", "Rio"), ("2", "Bia", "Recife")]), COLUMNS)
    incoming = _frame([("9", "Z", "Z"), ("2", "Bia", "Olinda"), ("8", "Y", "Y")])
    incoming["updated_at"] = ["t1", "t2", "t3"]
    incoming.index = [30, 20, 10]
    result = diff(incoming, snapshot, columns=COLUMNS)
    assert result.new.index.tolist() == [30, 10]
    assert list(result.new.columns) == ["key", *COLUMNS, "updated_at", "h1", "h2"]
    expected = hash_frame(incoming, COLUMNS)
    assert (
        result.changed[["h1", "h2"]].to_numpy().tolist() == expected.loc[[20]].to_numpy().tolist()
    )
    # The new rows' hashes are what the next snapshot stores: diffing again finds nothing.
    stored = pd.concat(
        [snapshot, result.new[["key", "h1", "h2"]], result.changed[["key", "h1", "h2"]]]
    )
    stored = stored.drop_duplicates("key", keep="last")
    again = diff(incoming, stored, columns=COLUMNS)
    assert again.new.empty and again.changed.empty and len(again.unchanged) == 3


def test_diff_accepts_precomputed_hashes() -> None:
    snapshot = _snapshot(_frame([("1", "Ana", "Rio")]), COLUMNS)
    incoming = _frame([("1", "Ana", "Rio"), ("2", "Bia", "Recife")])
    result = diff(incoming, snapshot, columns=COLUMNS, hashes=hash_frame(incoming, COLUMNS))
    assert result.new["key"].tolist() == ["2"] and result.unchanged.tolist() == ["1"]
    with pytest.raises(ValueError, match="one row per incoming row"):
        diff(incoming, snapshot, columns=COLUMNS, hashes=hash_frame(incoming.iloc[:1], COLUMNS))


@pytest.mark.parametrize(
    ("label", "incoming_keys", "snapshot_keys", "message"),
    [
        ("null incoming key", ["1", None], ["1"], "null values"),
        ("null snapshot key", ["1"], ["1", None], "null values"),
        ("duplicate snapshot key", ["1"], ["1", "1"], "duplicate keys in snapshot"),
    ],
)
def test_diff_rejects_bad_keys(
    label: str, incoming_keys: list[Any], snapshot_keys: list[Any], message: str
) -> None:
    incoming = pd.DataFrame({"key": incoming_keys, "name": "x", "city": "y"}, dtype=object)
    snapshot = pd.DataFrame({"key": snapshot_keys, "h1": 0, "h2": 0}).astype({"key": object})
    with pytest.raises(ValueError, match=message):
        diff(incoming, snapshot, columns=COLUMNS)


def test_diff_with_numbers_and_a_custom_key() -> None:
    old = pd.DataFrame({"id": ["a", "b"], "price": [1.0, 2.5], "qty": [3, 4]})
    new = pd.DataFrame(
        {"id": ["b", "a"], "price": pd.Series([2.5, 1.0], dtype=object), "qty": [4.0, 5.0]}
    )
    result = diff(
        new, _snapshot(old, ["price", "qty"], key="id"), columns=["price", "qty"], key="id"
    )
    assert result.changed["id"].tolist() == ["a"] and result.unchanged.tolist() == ["b"]


def test_non_text_keys_take_the_exact_join() -> None:
    old = pd.DataFrame({"key": [1, 2], "name": ["a", "b"], "city": ["x", "y"]})
    new = pd.DataFrame({"key": [2, 3, 1], "name": ["b", "c", "a"], "city": ["z", "w", "x"]})
    result = diff(new, _snapshot(old, COLUMNS), columns=COLUMNS)
    assert result.new["key"].tolist() == [3]
    assert result.changed["key"].tolist() == [2]
    assert result.unchanged.tolist() == [1]


def test_exact_join_agrees_with_fast_join() -> None:
    incoming = pd.Series(["c", "a", "x", "b"], dtype="str")
    snapshot = pd.Series(["a", "b", "c"], dtype="str")
    rows, found = _locate_exact(incoming, snapshot, "key")
    assert rows.tolist() == [0, 1, 2, 3] and found.tolist() == [2, 0, -1, 1]


# --- changed_fields --------------------------------------------------------------------------

FIELD_CASES = [
    ("no change", {"a": "x", "b": None}, {"a": "x", "b": None}, {}),
    ("changed value", {"a": "x"}, {"a": "y"}, {"a": ("x", "y")}),
    ("missing equivalents", {"a": None, "b": math.nan}, {"a": pd.NA, "b": None}, {}),
    ("absent equals None", {}, {"a": None}, {}),
    ("null to empty", {"a": None}, {"a": ""}, {"a": (None, "")}),
    ("NaN reported as None", {"a": math.nan}, {"a": "x"}, {"a": (None, "x")}),
    ("int equals float", {"a": 1}, {"a": 1.0}, {}),
    ("text is not a number", {"a": "1"}, {"a": 1}, {"a": ("1", 1)}),
    ("only listed columns", {"a": "x", "z": 1}, {"a": "x", "z": 2}, {}),
]


@pytest.mark.parametrize(
    ("label", "old", "new", "expected"), FIELD_CASES, ids=[c[0] for c in FIELD_CASES]
)
def test_changed_fields(
    label: str, old: dict[str, Any], new: dict[str, Any], expected: dict[str, Any]
) -> None:
    assert changed_fields(old, new, ["a", "b"]) == expected


def test_changed_fields_keeps_column_order() -> None:
    assert list(changed_fields({"a": 1, "b": 1}, {"a": 2, "b": 2}, ["b", "a"])) == ["b", "a"]


# --- properties ------------------------------------------------------------------------------

_values = st.one_of(
    st.none(),
    st.just(math.nan),
    st.text(max_size=12),
    st.sampled_from(["", "a", "São", "🚀", "a\x00", "None", "nan", "x" * 9]),
)
_rows = st.lists(st.tuples(_values, _values, _values), min_size=0, max_size=25)


def _canon(value: Any) -> Any:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(old=_rows, new=_rows, data=st.data())
def test_unchanged_iff_values_equal(
    old: list[tuple[Any, ...]], new: list[tuple[Any, ...]], data: st.DataObject
) -> None:
    columns = ["a", "b", "c"]
    keys = [f"k{i}" for i in range(max(len(old), len(new)))]
    old_frame = pd.DataFrame(old, columns=columns, dtype=object)
    old_frame.insert(0, "key", keys[: len(old)])
    new_frame = pd.DataFrame(new, columns=columns, dtype=object)
    new_frame.insert(0, "key", data.draw(st.permutations(keys))[: len(new)])
    result = diff(new_frame, _snapshot(old_frame, columns), columns=columns)

    old_by_key = {r[0]: tuple(map(_canon, r[1:])) for r in old_frame.itertuples(index=False)}
    expect = {"new": [], "changed": [], "unchanged": []}
    for record in new_frame.itertuples(index=False):
        values = tuple(map(_canon, record[1:]))
        if record[0] not in old_by_key:
            expect["new"].append(record[0])
        elif old_by_key[record[0]] == values:
            expect["unchanged"].append(record[0])
        else:
            expect["changed"].append(record[0])
    assert result.new["key"].tolist() == expect["new"]
    assert result.changed["key"].tolist() == expect["changed"]
    assert result.unchanged.tolist() == expect["unchanged"]
    for record in result.changed.itertuples(index=False):
        old_values = dict(zip(columns, old_by_key[record.key], strict=True))
        assert changed_fields(old_values, record._asdict(), columns)


@settings(max_examples=100, deadline=None)
@given(rows=st.lists(st.tuples(_values, _values), min_size=1, max_size=30), data=st.data())
def test_hash_ignores_row_order_and_index(rows: list[tuple[Any, ...]], data: st.DataObject) -> None:
    frame = pd.DataFrame(rows, columns=["a", "b"], dtype=object)
    order = data.draw(st.permutations(range(len(rows))))
    shuffled = frame.iloc[order]
    shuffled.index = data.draw(st.permutations(range(100, 100 + len(rows))))
    first, second = hash_frame(frame, ["a", "b"]), hash_frame(frame, ["a", "b"])
    pd.testing.assert_frame_equal(first, second)
    assert (
        hash_frame(shuffled, ["a", "b"]).to_numpy().tolist()
        == first.iloc[order].to_numpy().tolist()
    )


@settings(max_examples=150, deadline=None)
@given(left=st.tuples(_values, _values), right=st.tuples(_values, _values))
def test_hash_equal_iff_values_equal(left: tuple[Any, ...], right: tuple[Any, ...]) -> None:
    same = tuple(map(_canon, left)) == tuple(map(_canon, right))
    hashes = _hashes([left, right])
    assert (hashes[0] == hashes[1]) == same
