"""The fast-sync benchmark keeps working: its --quick mode runs end to end (figures not judged)."""

from __future__ import annotations

import json
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "bench_sync.py"
SCENARIOS = {"A", "B", "C", "D6", "D12"}
# Every row has the benchmark's own columns, and says whether it was measured or extrapolated.
ROW_KEYS = {*runpy.run_path(str(SCRIPT))["ROW_KEYS"], "measured"}
TARGETS = {
    "B_10x_faster_than_A",
    "B_within_1.5x_lower_bound",
    "B_at_most_10_queries_per_changed_listing",
    "C_under_5pct_of_B",
    "C_no_downloads_no_host_writes",
    "C_at_most_0.1_queries_per_unchanged_listing",
    "D_peak_rss_under_200MB",
    "D_rss_flat_with_listings",
}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict]:
    """The benchmark's --quick mode on a throwaway SQLite file: its stdout and its JSON file."""
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--quick",
            "--database-url",
            "sqlite",
            "--json-out",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout, json.loads(out.read_text())


def test_quick_mode_measures_every_scenario_with_every_column(quick_run):
    _, report = quick_run
    assert set(report["scenarios"]) == SCENARIOS
    for row in report["scenarios"].values():
        assert set(row) == ROW_KEYS


def test_quick_mode_judges_every_target_and_names_the_machine(quick_run):
    _, report = quick_run
    assert set(report["targets"]) == TARGETS
    assert all(isinstance(t["met"], bool) for t in report["targets"].values())
    assert set(report["machine"]) == {"cpus", "python", "database"}


def test_quick_mode_prints_the_table_and_labels_the_extrapolated_row(quick_run):
    stdout, _ = quick_run
    header = stdout.splitlines()[1]
    for column in ("wall s", "img/s", "queries", "q/listing", "peak RSS MB", "lower bound s"):
        assert column in header
    assert "A old way (extrapolated from 3)" in stdout
    assert "* extrapolated linearly" in stdout
