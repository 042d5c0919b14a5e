"""The writer lock: a lease on a row, timed by the database's clock, kept by a heartbeat.

Taken, renewed and given back in short statements, so it holds behind a
transaction pooler (tests/faults/test_pgbouncer.py runs it behind PgBouncer);
taken over only once its lease has run out; never deleted.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from django.db import OperationalError, connection
from django.db.models.functions import Now
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from pfsync_app.exceptions import SyncAborted, WriterBusy
from pfsync_app.jobs.base import Heartbeat
from pfsync_app.jobs.sync import SyncJob, SyncOptions
from pfsync_app.models import RunLock, SyncRun
from pfsync_app.writers import lock
from pfsync_app.writers.lock import LEASE_SECONDS, take, writer_lock
from tests.fixtures.faults import OnFirstPage, wait_for

#: A lease short enough for a test, long enough that a loaded machine renews it in time: renewed
#: every second, given up after two.
SHORT_LEASE = 4.0

BUSY = rf"^another pf_sync is running \(pid {os.getpid()}, started \d\d:\d\d\)$"


def database_now():
    """The database's own clock."""
    RunLock.objects.get_or_create(name="clock", defaults={"pid": 0})
    return RunLock.objects.filter(name="clock").values_list(Now(), flat=True).get()


def expire(seconds_ago: float = 1.0) -> None:
    """Let the held lease run out, by the database's clock."""
    RunLock.objects.filter(name=lock.LOCK_NAME).update(
        expires_at=Now() - timedelta(seconds=seconds_ago)
    )


def handed_to_another_host() -> None:
    """Make the lock look taken over by another host's pf_repair."""
    RunLock.objects.filter(name=lock.LOCK_NAME).update(
        token="f" * 32, pid=4242, hostname="cron-host", command="pf_repair"
    )


@pytest.mark.django_db
class TestTheLease:
    def test_a_second_run_is_refused_while_the_first_holds_the_lease_and_is_named(self):
        take("pf_sync")
        with pytest.raises(WriterBusy, match=BUSY):
            take("pf_sync")

    def test_a_lease_is_taken_over_only_once_it_has_run_out(self):
        take("pf_sync")
        expire(seconds_ago=-5)  # five seconds still to go
        with pytest.raises(WriterBusy):
            take("pf_repair")
        expire(seconds_ago=0.001)
        second = take("pf_repair")
        row = RunLock.objects.get(name=lock.LOCK_NAME)
        assert (row.token, row.command) == (second.token, "pf_repair")

    def test_the_lease_is_timed_by_the_database_clock_whatever_the_hosts_clock_says(
        self, monkeypatch
    ):
        take("pf_sync")
        # A host whose clock is a day ahead still finds the lease running.
        ahead = timezone.now() + timedelta(days=1)
        monkeypatch.setattr(timezone, "now", lambda: ahead)
        monkeypatch.setattr(time, "time", lambda: ahead.timestamp())
        with pytest.raises(WriterBusy):
            take("pf_sync")
        monkeypatch.undo()
        row = RunLock.objects.get(name=lock.LOCK_NAME)
        now = database_now()
        assert now - timedelta(seconds=5) <= row.acquired_at <= now
        assert now < row.expires_at <= now + timedelta(seconds=LEASE_SECONDS)

    def test_renewing_pushes_the_end_of_the_lease_and_fails_once_another_run_took_it(self):
        lease = take("pf_sync")
        expire(seconds_ago=-1)
        before = RunLock.objects.get(name=lock.LOCK_NAME).expires_at
        assert lease.renew() is True
        assert RunLock.objects.get(name=lock.LOCK_NAME).expires_at > before
        expire()
        take("pf_repair")
        assert lease.renew() is False

    def test_giving_the_lock_back_frees_the_row_and_deletes_nothing(self):
        with CaptureQueriesContext(connection) as queries:
            with writer_lock("pf_sync"):
                pass
            with writer_lock("pf_repair"):
                pass
        assert RunLock.objects.filter(name=lock.LOCK_NAME).count() == 1
        row = RunLock.objects.get(name=lock.LOCK_NAME)
        assert (row.token, row.pid, row.command, row.expires_at) == ("", 0, "", None)
        assert not [q["sql"] for q in queries if q["sql"].lstrip().upper().startswith("DELETE")]

    def test_a_run_whose_lease_was_taken_over_leaves_the_new_holder_alone_at_its_end(self):
        with writer_lock("pf_sync"):
            expire()
            successor = take("pf_repair")
        row = RunLock.objects.get(name=lock.LOCK_NAME)
        assert row.token == successor.token


