"""Run recording: every pf_sync, pf_repair, pf_check and webhook batch leaves a SyncRun row.

``RunRecorder`` owns one run: worker threads add counters and report entries to
it in memory, the thread that started it writes them to the database in bulk
(``checkpoint()``, ``finish()``).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from types import TracebackType
from typing import Any

from django.db import DatabaseError, InterfaceError, OperationalError, connection, transaction
from django.utils import timezone

from pfsync_app.conf import pfsync_settings
from pfsync_app.database import missing_pfsync_table
from pfsync_app.exceptions import SyncAborted, first_line
from pfsync_app.models import ReportEntry, SyncRun
from pfsync_app.reports.causes import Cause
from pfsync_app.reports.failures import run_message
from pfsync_app.reports.logs import (
    end_current_run,
    one_line,
    redact,
    set_current_run,
)
from pfsync_app.reports.report_file import report_file_failure
from pfsync_app.writers.events import storable_payload
from pfsync_app.writers.fit import clean_text
from pfsync_app.writers.lock import process_is_alive

logger = logging.getLogger(__name__)


# Commands that hold the one-at-a-time lock: a running row of theirs is dead when we hold it.
LOCKED_COMMANDS = (SyncRun.Command.SYNC, SyncRun.Command.REPAIR, SyncRun.Command.AREAS)


# Longest stored texts; longer ones are cut rather than failing a whole bulk insert.
_FIELD_LIMITS = {
    name: ReportEntry._meta.get_field(name).max_length
    for name in ("action", "pf_id", "object_type", "reason", "url")
}


MAX_MESSAGE_CHARS = 10_000


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


def writing_run_in_progress() -> bool:
    """Whether a pf_sync or pf_repair is running (hours, maybe): waiting for it is pointless."""
    return SyncRun.objects.filter(
        command__in=[SyncRun.Command.SYNC, SyncRun.Command.REPAIR],
        status=SyncRun.Status.RUNNING,
    ).exists()


def _text(value: object) -> str:
    """Text fit for any database: without the NUL characters and lone surrogates that
    PostgreSQL and UTF-8 refuse, which API data (an id, a name) may echo into a message."""
    return clean_text(str(value or ""))[0]


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

    @classmethod
    def record_refused(
        cls,
        command: str,
        options: dict[str, Any] | None,
        message: str,
        status: str = SyncRun.Status.FAILED,
    ) -> None:
        """Record a run that could not start: failed, or skipped when another run held the lock.

        Nothing is recorded when pfsync's own tables cannot be written (the
        database is down or not migrated): the caller's sentence says why.
        """
        try:
            with cls.start(command, options=options, report_file=False) as recorder:
                recorder.finish(status, message)
        except (DatabaseError, SyncAborted):
            # The caller's sentence is on stderr already: a second line would repeat it.
            logger.debug("could not record the %s run that did not start: %s", command, message)

    # -- called from any thread ---------------------------------------------

    @property
    def counters(self) -> dict[str, int]:
        """The counters so far."""
        with self._lock:
            return dict(self._counters)

    @property
    def finished(self) -> bool:
        """Whether the run has ended."""
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
        cause: Cause | None = None,
        url: str = "",
    ) -> None:
        """Record one report entry (kept up to PF_REPORT_MAX_ENTRIES, then only counted).

        ``cause`` says why something failed (grouped by ``reports.failures``);
        ``url`` is the address that failed, without its query string.
        """
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
                self._make_entry(level, action, message, pf_id, object_type, object_id, cause, url)
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
        try:
            return self._end(status, message)
        finally:
            # Even when saving failed: later log lines of this process are no longer its.
            end_current_run(self.run.pk)

    def _end(self, status: str | None, message: str) -> SyncRun:
        """``finish``'s work: the REPORT_FILE line, the last entries, the run's row."""
        run = self.run
        run.finished_at = timezone.now()
        run.message = _text(redact(message))
        for name, value in self.counters.items():
            setattr(run, name, value)
        run.status = status or _status_for(run.errors)
        if self.report_file:
            problem = report_file_failure(run, None)
            if problem:
                # About the run itself, like the drop note: kept even past the bound.
                self.count("errors")
                self._append_unbounded(
                    ReportEntry.Level.ERROR, "report_file", problem.message, problem.cause
                )
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
        if not run.message:
            # The job said nothing itself: what it did and what failed, in one line.
            run.message = redact(run_message(run))
        run.save(update_fields=["status", "finished_at", "message"])
        return run

    def __enter__(self) -> RunRecorder:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        """End the run: finished when the block ended normally, else failed or interrupted.

        This is the one way a run ends. A block that raised ends the run as failed
        (``SyncAborted``'s sentence as its message), or interrupted on Ctrl-C or a
        signal; a lost database connection becomes ``SyncAborted`` (exit status 2)
        and the run is still marked failed when a new connection can say so.
        Recording never hides the exception that ended the run.
        """
        if exc is None:
            self.finish()
            return False
        if isinstance(exc, SyncAborted):
            self._end_quietly(SyncRun.Status.FAILED, str(exc))
        elif isinstance(exc, DatabaseError) and (dropped := missing_pfsync_table(exc)):
            # A table dropped by hand under applied migrations: not a lost connection.
            self._end_quietly(SyncRun.Status.FAILED, dropped)
            raise SyncAborted(dropped) from exc
        elif isinstance(exc, OperationalError | InterfaceError):
            message = f"the database went away: {first_line(exc)}"
            self._end_quietly(SyncRun.Status.FAILED, message)
            raise SyncAborted(message) from exc
        elif isinstance(exc, KeyboardInterrupt | SystemExit):
            self._end_quietly(SyncRun.Status.INTERRUPTED, f"interrupted: {type(exc).__name__}")
        else:
            self._end_quietly(SyncRun.Status.FAILED, one_line(exc))
        return False

    def _end_quietly(self, status: str, message: str) -> None:
        """End the run with ``status``; on a broken connection, try once more on a new one."""
        try:
            self.finish(status, message)
            return
        except DatabaseError:
            pass
        except Exception:
            logger.exception("could not record the end of run %s", self.run.pk)
            return
        try:
            # The server may be up again (a restart, a killed backend): a new connection can say so.
            connection.close()
            SyncRun.objects.filter(pk=self.run.pk, status=SyncRun.Status.RUNNING).update(
                status=status, finished_at=timezone.now(), message=_text(redact(message))
            )
        except DatabaseError:
            what = "failure" if status == SyncRun.Status.FAILED else "interruption"
            logger.error(
                "could not record the %s of run %s; the next run marks it interrupted",
                what,
                self.run.pk,
            )
        finally:
            end_current_run(self.run.pk)

    # -- internals ------------------------------------------------------------

    def _make_entry(
        self,
        level: str,
        action: str,
        message: str,
        pf_id: str,
        object_type: str,
        object_id: int | None,
        cause: Cause | None = None,
        url: str = "",
    ) -> ReportEntry:
        return ReportEntry(
            run_id=self.run.pk,
            level=level,
            action=_text(action)[: _FIELD_LIMITS["action"]],
            pf_id=_text(pf_id)[: _FIELD_LIMITS["pf_id"]],
            object_type=_text(object_type)[: _FIELD_LIMITS["object_type"]],
            object_id=object_id,
            message=_text(redact(message))[:MAX_MESSAGE_CHARS],
            reason=_text(cause.reason if cause else "")[: _FIELD_LIMITS["reason"]],
            http_status=cause.http_status if cause else None,
            url=_text(redact(url))[: _FIELD_LIMITS["url"]],
            created_at=timezone.now(),
        )

    def _append_unbounded(
        self, level: str, action: str, message: str, cause: Cause | None = None
    ) -> None:
        with self._lock:
            self._buffer.append(self._make_entry(level, action, message, "", "", None, cause))

    def _check_owner(self, what: str) -> None:
        if threading.get_ident() != self._owner:
            raise RuntimeError(
                f"RunRecorder.{what}() must be called from the thread that started run "
                f"{self.run.pk}; worker threads may only count and add entries."
            )


def _status_for(errors: int) -> str:
    return SyncRun.Status.FINISHED_WITH_ERRORS if errors > 0 else SyncRun.Status.SUCCEEDED


def _json_safe(options: dict[str, Any]) -> dict[str, Any]:
    """Options as stored JSON: paths, dates and the like become strings, text as the
    database can store it (an area name given with NUL, say)."""
    return storable_payload(json.loads(json.dumps(options, default=str)))
