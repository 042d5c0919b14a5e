"""What an Atlas answer means: error statuses as ``AtlasError``s, problem texts, JSON bodies.

Pure functions of one ``requests.Response``: the transport sends and retries,
these only read what came back. Every text taken from an answer goes through
the caller's ``redact`` before it can reach an error message.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import requests

from .errors import ApiError, FirewallBlockedError, MalformedResponseError, RateLimitedError

__all__ = [
    "decode_json",
    "explanation",
    "is_html",
    "printable",
    "problem",
    "problem_type",
    "raise_for_status",
    "retry_after",
]

#: Characters of API text quoted in one message, at most.
QUOTED_CHARS = 200

#: Statuses worth another try: the server or a gateway failed, not the request.
RETRYABLE_STATUSES = frozenset({500, 502, 503, 504})


def is_html(response: requests.Response) -> bool:
    """Whether the answer is an HTML page (a CDN or proxy page) rather than the API's JSON."""
    content_type = response.headers.get("Content-Type", "").lower()
    if "text/html" in content_type:
        return True
    if "json" in content_type:
        return False
    return response.content[:512].lstrip().lower().startswith((b"<!doctype html", b"<html"))


def retry_after(response: requests.Response) -> float | None:
    """Seconds from a Retry-After header (seconds or an HTTP date), if there is a usable one."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None


def printable(text: str, limit: int = QUOTED_CHARS) -> str:
    """``text`` made safe to quote in a message or a log line: one line, at most ``limit``
    characters (then "..."), every character that is not printable written as its escape
    (NUL as ``\\x00``, a newline as ``\\n``), so an answer cannot write to the terminal.
    """
    shown = "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


def problem_type(response: requests.Response) -> str | None:
    """The ``type`` of a problem+json answer (the spec's ``AUTHENTICATION``...), or None."""
    try:
        body = response.json()
    except ValueError:
        return None
    kind = body.get("type") if isinstance(body, Mapping) else None
    return kind if isinstance(kind, str) else None


def problem(
    response: requests.Response, redact: Callable[[str], str]
) -> tuple[str | None, str | None]:
    """The ``title`` and ``detail`` of a problem+json answer (or a short text instead),
    each redacted and made ``printable``."""
    if is_html(response):
        return None, "an HTML page instead of a JSON answer"
    try:
        body = response.json()
    except ValueError:
        # Bytes that are not UTF-8 are shown as their escapes (\xff), not as U+FFFD.
        text = response.content.decode("utf-8", errors="backslashreplace").strip()
        return None, printable(redact(text)) if text else None
    if not isinstance(body, Mapping):
        return None, None
    title = body.get("title") if isinstance(body.get("title"), str) else None
    parts = [body["detail"]] if isinstance(body.get("detail"), str) and body["detail"] else []
    errors = body.get("errors")
    if isinstance(errors, list):
        for error in errors[:5]:
            if isinstance(error, Mapping) and isinstance(error.get("detail"), str):
                pointer = error.get("pointer")
                where = f"{pointer}: " if isinstance(pointer, str) and pointer else ""
                parts.append(f"{where}{error['detail']}")
    detail = "; ".join(parts) or None
    return (
        printable(redact(title)) if title else None,
        printable(redact(detail)) if detail else None,
    )


def explanation(response: requests.Response, redact: Callable[[str], str]) -> str:
    """The answer's problem ``title: detail`` as one text ("" when it gives none)."""
    return ": ".join(part for part in problem(response, redact) if part)


def raise_for_status(
    method: str,
    shown: str,
    response: requests.Response,
    *,
    idempotent: bool,
    redact: Callable[[str], str],
) -> None:
    """Turn an error answer into the right ``AtlasError``, marked retryable or not."""
    status = response.status_code
    if 200 <= status < 300:
        return
    if status == 429:
        seconds = retry_after(response)
        explained = explanation(response, redact) or "Too Many Requests"
        waited = f"; Retry-After {seconds:g} s" if seconds is not None else ""
        raise RateLimitedError(
            f"Atlas {method} {shown} was rate limited (HTTP 429: {explained}){waited}",
            url=shown,
            retry_after=seconds,
        )
    if status == 403 and is_html(response):
        raise FirewallBlockedError(shown, method=method)
    title, detail = problem(response, redact)
    raise ApiError(
        status,
        detail,
        shown,
        title=title,
        method=method,
        # A POST that failed on the server may have been applied: not retried.
        retryable=idempotent and status in RETRYABLE_STATUSES,
    )


def decode_json(method: str, shown: str, response: requests.Response, *, expect_body: bool) -> Any:
    """The answer's JSON body; an empty or cut-off one is a retryable ``MalformedResponseError``."""
    if not response.content:
        if not expect_body:
            return None
        raise MalformedResponseError(
            f"Atlas {method} {shown} answered HTTP {response.status_code} with an empty body",
            url=shown,
            retryable=True,
        )
    try:
        return response.json()
    except ValueError:
        content_type = response.headers.get("Content-Type", "none")
        raise MalformedResponseError(
            f"Atlas {method} {shown} answered HTTP {response.status_code} with a body "
            f"that is not valid JSON ({len(response.content)} bytes, Content-Type "
            f"{content_type}); it may have been cut off in transit",
            url=shown,
            retryable=True,
        ) from None
