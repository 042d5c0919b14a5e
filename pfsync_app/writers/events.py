"""Webhook events in pfsync's own table: stored once per event id, claimed, settled.

The table is pfsync's, not the host's; its rows move from pending to
processed, ignored or failed, and are never deleted.
"""

from __future__ import annotations

import math
from typing import Any

from django.db.models import F, QuerySet
from django.utils import timezone

from pfsync_app.models import WebhookEvent
from pfsync_app.writers.fit import clean_text

#: The longest note kept on an event (its last error, or why it was ignored).
NOTE_LIMIT = 2000


def storable_payload(node: Any) -> Any:
    """An event's JSON as the database can store it: text without NUL characters or lone
    surrogates (keys too), and NaN or infinite numbers as null.

    What an event says is a hint (pfsync fetches the record it names), so its
    payload is fitted rather than the event refused; its ids are checked as they
    are received (``views.parse_event``), never altered.
    """
    if isinstance(node, str):
        return clean_text(node)[0]
    if isinstance(node, dict):
        return {clean_text(str(key))[0]: storable_payload(value) for key, value in node.items()}
    if isinstance(node, list | tuple):
        return [storable_payload(item) for item in node]
    if isinstance(node, float) and not math.isfinite(node):
        return None
    return node


def store_event(
    event_id: str, event_type: str, entity_type: str, entity_id: str, body: dict[str, Any]
) -> tuple[WebhookEvent, bool]:
    """Save a received event once; ``(row, False)`` when its event id was already stored.

    The body is stored as ``storable_payload`` makes it.
    """
    # get_or_create catches the IntegrityError of a concurrent twin and returns the stored row.
    return WebhookEvent.objects.get_or_create(
        event_id=event_id,
        defaults={
            "event_type": event_type,
            "entity_type": entity_type,
            "entity_id": entity_id,
            "payload": storable_payload(body),
            "status": WebhookEvent.Status.PENDING,
        },
    )


def pending_event(pk: int) -> WebhookEvent | None:
    """The stored event ``pk`` if it is still pending."""
    return WebhookEvent.objects.filter(pk=pk, status=WebhookEvent.Status.PENDING).first()


def pending_events(limit: int | None = None) -> QuerySet[WebhookEvent]:
    """The pending events, oldest first (all, or the first ``limit``)."""
    pending = WebhookEvent.objects.filter(status=WebhookEvent.Status.PENDING).order_by(
        "received_at", "id"
    )
    return pending[:limit] if limit is not None else pending


def claim_event(event: WebhookEvent) -> bool:
    """Count an attempt; False when another process took or settled the event meanwhile."""
    taken = WebhookEvent.objects.filter(
        pk=event.pk, status=WebhookEvent.Status.PENDING, attempts=event.attempts
    ).update(attempts=F("attempts") + 1)
    if taken:
        event.attempts += 1
    return bool(taken)


def settle_event(event: WebhookEvent, status: str, note: str, *, uncount: bool = False) -> None:
    """Give the event its status and note (``uncount``: the attempt did not count)."""
    event.status = status
    # A note may echo the API's data (an id, a name): kept as the database can store it.
    event.last_error = clean_text(note)[0][:NOTE_LIMIT]
    event.processed_at = None if status == WebhookEvent.Status.PENDING else timezone.now()
    extra: dict[str, Any] = {}
    if uncount:
        event.attempts -= 1
        extra["attempts"] = F("attempts") - 1
    WebhookEvent.objects.filter(pk=event.pk).update(
        status=event.status,
        last_error=event.last_error,
        processed_at=event.processed_at,
        **extra,
    )
