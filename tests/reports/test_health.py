"""The health rule, at frozen times: a monitor turns red when the nightly sync has not succeeded.

A successful sync is a nightly pf_sync (not a dry run, not --listing, --only or
--limit) that finished, with or without item errors. A start refused by the
lock is neither a success nor a failure.
"""

from __future__ import annotations

import datetime as dt
import os
import socket

import pytest

from pfsync_app.models import RunLock, SyncRun, WebhookEvent
from pfsync_app.reports.health import is_nightly, sync_health

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 1, 20, 6, 0, tzinfo=dt.UTC)
NIGHTLY = {"dry_run": False, "only": None, "listing_ids": [], "limit": None, "full": False}


def sync_run(hours_ago: float, status: str = "succeeded", took: float = 0.1, **options) -> SyncRun:
    """A pf_sync run that started ``hours_ago`` before NOW and took ``took`` hours."""
    started = NOW - dt.timedelta(hours=hours_ago)
    finished = None if status == "running" else started + dt.timedelta(hours=took)
    return SyncRun.objects.create(
        command="pf_sync",
        status=status,
        options={**NIGHTLY, **options},
        started_at=started,
        finished_at=finished,
        message=f"{status} message",
    )


def test_before_any_sync_the_sync_is_unhealthy():
    health = sync_health(NOW)

    assert not health.healthy
    assert health.reason == "no nightly pf_sync has succeeded yet"


def test_a_success_younger_than_the_limit_is_healthy_and_an_older_one_is_not():
    run = sync_run(hours_ago=25, took=0.5)  # finished 24.5 h before NOW

    healthy = sync_health(NOW)
    later = sync_health(NOW + dt.timedelta(hours=1.5))

    assert healthy.healthy
    assert (
        healthy.reason
        == f"the last nightly pf_sync (run {run.pk}) finished 24.5 h ago, within 26 h"
    )
    assert not later.healthy
    assert later.reason == (
        f"the last successful nightly pf_sync (run {run.pk}) finished 26.0 h ago, "
        "more than PF_SYNC_MAX_AGE_HOURS=26"
    )


def test_the_age_limit_is_a_setting(settings):
    sync_run(hours_ago=5)
    settings.PF_SYNC_MAX_AGE_HOURS = 4

    assert not sync_health(NOW).healthy


def test_a_run_that_finished_with_item_errors_is_a_success():
    sync_run(hours_ago=2, status="finished_with_errors")

    assert sync_health(NOW).healthy


@pytest.mark.parametrize(
    "options",
    [{"dry_run": True}, {"listing_ids": ["01J"]}, {"only": "users"}, {"limit": 10}],
    ids=["dry run", "--listing", "--only", "--limit"],
)
def test_a_partial_or_dry_run_is_not_a_nightly_success(options):
    sync_run(hours_ago=30)
    sync_run(hours_ago=1, **options)

    assert not is_nightly({**NIGHTLY, **options})
    assert not sync_health(NOW).healthy


def test_other_commands_are_not_nightly_syncs():
    SyncRun.objects.create(command="pf_repair", status="succeeded", started_at=NOW, finished_at=NOW)

    assert sync_health(NOW).reason == "no nightly pf_sync has succeeded yet"


@pytest.mark.parametrize("status", ["failed", "interrupted"])
def test_a_nightly_run_that_could_not_run_turns_it_red_even_after_a_recent_success(status):
    sync_run(hours_ago=3)
    failed = sync_run(hours_ago=1, status=status)

    health = sync_health(NOW)

    assert not health.healthy
    assert health.reason.startswith(f"the last nightly pf_sync (run {failed.pk}, ")
    assert health.reason.endswith(f") {status}")
    assert health.detail == f"{status} message"
    assert health.sentence() == f"{health.reason} ({status} message)"


def test_a_success_after_a_failure_is_healthy_again():
    sync_run(hours_ago=3, status="failed")
    sync_run(hours_ago=1)

    assert sync_health(NOW).healthy


def test_a_start_refused_by_the_lock_is_neither_success_nor_failure():
    sync_run(hours_ago=3)
    sync_run(hours_ago=1, status="skipped")

    assert sync_health(NOW).healthy
    assert sync_health(NOW + dt.timedelta(hours=24)).healthy is False


def test_a_run_still_going_is_not_counted_yet_but_is_the_last_run():
    sync_run(hours_ago=3)
    going = sync_run(hours_ago=0.5, status="running")

    health = sync_health(NOW)

    assert health.healthy
    assert health.last_run == going
    assert health.as_dict()["last_run_status"] == "running"


def test_the_health_counts_webhook_events_waiting_and_names_the_lock_holder():
    for n, status in enumerate(["pending", "pending", "failed", "processed"]):
        WebhookEvent.objects.create(event_id=f"e{n}", event_type="listing.published", status=status)
    running = sync_run(hours_ago=0.2, status="running")
    running.pid, running.hostname = os.getpid(), socket.gethostname()
    running.save()
    RunLock.objects.create(
        name="pfsync-writer", pid=os.getpid(), hostname=socket.gethostname(), command="pf_sync"
    )

    data = sync_health(NOW).as_dict()

    assert (data["pending_webhook_events"], data["failed_webhook_events"]) == (2, 1)
    assert data["lock"]["command"] == "pf_sync"
    assert data["lock"]["pid"] == os.getpid()


def test_a_lock_row_left_by_a_killed_process_is_not_a_holder():
    RunLock.objects.create(name="pfsync-writer", pid=999_999, hostname="gone", command="pf_sync")

    assert sync_health(NOW).lock is None


def test_the_health_as_json_has_times_and_ages_and_no_message_or_host():
    run = sync_run(hours_ago=10, took=1)
    run.hostname = "db-secret-host.internal"
    run.save()

    data = sync_health(NOW).as_dict()

    assert data["healthy"] is True
    assert data["last_success_at"] == (NOW - dt.timedelta(hours=9)).isoformat()
    assert data["last_success_age_hours"] == 9.0
    assert data["max_age_hours"] == 26.0
    assert data["last_success"]["id"] == run.pk
    assert "db-secret-host" not in str(data)
    assert "succeeded message" not in str(data)
