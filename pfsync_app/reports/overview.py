"""What the admin's overview page shows, read in one place: how last night went, and what waits.

``overview()`` gathers last night's nightly pf_sync with its failures by cause,
the nightly runs of the last 30 days for the chart, the locations waiting for an
area, the image files missing at the last full pf_check, the webhook events
pending or failed, and the schedule's health. The admin renders it; nothing here
knows HTML.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field

from django.db import DatabaseError
from django.db.models import Count, Min
from django.utils import timezone

from pfsync_app.models import ReportEntry, SyncRun, WebhookEvent
from pfsync_app.reports.failures import FailureSummary, summarize_failures
from pfsync_app.reports.health import Health, is_nightly, nightly_runs, sync_health
from pfsync_app.writers.areas import UnmappedLocation, unmapped_locations

#: Days the chart covers, today included.
CHART_DAYS = 30

#: Unmapped locations listed on the page; the rest are counted.
UNMAPPED_SHOWN = 10

# pf_check's error actions: one per reason.
CHECK_ACTIONS = ("image.missing", "image.empty", "image.corrupt")


@dataclass(frozen=True)
class DayOfRuns:
    """One day of the chart: the nightly pf_sync runs that started on it (oldest first)."""

    day: dt.date
    runs: tuple[SyncRun, ...]


@dataclass(frozen=True)
class CheckFindings:
    """What the last full pf_check found missing, by reason."""

    run: SyncRun
    reasons: dict[str, int]

    @property
    def total(self) -> int:
        """Image rows whose file was missing, empty or corrupt (entries past the bound too)."""
        return max(self.run.errors, sum(self.reasons.values()))


@dataclass
class OverviewData:
    """Everything the overview page shows."""

    last_sync: SyncRun | None = None
    last_sync_failures: FailureSummary | None = None
    days: list[DayOfRuns] = field(default_factory=list)
    unmapped: list[UnmappedLocation] = field(default_factory=list)
    unmapped_total: int = 0
    unmapped_properties: int = 0
    last_check: CheckFindings | None = None
    pending_events: int = 0
    failed_events: int = 0
    oldest_pending: dt.datetime | None = None
    health: Health | None = None
    problems: list[str] = field(default_factory=list)


def overview(now: dt.datetime | None = None, *, examples: int = 3) -> OverviewData:
    """The overview at ``now``; a part that cannot be read is left out and named in problems."""
    now = now or timezone.now()
    data = OverviewData()
    data.last_sync = next(
        (run for run in nightly_runs(*SyncRun.Status.values) if run.started_at <= now), None
    )
    if data.last_sync is not None:
        data.last_sync_failures = summarize_failures(data.last_sync, examples=examples)
    data.days = chart_days(now)
    try:
        waiting = unmapped_locations()
    except DatabaseError as exc:  # a host table pfsync reads may be missing or renamed
        data.problems.append(f"unmapped locations cannot be read: {exc}")
        waiting = []
    data.unmapped = waiting[:UNMAPPED_SHOWN]
    data.unmapped_total = len(waiting)
    data.unmapped_properties = sum(location.listings for location in waiting)
    data.last_check = last_check_findings()
    events = WebhookEvent.objects.filter(
        status__in=[WebhookEvent.Status.PENDING, WebhookEvent.Status.FAILED]
    )
    counts = Counter(events.values_list("status", flat=True))
    data.pending_events = counts[WebhookEvent.Status.PENDING]
    data.failed_events = counts[WebhookEvent.Status.FAILED]
    data.oldest_pending = events.filter(status=WebhookEvent.Status.PENDING).aggregate(
        oldest=Min("received_at")
    )["oldest"]
    data.health = sync_health(now)
    return data


def chart_days(now: dt.datetime, days: int = CHART_DAYS) -> list[DayOfRuns]:
    """The last ``days`` days (TIME_ZONE days, oldest first) with their nightly pf_sync runs."""
    tz = timezone.get_default_timezone()
    today = timezone.localtime(now, tz).date()
    first = today - dt.timedelta(days=days - 1)
    since = timezone.make_aware(dt.datetime.combine(first, dt.time.min), tz)
    by_day: dict[dt.date, list[SyncRun]] = {}
    runs = SyncRun.objects.filter(
        command=SyncRun.Command.SYNC, started_at__gte=since, started_at__lte=now
    ).order_by("started_at", "id")
    for run in runs:
        if is_nightly(run.options):
            by_day.setdefault(timezone.localtime(run.started_at, tz).date(), []).append(run)
    return [
        DayOfRuns(day, tuple(by_day.get(day, ())))
        for day in (first + dt.timedelta(days=offset) for offset in range(days))
    ]


def last_check_findings() -> CheckFindings | None:
    """What the last finished pf_check of every image (not --property) found missing."""
    checks = SyncRun.objects.filter(
        command=SyncRun.Command.CHECK,
        status__in=[SyncRun.Status.SUCCEEDED, SyncRun.Status.FINISHED_WITH_ERRORS],
    ).order_by("-started_at", "-id")
    run = next(
        (
            run
            for run in checks.iterator(chunk_size=20)
            if not (isinstance(run.options, dict) and run.options.get("property"))
        ),
        None,
    )
    if run is None:
        return None
    rows = (
        ReportEntry.objects.filter(run_id=run.pk, action__in=CHECK_ACTIONS)
        .values_list("action")
        .annotate(n=Count("id"))
        .order_by()
    )
    reasons = {action.split(".", 1)[1]: n for action, n in rows}
    return CheckFindings(run, dict(reasons))
