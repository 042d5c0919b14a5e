"""Processing stored webhook events: each event's handler, in one recorded pf_webhooks run.

The view (``views.py``) verifies, stores and acknowledges an event; it is then
processed right after the answer has been sent (``process_received``).
Whatever could not be processed stays pending, with its attempts and last
error, for ``process_pending()`` (``pf_webhooks process``, or after pf_sync).

What an event does:

- ``listing.published``: that listing and its images, through the listings
  stage pf_sync uses, under the writer lock; ignored when Property Finder does
  not return the listing (the nightly run unpublishes listings that are gone);
- ``listing.unpublished``: ``is_published = false`` on that property (an UPDATE);
- ``user.created`` / ``user.updated`` / ``user.activated``: that user fetched and saved;
- ``user.deleted`` / ``user.deactivated``: recorded only; pfsync never deletes or
  deactivates a host user;
- ``listing.action``: a report entry (compliance actions need a person).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_chain, wait_fixed

from pfsync_app.atlas import AtlasClient, AtlasError
from pfsync_app.atlas.errors import UnreadableRecordError
from pfsync_app.atlas.records import RecordError
from pfsync_app.conf import SETTINGS, pfsync_settings
from pfsync_app.exceptions import (
    EventDeferred,
    EventIgnored,
    SyncAborted,
    WriterBusy,
)
from pfsync_app.hostmap import host_map
from pfsync_app.jobs.base import Job, atlas_failure
from pfsync_app.jobs.clients import build_client
from pfsync_app.jobs.listings import ListingStage
from pfsync_app.jobs.pipeline import Progress
from pfsync_app.jobs.users import record_user_outcome
from pfsync_app.mapping import map_user
from pfsync_app.media.download import ImageDownloader
from pfsync_app.media.files import require_writable_storage, sweep_stale_downloads
from pfsync_app.models import SyncRun, WebhookEvent
from pfsync_app.reports.causes import cause_of
from pfsync_app.reports.logs import one_line, redact
from pfsync_app.reports.recorder import writing_run_in_progress
from pfsync_app.words import plural
from pfsync_app.writers.events import claim_event, pending_event, pending_events, settle_event
from pfsync_app.writers.listings import (
    can_unpublish,
    forget_fingerprint,
    property_id_of,
    unpublish,
)
from pfsync_app.writers.lock import writer_lock
from pfsync_app.writers.outcomes import UNCHANGED
from pfsync_app.writers.users import agent_id_of, save_user
from pfsync_app.writers.users import id_problem as user_id_problem

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


# One listing sync at a time per process: two events of one burst wait for each other
# instead of one finding the writer lock taken (which on SQLite is per process).
_listing_lock = threading.Lock()


class WebhookBatch(Job):
    """Stored events processed in one recorded pf_webhooks run; failures stay pending.

    The API client is built only when an event needs one. A listing event holds
    the writer lock only while its listing is saved.
    """

    command = SyncRun.Command.WEBHOOKS

    def __init__(
        self,
        events: list[WebhookEvent],
        *,
        trigger: str,
        sleep: Callable[[float], None] = time.sleep,
        **resources: Any,
    ) -> None:
        super().__init__(**resources)
        self.events = events
        self.trigger = trigger
        self.sleep = sleep
        self.summary = ProcessSummary()
        self._pool: ThreadPoolExecutor | None = None

    def options(self) -> dict[str, Any]:
        return {"trigger": self.trigger, "events": [e.event_id for e in self.events[:100]]}

    def work(self) -> None:
        self.summary.run_id = self.recorder.run.pk
        for event in self.events:
            self._process(event)
            self.recorder.checkpoint()

    def finish_message(self) -> str:
        return self.summary.text()

    def result(self) -> ProcessSummary:
        return self.summary

    # -- one event -----------------------------------------------------------

    def _process(self, event: WebhookEvent) -> None:
        summary, recorder = self.summary, self.recorder
        if not claim_event(event):
            summary.skipped += 1
            return
        handler = HANDLERS.get(event.event_type)
        where = f"{event.event_type} {event.entity_id}".strip()
        try:
            if handler is None:
                raise EventIgnored(f"pfsync does not act on {event.event_type} events")
            note = handler(event, self)
        except EventDeferred as exc:
            settle_event(event, WebhookEvent.Status.PENDING, redact(str(exc)), uncount=True)
            summary.deferred += 1
            recorder.warning("webhook.deferred", f"{where}: {exc}", pf_id=event.entity_id)
        except EventIgnored as exc:
            settle_event(event, WebhookEvent.Status.IGNORED, redact(str(exc)))
            summary.ignored += 1
            recorder.info("webhook.ignored", f"{where}: {exc}", pf_id=event.entity_id)
        except Exception as exc:  # one bad event must not stop the batch; it is retried later
            message = str(exc) if isinstance(exc, SyncAborted) else one_line(exc)
            if not isinstance(exc, SyncAborted | AtlasError):
                logger.warning("webhook event %s (%s) failed", event.event_id, where, exc_info=True)
            given_up = event.attempts >= MAX_ATTEMPTS
            status = WebhookEvent.Status.FAILED if given_up else WebhookEvent.Status.PENDING
            settle_event(event, status, redact(message))
            if given_up:
                summary.failed += 1
                outcome = f"given up after {plural(event.attempts, 'attempt')}"
            else:
                summary.retry += 1
                outcome = f"attempt {event.attempts} of {MAX_ATTEMPTS}; it will be retried"
            summary.problems.append(f"{where}: {redact(message)}")
            recorder.error(
                "webhook.failed",
                f"{where}: {message} ({outcome})",
                pf_id=event.entity_id,
                cause=cause_of(exc),
            )
        else:
            settle_event(event, WebhookEvent.Status.PROCESSED, redact(note))
            summary.processed += 1

    # -- what listing events need ----------------------------------------------

    @contextmanager
    def listing_sync(self) -> Iterator[None]:
        """Hold this process's listing lock and the writer lock while one listing is saved.

        Another event's short sync (in another process) is waited for, at
        LOCK_RETRY_DELAYS; a pf_sync or pf_repair that is running (hours, maybe)
        is not: the event is deferred (``EventDeferred``) and stays pending.
        """

        def attempt() -> ExitStack:
            held = ExitStack()
            if not _listing_lock.acquire(timeout=LISTING_LOCK_TIMEOUT):
                raise EventDeferred("another listing event of this process was still being synced")
            held.callback(_listing_lock.release)
            try:
                lease = held.enter_context(writer_lock(self.command))
                held.enter_context(self.heartbeat(lease))
            except BaseException:
                held.close()
                raise
            return held

        retrying = Retrying(
            retry=retry_if_exception(
                lambda exc: isinstance(exc, WriterBusy) and not writing_run_in_progress()
            ),
            wait=wait_chain(*(wait_fixed(delay) for delay in LOCK_RETRY_DELAYS)),
            stop=stop_after_attempt(len(LOCK_RETRY_DELAYS) + 1),
            sleep=self.sleep,
            reraise=True,
        )
        try:
            held = retrying(attempt)
        except WriterBusy as exc:
            raise EventDeferred(f"waiting for the writer lock: {exc}") from None
        with held:
            yield
        if self.lease_lost:
            # Lost while this event's listing was saved: the event is retried, the batch goes on.
            reason, self.lease_lost = self.lease_lost, ""
            raise SyncAborted(reason)

    def listing_stage(self) -> ListingStage:
        """A listings stage recording on this batch's run (storage checked once per batch)."""
        if self._pool is None:
            require_writable_storage(self.storage)
            sweep_stale_downloads(self.storage)
            self.open_client()
            self.open_downloader()
            concurrency = int(pfsync_settings.PF_SYNC_CONCURRENCY)
            self._pool = ThreadPoolExecutor(
                max_workers=concurrency, thread_name_prefix="pfsync-image"
            )
            self.on_close(self._pool.shutdown, wait=True, cancel_futures=True)
        return ListingStage(
            self.recorder,
            downloader=self.downloader,
            storage=self.storage,
            pool=self._pool,
            progress=Progress(),
            failures=[],
            changes=[],
        )


