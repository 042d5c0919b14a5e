"""What each event does to the host's tables, against the sandbox; failures stay pending."""

from __future__ import annotations

import json
import signal
from typing import Any

import pytest
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.core.management.base import CommandError

from pfsync_app.exceptions import WriterBusy
from pfsync_app.jobs import base, webhooks
from pfsync_app.jobs.sync import SyncOptions, run_nightly
from pfsync_app.models import Agent, Property, PropertyImage, ReportEntry, SyncRun, WebhookEvent
from pfsync_app.sandbox import Sandbox, signature

SECRET = "processing-secret"
URL = "/pf/webhook/"


@pytest.fixture
def sb(sandbox_settings: Sandbox, settings: Any) -> Sandbox:
    """The sandbox, the webhook secret set, and API retries that never wait."""
    settings.PF_WEBHOOK_SECRET = SECRET
    settings.PF_API_MAX_RETRY_WAIT = 0
    return sandbox_settings


def deliver(client: Any, sb: Sandbox, event_type: str, entity_id: Any, payload=None) -> dict:
    """POST an event as the sandbox shapes and signs it; returns the event."""
    entity_type = event_type.split(".", 1)[0]
    event = sb.webhooks.event(event_type, entity_type, str(entity_id), payload or {})
    body = json.dumps(event).encode()
    response = client.post(
        URL, data=body, content_type="application/json", HTTP_X_SIGNATURE=signature(SECRET, body)
    )
    assert response.status_code == 200, response.content
    return event


def stored(event: dict) -> WebhookEvent:
    return WebhookEvent.objects.get(event_id=event["id"])


def test_listing_published_brings_that_listing_and_its_images_and_nothing_else(db, client, sb):
    listing_id = sb.data.add_listing()
    sb.clear_requests()
    event = deliver(client, sb, "listing.published", listing_id)
    assert stored(event).status == WebhookEvent.Status.PROCESSED
    prop = Property.objects.get()
    assert prop.pf_id == listing_id
    assert prop.is_published is True
    assert prop.title == sb.data.listing(listing_id)["title"]["en"]
    images = list(PropertyImage.objects.filter(property=prop, is_active=True))
    assert len(images) == 2
    assert all(default_storage.exists(image.image) for image in images)
    assert not Agent.objects.exists()
    paths = {request.path for request in sb.requests}
    assert "/v1/users" not in paths
    run = SyncRun.objects.get(command="pf_webhooks")
    assert (run.properties_created, run.images_downloaded, run.errors) == (1, 2, 0)
    assert run.entries.filter(action="property.created", pf_id=listing_id).exists()
    assert not SyncRun.objects.filter(command="pf_sync").exists()


def test_listing_published_for_a_changed_listing_updates_only_that_property(db, client, sb):
    first, second = sb.data.listing_ids()[:2]
    for listing_id in (first, second):
        sb.data.publish_listing(listing_id)
        deliver(client, sb, "listing.published", listing_id)
    untouched = Property.objects.get(pf_id=second)
    sb.data.update_listing(first, **{"title.en": "Sea view, renovated"})
    deliver(client, sb, "listing.published", first)
    assert Property.objects.get(pf_id=first).title == "Sea view, renovated"
    assert Property.objects.get(pf_id=second).updated_at == untouched.updated_at
    assert Property.objects.count() == 2


def test_listing_unpublished_sets_is_published_false_and_nothing_else(db, client, sb):
    listing_id = sb.data.add_listing()
    deliver(client, sb, "listing.published", listing_id)
    before = Property.objects.values().get()
    sb.data.unpublish_listing(listing_id)
    event = deliver(client, sb, "listing.unpublished", listing_id)
    after = Property.objects.values().get()
    assert after["is_published"] is False
    changed = {key for key in before if before[key] != after[key]}
    assert changed == {"is_published", "updated_at"}
    assert stored(event).status == WebhookEvent.Status.PROCESSED
    run = SyncRun.objects.filter(command="pf_webhooks").first()
    assert run.properties_unpublished == 1


