"""A pfsync table dropped by hand under applied migrations is named, not a lost database.

Attack 15: with ``pfsync_app_listingstate`` dropped, pf_sync said "the database went
away: no such table ..." (SQLite's missing table is an OperationalError). It must say
which of pfsync's tables is missing and that migrate brings it back, exit status 2.
"""

from __future__ import annotations

import pytest
from django.db import connection, transaction
from django.db.utils import DatabaseError

from pfsync_app.database import database_problem, missing_pfsync_table
from pfsync_app.exceptions import SyncAborted
from pfsync_app.jobs.base import Job
from pfsync_app.models import ListingState, SyncRun

pytestmark = pytest.mark.django_db

DROPPED = (
    "pfsync's table 'pfsync_app_listingstate' is missing: run python manage.py migrate "
    "(it may have been dropped by hand)"
)


def drop_listing_state() -> None:
    cascade = " CASCADE" if connection.vendor == "postgresql" else ""
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE pfsync_app_listingstate{cascade}")


def error_reading_listing_state() -> DatabaseError:
    try:
        with transaction.atomic():
            ListingState.objects.count()
    except DatabaseError as exc:
        return exc
    raise AssertionError("reading a dropped table raised nothing")


def test_the_error_of_a_dropped_pfsync_table_names_it_and_migrate():
    drop_listing_state()
    exc = error_reading_listing_state()
    assert missing_pfsync_table(exc) == DROPPED
    assert database_problem(exc) == DROPPED


def test_a_host_table_is_not_called_pfsync_s():
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE scratch_gone (id integer)")
        cursor.execute("DROP TABLE scratch_gone")
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT * FROM scratch_gone")
    except DatabaseError as exc:
        assert missing_pfsync_table(exc) is None
    else:
        raise AssertionError("reading a dropped table raised nothing")


def test_a_job_that_meets_a_dropped_pfsync_table_stops_with_that_sentence():
    class Sync(Job):
        command = SyncRun.Command.SYNC

        def work(self) -> None:
            drop_listing_state()
            with transaction.atomic():
                ListingState.objects.count()

    with pytest.raises(SyncAborted) as stopped:
        Sync().run()
    assert str(stopped.value) == DROPPED
    run = SyncRun.objects.get()
    assert (run.status, run.message) == (SyncRun.Status.FAILED, DROPPED)
