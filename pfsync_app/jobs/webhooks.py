"""Webhook events from Property Finder: signature check, storage once per event id, processing.

The view (``views.py``) checks the signature, stores the event and answers;
the event is processed once the answer has been sent (``process_received``).
Whatever could not be processed then stays pending, with its attempts and last
error, for ``process_pending()`` (``pf_webhooks process``, or after pf_sync).

What an event does:

- ``listing.published``: that listing and its images, through pf_sync's own code
  (``run_sync`` with ``listing_ids``), under the writer lock;
- ``listing.unpublished``: ``is_published = false`` on that property (an UPDATE);
- ``user.created`` / ``user.updated`` / ``user.activated``: that user fetched and saved;
- ``user.deleted`` / ``user.deactivated``: recorded only; pfsync never deletes or
  deactivates a host user;
- ``listing.action``: a report entry (compliance actions need a person).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db.models import F
from django.utils import timezone
from django.utils.crypto import constant_time_compare

from pfsync_app.atlas import AtlasClient, AtlasError
from pfsync_app.conf import SETTINGS, pfsync_settings
from pfsync_app.exceptions import (
    EventDeferred,
    EventIgnored,
    InvalidEvent,
    SyncAborted,
    WriterBusy,
)
from pfsync_app.jobs.sync import SyncOptions, record_user_outcome, run_sync
from pfsync_app.mapping import map_user
from pfsync_app.media.download import ImageDownloader
from pfsync_app.models import Agent, ListingState, Property, SyncRun, WebhookEvent
from pfsync_app.reports.logs import one_line, redact
from pfsync_app.reports.recorder import RunRecorder
from pfsync_app.writers.listings import unpublish
from pfsync_app.writers.outcomes import UNCHANGED
from pfsync_app.writers.users import save_user

logger = logging.getLogger("pfsync.webhooks")

#: The events pfsync subscribes to and acts on.
EVENT_TYPES = (
    "listing.published",
    "listing.unpublished",
    "listing.action",
    "user.created",
    "user.updated",
    "user.deleted",
    "user.activated",
    "user.deactivated",
)
SIGNATURE_HEADER = "X-Signature"
#: After this many failed attempts an event is marked failed and no longer retried.
MAX_ATTEMPTS = 10
#: Waits (seconds) for the writer lock when another listing event holds it, before deferring.
LOCK_RETRY_DELAYS = (1.0, 2.0, 4.0)
#: Seconds a listing event waits for the one before it in this process, before deferring.
LISTING_LOCK_TIMEOUT = 60.0
#: Budget of the API client and image downloads used right after an event arrives.
RECEIVED_API_TIMEOUT = 10.0
RECEIVED_API_MAX_ATTEMPTS = 3
RECEIVED_API_MAX_RETRY_WAIT = 10.0
RECEIVED_IMAGE_MAX_RETRIES = 2

_FIELD_LIMITS = {
    name: WebhookEvent._meta.get_field(name).max_length
    for name in ("event_id", "event_type", "entity_type", "entity_id")
}
_NOTE_LIMIT = 2000


# ---------------------------------------------------------------------------
# Receiving
# ---------------------------------------------------------------------------


def signature_for(secret: str, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``body`` keyed by ``secret``, as Property Finder signs events."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signature_problem(body: bytes, header: str | None) -> str | None:
    """Why the ``X-Signature`` header does not authenticate ``body``; None when it does."""
    secret = pfsync_settings.PF_WEBHOOK_SECRET
    if not secret:
        if pfsync_settings.PF_WEBHOOK_ALLOW_UNSIGNED:
            return None
        return (
            "no webhook secret is configured (PF_WEBHOOK_SECRET), so events are refused; "
            "set it, or PF_WEBHOOK_ALLOW_UNSIGNED=true to accept unsigned events"
        )
    given = (header or "").strip()
    if not given:
        return f"the {SIGNATURE_HEADER} header is missing"
    if given[:7].lower() == "sha256=":
        given = given[7:]
    if not constant_time_compare(signature_for(str(secret), body), given.lower()):
        return f"the {SIGNATURE_HEADER} header does not match the body"
    return None


@dataclass(frozen=True)
class ParsedEvent:
    """The parts of a webhook event pfsync stores; ``body`` is the whole decoded event."""

    event_id: str
    event_type: str
    entity_type: str
    entity_id: str
    body: dict[str, Any]


def _text(value: Any, name: str, column: str, *, required: bool) -> str:
    """An event field as text for ``column``; raises InvalidEvent naming the field."""
    if value is None and not required:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int):
        found = "nothing" if value is None else f"a JSON {type(value).__name__}"
        raise InvalidEvent(f"the event's {name} must be a string, got {found}")
    text = str(value).strip()
    if required and not text:
        raise InvalidEvent(f"the event's {name} is empty")
    if "\x00" in text:
        # PostgreSQL text cannot hold NUL; psycopg2 raises ValueError (a 500) on the lookup.
        raise InvalidEvent(f"the event's {name} contains a NUL character")
    limit = _FIELD_LIMITS[column]
    if len(text) > limit:
        raise InvalidEvent(f"the event's {name} is longer than {limit} characters")
    return text


def parse_event(body: bytes) -> ParsedEvent:
    """The event in a request body; raises InvalidEvent naming what is wrong."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise InvalidEvent("the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise InvalidEvent("the body must be a JSON object (a webhook event)")
    event_id = _text(data.get("id"), "id", "event_id", required=True)
    event_type = _text(data.get("type"), "type", "event_type", required=True)
    entity = data.get("entity")
    if not isinstance(entity, dict):
        raise InvalidEvent("the event has no entity object")
    entity_id = _text(entity.get("id"), "entity.id", "entity_id", required=True)
    entity_type = _text(entity.get("type"), "entity.type", "entity_type", required=False)
    return ParsedEvent(
        event_id=event_id,
        event_type=event_type,
        entity_type=entity_type or event_type.split(".", 1)[0],
        entity_id=entity_id,
        body=data,
    )