def test_listing_unpublished_for_an_unknown_listing_is_processed_with_a_note(db, client, sb):
    listing_id = sb.data.listing_ids()[0]
    event = deliver(client, sb, "listing.unpublished", listing_id)
    row = stored(event)
    assert row.status == WebhookEvent.Status.PROCESSED
    assert row.last_error == f"no property has pf_id {listing_id}; nothing to unpublish"
    assert not Property.objects.exists()


def test_listing_published_for_a_listing_the_api_does_not_return_is_ignored_saying_why(
    db, client, sb
):
    listing_id = sb.data.listing_ids()[0]
    deliver(client, sb, "listing.published", listing_id)
    sb.data.remove_listing(listing_id)

    event = deliver(client, sb, "listing.published", listing_id)

    row = stored(event)
    assert row.status == WebhookEvent.Status.IGNORED
    assert row.last_error == (
        f"Property Finder returns no listing {listing_id} (unpublished or deleted since, or "
        "not visible to this API key); nothing was synced"
    )
    # Not unpublished on this word alone: the nightly run's confirmed unpublishing does that.
    assert Property.objects.get(pf_id=listing_id).is_published is True
    run = SyncRun.objects.filter(command="pf_webhooks").latest("id")
    assert (run.status, run.errors) == (SyncRun.Status.SUCCEEDED, 0)


def test_such_an_event_still_pending_does_not_fail_the_nightly_run(db, sb):
    WebhookEvent.objects.create(
        event_id="evt-gone", event_type="listing.published", entity_id="GONE-LISTING", payload={}
    )
    result = run_nightly(SyncOptions())
    assert result.exit_code == 0
    assert (result.webhooks.ignored, result.webhooks.retry) == (1, 0)
    assert WebhookEvent.objects.get().status == WebhookEvent.Status.IGNORED


def test_an_event_processed_in_the_web_worker_installs_no_signal_handler(
    db, client, sb, monkeypatch
):
    seen = []
    real = webhooks.HANDLERS["listing.published"]

    def spy(event, batch):
        seen.append((signal.getsignal(signal.SIGTERM), base._interrupt_main))
        return real(event, batch)

    monkeypatch.setitem(webhooks.HANDLERS, "listing.published", spy)
    before = signal.getsignal(signal.SIGTERM)
    event = deliver(client, sb, "listing.published", sb.data.add_listing())
    assert stored(event).status == WebhookEvent.Status.PROCESSED
    # The server's signals stay the server's: a listing event is never stopped by pfsync.
    assert seen == [(before, None)]


def test_a_failing_event_stays_pending_and_the_next_process_pending_applies_it(db, client, sb):
    listing_id = sb.data.add_listing()
    sb.faults.add("/v1/listings", "status", status=500, times=50)
    event = deliver(client, sb, "listing.published", listing_id)
    row = stored(event)
    assert row.status == WebhookEvent.Status.PENDING
    assert row.attempts == 1
    assert "500" in row.last_error
    assert not Property.objects.exists()
    assert SyncRun.objects.get(command="pf_webhooks").errors == 1

    sb.faults.clear()
    summary = webhooks.process_pending()
    assert (summary.processed, summary.retry, summary.exit_code) == (1, 0, 0)
    row.refresh_from_db()
    assert (row.status, row.attempts) == (WebhookEvent.Status.PROCESSED, 2)
    assert Property.objects.get().pf_id == listing_id
    assert PropertyImage.objects.count() == 2


def test_revoked_credentials_leave_a_user_event_pending_until_pf_webhooks_process(
    db, client, sb, capsys
):
    sb.faults.revoke_credentials()
    user_id = sb.data.add_user()
    event = deliver(client, sb, "user.created", user_id)
    row = stored(event)
    assert row.status == WebhookEvent.Status.PENDING
    assert "401" in row.last_error or "credentials" in row.last_error
    assert not Agent.objects.exists()

    sb.faults.restore_credentials()
    call_command("pf_webhooks", "process")
    assert "1 processed" in capsys.readouterr().out
    assert stored(event).status == WebhookEvent.Status.PROCESSED
    assert Agent.objects.get().pf_user_id == user_id


