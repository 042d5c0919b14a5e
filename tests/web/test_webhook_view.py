"""The webhook endpoint: signatures, storage once per event id, answers that are never a 500."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from typing import Any

import pytest
from django.db import OperationalError
from django.test import Client
from django.urls import reverse

from pfsync_app import views
from pfsync_app.jobs import webhooks
from pfsync_app.models import ReportEntry, SyncRun, WebhookEvent
from pfsync_app.writers.events import store_event

SECRET = "wh-secret-0123456789abcdef"
URL = "/pf/webhook/"


def action_event(**changes: Any) -> dict[str, Any]:
    """A listing.action event as the spec's example shapes it (processing needs no API)."""
    event = {
        "id": f"action-created-{uuid.uuid4().hex[:8]}",
        "type": "listing.action",
        "timestamp": "2025-11-02T19:31:13Z",
        "entity": {"id": "01K0YB4HEKM08V901DVJ5ATVYF", "type": "listing"},
        "payload": {
            "actionType": "listing_location_update_required",
            "status": "pending",
            "entityType": "listing",
            "expiresAt": "2025-11-16T19:31:13Z",
            "expireAction": "listing_unpublish",
            "message": {"en": "This listing can be updated to a more specific location."},
            "listing": {"id": "01K0YB4HEKM08V901DVJ5ATVYF", "reference": "PF-REF-12345"},
        },
    }
    event.update(changes)
    return event


