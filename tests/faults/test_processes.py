"""Fault scenarios that need the process itself to die, or its database to go away.

``SIGKILL`` at several moments of real ``manage.py pf_sync`` processes: the
next run completes, no duplicate rows, no half-written file, the killed runs
marked interrupted. The database going away mid-run: a clear sentence, status
2, nothing half-written; for real on PostgreSQL (its backend is terminated),
and in this process through a cursor that starts failing, on every backend.
"""

from __future__ import annotations

import signal
import time
from datetime import timedelta
from unittest import mock

import pytest
from django.db import connection
from django.db.backends import utils as backend_utils
from django.db.models.functions import Now
from django.db.utils import OperationalError

from pfsync_app.exceptions import SyncAborted
from pfsync_app.jobs.sync import SyncOptions, run_sync
from pfsync_app.models import Agent, Property, PropertyImage, RunLock, SyncRun
from pfsync_app.sandbox import Sandbox
from tests.fixtures.faults import (
    SMALL,
    OnFirstPage,
    Scenario,
    manage,
    media_root,
    record_scenario,
    run_status,
    start,
    wait_for,
)

pytestmark = pytest.mark.fault_scenario

IMAGES = PropertyImage._meta.db_table
PROPERTIES = Property._meta.db_table
AGENTS = Agent._meta.db_table


def saved_rows(db) -> set[tuple]:
    """Properties and active image rows of the process database."""
    rows = {("property", pf_id) for (pf_id,) in db.query(f"SELECT pf_id FROM {PROPERTIES}")}
    rows |= {
        ("image", pf_id, url)
        for pf_id, url in db.query(
            f"SELECT p.pf_id, i.source_url FROM {IMAGES} i JOIN {PROPERTIES} p "
            "ON p.id = i.property_id WHERE i.is_active"
        )
    }
    return rows


def assert_consistent(db, sb) -> None:
    """No duplicate rows, and every image row's file is exactly the served image."""
    assert not db.query(f"SELECT pf_id FROM {PROPERTIES} GROUP BY pf_id HAVING COUNT(*) > 1")
    assert not db.query(
        f"SELECT property_id, source_url FROM {IMAGES} WHERE is_active "
        "GROUP BY property_id, source_url HAVING COUNT(*) > 1"
    )
    media = db.folder / "media"
    for name, url in db.query(f"SELECT image, source_url FROM {IMAGES}"):
        path = media / name
        assert path.is_file(), f"row points at missing file {name}"
        assert path.read_bytes() == sb.data.image_bytes(url), f"{name} is not the whole image"


def unreferenced_files(db, sb) -> list[str]:
    """Stored images no row references; each must still be a whole image, never half a one."""
    media = db.folder / "media"
    referenced = {name for (name,) in db.query(f"SELECT image FROM {IMAGES}")}
    served = {
        sb.data.image_bytes(image["original"]["url"])
        for raw in sb.data.listings()
        for image in (raw.get("media") or {}).get("images") or []
    }
    orphans = []
    for path in sorted((media / "property_images").glob("*")):
        name = str(path.relative_to(media))
        if name not in referenced:
            assert path.read_bytes() in served, f"{name} is half-written"
            orphans.append(name)
    return orphans


@pytest.mark.slow
def test_a_sync_killed_at_any_moment_is_completed_by_the_next_run_without_duplicates(db):
    lost: set[tuple] = set()
    saved: set[tuple] = set()
    with Sandbox(**SMALL, image_latency_ms=250) as sb:
        for delay in (0.3, 0.8, 1.5):
            sb.clear_requests()
            process = start(db, "pf_sync", "--concurrency", "2", sb=sb)
            wait_for(lambda: sb.requests, what="the run's first request")
            time.sleep(delay)
            process.send_signal(signal.SIGKILL)
            process.communicate(timeout=30)
            assert process.returncode == -signal.SIGKILL, "the run ended before it was killed"
            assert_consistent(db, sb)
            now = saved_rows(db)
            lost |= saved - now
            saved |= now
            if delay == 0.3:
                # The killed run could not give the lock back: its lease holds it until it
                # runs out, and a start meanwhile is refused, naming the killed run.
                refused = manage(db, "pf_sync", sb=sb)
                assert refused.returncode == 2, refused.stderr
                assert f"another pf_sync is running (pid {process.pid}," in refused.stderr
            db.expire_lock_lease()

        final = manage(db, "pf_sync", sb=sb)

        assert final.returncode == 0, final.stderr
        assert_consistent(db, sb)
        statuses = [status for _, status in run_status(db)]
        assert statuses == ["interrupted", "skipped", "interrupted", "interrupted", "succeeded"]
        expected = {("property", raw["id"]) for raw in sb.data.listings()} | {
            ("image", raw["id"], image["original"]["url"])
            for raw in sb.data.listings()
            for image in (raw.get("media") or {}).get("images") or []
        }
        final_rows = saved_rows(db)
        lost |= saved - final_rows
        assert final_rows == expected
        assert lost == set()
        # Files saved by a killed run just before its listing's rows: whole images that no
        # row uses (pf_sync does not delete files it cannot prove are its own leftovers).
        unreferenced_files(db, sb)
    record_scenario("", True, len(lost))