def test_pf_webhooks_process_exits_1_while_an_event_still_fails(db, client, sb):
    sb.faults.revoke_credentials()
    deliver(client, sb, "user.created", sb.data.add_user())
    with pytest.raises(SystemExit) as exit_info:
        call_command("pf_webhooks", "process")
    assert exit_info.value.code == 1
    assert WebhookEvent.objects.get().attempts == 2


def test_an_event_failing_max_attempts_times_is_marked_failed(db, client, sb):
    sb.faults.revoke_credentials()
    event = deliver(client, sb, "user.created", sb.data.add_user())
    WebhookEvent.objects.update(attempts=webhooks.MAX_ATTEMPTS - 1)
    summary = webhooks.process_pending()
    assert (summary.failed, summary.retry) == (1, 0)
    assert stored(event).status == WebhookEvent.Status.FAILED
    assert webhooks.process_pending().total == 0


def busy_lock(times: int | None = None):
    """A writer_lock stand-in that is busy ``times`` times (always, for None), then real."""
    real = webhooks.writer_lock
    calls: list[int] = []

    def lock(command: str):
        calls.append(1)
        if times is None or len(calls) <= times:
            raise WriterBusy("another pf_sync is running (pid 4242, started 02:00)")
        return real(command)

    return lock


def test_an_event_waits_while_the_writer_lock_is_held_without_counting_an_attempt(
    db, client, sb, monkeypatch
):
    monkeypatch.setattr(webhooks, "writer_lock", busy_lock())
    listing_id = sb.data.add_listing()
    WebhookEvent.objects.create(
        event_id="evt-1", event_type="listing.published", entity_id=listing_id, payload={}
    )
    waits: list[float] = []
    summary = webhooks.process_pending(sleep=waits.append)
    assert summary.deferred == 1
    assert summary.exit_code == 0
    assert waits == list(webhooks.LOCK_RETRY_DELAYS)
    row = WebhookEvent.objects.get()
    assert (row.status, row.attempts) == (WebhookEvent.Status.PENDING, 0)
    assert row.last_error.startswith("waiting for the writer lock: another pf_sync is running")


def test_a_listing_event_waits_briefly_for_another_events_sync_then_goes_through(
    db, client, sb, monkeypatch
):
    monkeypatch.setattr(webhooks, "writer_lock", busy_lock(times=1))
    listing_id = sb.data.add_listing()
    WebhookEvent.objects.create(
        event_id="evt-1", event_type="listing.published", entity_id=listing_id
    )
    waits: list[float] = []
    summary = webhooks.process_pending(sleep=waits.append)
    assert summary.processed == 1
    assert waits == [webhooks.LOCK_RETRY_DELAYS[0]]
    assert Property.objects.get().pf_id == listing_id


def test_an_event_does_not_wait_for_a_running_nightly_pf_sync(db, client, sb, monkeypatch):
    monkeypatch.setattr(webhooks, "writer_lock", busy_lock())
    SyncRun.objects.create(command="pf_sync", status="running", pid=4242, hostname="cron-host")
    WebhookEvent.objects.create(
        event_id="evt-1", event_type="listing.published", entity_id=sb.data.listing_ids()[0]
    )
    waits: list[float] = []
    assert webhooks.process_pending(sleep=waits.append).deferred == 1
    assert waits == []


def test_user_created_creates_that_agent_only(db, client, sb):
    user_id = sb.data.add_user()
    event = deliver(client, sb, "user.created", user_id)
    assert stored(event).status == WebhookEvent.Status.PROCESSED
    agent = Agent.objects.get()
    assert agent.pf_user_id == user_id
    assert agent.email == sb.data.user(user_id)["email"]
    assert SyncRun.objects.get(command="pf_webhooks").users_created == 1