def sign(body: bytes, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def post(client: Client, body: bytes, signature: str | None = "auto", **extra: Any):
    headers = dict(extra)
    if signature == "auto":
        signature = sign(body)
    if signature is not None:
        headers["HTTP_X_SIGNATURE"] = signature
    return client.post(URL, data=body, content_type="application/json", **headers)


def encode(event: Any) -> bytes:
    return json.dumps(event).encode()


@pytest.fixture
def signed(settings):
    settings.PF_WEBHOOK_SECRET = SECRET
    settings.PF_WEBHOOK_ALLOW_UNSIGNED = False
    return settings


def test_the_webhook_url_is_named_pfsync_webhook_and_mounted_under_pf():
    assert reverse("pfsync:webhook") == URL


def test_a_signed_event_is_stored_acknowledged_and_processed(db, client, signed):
    event = action_event()
    response = post(client, encode(event))
    assert response.status_code == 200
    assert response.json() == {"status": "accepted", "event": event["id"]}
    row = WebhookEvent.objects.get(event_id=event["id"])
    assert (row.event_type, row.entity_type, row.entity_id) == (
        "listing.action",
        "listing",
        "01K0YB4HEKM08V901DVJ5ATVYF",
    )
    assert row.payload == event
    assert row.status == WebhookEvent.Status.PROCESSED
    assert row.attempts == 1
    assert row.processed_at is not None


def test_a_signature_written_as_sha256_equals_hex_is_accepted(db, client, signed):
    body = encode(action_event())
    response = post(client, body, signature=f"sha256={sign(body).upper()}")
    assert response.status_code == 200


@pytest.mark.parametrize(
    "signature",
    [pytest.param(sign(b"other body"), id="wrong"), pytest.param(None, id="missing"), ""],
)
def test_a_wrong_or_missing_signature_is_refused_with_403_and_nothing_stored(
    db, client, signed, signature
):
    response = post(client, encode(action_event()), signature=signature)
    assert response.status_code == 403
    assert "X-Signature" in response.json()["error"]
    assert not WebhookEvent.objects.exists()


def test_a_signature_made_with_another_secret_is_refused(db, client, signed):
    body = encode(action_event())
    response = post(client, body, signature=sign(body, "another-secret"))
    assert response.status_code == 403
    assert not WebhookEvent.objects.exists()


def test_a_body_altered_after_signing_is_refused_with_403(db, client, signed):
    event = action_event()
    signature = sign(encode(event))
    event["entity"]["id"] = "01SOMEONEELSESLISTING00000"
    response = post(client, encode(event), signature=signature)
    assert response.status_code == 403
    assert not WebhookEvent.objects.exists()


def test_without_a_secret_events_are_refused_with_a_reason(db, client, settings):
    settings.PF_WEBHOOK_SECRET = ""
    settings.PF_WEBHOOK_ALLOW_UNSIGNED = False
    response = post(client, encode(action_event()), signature=None)
    assert response.status_code == 403
    assert "no webhook secret is configured" in response.json()["error"]
    assert not WebhookEvent.objects.exists()


def test_without_a_secret_unsigned_events_are_accepted_when_explicitly_allowed(
    db, client, settings
):
    settings.PF_WEBHOOK_SECRET = ""
    settings.PF_WEBHOOK_ALLOW_UNSIGNED = True
    response = post(client, encode(action_event()), signature=None)
    assert response.status_code == 200
    assert WebhookEvent.objects.count() == 1


def test_the_same_event_delivered_twice_is_stored_and_processed_once(db, client, signed):
    body = encode(action_event())
    first = post(client, body)
    second = post(client, body)
    assert first.json()["status"] == "accepted"
    assert second.status_code == 200
    assert second.json()["status"] == "duplicate"
    row = WebhookEvent.objects.get()
    assert row.attempts == 1
    assert SyncRun.objects.filter(command="pf_webhooks").count() == 1
    assert ReportEntry.objects.filter(action="listing.action").count() == 1


def test_storing_an_event_twice_returns_the_first_row(db):
    parsed = views.parse_event(encode(action_event()))
    fields = (parsed.event_id, parsed.event_type, parsed.entity_type, parsed.entity_id, parsed.body)
    first, created = store_event(*fields)
    again, created_again = store_event(*fields)
    assert (created, created_again) == (True, False)
    assert again.pk == first.pk


@pytest.mark.parametrize("method", ["get", "put", "delete", "patch"])
def test_other_methods_than_post_are_answered_405(db, client, signed, method):
    response = getattr(client, method)(URL)
    assert response.status_code == 405


def test_the_endpoint_needs_no_csrf_token(db, signed):
    response = post(Client(enforce_csrf_checks=True), encode(action_event()))
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe\x00garbage", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (encode(action_event(id=None)), "id must be a string"),
        (encode(action_event(id="  ")), "id is empty"),
        (encode(action_event(id={"a": 1})), "id must be a string"),
        (encode(action_event(id="x" * 129)), "longer than 128"),
        (encode(action_event(type=None)), "type must be a string"),
        (encode(action_event(type=True)), "type must be a string"),
        (encode(action_event(entity=None)), "no entity object"),
        (encode(action_event(entity={"type": "listing"})), "entity.id must be a string"),
        (encode(action_event(entity={"id": "1" * 65})), "longer than 64"),
        (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_a_malformed_event_is_answered_400_with_the_reason(db, client, signed, body, reason):
    response = post(client, body)
    assert response.status_code == 400
    assert reason in response.json()["error"]
    assert not WebhookEvent.objects.exists()


def test_a_body_past_djangos_upload_limit_is_a_400_with_the_reason_and_no_traceback(
    db, client, signed, caplog
):
    # The attack sent 20 MB (over Django's default 2.5 MB); the same refusal, smaller.
    signed.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = encode(action_event(payload={"x": "A" * 2000}))
    response = post(client, body)
    assert response.status_code == 400
    assert response.json() == {
        "error": "the body is larger than the 1000 bytes this site reads "
        "(Django's DATA_UPLOAD_MAX_MEMORY_SIZE)"
    }
    assert not WebhookEvent.objects.exists()
    assert not [r for r in caplog.records if r.exc_info]


def test_after_processing_an_event_the_worker_names_no_run(db, client, signed, caplog):
    import logging

    from pfsync_app.reports.logs import RunContextFilter

    response = post(client, encode(action_event()))
    assert response.status_code == 200
    assert SyncRun.objects.filter(command="pf_webhooks").exists()
    caplog.set_level(logging.INFO, logger="pfsync")
    caplog.handler.addFilter(RunContextFilter())
    logging.getLogger("pfsync.t").info("the next request")
    assert [r.run_id for r in caplog.records] == ["-"]


def test_a_numeric_event_id_is_stored_as_text(db, client, signed):
    response = post(client, encode(action_event(id=1234)))
    assert response.status_code == 200
    assert WebhookEvent.objects.get().event_id == "1234"


def test_a_failure_while_processing_still_answers_200_and_leaves_the_event_pending(
    db, client, signed, monkeypatch
):
    def broken(event, batch):
        raise RuntimeError("the handler broke")

    monkeypatch.setitem(webhooks.HANDLERS, "listing.action", broken)
    response = post(client, encode(action_event()))
    assert response.status_code == 200
    row = WebhookEvent.objects.get()
    assert row.status == WebhookEvent.Status.PENDING
    assert row.attempts == 1
    assert row.last_error == "RuntimeError: the handler broke"
    run = SyncRun.objects.get(command="pf_webhooks")
    assert run.errors == 1
    assert run.status == SyncRun.Status.FINISHED_WITH_ERRORS


def test_an_unexpected_crash_after_storing_still_answers_200(db, client, signed, monkeypatch):
    def crash(*args, **kwargs):
        raise OperationalError("the database went away")

    monkeypatch.setattr(webhooks, "process_events", crash)
    response = post(client, encode(action_event()))
    assert response.status_code == 200
    assert WebhookEvent.objects.get().status == WebhookEvent.Status.PENDING


def test_an_unreachable_database_is_answered_503_so_the_event_is_sent_again(
    db, client, signed, monkeypatch
):
    def unavailable(*args):
        raise OperationalError("could not connect to server")

    monkeypatch.setattr(views, "store_event", unavailable)
    response = post(client, encode(action_event()))
    assert response.status_code == 503
    assert "send it again later" in response.json()["error"]


def test_a_listing_action_becomes_a_warning_entry_of_a_pf_webhooks_run(db, client, signed):
    post(client, encode(action_event()))
    run = SyncRun.objects.get(command="pf_webhooks")
    assert run.status == SyncRun.Status.SUCCEEDED
    assert run.options["trigger"] == "webhook"
    entry = run.entries.get(action="listing.action")
    assert entry.level == ReportEntry.Level.WARNING
    assert entry.pf_id == "01K0YB4HEKM08V901DVJ5ATVYF"
    assert entry.message.startswith(
        "listing PF-REF-12345: listing_location_update_required (pending): This listing can be"
    )
    assert "If unresolved by 2025-11-16T19:31:13Z: listing_unpublish." in entry.message


def test_an_expired_listing_action_is_an_info_entry(db, client, signed):
    event = action_event()
    event["payload"].update(status="expired", reason="RESOLVED")
    post(client, encode(event))
    entry = ReportEntry.objects.get(action="listing.action")
    assert entry.level == ReportEntry.Level.INFO
    assert "(expired, RESOLVED)" in entry.message


def test_event_types_pfsync_does_not_handle_are_stored_and_ignored(db, client, signed):
    event = {
        "id": str(uuid.uuid4()),
        "type": "lead.created",
        "timestamp": "2025-11-02T19:31:13Z",
        "entity": {"id": "lead-1", "type": "lead"},
        "payload": {},
    }
    assert post(client, encode(event)).status_code == 200
    row = WebhookEvent.objects.get()
    assert row.status == WebhookEvent.Status.IGNORED
    assert row.last_error == "pfsync does not act on lead.created events"


def test_the_secret_never_appears_in_an_answer(db, client, signed):
    body = encode(action_event())
    for signature in (None, "bad", sign(body)):
        response = post(client, body, signature=signature)
        assert SECRET not in response.content.decode()


def test_a_twin_stored_by_a_concurrent_delivery_is_answered_as_a_duplicate(
    db, client, signed, monkeypatch
):
    from django.db.models.query import QuerySet

    event = action_event()
    real_get = QuerySet.get
    raced: list[bool] = []

    def get_after_the_twin_won(self, *args, **kwargs):
        # The other delivery stores the event between our look-up and our insert.
        if self.model is WebhookEvent and not raced:
            raced.append(True)
            WebhookEvent.objects.create(
                event_id=event["id"], event_type=event["type"], entity_id="twin"
            )
            raise WebhookEvent.DoesNotExist
        return real_get(self, *args, **kwargs)

    monkeypatch.setattr(QuerySet, "get", get_after_the_twin_won)
    response = post(client, encode(event))
    assert raced
    assert response.status_code == 200
    assert response.json()["status"] == "duplicate"
    assert WebhookEvent.objects.get().entity_id == "twin"


@pytest.mark.parametrize(
    "bad", ["\x00", "\ud800", "\udfff\x00"], ids=["nul", "lone-surrogate", "both"]
)
def test_text_the_database_refuses_in_a_payload_is_removed_and_the_event_stored_and_processed(
    db, client, signed, bad
):
    event = action_event()
    event["payload"]["remarks"] = f"call{bad} me"
    event["payload"]["message"]["en"] = f"Update{bad} the location."
    event["payload"]["listing"]["reference"] = f"PF{bad}-REF"
    event["payload"][f"key{bad}"] = [f"a{bad}", float("nan"), 10**40]

    response = post(client, encode(event))

    assert response.status_code == 200, response.json()
    row = WebhookEvent.objects.get(event_id=event["id"])
    payload = row.payload["payload"]
    assert payload["remarks"] == "call me"
    assert payload["key"] == ["a", None, 10**40]
    assert row.status == WebhookEvent.Status.PROCESSED
    entry = ReportEntry.objects.get(action="listing.action")
    assert entry.message.startswith("listing PF-REF: listing_location_update_required")


@pytest.mark.parametrize(
    ("event", "field"),
    [
        (action_event(id="evt-\ud800"), "id"),
        (action_event(type="listing.\udc80action"), "type"),
        (action_event(entity={"id": "01K0\ud83d", "type": "listing"}), "entity.id"),
        (action_event(entity={"id": "01K0", "type": "list\ud800ing"}), "entity.type"),
    ],
    ids=["id", "type", "entity.id", "entity.type"],
)
def test_an_event_field_with_a_lone_surrogate_is_answered_400_naming_the_field(
    db, client, signed, event, field
):
    response = post(client, encode(event))

    assert response.status_code == 400
    assert response.json()["error"] == f"the event's {field} contains a lone surrogate"
    assert not WebhookEvent.objects.exists()
