"""Run recording: every pf_sync, pf_repair, pf_check and webhook batch leaves a SyncRun row.

``RunRecorder`` owns one run: worker threads add counters and report entries to
it in memory, the thread that started it writes them to the database in bulk
(``checkpoint()``, ``finish()``). The same module writes the old service's daily
report file, sums runs per day for ``pf_report`` and redacts secrets from every
message it stores.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

from django.db import DatabaseError, InterfaceError, OperationalError, connection, transaction
from django.db.models import Count, F, Q, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from pfsync_app.checks import first_line
from pfsync_app.conf import pfsync_settings
from pfsync_app.exceptions import SyncAborted
from pfsync_app.logutils import configured_secrets, redact_text, set_current_run
from pfsync_app.models import ReportEntry, SyncRun

try:  # POSIX only; elsewhere O_APPEND alone keeps concurrent lines whole.
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

REDACTED = "[redacted]"

# Commands that hold the one-at-a-time lock: a running row of theirs is dead when we hold it.
LOCKED_COMMANDS = (SyncRun.Command.SYNC, SyncRun.Command.REPAIR)

# (header, SyncRun attribute) of the old service's daily report file, in order.
REPORT_FILE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("Date", "started_at"),
    ("Properties Created", "properties_created"),
    ("Properties Updated", "properties_updated"),
    ("Images Downloaded", "images_downloaded"),
    ("Users Created", "users_created"),
    ("Users Updated", "users_updated"),
    ("Errors", "errors"),
)
REPORT_DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
REPORT_DATE_WIDTH = len("2026-01-19 00:00:00")

# Longest stored texts; longer ones are cut rather than failing a whole bulk insert.
_FIELD_LIMITS = {
    "action": ReportEntry._meta.get_field("action").max_length,
    "pf_id": ReportEntry._meta.get_field("pf_id").max_length,
    "object_type": ReportEntry._meta.get_field("object_type").max_length,
}
MAX_MESSAGE_CHARS = 10_000

# ---------------------------------------------------------------------------
# Redaction
# ---------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------
# Small display helpers shared by the admin and the commands
# ---------------------------------------------------------------------------


def local_datetime_text(value: dt.datetime | None) -> str:
    """``value`` in the configured TIME_ZONE as ``YYYY-mm-dd HH:MM:SS`` ("" for None)."""
    if value is None:
        return ""
    return timezone.localtime(value, timezone.get_default_timezone()).strftime(REPORT_DATE_FORMAT)


def format_duration(value: dt.timedelta | None) -> str:
    """A duration for people: "45 s", "3 min 12 s", "2 h 5 min 0 s"."""
    if value is None:
        return ""
    total = max(0, round(value.total_seconds()))
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min {seconds} s"
    if minutes:
        return f"{minutes} min {seconds} s"
    return f"{seconds} s"


# ---------------------------------------------------------------------------
# Dead runs
# ---------------------------------------------------------------------------


def process_is_alive(pid: int) -> bool:
    """Whether a process with ``pid`` exists on this host (one we may not signal counts)."""
    if pid <= 0:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def mark_interrupted_runs(*, holding_lock: bool = False) -> int:
    """Mark runs left "running" by a dead process as interrupted; return how many.

    A run is dead when it ran on this host and its pid no longer exists. With
    ``holding_lock`` (the caller holds the pf_sync/pf_repair lock), every other
    running pf_sync/pf_repair run is dead too, wherever it ran.
    """
    hostname = socket.gethostname()
    me = os.getpid()
    marked = 0
    running = SyncRun.objects.filter(status=SyncRun.Status.RUNNING).only(
        "pk", "command", "pid", "hostname"
    )
    for run in running:
        mine = run.hostname == hostname and run.pid == me
        if holding_lock and run.command in LOCKED_COMMANDS and not mine:
            message = (
                f"Interrupted: still marked running (pid {run.pid} on {run.hostname or '?'}) "
                f"when pid {me} on {hostname} took the pf_sync/pf_repair lock."
            )
        elif run.hostname == hostname and run.pid and not process_is_alive(run.pid):
            message = f"Interrupted: process {run.pid} on {hostname} ended without finishing."
        else:
            continue
        marked += SyncRun.objects.filter(pk=run.pk, status=SyncRun.Status.RUNNING).update(
            status=SyncRun.Status.INTERRUPTED, finished_at=timezone.now(), message=message
        )
    return marked


def _text(value: object) -> str:
    """Text fit for any database: PostgreSQL refuses NUL characters, which API data may echo."""
    return str(value or "").replace("\x00", "")


# ---------------------------------------------------------------------------
# The recorder
# ---------------------------------------------------------------------------


class RunRecorder:
    """Records one run: counters and report entries, buffered in memory, written in bulk."""

    def __init__(self, run: SyncRun, *, report_file: bool = False):
        self.run = run
        self.report_file = report_file
        self.max_entries = int(pfsync_settings.PF_REPORT_MAX_ENTRIES)
        self._lock = threading.Lock()
        self._owner = threading.get_ident()
        self._counters = {name: getattr(run, name) for name in SyncRun.COUNTERS}
        self._buffer: list[ReportEntry] = []
        self._recorded = 0
        self._dropped = run.entries_dropped
        self._finished = run.status != SyncRun.Status.RUNNING
        if not self._finished:
            set_current_run(run.pk)

    @classmethod
    def start(
        cls,
        command: str,
        options: dict[str, Any] | None = None,
        *,
        holding_lock: bool = False,
        report_file: bool | None = None,
    ) -> RunRecorder:
        """Create a running SyncRun for ``command`` (after marking dead runs interrupted).

        ``report_file``: append a line to REPORT_FILE at finish; by default only
        for pf_sync runs that are not dry runs.
        """
        if command not in SyncRun.Command.values:
            raise ValueError(
                f"Unknown run command {command!r}; expected one of "
                f"{', '.join(SyncRun.Command.values)}."
            )
        options = _json_safe(options or {})
        mark_interrupted_runs(holding_lock=holding_lock)
        run = SyncRun.objects.create(
            command=command,
            options=options,
            status=SyncRun.Status.RUNNING,
            started_at=timezone.now(),
            pid=os.getpid(),
            hostname=socket.gethostname(),
        )
        if report_file is None:
            report_file = command == SyncRun.Command.SYNC and not options.get("dry_run")
        return cls(run, report_file=report_file)

    # -- called from any thread ---------------------------------------------

    @property
    def counters(self) -> dict[str, int]:
        """The counters so far."""
        with self._lock:
            return dict(self._counters)

    @property
    def finished(self) -> bool:
        """Whether finish(), fail() or interrupt() has run."""
        return self._finished

    def count(self, name: str, n: int = 1) -> None:
        """Add ``n`` to the counter ``name`` (one of SyncRun.COUNTERS)."""
        if name not in self._counters:
            raise ValueError(
                f"Unknown run counter {name!r}; expected one of {', '.join(SyncRun.COUNTERS)}."
            )
        with self._lock:
            self._counters[name] += n

    def entry(
        self,
        level: str,
        action: str,
        message: str,
        *,
        pf_id: str = "",
        object_type: str = "",
        object_id: int | None = None,
    ) -> None:
        """Record one report entry (kept up to PF_REPORT_MAX_ENTRIES, then only counted)."""
        if level not in ReportEntry.Level.values:
            raise ValueError(
                f"Unknown report entry level {level!r}; expected one of "
                f"{', '.join(ReportEntry.Level.values)}."
            )
        with self._lock:
            if self._recorded >= self.max_entries:
                self._dropped += 1
                return
            self._recorded += 1
            self._buffer.append(
                self._make_entry(level, action, message, pf_id, object_type, object_id)
            )

    def info(self, action: str, message: str, **kwargs: Any) -> None:
        """Record an info entry."""
        self.entry(ReportEntry.Level.INFO, action, message, **kwargs)

    def warning(self, action: str, message: str, **kwargs: Any) -> None:
        """Record a warning entry."""
        self.entry(ReportEntry.Level.WARNING, action, message, **kwargs)

    def error(self, action: str, message: str, **kwargs: Any) -> None:
        """Record an error entry and count it in ``errors`` (even when the entry is dropped)."""
        self.count("errors")
        self.entry(ReportEntry.Level.ERROR, action, message, **kwargs)

    # -- called from the thread that started the run ------------------------

    def checkpoint(self) -> None:
        """Save the counters (one UPDATE) and write buffered entries (one bulk INSERT)."""
        self._check_owner("checkpoint")
        with self._lock:
            counters = dict(self._counters)
            dropped = self._dropped
            entries, self._buffer = self._buffer, []
        for name, value in counters.items():
            setattr(self.run, name, value)
        self.run.entries_dropped = dropped
        with transaction.atomic():
            SyncRun.objects.filter(pk=self.run.pk).update(**counters, entries_dropped=dropped)
            if entries:
                ReportEntry.objects.bulk_create(entries)

    def finish(self, status: str | None = None, message: str = "") -> SyncRun:
        """End the run: succeeded (finished_with_errors when errors > 0) unless ``status`` says.

        Writes the REPORT_FILE line when this recorder was started with one. A
        second call does nothing, so a run failed explicitly stays failed.
        """
        self._check_owner("finish")
        if self._finished:
            return self.run
        self._finished = True
        run = self.run
        run.finished_at = timezone.now()
        run.message = redact(message)
        for name, value in self.counters.items():
            setattr(run, name, value)
        run.status = status or _status_for(run.errors)
        if self.report_file:
            problem = _write_report_line(run, None)
            if problem:
                # About the run itself, like the drop note: kept even past the bound.
                self.count("errors")
                self._append_unbounded(ReportEntry.Level.ERROR, "report_file", problem)
                run.errors = self.counters["errors"]
                if status is None:
                    run.status = _status_for(run.errors)
        if self._dropped:
            self._append_unbounded(
                ReportEntry.Level.WARNING,
                "entries_dropped",
                f"{self._dropped} more entries were not recorded "
                f"(PF_REPORT_MAX_ENTRIES is {self.max_entries}).",
            )
        self.checkpoint()
        run.save(update_fields=["status", "finished_at", "message"])
        set_current_run(None)
        return run

    def fail(self, message: str) -> SyncRun:
        """End the run as failed."""
        return self.finish(SyncRun.Status.FAILED, message)

    def interrupt(self, message: str = "") -> SyncRun:
        """End the run as interrupted."""
        return self.finish(SyncRun.Status.INTERRUPTED, message)

    def __enter__(self) -> RunRecorder:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if exc is None:
            self.finish()
            return False
        # Recording must never hide the exception that ended the run.
        try:
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                self.interrupt(f"Interrupted: {one_line(exc)}")
            else:
                self.fail(one_line(exc))
        except Exception:
            logger.exception("Could not record the end of run %s", self.run.pk)
        return False

    # -- internals ------------------------------------------------------------

    def _make_entry(
        self,
        level: str,
        action: str,
        message: str,
        pf_id: str,
        object_type: str,
        object_id: int | None,
    ) -> ReportEntry:
        return ReportEntry(
            run_id=self.run.pk,
            level=level,
            action=_text(action)[: _FIELD_LIMITS["action"]],
            pf_id=_text(pf_id)[: _FIELD_LIMITS["pf_id"]],
            object_type=_text(object_type)[: _FIELD_LIMITS["object_type"]],
            object_id=object_id,
            message=_text(redact(message))[:MAX_MESSAGE_CHARS],
            created_at=timezone.now(),
        )

    def _append_unbounded(self, level: str, action: str, message: str) -> None:
        with self._lock:
            self._buffer.append(self._make_entry(level, action, message, "", "", None))

    def _check_owner(self, what: str) -> None:
        if threading.get_ident() != self._owner:
            raise RuntimeError(
                f"RunRecorder.{what}() must be called from the thread that started run "
                f"{self.run.pk}; worker threads may only count and add entries."
            )


def _status_for(errors: int) -> str:
    return SyncRun.Status.FINISHED_WITH_ERRORS if errors > 0 else SyncRun.Status.SUCCEEDED


def _json_safe(options: dict[str, Any]) -> dict[str, Any]:
    """Options as stored JSON: paths, dates and the like become strings."""
    return json.loads(json.dumps(options, default=str))


# ---------------------------------------------------------------------------
# The daily report file
# ---------------------------------------------------------------------------


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


def _write_report_line(run: SyncRun, path: str | os.PathLike[str] | None) -> str | None:
    """Append the run's line (and the header on a new file); return the problem, if any."""
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
        return redact(f"report file {target}: {exc.strerror or exc}")
    return None