def store_event(event: ParsedEvent) -> tuple[WebhookEvent, bool]:
    """Save a received event once; ``(row, False)`` when its event id was already stored."""
    # get_or_create catches the IntegrityError of a concurrent twin and returns the stored row.
    return WebhookEvent.objects.get_or_create(
        event_id=event.event_id,
        defaults={
            "event_type": event.event_type,
            "entity_type": event.entity_type,
            "entity_id": event.entity_id,
            "payload": event.body,
            "status": WebhookEvent.Status.PENDING,
        },
    )


# ---------------------------------------------------------------------------
# Processing
# ---------------------------------------------------------------------------


@dataclass
class ProcessSummary:
    """What one processing batch did with its events."""

    run_id: int | None = None
    processed: int = 0
    ignored: int = 0
    retry: int = 0  # failed this time, still pending
    failed: int = 0  # failed MAX_ATTEMPTS times: given up
    deferred: int = 0  # the writer lock was held: still pending
    skipped: int = 0  # another process took the event meanwhile
    problems: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        """Events looked at."""
        return (
            self.processed + self.ignored + self.retry + self.failed + self.deferred + self.skipped
        )

    @property
    def exit_code(self) -> int:
        """0 when every event was handled or can wait for the lock, else 1."""
        return 1 if self.retry or self.failed else 0

    def text(self) -> str:
        """One line for the run's message and the command's output."""
        parts = [
            f"{self.processed} processed",
            f"{self.ignored} ignored",
            f"{self.retry} to retry",
            f"{self.failed} failed",
            f"{self.deferred} waiting for the writer lock",
        ]
        if self.skipped:
            parts.append(f"{self.skipped} taken by another process")
        return ", ".join(parts)


class _EventRecorder:
    """The recorder run_sync writes to: entries and counts go to the batch's run.

    run_sync finishes or fails its recorder; the batch's run must outlive one
    listing, so finishing here only saves, and a failure is recorded by the batch.
    """

    def __init__(self, batch: RunRecorder) -> None:
        self._batch = batch
        self._lock = threading.Lock()
        self.run = batch.run
        self.errors = 0

    @property
    def counters(self) -> dict[str, int]:
        """The batch's counters."""
        return self._batch.counters

    @property
    def finished(self) -> bool:
        """Never: the batch ends the run."""
        return False

    def count(self, name: str, n: int = 1) -> None:
        """Count on the batch's run."""
        self._batch.count(name, n)

    def entry(self, level: str, action: str, message: str, **kwargs: Any) -> None:
        """An entry on the batch's run."""
        self._batch.entry(level, action, message, **kwargs)

    def info(self, action: str, message: str, **kwargs: Any) -> None:
        """An info entry on the batch's run."""
        self._batch.info(action, message, **kwargs)

    def warning(self, action: str, message: str, **kwargs: Any) -> None:
        """A warning entry on the batch's run."""
        self._batch.warning(action, message, **kwargs)

    def error(self, action: str, message: str, **kwargs: Any) -> None:
        """An error entry on the batch's run, also counted for this event."""
        with self._lock:
            self.errors += 1
        self._batch.error(action, message, **kwargs)

    def checkpoint(self) -> None:
        """Save the batch's run so far."""
        self._batch.checkpoint()

    def finish(self, status: str | None = None, message: str = "") -> Any:
        """Save; the batch finishes the run."""
        self._batch.checkpoint()
        return self.run

    def fail(self, message: str) -> Any:
        """Nothing: run_sync raises next and the batch records the failure."""
        return self.run

    def interrupt(self, message: str = "") -> Any:
        """Nothing: the interruption propagates to the batch."""
        return self.run


