"""Logging helpers: the current run's id on every record, and secrets kept out of logs."""

from __future__ import annotations

import logging
import re
from contextvars import ContextVar

current_run_id: ContextVar[int | None] = ContextVar("pfsync_run_id", default=None)
# Worker threads (image downloads) do not inherit context variables: they fall back
# to the run the process is recording.
_process_run_id: int | None = None


def set_current_run(run_id: int | None) -> None:
    """Make ``run_id`` the run named on this process's log lines (None when it ends)."""
    global _process_run_id
    _process_run_id = run_id
    current_run_id.set(run_id)


_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+")
# The password of a URL's user info: postgres://user:PASSWORD@host/db.
_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://[^:/@\s]*:)([^@\s/]+)(@)")
_KEYWORD = re.compile(
    r"(?i)\b(password|passwd|secret|apisecret|api_secret|token|accesstoken)"
    r"(\s*[=:]\s*|\"\s*:\s*\")('[^']*'|[^\s\"',&]+)"
)


def redact_text(text: str, secrets: list[str] | tuple[str, ...] = ()) -> str:
    """``text`` with the given secret values, bearer tokens and password=... values masked."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    text = _BEARER.sub(r"\1***", text)
    text = _URL_PASSWORD.sub(r"\1***\3", text)
    return _KEYWORD.sub(lambda m: f"{m.group(1)}{m.group(2)}***", text)


def configured_secrets() -> list[str]:
    """The secret values of the running configuration: API secret, webhook secret, DB passwords."""
    from django.conf import settings

    values = [
        getattr(settings, "PF_API_SECRET", ""),
        getattr(settings, "PF_WEBHOOK_SECRET", ""),
        getattr(settings, "AWS_SECRET_ACCESS_KEY", ""),
    ]
    for database in getattr(settings, "DATABASES", {}).values():
        values.append(database.get("PASSWORD", ""))
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
        message = record.getMessage()
        cleaned = redact_text(message, secrets)
        if cleaned != message or record.args:
            record.msg = cleaned
            record.args = None
        return True