def append_report_line(run: SyncRun, path: str | os.PathLike[str] | None = None) -> None:
    """Append ``run``'s line to REPORT_FILE (or ``path``); a write failure becomes an error entry.

    The run is already saved here, so a failure is recorded straight in the
    database: an error entry, one more error, and finished_with_errors instead
    of succeeded. ``RunRecorder.finish`` does this itself for pf_sync runs.
    """
    problem = _write_report_line(run, path)
    if not problem:
        return
    ReportEntry.objects.create(
        run=run, level=ReportEntry.Level.ERROR, action="report_file", message=problem
    )
    SyncRun.objects.filter(pk=run.pk).update(errors=F("errors") + 1)
    SyncRun.objects.filter(pk=run.pk, status=SyncRun.Status.SUCCEEDED).update(
        status=SyncRun.Status.FINISHED_WITH_ERRORS
    )
    run.refresh_from_db(fields=["errors", "status"])


# ---------------------------------------------------------------------------
# Per-day summaries
# ---------------------------------------------------------------------------

SUMMARY_COUNTERS = SyncRun.COUNTERS


def daily_summary(days: int = 7) -> list[dict[str, Any]]:
    """pf_sync totals per day (TIME_ZONE days), newest first, including days without runs.

    Each dict: ``date`` (a ``datetime.date``), ``runs``, ``failed_runs``,
    ``interrupted_runs`` and every counter of SyncRun.COUNTERS. Dry runs are left out.
    """
    if days < 1:
        raise ValueError(f"days must be at least 1, got {days}.")
    tz = timezone.get_default_timezone()
    today = timezone.localtime(timezone.now(), tz).date()
    first = today - dt.timedelta(days=days - 1)
    since = timezone.make_aware(dt.datetime.combine(first, dt.time.min), tz)
    rows = (
        SyncRun.objects.filter(command=SyncRun.Command.SYNC, started_at__gte=since)
        # A missing key is NULL in SQL, so "not a dry run" is spelt out rather than excluded.
        .filter(~Q(options__has_key="dry_run") | Q(options__dry_run=False))
        .annotate(day=TruncDate("started_at", tzinfo=tz))
        .values("day")
        .annotate(
            runs=Count("id"),
            failed_runs=Count("id", filter=Q(status=SyncRun.Status.FAILED)),
            interrupted_runs=Count("id", filter=Q(status=SyncRun.Status.INTERRUPTED)),
            **{name: Sum(name) for name in SUMMARY_COUNTERS},
        )
        .order_by()
    )
    by_day = {row["day"]: row for row in rows}
    summary = []
    for offset in range(days):
        day = today - dt.timedelta(days=offset)
        row = by_day.get(day, {})
        item: dict[str, Any] = {"date": day}
        for key in ("runs", "failed_runs", "interrupted_runs", *SUMMARY_COUNTERS):
            item[key] = int(row.get(key) or 0)
        summary.append(item)
    return summary


