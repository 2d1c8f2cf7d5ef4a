"""The fault drills at small sizes (bench/drills.py --small): crash, storm, bad input, overlap,
clocks. Each asserts the guarantee the drill stands for, not timings."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

pytestmark = pytest.mark.slow


def small(drills: ModuleType, name: str, tmp_path: Path) -> dict[str, Any]:
    result: dict[str, Any] = drills.run_drill(name, small=True, workdir=tmp_path)
    return result


def test_crash_sigkill_at_random_instants_loses_and_duplicates_nothing(
        drills: ModuleType, tmp_path: Path) -> None:
    r = small(drills, "crash", tmp_path)
    assert r["kills_done"] >= 1, r
    assert r["runs_refused_locked"] == 0, "a killed run's lock must not block the restart"
    assert r["final_sync_rc"] == 0, r
    assert r["verify"] == {k: 0 for k in r["verify"]}, r
    assert r["duplicates_total"] == 0, r["duplicates"]
    assert r["intents_left"] == 0


def test_storm_of_faults_syncs_everything_once(drills: ModuleType, tmp_path: Path) -> None:
    r = small(drills, "storm", tmp_path)
    assert r["exit_codes"][-1] in (0, 1), r
    assert set(r["exit_codes"][:-1]) <= {3}, "a failed run exits 3 and the next one resumes"
    assert r["verify"]["drift"] == 0, r["verify"]
    assert r["duplicates_total"] == 0, r["duplicates"]
    assert sum(s.get("retries", 0) for s in r["retries"].values()) > 0, "faults were retried"


def test_bad_input_quarantined_with_field_and_problem(drills: ModuleType,
                                                      tmp_path: Path) -> None:
    r = small(drills, "bad_input", tmp_path)
    for name, case in r["cases"].items():
        if "valid" in case:
            assert case["synced"] == case["valid"], (name, case)
        else:
            assert case["quarantined_with_reason"] == case["expected"], (
                name, case, r["sample_reasons"].get(name))
    assert r["sync_exit_codes"][-1] == 1  # success with quarantined records


def test_overlapping_runs_never_make_two_writers(drills: ModuleType, tmp_path: Path) -> None:
    r = small(drills, "overlap", tmp_path)
    assert r["together"]["exit_codes"] == [0, 4], r["together"]
    assert r["together"]["loser_writes"] == 0
    slow = r["cron_over_slow"]
    assert 4 in slow["cron_exit_codes"] and slow["loser_writes"] == 0, slow
    assert slow["overlapping_writers"] == 0 and slow["next_run_writes"] == 0, slow
    lease = r["lease_expiry"]
    assert lease["slow_run_s"] > lease["lease_s"], "the slow run must outlive its lease"
    assert lease["overlapping_writers"] == 0 and lease["runs_that_wrote"] == 1, lease
    for part in ("together", "cron_over_slow", "lease_expiry"):
        assert r[part]["duplicates"] == 0 and r[part]["verify_drift"] == 0, r[part]


def test_skewed_clocks_shared_timestamps_and_edits_during_runs_miss_nothing(
        drills: ModuleType, tmp_path: Path) -> None:
    r = small(drills, "clocks", tmp_path)
    assert r["converge"][-1]["drift"] == 0, (r["converge"], r.get("drift_items"))
    assert r["edits_missing_on_other_side"] == 0, r
    assert r["duplicates"] == 0
