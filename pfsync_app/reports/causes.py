"""Why something failed, as data: a reason code and, for HTTP, the status.

Every error entry a run records carries a ``Cause`` (``RunRecorder.error(...,
cause=...)``), so a run's failures can be grouped ("19 images failed: 12 HTTP
404, 7 HTTP 403") rather than read one message at a time. ``cause_of`` turns an
exception into one; ``Cause.label`` is what people read.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass

from django.db import DatabaseError

from pfsync_app.atlas import errors as atlas_errors
from pfsync_app.exceptions import ImageDownloadError, SyncAborted

# What each reason code means, as people read it. Image download reasons are
# ImageDownloadError's; missing/empty/corrupt are pf_check's; the rest are pfsync's own.
LABELS = {
    # image downloads (ImageDownloadError.reason)
    "http_status": "HTTP error",
    "timeout": "timed out",
    "connection": "connection failed",
    "blocked_url": "URL refused by policy",
    "too_large": "too large",
    "not_an_image": "not an image",
    "truncated": "cut-off body",
    "storage": "storage write failed",
    # pf_check
    "missing": "missing",
    "empty": "empty",
    "corrupt": "differs from the download",
    # pf_repair
    "listing": "dead URL and no new one",
    "row_changed": "row changed meanwhile",
    "db": "database error",
    # the Atlas API
    "credentials": "credentials refused",
    "rate_limited": "rate limited",
    "firewall": "blocked by a firewall",
    "api_error": "API error",
    "malformed_answer": "malformed API answer",
    "api_unreachable": "API unreachable",
    "invalid_record": "unreadable record",
    # pfsync and the host
    "database": "database error",
    "invalid_value": "value the table refused",
    "aborted": "stopped",
    "unexpected": "unexpected error",
    # files (the report file): errno names
    "eacces": "permission denied",
    "eperm": "permission denied",
    "enospc": "no space left on device",
    "erofs": "read-only file system",
    "enoent": "no such folder",
    "eisdir": "is a folder",
    "enotdir": "not a folder",
    "eexist": "a file is in the way",
    "os_error": "system error",
}

# Longest reason code stored (ReportEntry.reason).
MAX_REASON = 32


@dataclass(frozen=True)
class Cause:
    """Why something failed: a reason code (see LABELS) and the HTTP status, if any."""

    reason: str
    http_status: int | None = None

    @property
    def label(self) -> str:
        """The cause for people: "HTTP 404", "timed out", "API error (HTTP 503)"."""
        return cause_label(self.reason, self.http_status)


def cause_label(reason: str, http_status: int | None = None) -> str:
    """A stored reason code and HTTP status as people read them."""
    if reason == "http_status" and http_status:
        return f"HTTP {http_status}"
    label = LABELS.get(reason) or reason.replace("_", " ") or "other"
    return f"{label} (HTTP {http_status})" if http_status else label


def cause_of(exc: BaseException) -> Cause:
    """The cause of an exception: an image download's reason, an API status, an OS error..."""
    if isinstance(exc, ImageDownloadError):
        return Cause(exc.reason, exc.status)
    if isinstance(exc, atlas_errors.AtlasError):
        return _atlas_cause(exc)
    if isinstance(exc, SyncAborted):
        # A run stopped by the API or the database: the cause underneath says more.
        inner = exc.__cause__
        return cause_of(inner) if inner is not None else Cause("aborted")
    if isinstance(exc, DatabaseError):
        return Cause("database")
    if isinstance(exc, OSError):
        return os_error_cause(exc)
    if isinstance(exc, ValueError | TypeError):
        return Cause("invalid_value")
    return Cause("unexpected")


def os_error_cause(exc: OSError) -> Cause:
    """An OS error's cause: its errno name (``eacces``, ``enospc``), or ``os_error``."""
    name = errno.errorcode.get(exc.errno or 0, "") if exc.errno else ""
    return Cause(name.lower()[:MAX_REASON] or "os_error")


def _atlas_cause(exc: atlas_errors.AtlasError) -> Cause:
    status = getattr(exc, "status", None)
    status = status if isinstance(status, int) and 100 <= status <= 599 else None
    if isinstance(exc, atlas_errors.AuthenticationError):
        return Cause("credentials", status)
    if isinstance(exc, atlas_errors.RateLimitedError):
        return Cause("rate_limited", status or 429)
    if isinstance(exc, atlas_errors.FirewallBlockedError):
        return Cause("firewall", status)
    if isinstance(exc, atlas_errors.MalformedResponseError):
        return Cause("malformed_answer", status)
    if isinstance(exc, atlas_errors.AtlasConnectionError):
        return Cause("api_unreachable")
    return Cause("api_error", status)
