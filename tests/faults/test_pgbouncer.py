"""pfsync behind PgBouncer in transaction pooling mode: one writer at a time, and pf_check reads.

A session advisory lock does not survive transaction pooling: two pf_sync
started together both ran, or the lock stayed held by an idle pooled server
connection and refused every later run. The writer lock is now a lease on a row,
taken and given back in short transactions. ``scripts/test`` runs PgBouncer on
127.0.0.1 in front of its throwaway cluster and exports
PFSYNC_TEST_PGBOUNCER_PORT; these tests exist only then (on SQLite, or on a
PostgreSQL named by DATABASE_URL, there is no pooler to run behind). The
processes use ``tests.fixtures.settings_pgbouncer``: the bundled settings with
DISABLE_SERVER_SIDE_CURSORS, as README's PgBouncer section says.
"""

from __future__ import annotations

import os
import re
import signal
import time

import pytest
from django.db import connection

from pfsync_app.models import SyncRun
from pfsync_app.sandbox import Sandbox
from tests.fixtures.faults import (
    SMALL,
    ProcessDatabase,
    record_scenario,
    start,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.fault_scenario]

PGBOUNCER_PORT = os.environ.get("PFSYNC_TEST_PGBOUNCER_PORT", "")

#: Pairs of pf_sync started at the same moment.
ROUNDS = 8

#: Seconds the winner's token request hangs: it holds the lock that long at least, so its
#: rival (started at the same moment) always finds it held.
HOLD_SECONDS = 2.0

BUSY = re.compile(r"another pf_sync is running \(pid (\d+), started \d\d:\d\d\)")


def through_pgbouncer(db: ProcessDatabase) -> dict[str, str]:
    """The environment that puts a manage.py process behind PgBouncer."""
    return {
        "DATABASE_URL": db.url_through(PGBOUNCER_PORT),
        "DJANGO_SETTINGS_MODULE": "tests.fixtures.settings_pgbouncer",
    }


def first_to_end(processes: list) -> object:
    """The first of ``processes`` that has ended, or None while all run."""
    return next((p for p in processes if p.poll() is not None), None)


if connection.vendor == "postgresql" and PGBOUNCER_PORT:

    def test_two_pf_sync_started_together_behind_pgbouncer_one_runs_and_the_next_always_starts(
        db,
    ):
        env = through_pgbouncer(db)
        timings = []
        with Sandbox(**SMALL) as sb:
            for round_ in range(ROUNDS):
                # Every other winner is stopped by SIGTERM once its rival has given up: both
                # ways a run ends give the lock back through the pooler.
                terminate = round_ % 2 == 1
                began = time.monotonic()
                hold = 60 if terminate else HOLD_SECONDS
                sb.faults.add("/v1/auth/token", "hang", times=1, seconds=hold)
                pair = [start(db, "pf_sync", sb=sb, **env) for _ in range(2)]
                loser = wait_for(lambda pair=pair: first_to_end(pair), 120, "the first to end")
                (winner,) = [p for p in pair if p is not loser]
                _, loser_err = loser.communicate(timeout=60)
                if terminate:
                    winner.send_signal(signal.SIGTERM)
                _, winner_err = winner.communicate(timeout=120)
                timings.append(time.monotonic() - began)

                assert loser.returncode == 2, loser_err
                busy = BUSY.search(loser_err)
                assert busy and int(busy.group(1)) == winner.pid, loser_err
                assert loser_err.strip().splitlines() == [
                    f"CommandError: pf_sync could not run: {busy.group(0)}"
                ]
                assert winner.returncode == (2 if terminate else 0), winner_err
                # Given back through the pooler: nothing strands it for the next pair.
                assert db.lock_row() == (0, "", False)

            final = start(db, "pf_sync", sb=sb, **env)
            _, final_err = final.communicate(timeout=120)

        assert final.returncode == 0, final_err
        runs = db.query(f"SELECT status FROM {SyncRun._meta.db_table} ORDER BY id")
        statuses = [status for (status,) in runs]
        assert statuses.count("succeeded") == ROUNDS // 2 + 1
        assert statuses.count("interrupted") == ROUNDS // 2
        assert statuses.count("skipped") == ROUNDS
        assert len(statuses) == 2 * ROUNDS + 1
        print(
            f"\n{ROUNDS} pairs of pf_sync started together behind PgBouncer: one ran and one "
            f"exited 2 each time, and the next pair always started; a pair took "
            f"{min(timings):.1f}-{max(timings):.1f} s, {sum(timings):.0f} s in all"
        )
        record_scenario("", True, 0)

    def test_pf_check_and_pf_repair_run_behind_pgbouncer(db):
        env = through_pgbouncer(db)
        with Sandbox(**SMALL) as sb:
            sync = start(db, "pf_sync", sb=sb, **env)
            _, sync_err = sync.communicate(timeout=120)
            assert sync.returncode == 0, sync_err
            (name,) = db.query(
                "SELECT image FROM properties_propertyimage WHERE is_active ORDER BY id LIMIT 1"
            )[0]
            (db.folder / "media" / name).unlink()

            check = start(db, "pf_check", "--json", sb=sb, **env)
            check_out, check_err = check.communicate(timeout=120)
            repair = start(db, "pf_repair", sb=sb, **env)
            _, repair_err = repair.communicate(timeout=120)
            again = start(db, "pf_check", sb=sb, **env)
            _, again_err = again.communicate(timeout=120)

        assert check.returncode == 1, check_err
        assert '"missing_count": 1' in check_out
        assert repair.returncode == 0, repair_err
        assert again.returncode == 0, again_err
        assert db.lock_row() == (0, "", False)
        record_scenario("", True, 0)