# ---------------------------------------------------------------------------
# The handlers: each returns a note for the event row, or raises EventIgnored,
# EventDeferred, or any other error (counted as an attempt).
# ---------------------------------------------------------------------------


def _listing_published(event: WebhookEvent, batch: WebhookBatch) -> str:
    pf_id = _entity_id(event)
    with batch.listing_sync():
        stage = batch.listing_stage()
        unreadable: list[RecordError] = []
        try:
            listings = batch.open_client().get_listings([pf_id], unreadable=unreadable)
        except AtlasError as exc:
            raise atlas_failure(exc, f"cannot fetch listings {pf_id}", mid_run=True) from exc
        if not listings and unreadable:
            # Asking again gets the same record: the nightly run reports it until it is mended.
            raise EventIgnored(f"Property Finder's record cannot be read: {unreadable[0]}")
        if not listings:
            # Not unpublished on this word alone: the nightly run unpublishes listings that
            # are gone, after a complete fetch and within its circuit breaker.
            raise EventIgnored(
                f"Property Finder returns no listing {pf_id} (unpublished or deleted since, "
                "or not visible to this API key); nothing was synced"
            )
        errors_before = batch.recorder.counters["errors"]
        stage.save(listings)
        stage.report_unmapped()
    errors = batch.recorder.counters["errors"] - errors_before
    if errors:
        return f"synced with {plural(errors, 'error')}; see run {batch.recorder.run.pk}"
    return ""