# One listing sync at a time per process: two events of one burst wait for each other
# instead of one finding the writer lock taken (which on SQLite is per process).
_listing_lock = threading.Lock()


class _Batch:
    """One processing batch: its run, and the API client built only when an event needs it."""

    def __init__(
        self,
        recorder: RunRecorder,
        client: AtlasClient | None,
        downloader: ImageDownloader | None,
        sleep: Callable[[float], None],
    ) -> None:
        self.recorder = recorder
        self._client = client
        self._owns_client = client is None
        #: None: run_sync builds one on the client's session.
        self.downloader = downloader
        self.sleep = sleep

    def client(self) -> AtlasClient:
        """The batch's API client."""
        if self._client is None:
            from pfsync_app.jobs.clients import build_client

            self._client = build_client()
        return self._client

    def close(self) -> None:
        """Close the client if the batch built it."""
        if self._owns_client and self._client is not None:
            self._client.close()


def _entity_id(event: WebhookEvent) -> str:
    if not event.entity_id:
        raise EventIgnored("the event names no entity id")
    return event.entity_id


def _user_id(event: WebhookEvent) -> int:
    entity_id = _entity_id(event)
    if not entity_id.isdigit():
        raise EventIgnored(f"user id {entity_id!r} is not a number")
    return int(entity_id)


def _inner_payload(event: WebhookEvent) -> dict[str, Any]:
    inner = event.payload.get("payload") if isinstance(event.payload, dict) else None
    return inner if isinstance(inner, dict) else {}


def _scheduled_run_holds_the_lock() -> bool:
    """Whether a pf_sync or pf_repair is running (hours, maybe): waiting for it is pointless."""
    return SyncRun.objects.filter(
        command__in=[SyncRun.Command.SYNC, SyncRun.Command.REPAIR],
        status=SyncRun.Status.RUNNING,
    ).exists()


def _listing_published(event: WebhookEvent, batch: _Batch) -> str:
    pf_id = _entity_id(event)
    recorder = _EventRecorder(batch.recorder)
    delays = iter(LOCK_RETRY_DELAYS)
    while True:
        if not _listing_lock.acquire(timeout=LISTING_LOCK_TIMEOUT):
            raise EventDeferred("another listing event of this process was still being synced")
        try:
            result = run_sync(
                SyncOptions(listing_ids=[pf_id]),
                client=batch.client(),
                downloader=batch.downloader,
                recorder=recorder,
            )
            break
        except WriterBusy as exc:
            text = str(exc)
            delay = None if _scheduled_run_holds_the_lock() else next(delays, None)
            if delay is None:
                raise EventDeferred(f"waiting for the writer lock: {text}") from None
        finally:
            _listing_lock.release()
        # Another event's short sync (in another process) holds the lock: wait a little.
        batch.sleep(delay)
    if recorder.errors:
        return f"synced with {recorder.errors} error(s); see run {result.run_id}"
    return ""


def _listing_unpublished(event: WebhookEvent, batch: _Batch) -> str:
    pf_id = _entity_id(event)
    prop = Property.objects.filter(pf_id=pf_id).only("pk").first()
    if prop is None:
        return f"no property has pf_id {pf_id}; nothing to unpublish"
    done = unpublish([prop.pk])
    # The next pf_sync compares the listing again rather than skipping it as unchanged, so
    # an event delivered out of order is corrected by the next run.
    ListingState.objects.filter(pf_id=pf_id).update(fingerprint="")
    if not done:
        return f"property {prop.pk} was already unpublished"
    batch.recorder.count("properties_unpublished")
    batch.recorder.info(
        "property.unpublished",
        "unpublished on Property Finder (listing.unpublished event)",
        pf_id=pf_id,
        object_type="property",
        object_id=prop.pk,
    )
    return ""


def _user_synced(event: WebhookEvent, batch: _Batch) -> str:
    user_id = _user_id(event)
    record = batch.client().get_user(user_id)
    if record is None:
        raise EventIgnored(f"Property Finder returns no user {user_id}; nothing was synced")
    values = map_user(record)
    outcome = save_user(values)
    record_user_outcome(batch.recorder, user_id, values, outcome, f"{event.event_type} event")
    if outcome.action == UNCHANGED:
        return f"host user {outcome.agent_id} was already up to date"
    return ""


