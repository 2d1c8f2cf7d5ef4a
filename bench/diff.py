"""Benchmark the snapshot diff against datacompy and a plain-pandas baseline.

    .venv/bin/python bench/diff.py --rows 1000000 [--changed 0.01] [--seed 0] [--dtype str|object]

Builds N customer-like records (10 text fields, some null, accents and emoji, plus one float),
a snapshot of them, and an incoming read of the same records shuffled with a share of them
changed in one random field each. Three contenders find the changed keys, each in its own
process so that its peak RSS is its own:

* ponte: ``hash_frame`` on the incoming rows + ``diff`` against a stored (key, h1, h2) snapshot;
* datacompy: ``PandasCompare`` of the snapshot values and the incoming values on the key;
* baseline: ``pd.util.hash_pandas_object`` (default ``categorize=True``) on the value columns and
  a ``merge`` on the string key against the stored (key, hash) snapshot.

The snapshot hashes of ponte and the baseline are computed beforehand in a separate process,
as they would be stored by the previous run (their times are reported apart). All three must
find exactly the changed keys that the generator planted. Prints one JSON object, then a table.
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from _util import peak_rss_mb, run_child, stopwatch

KEY = "key"
TEXT = [
    "name", "company", "email", "phone", "street", "city", "state", "zip", "tax_id", "notes",
]  # fmt: skip
COLUMNS = [*TEXT, "credit_limit"]

_SYLLABLES = [
    "ba", "be", "bi", "bo", "bu", "ca", "ce", "ci", "co", "cu", "da", "de", "di", "do", "du",
    "fa", "fe", "fi", "lo", "lu", "ma", "me", "mi", "mo", "mu", "na", "ne", "ni", "no", "ra",
    "re", "ri", "ro", "ru", "sa", "se", "si", "so", "su", "ta", "te", "ti", "to", "tu", "vi",
    "va", "xa", "ção", "são", "lã", "pé", "fé", "ló", "jú", "ô", "ê", "ú", "ín",
]  # fmt: skip
_STATES = [
    "AC", "AL", "AP", "AM", "BA", "CE", "DF", "ES", "GO", "MA", "MT", "MS", "MG", "PA", "PB",
    "PR", "PE", "PI", "RJ", "RN", "RS", "RO", "RR", "SC", "SP", "SE", "TO",
]  # fmt: skip
_EMOJI = ["", "", "", " 🚀", " ✅", " ☕"]


def _words(rng: np.random.Generator, count: int, syllables: tuple[int, int]) -> pa.Array:
    out = set()
    while len(out) < count:
        size = int(rng.integers(*syllables))
        out.add("".join(rng.choice(_SYLLABLES, size)).capitalize())
    return pa.array(sorted(out), type=pa.large_string())


def _pick(rng: np.random.Generator, vocab: pa.Array | list[str], n: int) -> pa.Array:
    vocab = pa.array(vocab, type=pa.large_string()) if isinstance(vocab, list) else vocab
    return vocab.take(pa.array(rng.integers(0, len(vocab), n)))


def _digits(rng: np.random.Generator, n: int, width: int) -> pa.Array:
    values = pa.array(rng.integers(0, 10**width, n, dtype=np.int64)).cast(pa.large_string())
    return pc.utf8_lpad(values, width=width, padding="0")


def _join(*parts: pa.Array | str) -> pa.Array:
    scalars = [pa.scalar(p, pa.large_string()) if isinstance(p, str) else p for p in parts]
    return pc.binary_join_element_wise(*scalars, pa.scalar("", pa.large_string()))


def _with_nulls(rng: np.random.Generator, values: pa.Array, share: float) -> pa.Array:
    return pc.if_else(
        pa.array(rng.random(len(values)) < share), pa.nulls(1, values.type)[0], values
    )


def generate(rows: int, changed: float, seed: int) -> tuple[pa.Table, pa.Table, list[str]]:
    """(snapshot values, incoming values, planted changed keys), all deterministic in seed."""
    rng = np.random.default_rng(seed)
    first, last, word = (
        _words(rng, 400, (2, 4)),
        _words(rng, 800, (2, 5)),
        _words(rng, 3000, (2, 5)),
    )
    cities = _words(rng, 500, (2, 5))
    first_n, last_n = _pick(rng, first, rows), _pick(rng, last, rows)
    fields = {
        # i -> i * odd mod 10**12 is one-to-one: unique, scattered 12-digit keys.
        KEY: _join("cus-", pc.utf8_lpad(pa.array((np.arange(rows) * 7_919_000_003 + seed) % 10**12)
                                        .cast(pa.large_string()), width=12, padding="0")),
        "name": _join(first_n, " ", last_n),
        "company": _join(_pick(rng, word, rows), " ", _pick(rng, word, rows), " Ltda"),
        "email": _join(pc.utf8_lower(first_n), ".", pc.utf8_lower(last_n), _digits(rng, rows, 3),
                       "@", _pick(rng, ["gmail.com", "empresa.com.br", "uol.com.br"], rows)),
        "phone": _with_nulls(rng, _join("+55 ", _digits(rng, rows, 2), " 9", _digits(rng, rows, 8)),
                             0.05),
        "street": _join("Rua ", _pick(rng, word, rows), " ", _pick(rng, last, rows), ", ",
                        pa.array(rng.integers(1, 5000, rows)).cast(pa.large_string())),
        "city": _pick(rng, cities, rows),
        "state": _pick(rng, _STATES, rows),
        "zip": _digits(rng, rows, 8),
        "tax_id": _digits(rng, rows, 14),
        "notes": _with_nulls(rng, _join(_pick(rng, word, rows), " ", _pick(rng, word, rows),
                                        _pick(rng, _EMOJI, rows)), 0.3),
        "credit_limit": pa.array(np.round(rng.random(rows) * 100_000, 2)),
    }  # fmt: skip
    snapshot = pa.table(fields)

    n_changed = round(rows * changed)
    which_rows = np.sort(rng.choice(rows, n_changed, replace=False))
    which_field = rng.integers(0, len(COLUMNS), n_changed)
    incoming_fields = dict(fields)
    for f, name in enumerate(COLUMNS):
        at = which_rows[which_field == f]
        if not len(at):
            continue
        column = fields[name].to_numpy(zero_copy_only=False).copy()
        if name == "credit_limit":
            column[at] += 1.0
        else:
            column[at] = [("x" if v is None else v + "*") for v in column[at]]
        incoming_fields[name] = pa.array(column, type=fields[name].type, from_pandas=True)
    incoming = pa.table(incoming_fields).take(pa.array(rng.permutation(rows)))
    changed_keys = sorted(fields[KEY].take(pa.array(which_rows)).to_pylist())
    return snapshot, incoming, changed_keys


# --- children: each runs in its own process ----------------------------------------------------


def _read(path: Path, dtype: str) -> pd.DataFrame:
    frame = pq.read_table(path).to_pandas()
    if dtype == "object":
        frame = frame.astype({c: object for c in frame.columns if c != "credit_limit"})
    return frame


def _best_of(repeat: int, total: str, once: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run ``once`` ``repeat`` times and keep the fastest run (by ``total``), like timeit."""
    runs = [once() for _ in range(repeat)]
    return min(runs, key=lambda run: float(run[total]))


