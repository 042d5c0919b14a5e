"""pfsync's exceptions, all in one place: one exception per event (the Atlas client has its own).

    PfsyncError
    ├── SyncAborted          a run could not run or had to stop: exit status 2, one sentence
    │   ├── MediaStorageFull the media storage is full: the run stops instead of failing each image
    │   ├── WriterBusy       another pf_sync or pf_repair holds the writer lock
    │   └── UnknownProperty  --property names no property of the host
    ├── RecordRejected       one record (a user, a listing) cannot be saved; the run goes on
    │   ├── RowRefused       a value cannot be fitted to its host column (names table and column)
    │   └── ReceiverFailed   a site's signal receiver raised while the row was being written
    ├── AreaError            pf_areas refuses a request (bad id, location already linked...)
    ├── InvalidEvent         a webhook request body is not a usable event (HTTP 400)
    ├── WebhookSetupError    a webhook subscription refused (bad URL or secret, or by the API)
    ├── EventDeferred        a webhook event must wait for the writer lock; it stays pending
    ├── EventIgnored         there is nothing to do for a webhook event
    ├── ImageDownloadError   an image could not be downloaded and stored (``reason``)
    ├── DownloadAttemptFailed  one attempt of a download failed (retried, or turned into the above)
    └── ImageRejected        bytes that are not a whole image of a format pfsync stores (``reason``)

    KeyboardInterrupt
    └── Terminated           the process was told to stop (SIGTERM): the run ends interrupted

None of them carries a secret: messages are built from what the user can see.
"""

from __future__ import annotations

from typing import Any


def first_line(exc: BaseException) -> str:
    """The first line of an exception's text, or its class name when it has none."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class PfsyncError(Exception):
    """Base of pfsync's own exceptions."""


class SyncAborted(PfsyncError):
    """The run could not run or had to stop (exit status 2); the message says why."""


class MediaStorageFull(SyncAborted):
    """The media storage has no room left: every further image would fail the same way."""


class WriterBusy(SyncAborted):
    """Another pf_sync or pf_repair holds the writer lock; the message names it."""


class UnknownProperty(SyncAborted):
    """``--property PF_ID`` names no property of the host."""


class Terminated(KeyboardInterrupt):
    """The process was told to stop (SIGTERM, as docker stop, systemd and Kubernetes send).

    A KeyboardInterrupt, as Ctrl-C is, so that no handler of one record's or one
    event's errors swallows it and the run is marked interrupted. Raised in the
    main thread by the management commands' signal handler, never in a web worker.
    """

    def __init__(self, signal_name: str = "SIGTERM") -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name


class RecordRejected(PfsyncError):
    """One record cannot be saved; it fails alone (a report entry), the run goes on."""


class RowRefused(RecordRejected):
    """A value fits no way into its host column (``table``, ``column``); the row is not written."""

    def __init__(self, table: str, column: str, message: str) -> None:
        super().__init__(f"{table}.{column}: {message}")
        self.table = table
        self.column = column


class ReceiverFailed(RecordRejected):
    """A site's receiver of a pfsync signal raised: the row's transaction is rolled back."""


class AreaError(PfsyncError):
    """A request pf_areas refuses (bad id, location already linked...); one sentence."""


class InvalidEvent(PfsyncError, ValueError):
    """The request body is not a usable webhook event; the message says why."""


class WebhookSetupError(PfsyncError):
    """A webhook subscription pfsync refuses to make, or Property Finder refused; one sentence."""


class EventDeferred(PfsyncError):
    """The event must wait (the writer lock is held): it stays pending, no attempt counted."""


class EventIgnored(PfsyncError):
    """There is nothing to do for the event; the message says why."""


# Why an image could not be downloaded and stored (ImageDownloadError.reason).
DOWNLOAD_FAILURE_REASONS = frozenset(
    {
        "blocked_url",
        "http_status",
        "timeout",
        "connection",
        "too_large",
        "not_an_image",
        "unsupported_format",
        "too_many_pixels",
        "truncated",
        "storage",
    }
)
#: HTTP statuses that mean the URL itself is dead: pf_repair asks the API for the current one.
PERMANENT_STATUSES = frozenset({403, 404, 410})
_PERMANENT_REASONS = frozenset(
    {"blocked_url", "not_an_image", "unsupported_format", "too_many_pixels", "too_large"}
)
_TRANSIENT_REASONS = frozenset({"timeout", "connection", "truncated"})


def download_retryable(reason: str, status: int | None) -> bool:
    """Connection trouble, timeouts, short bodies, 429 and 5xx are worth another attempt."""
    if reason == "http_status":
        return status == 429 or (status or 0) >= 500
    return reason in _TRANSIENT_REASONS


class ImageDownloadError(PfsyncError):
    """An image could not be downloaded and stored; ``reason`` says why, ``status`` the HTTP one."""

    def __init__(self, url: str, reason: str, message: str, status: int | None = None) -> None:
        if reason not in DOWNLOAD_FAILURE_REASONS:
            raise ValueError(f"unknown image download failure reason {reason!r}")
        super().__init__(message)
        self.url = url
        self.reason = reason
        self.message = message
        self.status = status

    @property
    def permanent(self) -> bool:
        """True when trying the same URL again cannot help (the URL must change)."""
        return self.reason in _PERMANENT_REASONS or (
            self.reason == "http_status" and self.status in PERMANENT_STATUSES
        )

    @property
    def retryable(self) -> bool:
        """True when another attempt at the same URL may succeed soon."""
        return download_retryable(self.reason, self.status)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.url, self.reason, self.message, self.status))


class DownloadAttemptFailed(PfsyncError):
    """One attempt of a download failed; the downloader retries it or raises ImageDownloadError.

    ``private_host``: a refusal that PF_MEDIA_ALLOW_PRIVATE_HOSTS would lift (plain
    http, or a host that is not a public address), as the sandbox's images get.
    """

    def __init__(
        self, reason: str, cause: str, status: int | None = None, *, private_host: bool = False
    ) -> None:
        super().__init__(cause)
        self.reason = reason
        self.cause = cause
        self.status = status
        self.private_host = private_host


class ImageRejected(PfsyncError):
    """Bytes that are not a whole image of a format pfsync stores; ``reason`` and ``cause`` say why.

    ``reason`` is one of ``truncated``, ``not_an_image``, ``unsupported_format``
    and ``too_many_pixels`` (the reasons of ImageDownloadError).
    """

    def __init__(self, reason: str, cause: str) -> None:
        super().__init__(cause)
        self.reason = reason
        self.cause = cause