@dataclass
class FailingLease:
    """A lease whose every renewal fails as if the database had gone away."""

    seconds: float
    taken_at: float = field(default_factory=time.monotonic)
    in_transaction: bool = False
    attempts: int = 0

    def renew(self) -> bool:
        self.attempts += 1
        raise OperationalError("server closed the connection unexpectedly")

    def holder(self) -> None:
        return None


class Lost:
    """Records the reason a heartbeat gives when it loses its lease."""

    def __init__(self) -> None:
        self.reasons: list[str] = []
        self.event = threading.Event()

    def __call__(self, reason: str) -> None:
        self.reasons.append(reason)
        self.event.set()


def test_a_heartbeat_whose_renewals_fail_gives_up_with_half_the_lease_still_to_go():
    lease = FailingLease(seconds=SHORT_LEASE)
    lost = Lost()
    with Heartbeat(lease, on_lost=lost) as heartbeat:
        assert lost.event.wait(30)
    assert lease.attempts >= 1  # tried, every twentieth of the lease, before giving up
    assert heartbeat.deadline == lease.taken_at + lease.seconds / 2
    (reason,) = lost.reasons
    assert reason == (
        "the writer lock's lease could not be renewed for 2 s (server closed the connection "
        "unexpectedly); this run stopped before the lease ran out"
    )


@pytest.mark.django_db(transaction=True)
def test_a_heartbeat_renews_the_lease_every_quarter_of_its_length():
    lease = take("pf_sync", seconds=SHORT_LEASE)
    first_end = RunLock.objects.get(name=lock.LOCK_NAME).expires_at
    lost = Lost()
    with Heartbeat(lease, on_lost=lost) as heartbeat:
        assert heartbeat.every == 1.0
        wait_for(lambda: heartbeat.renewals >= 2, what="two renewals")
    assert RunLock.objects.get(name=lock.LOCK_NAME).expires_at > first_end
    assert lost.reasons == []
    lease.release()


@pytest.mark.django_db(transaction=True)
def test_a_heartbeat_that_finds_its_lease_taken_over_names_the_new_holder():
    lease = take("pf_sync", seconds=SHORT_LEASE)
    handed_to_another_host()
    lost = Lost()
    with Heartbeat(lease, on_lost=lost):
        assert lost.event.wait(30)
    assert lost.reasons == [
        "the writer lock was taken over by pid 4242 on cron-host (pf_repair) while this run "
        "held it (its lease had run out); this run stopped"
    ]


@pytest.mark.django_db(transaction=True)
def test_a_sync_whose_lease_is_lost_ends_failed_saying_why_and_stops(sandbox_settings, monkeypatch):
    monkeypatch.setattr(lock, "LEASE_SECONDS", SHORT_LEASE)
    job = SyncJob(SyncOptions())

    def steal() -> None:
        handed_to_another_host()
        wait_for(lambda: job.lease_lost, what="the heartbeat to notice")

    job.progress = OnFirstPage(steal)
    with pytest.raises(SyncAborted, match=r"^the writer lock was taken over by pid 4242"):
        job.run()
    run = SyncRun.objects.get()
    assert run.status == SyncRun.Status.FAILED
    assert run.message.startswith("the writer lock was taken over by pid 4242 on cron-host")
    # The new holder keeps the lock.
    assert RunLock.objects.get(name=lock.LOCK_NAME).pid == 4242
