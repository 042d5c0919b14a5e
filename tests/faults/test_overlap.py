"""Overlapping runs in real processes: one pf_sync or pf_repair at a time, pf_check never blocks.

The processes share a database of their own (an SQLite file, or a PostgreSQL
database created for the test when the suite runs on PostgreSQL) and a sandbox
served from this test process.
"""

from __future__ import annotations

import re

import pytest

from pfsync_app.models import RunLock, SyncRun
from pfsync_app.sandbox import Sandbox
from tests.fixtures.faults import (
    SMALL,
    manage,
    record_scenario,
    start,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.fault_scenario]

BUSY = re.compile(r"another pf_sync is running \(pid (\d+), started \d\d:\d\d\)")


def lock_holder(db) -> int:
    """The pid in pfsync's RunLock row (0 when free)."""
    rows = db.query(f"SELECT pid FROM {RunLock._meta.db_table}")
    return rows[0][0] if rows else 0


def test_a_second_pf_sync_or_pf_repair_exits_2_naming_the_first_while_pf_check_runs(db):
    with Sandbox(**SMALL) as sb:
        # The users page hangs 20 s while the first run holds the lock: however slowly three
        # more processes start on a loaded machine, they meet the lock held.
        sb.faults.add("/v1/users", "hang", seconds=20, times=1)
        first = start(db, "pf_sync", "--concurrency", "2", sb=sb)
        try:
            wait_for(lambda: lock_holder(db) == first.pid, what="the first pf_sync's lock")
            second = start(db, "pf_sync", sb=sb)
            repair = start(db, "pf_repair", sb=sb)
            check = start(db, "pf_check", sb=sb)
            _, second_err = second.communicate(timeout=60)
            _, repair_err = repair.communicate(timeout=60)
            _, check_err = check.communicate(timeout=60)
            still_running = first.poll() is None
        finally:
            _, first_err = first.communicate(timeout=60)

    assert still_running, "the first pf_sync ended before the others were tried"
    assert second.returncode == 2, second_err
    busy = BUSY.search(second_err)
    assert busy and int(busy.group(1)) == first.pid, second_err
    assert second_err.strip().splitlines() == [
        f"CommandError: pf_sync could not run: {busy.group(0)}"
    ], "one sentence, no traceback"
    assert repair.returncode == 2, repair_err
    assert f"pid {first.pid}" in repair_err
    assert check.returncode in (0, 1), check_err
    assert "Traceback" not in check_err
    assert first.returncode == 0, first_err

    runs = db.query(f"SELECT command, status FROM {SyncRun._meta.db_table} ORDER BY id")
    assert ("pf_sync", "succeeded") in runs
    # A start the lock refused is recorded as skipped: never as a failed night.
    assert ("pf_sync", "skipped") in runs
    assert ("pf_repair", "skipped") in runs
    assert not [run for run in runs if run[1] == "failed"]
    assert lock_holder(db) == 0
    record_scenario("", True, 0)


def test_the_lock_is_free_again_once_the_first_run_ended(db):
    with Sandbox(**SMALL) as sb:
        first = manage(db, "pf_sync", sb=sb)
        second = manage(db, "pf_sync", sb=sb)
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    assert lock_holder(db) == 0
    record_scenario("", True, 0)
