"""Webhook subscriptions and signed event delivery, as Atlas does them, to local URLs only."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import queue
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

from pfsync_app.sandbox.generate import iso

logger = logging.getLogger("pfsync.sandbox")

# The eventId enum of the spec's webhook.create.request.
EVENT_TYPES = (
    "user.created",
    "user.updated",
    "user.deleted",
    "user.activated",
    "user.deactivated",
    "lead.created",
    "lead.updated",
    "lead.assigned",
    "publicProfile.verification.approved",
    "publicProfile.verification.rejected",
    "listing.published",
    "listing.unpublished",
    "listing.action",
)
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
DELIVERY_TIMEOUT = 5.0


def signature(secret: str, body: bytes) -> str:
    """The ``X-Signature`` header: hex HMAC-SHA256 of the raw body, keyed by the secret."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def is_local_url(url: str) -> bool:
    """Whether ``url`` is http(s) on this machine, the only place the sandbox delivers to."""
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and (parts.hostname or "") in LOCAL_HOSTS


@dataclass(frozen=True)
class Subscription:
    """One subscription made through ``POST /v1/webhooks``."""

    event_id: str
    url: str
    secret: str | None
    created_at: str

    def as_json(self) -> dict:
        """As the spec's ``WebhookItem`` (the secret is never shown back)."""
        return {"eventId": self.event_id, "url": self.url, "createdAt": self.created_at}


@dataclass(frozen=True)
class Delivery:
    """One delivery attempt: what was sent where, and the receiver's status or the error."""

    event_type: str
    url: str
    body: bytes
    status: int | None
    error: str


class WebhookHub:
    """Keeps subscriptions and POSTs events to them from one background thread."""

    def __init__(self, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._now = now
        self._lock = threading.Lock()
        self._subscriptions: list[Subscription] = []
        self._queue: queue.Queue[tuple[Subscription, str, bytes] | None] = queue.Queue()
        self._deliveries: list[Delivery] = []
        self._worker: threading.Thread | None = None

    def subscribe(self, event_id: str, url: str, secret: str | None = None) -> Subscription:
        """Add a subscription; raises ValueError for an unknown event or a non-local URL."""
        if event_id not in EVENT_TYPES:
            raise ValueError(f"unknown event type {event_id!r}")
        if not is_local_url(url):
            raise ValueError(
                f"the sandbox delivers webhooks only to 127.0.0.1 or localhost, not {url!r}"
            )
        subscription = Subscription(event_id, url, secret or None, iso(self._now()))
        with self._lock:
            self._subscriptions.append(subscription)
        return subscription

    def subscriptions(self, event_id: str | None = None) -> list[Subscription]:
        """Subscriptions, all or of one event type."""
        with self._lock:
            return [s for s in self._subscriptions if event_id in (None, s.event_id)]

    def unsubscribe(self, event_id: str) -> int:
        """Remove every subscription of an event type; how many there were."""
        with self._lock:
            before = len(self._subscriptions)
            self._subscriptions = [s for s in self._subscriptions if s.event_id != event_id]
            return before - len(self._subscriptions)

    @property
    def deliveries(self) -> list[Delivery]:
        """Every delivery attempted so far."""
        with self._lock:
            return list(self._deliveries)

    def event(self, event_type: str, entity_type: str, entity_id: str, payload: dict) -> dict:
        """An event body as the spec's webhook schemas shape it."""
        event = {
            "id": str(uuid.uuid4()),
            "type": event_type,
            "timestamp": iso(self._now()),
            "entity": {"id": str(entity_id), "type": entity_type},
            "payload": payload,
        }
        if entity_type == "user" and "email" in payload:
            # The spec's WHPayloadUserEmail requires "email" beside "payload" as well as in it.
            event["email"] = payload["email"]
        return event

    def publish(self, event_type: str, entity_type: str, entity_id: str, payload: dict) -> int:
        """Queue the event for each subscription of its type; how many deliveries were queued."""
        targets = self.subscriptions(event_type)
        if not targets:
            return 0
        body = json.dumps(self.event(event_type, entity_type, entity_id, payload)).encode()
        self._start()
        for subscription in targets:
            self._queue.put((subscription, event_type, body))
        return len(targets)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every queued delivery was attempted; False on timeout."""
        done = threading.Event()

        def wait() -> None:
            self._queue.join()
            done.set()

        threading.Thread(target=wait, daemon=True).start()
        return done.wait(timeout)

    def close(self) -> None:
        """Stop the delivery thread once the queue is empty."""
        if self._worker is not None:
            self._queue.put(None)
            self._worker.join(timeout=DELIVERY_TIMEOUT + 1)
            self._worker = None

    def _start(self) -> None:
        with self._lock:
            if self._worker is None:
                self._worker = threading.Thread(
                    target=self._run, name="sandbox-webhooks", daemon=True
                )
                self._worker.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                self._deliver(*item)
            finally:
                self._queue.task_done()

    def _deliver(self, subscription: Subscription, event_type: str, body: bytes) -> None:
        status: int | None = None
        error = ""
        if not is_local_url(subscription.url):
            error = "not a local URL"
        else:
            headers = {"Content-Type": "application/json", "User-Agent": "pfsync-sandbox"}
            if subscription.secret:
                headers["X-Signature"] = signature(subscription.secret, body)
            # is_local_url() above allows http(s) on this machine only.
            request = urllib.request.Request(  # noqa: S310
                subscription.url, data=body, headers=headers, method="POST"
            )
            try:
                with urllib.request.urlopen(request, timeout=DELIVERY_TIMEOUT) as response:  # noqa: S310
                    status = response.status
            except urllib.error.HTTPError as exc:
                status = exc.code
            except (OSError, ValueError) as exc:
                error = str(exc)
                logger.info("webhook %s to %s failed: %s", event_type, subscription.url, exc)
        with self._lock:
            self._deliveries.append(Delivery(event_type, subscription.url, body, status, error))
