"""pfsync's two endpoints: the webhook (``pfsync:webhook``) and the health check
(``pfsync:health``).

Webhooks, as django-anymail's webhook views do: the ``X-Signature`` HMAC is
checked in constant time, a bad signature is a 403 and a body that is not an
event a 400 (never a 500), and a valid event is stored once per event id before
the 2xx. It is processed after the answer has been sent (``jobs.webhooks``).

Health, for uptime monitors: 200 while the nightly sync is healthy, 503 when it
is not or cannot be told (``reports.health`` holds the rule), as JSON with no
personal data and no secret; ``PF_HEALTH_TOKEN`` may guard it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError, DataError, transaction
from django.http import HttpRequest, JsonResponse
from django.utils.crypto import constant_time_compare
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST, require_safe

from pfsync_app.conf import pfsync_settings
from pfsync_app.exceptions import InvalidEvent
from pfsync_app.jobs.webhooks import process_received
from pfsync_app.models import WebhookEvent
from pfsync_app.reports.health import sync_health
from pfsync_app.reports.logs import set_current_run
from pfsync_app.writers.events import store_event
from pfsync_app.writers.fit import clean_text

logger = logging.getLogger("pfsync.webhooks")

SIGNATURE_HEADER = "X-Signature"
_FIELD_LIMITS = {
    name: WebhookEvent._meta.get_field(name).max_length
    for name in ("event_id", "event_type", "entity_type", "entity_id")
}


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
    if clean_text(text)[0] != text:
        # Nor can UTF-8 carry a lone surrogate (a JSON "\ud800" escape): an id is never altered.
        raise InvalidEvent(f"the event's {name} contains a lone surrogate")
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


def body_too_big() -> str:
    """The reason a body over Django's DATA_UPLOAD_MAX_MEMORY_SIZE is refused."""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return (
        f"the body is larger than the {limit} bytes this site reads "
        "(Django's DATA_UPLOAD_MAX_MEMORY_SIZE)"
    )


class ProcessAfterResponse(JsonResponse):
    """A JSON answer that processes the stored event once the server has sent it.

    WSGI and ASGI servers call ``close()`` after the last byte of the response is
    written, so Property Finder gets its 200 at once and the work happens in the
    same request thread and database connection, with nothing left running
    afterwards. If the process dies meanwhile, the event is simply still pending.
    """

    def __init__(self, data: Any, *, event_pk: int, **kwargs: Any) -> None:
        super().__init__(data, **kwargs)
        # Set here so the sender knows the answer is complete without waiting for close().
        self["Content-Length"] = str(len(self.content))
        self._event_pk: int | None = event_pk

    def close(self) -> None:
        """Process the event (never raises), then close as usual."""
        event_pk, self._event_pk = self._event_pk, None
        try:
            if event_pk is not None:
                process_received(event_pk)
        finally:
            # The worker thread serves other requests next: they belong to no run.
            set_current_run(None)
            super().close()


@csrf_exempt
@require_POST
@transaction.non_atomic_requests
def webhook(request: HttpRequest) -> JsonResponse:
    """Verify, store once and acknowledge one event: 200, or 400/403/405/503 with a reason."""
    try:
        body = request.body
    except RequestDataTooBig:
        # Django refuses to read a body past DATA_UPLOAD_MAX_MEMORY_SIZE; said as the other
        # refusals are, not as its bare HTML "Bad Request (400)" and a logged traceback.
        return JsonResponse({"error": body_too_big()}, status=400)
    problem = signature_problem(body, request.headers.get(SIGNATURE_HEADER))
    if problem:
        return JsonResponse({"error": problem}, status=403)
    try:
        event = parse_event(body)
    except InvalidEvent as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    try:
        row, created = store_event(
            event.event_id, event.event_type, event.entity_type, event.entity_id, event.body
        )
    except DataError:
        return JsonResponse({"error": "the event has values the database cannot store"}, status=400)
    except DatabaseError:
        logger.exception("webhook event %s could not be stored", event.event_id)
        return JsonResponse(
            {"error": "the event could not be stored right now; send it again later"}, status=503
        )
    if not created:
        return JsonResponse({"status": "duplicate", "event": event.event_id})
    return ProcessAfterResponse({"status": "accepted", "event": event.event_id}, event_pk=row.pk)


# ---------------------------------------------------------------------------
# Health
# ---------------------------------------------------------------------------


def health_token_problem(request: HttpRequest) -> str | None:
    """Why the request may not see the health view, or None (no token set, or the right one)."""
    token = pfsync_settings.PF_HEALTH_TOKEN
    if not token:
        return None
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        given = request.GET.get("token", "")
    if not given:
        return "a token is required: send 'Authorization: Bearer TOKEN' or ?token=TOKEN"
    if not constant_time_compare(given.strip(), str(token)):
        return "the token is not the one configured (PF_HEALTH_TOKEN)"
    return None


@never_cache
@require_safe
@transaction.non_atomic_requests
def health(request: HttpRequest) -> JsonResponse:
    """200 while the nightly sync is healthy, 503 when not or when the database cannot tell."""
    problem = health_token_problem(request)
    if problem:
        response = JsonResponse({"error": problem}, status=401)
        response["WWW-Authenticate"] = 'Bearer realm="pfsync health"'
        return response
    try:
        state = sync_health()
    except DatabaseError:
        logger.warning("the health view could not read pfsync's runs", exc_info=True)
        return JsonResponse(
            {
                "healthy": False,
                "reason": "the database cannot be reached, or pfsync's tables are missing",
            },
            status=503,
        )
    return JsonResponse(state.as_dict(), status=200 if state.healthy else 503)