# (header, key) of the pf_report table.
SUMMARY_COLUMNS: tuple[tuple[str, str], ...] = (
    ("Date", "date"),
    ("Runs", "runs"),
    ("Failed Runs", "failed_runs"),
    ("Properties Created", "properties_created"),
    ("Properties Updated", "properties_updated"),
    ("Unpublished", "properties_unpublished"),
    ("Images Downloaded", "images_downloaded"),
    ("Images Failed", "images_failed"),
    ("Users Created", "users_created"),
    ("Users Updated", "users_updated"),
    ("Errors", "errors"),
)


def summary_table(summary: Iterable[dict[str, Any]]) -> list[str]:
    """Lines of a table of ``daily_summary()`` rows, columns aligned under the header."""
    rows = [
        [str(item[key]) if key != "date" else item[key].isoformat() for _, key in SUMMARY_COLUMNS]
        for item in summary
    ]
    headers = [name for name, _ in SUMMARY_COLUMNS]
    widths = [max([len(h), *(len(row[i]) for row in rows)]) for i, h in enumerate(headers)]
    lines = [" | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in rows:
        lines.append(" | ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    return lines


def summary_json(summary: Iterable[dict[str, Any]]) -> str:
    """``daily_summary()`` rows as JSON (dates as YYYY-mm-dd)."""
    return json.dumps([{**item, "date": item["date"].isoformat()} for item in summary], indent=2)


__all__ = [
    "RunRecorder",
    "append_report_line",
    "daily_summary",
    "fail_run",
    "format_duration",
    "local_datetime_text",
    "mark_interrupted_runs",
    "one_line",
    "process_is_alive",
    "recording_outcome",
    "redact",
    "report_file_header",
    "report_file_line",
    "summary_json",
    "summary_table",
]


# ---------------------------------------------------------------------------
# Ending a run that raised
# ---------------------------------------------------------------------------


@contextmanager
def recording_outcome(recorder: RunRecorder) -> Iterator[None]:
    """End the run as failed or interrupted when the block raises, then re-raise.

    A lost database connection becomes ``SyncAborted`` (exit status 2) with one
    sentence; the run is still marked failed when a new connection can say so.
    """
    try:
        yield
    except SyncAborted as exc:
        fail_run(recorder, str(exc))
        raise
    except (OperationalError, InterfaceError) as exc:
        message = f"the database went away: {first_line(exc)}"
        fail_run(recorder, message)
        raise SyncAborted(message) from exc
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            fail_run(recorder, f"interrupted: {type(exc).__name__}", SyncRun.Status.INTERRUPTED)
        else:
            fail_run(recorder, one_line(exc))
        raise


def fail_run(recorder: RunRecorder, message: str, status: str = SyncRun.Status.FAILED) -> None:
    """End the run as failed (or ``status``); on a broken connection, try once more on a new one.

    Never raises: recording must not hide the exception that ended the run.
    """
    try:
        recorder.finish(status, message)
        return
    except DatabaseError:
        pass
    except Exception:
        logger.exception("could not record the end of run %s", recorder.run.pk)
        return
    try:
        # The server may be up again (a restart, a killed backend): a new connection can say so.
        connection.close()
        SyncRun.objects.filter(pk=recorder.run.pk, status=SyncRun.Status.RUNNING).update(
            status=status, finished_at=timezone.now(), message=redact(message)
        )
    except DatabaseError:
        what = "failure" if status == SyncRun.Status.FAILED else "interruption"
        logger.error(
            "could not record the %s of run %s; the next run marks it interrupted",
            what,
            recorder.run.pk,
        )