def _user_left_alone(event: WebhookEvent, batch: _Batch) -> str:
    user_id = _user_id(event)
    agent_id = Agent.objects.filter(pf_user_id=user_id).values_list("pk", flat=True).first()
    who = f"host user {agent_id}" if agent_id else "no host user is linked to it, and nothing"
    what = event.event_type.split(".", 1)[1]
    note = (
        f"user {user_id} was {what} on Property Finder; pfsync never deletes or deactivates "
        f"host users, so {who} was left as it is"
    )
    batch.recorder.info(
        event.event_type,
        note,
        pf_id=str(user_id),
        object_type="user" if agent_id else "",
        object_id=agent_id,
    )
    return note


def _listing_action(event: WebhookEvent, batch: _Batch) -> str:
    payload = _inner_payload(event)
    listing = payload.get("listing") if isinstance(payload.get("listing"), dict) else {}
    pf_id = str(listing.get("id") or event.entity_id or "")
    action_type = payload.get("actionType") or "unknown action"
    status = payload.get("status") or "unknown status"
    reason = f", {payload['reason']}" if payload.get("reason") else ""
    text = f"{action_type} ({status}{reason})"
    message = payload.get("message")
    if isinstance(message, dict) and message.get("en"):
        text += f": {message['en']}"
    if payload.get("remarks"):
        text += f" Remarks: {payload['remarks']}"
    if payload.get("expireAction") and payload.get("expiresAt"):
        text += f" If unresolved by {payload['expiresAt']}: {payload['expireAction']}."
    if listing.get("reference"):
        text = f"listing {listing['reference']}: {text}"
    property_id = (
        Property.objects.filter(pf_id=pf_id).values_list("pk", flat=True).first() if pf_id else None
    )
    level = batch.recorder.info if status == "expired" else batch.recorder.warning
    level(
        "listing.action",
        text,
        pf_id=pf_id,
        object_type="property" if property_id else "",
        object_id=property_id,
    )
    return ""


_HANDLERS: dict[str, Callable[[WebhookEvent, _Batch], str]] = {
    "listing.published": _listing_published,
    "listing.unpublished": _listing_unpublished,
    "listing.action": _listing_action,
    "user.created": _user_synced,
    "user.updated": _user_synced,
    "user.activated": _user_synced,
    "user.deleted": _user_left_alone,
    "user.deactivated": _user_left_alone,
}


def _claim(event: WebhookEvent) -> bool:
    """Count an attempt; False when another process took or settled the event meanwhile."""
    taken = WebhookEvent.objects.filter(
        pk=event.pk, status=WebhookEvent.Status.PENDING, attempts=event.attempts
    ).update(attempts=F("attempts") + 1)
    if taken:
        event.attempts += 1
    return bool(taken)


def _settle(event: WebhookEvent, status: str, note: str, **extra: Any) -> None:
    event.status = status
    event.last_error = redact(note)[:_NOTE_LIMIT]
    event.processed_at = None if status == WebhookEvent.Status.PENDING else timezone.now()
    WebhookEvent.objects.filter(pk=event.pk).update(
        status=event.status,
        last_error=event.last_error,
        processed_at=event.processed_at,
        **extra,
    )


def _process_one(event: WebhookEvent, batch: _Batch, summary: ProcessSummary) -> None:
    if not _claim(event):
        summary.skipped += 1
        return
    handler = _HANDLERS.get(event.event_type)
    where = f"{event.event_type} {event.entity_id}".strip()
    try:
        if handler is None:
            raise EventIgnored(f"pfsync does not act on {event.event_type} events")
        note = handler(event, batch)
    except EventDeferred as exc:
        event.attempts -= 1
        _settle(event, WebhookEvent.Status.PENDING, str(exc), attempts=F("attempts") - 1)
        summary.deferred += 1
        batch.recorder.warning("webhook.deferred", f"{where}: {exc}", pf_id=event.entity_id)
    except EventIgnored as exc:
        _settle(event, WebhookEvent.Status.IGNORED, str(exc))
        summary.ignored += 1
        batch.recorder.info("webhook.ignored", f"{where}: {exc}", pf_id=event.entity_id)
    except Exception as exc:  # one bad event must not stop the batch; it is retried later
        message = str(exc) if isinstance(exc, SyncAborted) else one_line(exc)
        if not isinstance(exc, SyncAborted | AtlasError):
            logger.warning("webhook event %s (%s) failed", event.event_id, where, exc_info=True)
        given_up = event.attempts >= MAX_ATTEMPTS
        status = WebhookEvent.Status.FAILED if given_up else WebhookEvent.Status.PENDING
        _settle(event, status, message)
        if given_up:
            summary.failed += 1
            outcome = f"given up after {event.attempts} attempts"
        else:
            summary.retry += 1
            outcome = f"attempt {event.attempts} of {MAX_ATTEMPTS}; it will be retried"
        summary.problems.append(f"{where}: {redact(message)}")
        batch.recorder.error(
            "webhook.failed", f"{where}: {message} ({outcome})", pf_id=event.entity_id
        )
    else:
        _settle(event, WebhookEvent.Status.PROCESSED, note)
        summary.processed += 1


