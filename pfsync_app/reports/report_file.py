"""The old service's daily report file: one aligned line per pf_sync run, header once."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

from pfsync_app.conf import pfsync_settings
from pfsync_app.models import SyncRun
from pfsync_app.reports.causes import Cause, os_error_cause
from pfsync_app.reports.logs import redact
from pfsync_app.reports.summary import local_datetime_text

# (header, SyncRun attribute) of the old service's daily report file, in order.
try:  # POSIX only; elsewhere O_APPEND alone keeps concurrent lines whole.
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

REPORT_FILE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("Date", "started_at"),
    ("Properties Created", "properties_created"),
    ("Properties Updated", "properties_updated"),
    ("Images Downloaded", "images_downloaded"),
    ("Users Created", "users_created"),
    ("Users Updated", "users_updated"),
    ("Errors", "errors"),
)


REPORT_DATE_WIDTH = len("2026-01-19 00:00:00")


def report_file_header() -> str:
    """The report file's header line (without the newline)."""
    names = [name for name, _ in REPORT_FILE_COLUMNS]
    widths = _report_widths()
    return " | ".join(name.ljust(width) for name, width in zip(names, widths, strict=True))


def report_file_line(run: SyncRun) -> str:
    """One run as a report file line, each value padded to its header column (no newline)."""
    values = []
    for _, attribute in REPORT_FILE_COLUMNS:
        value = getattr(run, attribute)
        values.append(local_datetime_text(value) if isinstance(value, dt.datetime) else str(value))
    line = " | ".join(
        value.ljust(width) for value, width in zip(values, _report_widths(), strict=True)
    )
    return line.rstrip()


def _report_widths() -> list[int]:
    return [
        max(len(name), REPORT_DATE_WIDTH if attribute == "started_at" else 0)
        for name, attribute in REPORT_FILE_COLUMNS
    ]


@dataclass(frozen=True)
class ReportFileFailure:
    """Why the run's line could not be written: one sentence, and its cause."""

    message: str
    cause: Cause


def write_report_line(run: SyncRun, path: str | os.PathLike[str] | None) -> str | None:
    """Append the run's line (and the header on a new file); return the problem, if any."""
    failure = report_file_failure(run, path)
    return failure.message if failure else None


def report_file_failure(
    run: SyncRun, path: str | os.PathLike[str] | None
) -> ReportFileFailure | None:
    """Append the run's line (and the header on a new file); None, or why it failed."""
    target = path if path is not None else pfsync_settings.REPORT_FILE
    if not target:
        return None
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)  # so two new-file runs write one header
            text = report_file_line(run) + "\n"
            if os.fstat(fd).st_size == 0:
                text = report_file_header() + "\n" + text
            os.write(fd, text.encode("utf-8"))
        finally:
            os.close(fd)  # closing releases the flock
    except OSError as exc:
        return ReportFileFailure(
            redact(f"report file {target}: {exc.strerror or exc}"), os_error_cause(exc)
        )
    return None