def test_user_updated_updates_the_agent(db, client, sb):
    user_id = sb.data.users()[0]["id"]
    deliver(client, sb, "user.created", user_id)
    sb.data.update_user(user_id, firstName="Mariam")
    event = deliver(client, sb, "user.updated", user_id)
    assert stored(event).status == WebhookEvent.Status.PROCESSED
    assert Agent.objects.get().first_name == "Mariam"
    assert ReportEntry.objects.filter(action="user.updated", pf_id=str(user_id)).exists()


@pytest.mark.parametrize("event_type", ["user.deleted", "user.deactivated"])
def test_user_deleted_or_deactivated_leaves_the_host_user_as_it_is(db, client, sb, event_type):
    user_id = sb.data.users()[0]["id"]
    deliver(client, sb, "user.created", user_id)
    before = Agent.objects.values().get()
    event = deliver(client, sb, event_type, user_id)
    row = stored(event)
    assert row.status == WebhookEvent.Status.PROCESSED
    assert "pfsync never deletes or deactivates host users" in row.last_error
    assert Agent.objects.values().get() == before
    assert ReportEntry.objects.filter(action=event_type, pf_id=str(user_id)).exists()


def test_a_user_property_finder_does_not_return_is_ignored(db, client, sb):
    event = deliver(client, sb, "user.created", 999999)
    row = stored(event)
    assert row.status == WebhookEvent.Status.IGNORED
    assert "no user 999999" in row.last_error


def test_process_pending_with_nothing_pending_records_no_run(db, sb):
    summary = webhooks.process_pending()
    assert summary.total == 0
    assert summary.run_id is None
    assert not SyncRun.objects.exists()


def test_process_pending_takes_the_oldest_first_up_to_the_limit(db, sb):
    listing_ids = sb.data.listing_ids()[:3]
    for number, listing_id in enumerate(listing_ids):
        WebhookEvent.objects.create(
            event_id=f"evt-{number}", event_type="listing.unpublished", entity_id=listing_id
        )
    summary = webhooks.process_pending(limit=2)
    assert summary.processed == 2
    assert list(
        WebhookEvent.objects.filter(status="pending").values_list("event_id", flat=True)
    ) == ["evt-2"]


def test_pf_webhooks_process_says_when_nothing_is_pending(db, sb, capsys):
    call_command("pf_webhooks", "process")
    assert capsys.readouterr().out.strip() == "No pending webhook events."


def test_pf_webhooks_process_refuses_a_limit_below_one(db, sb):
    with pytest.raises(CommandError, match="at least 1"):
        call_command("pf_webhooks", "process", "--limit", "0")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"firstName": ["Layla"]}, "an unreadable user 50001 field firstName"),
        ({"publicProfile.id": 10**30}, "field publicProfile.id"),
    ],
    ids=["unreadable", "profile-id-beyond-the-column"],
)
def test_a_user_event_for_a_record_pfsync_cannot_save_is_ignored_saying_why(
    db, client, sb, change, reason
):
    user_id = sb.data.users()[1]["id"]
    sb.data.update_user(user_id, **change)

    event = deliver(client, sb, "user.updated", user_id)

    row = stored(event)
    assert row.status == WebhookEvent.Status.IGNORED
    assert reason in row.last_error
    assert not Agent.objects.filter(pf_user_id=user_id).exists()


def test_listing_published_for_a_record_pfsync_cannot_read_is_ignored_saying_why(db, client, sb):
    listing_id = sb.data.listing_ids()[0]
    sb.data.update_listing(listing_id, reference=["X-1"])

    event = deliver(client, sb, "listing.published", listing_id)

    row = stored(event)
    assert row.status == WebhookEvent.Status.IGNORED
    assert row.last_error.startswith(
        f"Property Finder's record cannot be read: listing {listing_id} field reference:"
    )
    assert not Property.objects.filter(pf_id=listing_id).exists()
