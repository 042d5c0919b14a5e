"""The webhook endpoint: Property Finder POSTs signed events here (``pfsync:webhook``)."""

from __future__ import annotations

import logging
from typing import Any

from django.db import DatabaseError, DataError, transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from pfsync_app.exceptions import InvalidEvent
from pfsync_app.jobs import webhooks

logger = logging.getLogger("pfsync.webhooks")


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
                webhooks.process_received(event_pk)
        finally:
            super().close()


@csrf_exempt
@require_POST
@transaction.non_atomic_requests
def webhook(request: HttpRequest) -> JsonResponse:
    """Verify, store once and acknowledge one event: 200, or 400/403/405/503 with a reason."""
    body = request.body
    problem = webhooks.signature_problem(body, request.headers.get(webhooks.SIGNATURE_HEADER))
    if problem:
        return JsonResponse({"error": problem}, status=403)
    try:
        event = webhooks.parse_event(body)
    except InvalidEvent as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    try:
        row, created = webhooks.store_event(event)
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
