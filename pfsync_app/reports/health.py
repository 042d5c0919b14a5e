"""Is the nightly sync healthy? The one rule the health view, ``pf_report --check`` and the
admin's overview apply.

A *successful sync* is a nightly pf_sync that synced everything (not a dry run,
not ``--listing``, ``--only`` or ``--limit``) and finished, with or without item
errors (those alert by e-mail). A start refused because another run held the
lock (``skipped``) is neither a success nor a failure, and a run still going
counts as neither yet. Healthy means: the last successful sync finished less
than ``PF_SYNC_MAX_AGE_HOURS`` ago, and the last nightly pf_sync that ended did
not fail to run (``failed``, or ``interrupted`` by a kill or a crash).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.utils import timezone

from pfsync_app.conf import pfsync_settings
from pfsync_app.models import RunLock, SyncRun, WebhookEvent
from pfsync_app.reports.summary import format_age, local_datetime_text

SUCCEEDED = (SyncRun.Status.SUCCEEDED, SyncRun.Status.FINISHED_WITH_ERRORS)
FAILED_TO_RUN = (SyncRun.Status.FAILED, SyncRun.Status.INTERRUPTED)


def is_nightly(options: Any) -> bool:
    """Whether a pf_sync run's options are those of a nightly run: everything, for real."""
    options = options if isinstance(options, dict) else {}
    return not (
        options.get("dry_run")
        or options.get("listing_ids")
        or options.get("only")
        or options.get("limit") is not None
    )


def nightly_runs(*statuses: str) -> Any:
    """The nightly pf_sync runs with one of ``statuses``, newest first (a lazy iterator)."""
    runs = SyncRun.objects.filter(command=SyncRun.Command.SYNC, status__in=statuses).order_by(
        "-started_at", "-id"
    )
    # The options are JSON that SQLite and PostgreSQL query differently: read in Python.
    return (run for run in runs.iterator(chunk_size=100) if is_nightly(run.options))


def last_nightly(*statuses: str) -> SyncRun | None:
    """The newest nightly pf_sync run with one of ``statuses``, or None."""
    return next(nightly_runs(*statuses), None)


@dataclass(frozen=True)
class LockHolder:
    """Who holds the writer lock: the command and its pid, since when."""

    command: str
    pid: int
    since: dt.datetime


@dataclass(frozen=True)
class Health:
    """The nightly sync's health at ``checked_at``; ``reason`` says why in one line."""

    healthy: bool
    reason: str
    #: The failed run's own sentence; for people (pf_report --check), not for the view.
    detail: str
    checked_at: dt.datetime
    max_age_hours: float
    last_success: SyncRun | None
    last_run: SyncRun | None
    pending_events: int
    failed_events: int
    lock: LockHolder | None

    def sentence(self) -> str:
        """The reason, with the failed run's own message when there is one."""
        return f"{self.reason} ({self.detail})" if self.detail else self.reason

    @property
    def success_age(self) -> dt.timedelta | None:
        """How long ago the last successful sync finished."""
        if self.last_success is None:
            return None
        return self.checked_at - _ended(self.last_success)

    def as_dict(self) -> dict[str, Any]:
        """The health as the view's JSON: no personal data and no secret."""
        age = self.success_age
        return {
            "healthy": self.healthy,
            "reason": self.reason,
            "checked_at": self.checked_at.isoformat(),
            "max_age_hours": self.max_age_hours,
            "last_success": _run_dict(self.last_success),
            "last_success_at": _iso(_ended(self.last_success)) if self.last_success else None,
            "last_success_age_hours": (
                round(age.total_seconds() / 3600, 2) if age is not None else None
            ),
            "last_run": _run_dict(self.last_run),
            "last_run_status": self.last_run.status if self.last_run else None,
            "pending_webhook_events": self.pending_events,
            "failed_webhook_events": self.failed_events,
            "lock": (
                {"command": self.lock.command, "pid": self.lock.pid, "since": _iso(self.lock.since)}
                if self.lock
                else None
            ),
        }


def sync_health(now: dt.datetime | None = None) -> Health:
    """The nightly sync's health now (or at ``now``); raises DatabaseError when it cannot tell."""
    now = now or timezone.now()
    max_age = float(pfsync_settings.PF_SYNC_MAX_AGE_HOURS)
    last_success = last_nightly(*SUCCEEDED)
    last_ended = last_nightly(*SUCCEEDED, *FAILED_TO_RUN)
    last_run = last_nightly(*SyncRun.Status.values)
    problems = []
    detail = ""
    if last_ended is not None and last_ended.status in FAILED_TO_RUN:
        problems.append(
            f"the last nightly pf_sync (run {last_ended.pk}, "
            f"{local_datetime_text(last_ended.started_at)}) {last_ended.status}"
        )
        detail = _first_line(last_ended.message)
    if last_success is None:
        problems.insert(0, "no nightly pf_sync has succeeded yet")
    else:
        age = now - _ended(last_success)
        if age.total_seconds() / 3600 >= max_age:
            problems.insert(
                0,
                f"the last successful nightly pf_sync (run {last_success.pk}) finished "
                f"{format_age(age)} ago, more than PF_SYNC_MAX_AGE_HOURS={max_age:g}",
            )
    if problems:
        reason = "; ".join(problems)
    else:
        reason = (
            f"the last nightly pf_sync (run {last_success.pk}) finished "
            f"{format_age(now - _ended(last_success))} ago, within {max_age:g} h"
        )
    return Health(
        healthy=not problems,
        reason=reason,
        detail=detail,
        checked_at=now,
        max_age_hours=max_age,
        last_success=last_success,
        last_run=last_run,
        pending_events=WebhookEvent.objects.filter(status=WebhookEvent.Status.PENDING).count(),
        failed_events=WebhookEvent.objects.filter(status=WebhookEvent.Status.FAILED).count(),
        lock=lock_holder(),
    )


def lock_holder() -> LockHolder | None:
    """Who holds the writer lock, when a run that is still going holds it."""
    row = RunLock.objects.filter(pid__gt=0).order_by("-acquired_at").first()
    if row is None:
        return None
    # A killed process leaves its row behind; only a run still marked running holds it.
    running = SyncRun.objects.filter(
        status=SyncRun.Status.RUNNING, pid=row.pid, hostname=row.hostname
    ).exists()
    return LockHolder(row.command or "pf_sync", row.pid, row.acquired_at) if running else None


def _ended(run: SyncRun) -> dt.datetime:
    return run.finished_at or run.started_at


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


def _first_line(text: str) -> str:
    lines = (text or "").strip().splitlines()
    return lines[0] if lines else ""


def _run_dict(run: SyncRun | None) -> dict[str, Any] | None:
    if run is None:
        return None
    return {
        "id": run.pk,
        "status": run.status,
        "started_at": _iso(run.started_at),
        "finished_at": _iso(run.finished_at),
    }