def child_prepare(data: Path, dtype: str, repeat: int) -> dict[str, Any]:
    """Hash the snapshot for ponte and for the baseline, as the previous run would have."""
    from etl.rowhash import hash_frame

    values = _read(data / "snapshot.parquet", dtype)
    times: dict[str, float] = {}
    with stopwatch(times, "ponte_snapshot_hash_s"):
        hashes = hash_frame(values, COLUMNS)
    pq.write_table(
        pa.table({KEY: pa.array(values[KEY]), "h1": hashes["h1"], "h2": hashes["h2"]}),
        data / "snapshot_ponte.parquet",
    )
    with stopwatch(times, "baseline_snapshot_hash_s"):
        h = pd.util.hash_pandas_object(values[COLUMNS], index=False)
    pq.write_table(pa.table({KEY: pa.array(values[KEY]), "h": h}), data / "snapshot_base.parquet")
    return times


def child_ponte(data: Path, dtype: str, repeat: int) -> dict[str, Any]:
    from etl.diff import diff
    from etl.rowhash import hash_frame

    incoming = _read(data / "incoming.parquet", dtype)
    snapshot = _read(data / "snapshot_ponte.parquet", dtype)
    loaded_mb = peak_rss_mb()

    def once() -> dict[str, Any]:
        times: dict[str, Any] = {}
        with stopwatch(times, "ponte_s"):
            with stopwatch(times, "hash_s"):
                hashes = hash_frame(incoming, COLUMNS)
            with stopwatch(times, "diff_s"):
                result = diff(incoming, snapshot, columns=COLUMNS, hashes=hashes)
        assert result.new.empty and len(result.unchanged) + len(result.changed) == len(incoming)
        return {**times, "changed": result.changed[KEY].tolist()}

    return {**_best_of(repeat, "ponte_s", once), "loaded_mb": loaded_mb}


def child_datacompy(data: Path, dtype: str, repeat: int) -> dict[str, Any]:
    import datacompy

    snapshot = _read(data / "snapshot.parquet", dtype)
    incoming = _read(data / "incoming.parquet", dtype)
    loaded_mb = peak_rss_mb()

    def once() -> dict[str, Any]:
        times: dict[str, Any] = {}
        with stopwatch(times, "datacompy_s"):
            compare = datacompy.PandasCompare(snapshot, incoming, join_columns=KEY)
            both = compare.intersect_rows
            matches = both[[f"{c}_match" for c in COLUMNS]].all(axis=1)
            changed = both.loc[~matches, KEY]
        return {**times, "changed": changed.tolist()}

    return {**_best_of(repeat, "datacompy_s", once), "loaded_mb": loaded_mb}