@pytest.mark.slow
def test_the_nights_of_the_nul_records_exit_1_with_one_line_each_and_no_traceback(db):
    with Sandbox(**SMALL) as sb:
        users = sb.data.users()
        listing_ids = sb.data.listing_ids()
        sb.data.update_user(users[0]["id"], firstName="Lay\x00la", email="lay\x00la@agency.ae")
        sb.data.update_listing(listing_ids[0], id="BAD\x00ID")

        night = manage(db, "pf_sync", sb=sb)

        assert night.returncode == 1, night.stderr
        assert "Traceback" not in night.stderr + night.stdout
        assert "\x00" not in night.stdout
        [failure] = [line for line in night.stdout.splitlines() if "BADID" in line]
        assert "field id" in failure
        synced = {pf_id for (pf_id,) in db.query(f"SELECT pf_id FROM {PROPERTIES}")}
        assert synced == set(listing_ids[1:])
        [(first_name,)] = db.query(
            f"SELECT first_name FROM {AGENTS} WHERE pf_user_id = {users[0]['id']}"
        )
        assert first_name == "Layla"

        sb.data.update_listing(listing_ids[0], id=listing_ids[0])
        mended = manage(db, "pf_sync", sb=sb)

        assert mended.returncode == 0, mended.stderr
        assert_consistent(db, sb)
        final = {pf_id for (pf_id,) in db.query(f"SELECT pf_id FROM {PROPERTIES}")}
        assert final == set(listing_ids)
    record_scenario("", True, len(synced - final))


if connection.vendor == "postgresql":

    @pytest.mark.slow
    def test_the_database_connection_killed_mid_run_stops_with_status_2_and_one_sentence(db):
        with Sandbox(**SMALL, image_latency_ms=300) as sb:
            process = start(db, "pf_sync", "--concurrency", "1", sb=sb)
            wait_for(lambda: any("/images/" in r.path for r in sb.requests), what="image downloads")
            time.sleep(0.5)
            assert db.terminate_other_sessions() >= 1
            _, stderr = process.communicate(timeout=60)

            assert process.returncode == 2, stderr
            assert "Traceback" not in stderr
            last = stderr.strip().splitlines()[-1]
            assert last.startswith("CommandError: pf_sync could not run: the database went away")
            assert_consistent(db, sb)
            before = saved_rows(db)

            final = manage(db, "pf_sync", sb=sb)

            assert final.returncode == 0, final.stderr
            assert_consistent(db, sb)
            assert before <= saved_rows(db)
            # A new connection reached the server again and recorded why the run ended.
            assert [status for _, status in run_status(db)] == ["failed", "succeeded"]
            (message,) = db.query(f"SELECT message FROM {SyncRun._meta.db_table} WHERE id = 1")[0]
            assert message.startswith("the database went away")
        record_scenario("", True, len(before - saved_rows(db)))


class FailingCursor:
    """Arms a patch that makes every query fail as if the database server went away."""

    def __init__(self, after: int) -> None:
        self.after = after
        self.armed = False
        self.count = 0
        self.original = backend_utils.CursorWrapper._execute

    def arm(self) -> None:
        """From now on, ``after`` more queries succeed, then every one fails."""
        self.armed = True

    def execute(self, wrapper, sql, params, *ignored):
        """CursorWrapper._execute, failing once armed and past the count."""
        if self.armed:
            self.count += 1
            if self.count > self.after:
                raise OperationalError("server closed the connection unexpectedly")
        return self.original(wrapper, sql, params, *ignored)


@pytest.mark.django_db(transaction=True)
def test_the_database_failing_mid_run_stops_the_run_with_one_sentence_and_nothing_half_written(
    sandbox_settings, caplog
):
    sb = sandbox_settings
    scenario = Scenario(sb)
    scenario.baseline()
    failing = FailingCursor(after=12)

    with (
        mock.patch.object(
            backend_utils.CursorWrapper,
            "_execute",
            lambda wrapper, sql, params, *rest: failing.execute(wrapper, sql, params, *rest),
        ),
        pytest.raises(SyncAborted, match=r"^the database went away: server closed the conn"),
    ):
        run_sync(
            SyncOptions(full=True), client=scenario.client(), progress=OnFirstPage(failing.arm)
        )
    scenario.checkpoint()

    assert failing.count > failing.after
    for name, url in PropertyImage.objects.values_list("image", "source_url"):
        assert (media_root() / name).read_bytes() == sb.data.image_bytes(url)
    # Every connection fails here, so even a new one cannot record the failure: the run
    # stays "running" until a later run of another process marks it interrupted.
    assert "could not record the failure" in caplog.text
    assert SyncRun.objects.latest("id").status != SyncRun.Status.SUCCEEDED
    # Nor give the writer lock back: it is free again once its lease has run out.
    assert "could not give the writer lock back" in caplog.text
    RunLock.objects.update(expires_at=Now() - timedelta(seconds=1))
    scenario.converge()
