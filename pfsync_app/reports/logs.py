"""Log lines and stored messages: the run id on every line, and secrets kept out.

``redact`` is the one redaction for logs, report entries and run messages.
"""

from __future__ import annotations

import logging
import re
from contextvars import ContextVar
from typing import Any

#: The one timestamp format of a run's lines on stderr: log records and progress lines alike.
LOG_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"

current_run_id: ContextVar[int | None] = ContextVar("pfsync_run_id", default=None)


# Worker threads (image downloads) do not inherit context variables: they fall back
# to the run the process is recording.
_process_run_id: int | None = None


def set_current_run(run_id: int | None) -> None:
    """Make ``run_id`` the run named on this process's log lines (None: no run)."""
    global _process_run_id
    _process_run_id = run_id
    current_run_id.set(run_id)


def end_current_run(run_id: int) -> None:
    """Stop naming ``run_id`` on log lines once its run has ended, whatever else failed.

    Clears this thread's context and the process-wide fallback, the latter only while it
    still names ``run_id`` (another thread's run may have started since): a web worker
    that processed a webhook batch goes on serving requests, which belong to no run.
    """
    global _process_run_id
    if _process_run_id == run_id:
        _process_run_id = None
    if current_run_id.get() == run_id:
        current_run_id.set(None)


MASK = "***"


_BEARER = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9\-._~+/]+=*")


# The password of a URL's user info: postgres://user:PASSWORD@host/db.
_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://[^:/@\s]*:)([^@\s/]+)(@)")


# A field named like a secret and its value: password=..., "accessToken": "...",
# api_secret: ..., PGPASSWORD=..., X-Webhook-Secret: ... (a prefix such as "api_" may precede).
_SECRET_FIELD = re.compile(
    r"(?i)(\b[\w-]*?(?:password|passwd|pwd|secret|token)[\"']?\s*[=:]\s*)"
    r"(\"[^\"]*\"|'[^']*'|[^\s&;,'\"}]+)"
)


# Shorter configured values are not masked on their own: "pf" would eat every "pfsync".
_MIN_SECRET_CHARS = 4


def redact_text(text: str, secrets: list[str] | tuple[str, ...] = (), *, mask: str = MASK) -> str:
    """``text`` with the given secret values, bearer tokens and password=... values masked."""
    for secret in sorted(secrets, key=len, reverse=True):  # longest first: overlaps go whole
        if secret and len(secret) >= _MIN_SECRET_CHARS:
            text = text.replace(secret, mask)
    text = _BEARER.sub(lambda m: f"{m.group(1)}{mask}", text)
    text = _URL_PASSWORD.sub(lambda m: f"{m.group(1)}{mask}{m.group(3)}", text)
    return _SECRET_FIELD.sub(lambda m: f"{m.group(1)}{mask}", text)


def configured_secrets() -> list[str]:
    """The configuration's secrets: API, webhook, health, Django, S3 and mail keys, DB passwords."""
    from django.conf import settings

    from pfsync_app.conf import pfsync_settings

    values = [
        pfsync_settings.PF_API_SECRET,
        pfsync_settings.PF_WEBHOOK_SECRET,
        pfsync_settings.PF_HEALTH_TOKEN,
        getattr(settings, "SECRET_KEY", ""),
        getattr(settings, "AWS_SECRET_ACCESS_KEY", ""),
        # Only when set: Django 6.1 deprecates the setting and warns whenever it is read.
        settings.EMAIL_HOST_PASSWORD if settings.is_overridden("EMAIL_HOST_PASSWORD") else "",
    ]
    # Django 6.1's MAILERS: each mailer's password, wherever the site keeps its mail settings.
    for mailer in (getattr(settings, "MAILERS", None) or {}).values():
        values.append((mailer.get("OPTIONS") or {}).get("password") or "")
    for database in getattr(settings, "DATABASES", {}).values():
        values.append(database.get("PASSWORD") or "")
    return [v for v in values if isinstance(v, str) and v]


class RunContextFilter(logging.Filter):
    """Adds ``run_id`` (the pfsync run being recorded, or '-') to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        run_id = current_run_id.get()
        if run_id is None:
            run_id = _process_run_id
        record.run_id = run_id if run_id is not None else "-"
        return True


class RedactingFilter(logging.Filter):
    """Masks secrets in the formatted message and its arguments before any handler sees them."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            secrets = configured_secrets()
        except Exception:  # settings not configured yet: nothing to mask against
            secrets = []
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            # Arguments that do not fit the format: leave the record to the handler, which
            # reports such a mistake itself; a filter that raised would break the caller.
            return True
        cleaned = redact_text(message, secrets)
        if cleaned != message or record.args:
            record.msg = cleaned
            record.args = None
        return True


REDACTED = "[redacted]"


def redact(text: Any) -> str:
    """``text`` without the configured secrets, bearer tokens and passwords (see logutils)."""
    result = "" if text is None else str(text)
    if not result:
        return result
    return redact_text(result, configured_secrets(), mask=REDACTED)


def one_line(exc: BaseException) -> str:
    """An exception as one redacted line: its type and the first line of its text."""
    lines = str(exc).strip().splitlines()
    text = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    return redact(text)