def _listing_unpublished(event: WebhookEvent, batch: WebhookBatch) -> str:
    pf_id = _entity_id(event)
    property_id = property_id_of(pf_id)
    if property_id is None:
        return f"no property has pf_id {pf_id}; nothing to unpublish"
    if not can_unpublish():
        return "the site's property table has no is_published column; nothing can be hidden"
    done = unpublish([property_id])
    # The next pf_sync compares the listing again rather than skipping it as unchanged, so
    # an event delivered out of order is corrected by the next run.
    forget_fingerprint(pf_id)
    if not done:
        return f"property {property_id} was already unpublished"
    batch.recorder.count("properties_unpublished")
    batch.recorder.info(
        "property.unpublished",
        "unpublished on Property Finder (listing.unpublished event)",
        pf_id=pf_id,
        object_type="property",
        object_id=property_id,
    )
    return ""


def _user_synced(event: WebhookEvent, batch: WebhookBatch) -> str:
    user_id = _user_id(event)
    try:
        record = batch.open_client().get_user(user_id)
    except UnreadableRecordError as exc:
        # Asking again gets the same record: the nightly run reports it until it is mended.
        raise EventIgnored(f"Property Finder's record cannot be read: {exc}") from exc
    if record is None:
        raise EventIgnored(f"Property Finder returns no user {user_id}; nothing was synced")
    values = map_user(record, host_map()["user"].extra)
    problem = user_id_problem(values)
    if problem is not None:
        raise EventIgnored(f"the user cannot be saved: {problem}")
    outcome = save_user(values)
    record_user_outcome(batch.recorder, user_id, values, outcome, f"{event.event_type} event")
    if outcome.action == UNCHANGED:
        return f"host user {outcome.agent_id} was already up to date"
    return ""


def _user_left_alone(event: WebhookEvent, batch: WebhookBatch) -> str:
    user_id = _user_id(event)
    agent_id = agent_id_of(user_id)
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


def _listing_action(event: WebhookEvent, batch: WebhookBatch) -> str:
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
    property_id = property_id_of(pf_id)
    level = batch.recorder.info if status == "expired" else batch.recorder.warning
    level(
        "listing.action",
        text,
        pf_id=pf_id,
        object_type="property" if property_id else "",
        object_id=property_id,
    )
    return ""


HANDLERS: dict[str, Callable[[WebhookEvent, WebhookBatch], str]] = {
    "listing.published": _listing_published,
    "listing.unpublished": _listing_unpublished,
    "listing.action": _listing_action,
    "user.created": _user_synced,
    "user.updated": _user_synced,
    "user.activated": _user_synced,
    "user.deleted": _user_left_alone,
    "user.deactivated": _user_left_alone,
}


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
    if not events:
        return ProcessSummary()
    batch = WebhookBatch(events, trigger=trigger, sleep=sleep, client=client, downloader=downloader)
    return batch.run()


def process_pending(
    limit: int | None = None,
    *,
    client: AtlasClient | None = None,
    downloader: ImageDownloader | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> ProcessSummary:
    """Process the pending events, oldest first (all, or the first ``limit``)."""
    return process_events(
        pending_events(limit),
        trigger="process_pending",
        client=client,
        downloader=downloader,
        sleep=sleep,
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
        event = pending_event(event_pk)
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
        try:
            return process_events([event], trigger="webhook", client=client, downloader=downloader)
        finally:
            downloader.close()
    except Exception:
        logger.exception(
            "webhook event %s could not be processed on arrival; it stays pending for "
            "'manage.py pf_webhooks process'",
            event_pk,
        )
        return None
