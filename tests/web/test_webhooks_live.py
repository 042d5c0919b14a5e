"""End to end: a real server subscribed to the sandbox gets its events and applies them."""

from __future__ import annotations

import json
import threading
import time
from io import StringIO
from typing import Any

import pytest
import requests
from django.core.management import call_command

from pfsync_app import views
from pfsync_app.models import Agent, Property, PropertyImage, WebhookEvent
from pfsync_app.sandbox import Sandbox, signature

SECRET = "live-secret"


class Arrivals:
    """Counts events the server finished processing after answering, and waits for more."""

    def __init__(self) -> None:
        self.done = 0
        self.changed = threading.Condition()

    def wait(self, count: int, what: str, timeout: float = 10.0) -> None:
        """Wait until ``count`` events were processed; fail naming ``what`` after ``timeout``."""
        with self.changed:
            if not self.changed.wait_for(lambda: self.done >= count, timeout):
                pytest.fail(f"{what} did not arrive within {timeout:g} s")


@pytest.fixture
def arrivals(monkeypatch) -> Arrivals:
    """Watch the server's after-answer processing, so the test never polls the database.

    With SQLite in memory the live server shares the test's connection, and a query
    from the test while the server writes would break the server's transaction.
    """
    seen = Arrivals()
    process = views.process_received

    def watched(event_pk: int):
        try:
            return process(event_pk)
        finally:
            with seen.changed:
                seen.done += 1
                seen.changed.notify_all()

    monkeypatch.setattr(views, "process_received", watched)
    return seen


@pytest.fixture
def subscribed(
    transactional_db, live_server, arrivals: Arrivals, sandbox_settings: Sandbox, settings: Any
) -> Sandbox:
    """The sandbox, subscribed through pf_webhooks to this host's endpoint."""
    settings.PF_WEBHOOK_SECRET = SECRET
    settings.PF_API_MAX_RETRY_WAIT = 0
    call_command(
        "pf_webhooks", "subscribe", "--url", live_server.url + "/pf/webhook/", stdout=StringIO()
    )
    return sandbox_settings


def test_changes_on_property_finder_reach_the_database_within_seconds(subscribed, arrivals):
    sb = subscribed
    started = time.monotonic()
    listing_id = sb.data.add_listing()
    arrivals.wait(1, "the new listing")
    images = PropertyImage.objects.filter(property__pf_id=listing_id, is_active=True)
    assert images.count() == 2

    sb.data.update_listing(listing_id, **{"title.en": "Marina view, high floor"})
    arrivals.wait(2, "the new title")
    assert Property.objects.get(pf_id=listing_id).title == "Marina view, high floor"

    sb.data.unpublish_listing(listing_id)
    arrivals.wait(3, "the unpublication")
    assert Property.objects.get(pf_id=listing_id).is_published is False

    user_id = sb.data.add_user()
    arrivals.wait(4, "the new agent")
    assert Agent.objects.filter(pf_user_id=user_id).exists()
    assert time.monotonic() - started < 20

    assert Property.objects.count() == 1
    deliveries = sb.webhooks.deliveries
    assert len(deliveries) == 4
    assert {d.status for d in deliveries} == {200}
    assert set(WebhookEvent.objects.values_list("status", flat=True)) == {"processed"}


def test_an_event_the_server_refuses_is_not_stored(subscribed, arrivals, settings):
    settings.PF_WEBHOOK_SECRET = "not-the-subscribed-secret"
    subscribed.data.add_listing()
    assert subscribed.webhooks.flush(timeout=10)
    assert [d.status for d in subscribed.webhooks.deliveries] == [403]
    assert arrivals.done == 0
    assert not WebhookEvent.objects.exists()


def test_the_answer_is_sent_before_the_event_is_processed(subscribed, arrivals, live_server):
    sb = subscribed
    listing_id = sb.data.listing_ids()[0]
    sb.faults.latency_ms = 2500  # each API call of the processing takes 2.5 s
    event = sb.webhooks.event("listing.published", "listing", listing_id, {})
    body = json.dumps(event).encode()
    started = time.monotonic()
    response = requests.post(
        live_server.url + "/pf/webhook/",
        data=body,
        headers={"Content-Type": "application/json", "X-Signature": signature(SECRET, body)},
        timeout=10,
    )
    answered = time.monotonic() - started
    assert response.status_code == 200
    assert response.json()["status"] == "accepted"
    assert answered < 2.0  # well before even one API call of the processing could finish
    arrivals.wait(1, "the processing")
    assert time.monotonic() - started >= 2.5
    assert Property.objects.get().pf_id == listing_id