def process_events(
    events: Iterable[WebhookEvent],
    *,
    trigger: str,
    client: AtlasClient | None = None,
    downloader: ImageDownloader | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> ProcessSummary:
    """Process stored events in one recorded pf_webhooks run; failures stay pending."""
    events = list(events)
    summary = ProcessSummary()
    if not events:
        return summary
    recorder = RunRecorder.start(
        "pf_webhooks",
        options={"trigger": trigger, "events": [e.event_id for e in events[:100]]},
    )
    summary.run_id = recorder.run.pk
    batch = _Batch(recorder, client, downloader, sleep)
    try:
        with recorder:
            for event in events:
                _process_one(event, batch, summary)
                recorder.checkpoint()
            recorder.finish(message=summary.text())
    finally:
        batch.close()
    return summary


def process_pending(
    limit: int | None = None,
    *,
    client: AtlasClient | None = None,
    downloader: ImageDownloader | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> ProcessSummary:
    """Process the pending events, oldest first (all, or the first ``limit``)."""
    pending = WebhookEvent.objects.filter(status=WebhookEvent.Status.PENDING).order_by(
        "received_at", "id"
    )
    if limit is not None:
        pending = pending[:limit]
    return process_events(
        pending, trigger="process_pending", client=client, downloader=downloader, sleep=sleep
    )


# ---------------------------------------------------------------------------
# Right after an event arrives
# ---------------------------------------------------------------------------

_shared: dict[str, Any] = {"key": None, "client": None}
_shared_lock = threading.Lock()


def received_client() -> AtlasClient:
    """The process's API client for events just received: short timeouts, few retries.

    Shared by requests so a burst of events reuses one access token; rebuilt when
    the PF_API_* settings change.
    """
    from pfsync_app.jobs.clients import build_client

    names = [s.name for s in SETTINGS if s.name.startswith("PF_API_")]
    # A digest, so the API secret is not kept in one more place in memory.
    key = hashlib.sha256(
        json.dumps([getattr(pfsync_settings, name) for name in names], default=str).encode()
    ).hexdigest()
    with _shared_lock:
        if _shared["key"] != key:
            client = build_client()
            client.timeout = min(client.timeout, RECEIVED_API_TIMEOUT)
            client.max_attempts = min(client.max_attempts, RECEIVED_API_MAX_ATTEMPTS)
            client.max_retry_wait = min(client.max_retry_wait, RECEIVED_API_MAX_RETRY_WAIT)
            old, _shared["client"], _shared["key"] = _shared["client"], client, key
            if old is not None:
                old.close()
        return _shared["client"]


def process_received(event_pk: int) -> ProcessSummary | None:
    """Process one just-stored event within a short budget; never raises (it stays pending)."""
    try:
        event = WebhookEvent.objects.filter(pk=event_pk, status=WebhookEvent.Status.PENDING).first()
        if event is None:
            return None
        client = received_client()
        downloader = ImageDownloader(
            session=client.session,
            timeout=min(float(pfsync_settings.IMAGE_DOWNLOAD_TIMEOUT), RECEIVED_API_TIMEOUT),
            max_retries=min(
                int(pfsync_settings.IMAGE_DOWNLOAD_MAX_RETRIES), RECEIVED_IMAGE_MAX_RETRIES
            ),
        )
        return process_events([event], trigger="webhook", client=client, downloader=downloader)
    except Exception:
        logger.exception(
            "webhook event %s could not be processed on arrival; it stays pending for "
            "'manage.py pf_webhooks process'",
            event_pk,
        )
        return None


__all__ = [
    "EVENT_TYPES",
    "MAX_ATTEMPTS",
    "SIGNATURE_HEADER",
    "InvalidEvent",
    "ParsedEvent",
    "ProcessSummary",
    "parse_event",
    "process_events",
    "process_pending",
    "process_received",
    "received_client",
    "signature_for",
    "signature_problem",
    "store_event",
]