def child_baseline(data: Path, dtype: str, repeat: int) -> dict[str, Any]:
    incoming = _read(data / "incoming.parquet", dtype)
    snapshot = _read(data / "snapshot_base.parquet", dtype)
    loaded_mb = peak_rss_mb()

    def once() -> dict[str, Any]:
        times: dict[str, Any] = {}
        with stopwatch(times, "baseline_s"):
            h = pd.util.hash_pandas_object(incoming[COLUMNS], index=False)
            merged = pd.DataFrame({KEY: incoming[KEY], "h": h}).merge(
                snapshot, on=KEY, how="left", suffixes=("", "_old")
            )
            present = merged["h_old"].notna()
            changed = merged.loc[present & (merged["h"] != merged["h_old"]), KEY]
        return {**times, "changed": changed.tolist()}

    return {**_best_of(repeat, "baseline_s", once), "loaded_mb": loaded_mb}


CHILDREN = {
    "prepare": child_prepare,
    "ponte": child_ponte,
    "datacompy": child_datacompy,
    "baseline": child_baseline,
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--changed", type=float, default=0.01, help="share of rows changed")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--repeat", type=int, default=3, help="timed runs per contender; the fastest is reported"
    )
    parser.add_argument(
        "--dtype",
        choices=["str", "object"],
        default="str",
        help="dtype of the text columns in every contender's frames",
    )
    parser.add_argument(
        "--only",
        nargs="*",
        choices=["ponte", "datacompy", "baseline"],
        help="run only these contenders",
    )
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)  # fmt: skip

    if args.child:
        out = CHILDREN[args.child](args.data, args.dtype, args.repeat)
        out["peak_mb"] = round(peak_rss_mb(), 1)
        print(json.dumps(out))
        return

    contenders = args.only or ["ponte", "datacompy", "baseline"]
    with tempfile.TemporaryDirectory(prefix="ponte-bench-") as tmp:
        data = Path(tmp)
        snapshot, incoming, planted = generate(args.rows, args.changed, args.seed)
        pq.write_table(snapshot, data / "snapshot.parquet")
        pq.write_table(incoming, data / "incoming.parquet")
        del snapshot, incoming
        script = Path(__file__).resolve()
        common = ["--data", str(data), "--dtype", args.dtype, "--repeat", str(args.repeat)]
        prepared = run_child(script, ["--child", "prepare", *common])
        runs = {name: run_child(script, ["--child", name, *common]) for name in contenders}

    found = {name: sorted(run.pop("changed")) for name, run in runs.items()}
    agree = all(keys == planted for keys in found.values())
    report: dict[str, Any] = {
        "rows": args.rows, "changed_rows": len(planted), "dtype": args.dtype, "repeat": args.repeat,
    }  # fmt: skip
    for name, run in runs.items():
        report[f"{name}_s"] = round(run.pop(f"{name}_s"), 3)
        report[f"{name}_peak_mb"] = run.pop("peak_mb")
        report.update({f"{name}_{k}": round(v, 3) for k, v in run.items()})
    report.update({k: round(v, 3) for k, v in prepared.items() if k != "peak_mb"})
    for other in ("datacompy", "baseline"):
        if "ponte_s" in report and f"{other}_s" in report:
            report[f"speedup_vs_{other}"] = round(report[f"{other}_s"] / report["ponte_s"], 1)
    report["agree"] = agree
    report["found_changed"] = {name: len(keys) for name, keys in found.items()}
    print(json.dumps(report))
    _table(report, contenders)
    if not agree:
        sys.exit("contenders disagree on the changed keys")


def _table(report: dict[str, Any], contenders: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"diff of {report['rows']:,} rows ({report['changed_rows']:,} changed)")
    headers = (
        "contender",
        "seconds",
        "peak MB",
        "MB after loading",
        "ponte is faster",
        "changed found",
    )
    for header in headers:
        table.add_column(header, justify="right" if header != "contender" else "left")
    for name in contenders:
        speedup = report.get(f"speedup_vs_{name}")
        table.add_row(
            name,
            f"{report[f'{name}_s']:.2f}",
            f"{report[f'{name}_peak_mb']:,.0f}",
            f"{report[f'{name}_loaded_mb']:,.0f}",
            "" if speedup is None else f"{speedup}×",
            f"{report['found_changed'][name]:,}",
        )
    Console().print(table)
    if "ponte_hash_s" in report:
        Console().print(
            f"ponte: hash {report['ponte_hash_s']:.2f}s + diff {report['ponte_diff_s']:.2f}s; "
            f"snapshot hashing beforehand: ponte {report['ponte_snapshot_hash_s']:.2f}s, "
            f"baseline {report['baseline_snapshot_hash_s']:.2f}s; agree: {report['agree']}"
        )


if __name__ == "__main__":
    main()
