"""What runs did, for people: per-day totals, and dates and durations as text."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from typing import Any

from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from pfsync_app.models import SyncRun

REPORT_DATE_FORMAT = "%Y-%m-%d %H:%M:%S"


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


def format_age(value: dt.timedelta | None) -> str:
    """How long ago, roughly, for people: "40 min", "5.2 h", "3 days"."""
    if value is None:
        return ""
    hours = value.total_seconds() / 3600
    if hours < 1:
        return f"{max(0, round(hours * 60))} min"
    if hours < 48:
        return f"{hours:.1f} h"
    return f"{hours / 24:.0f} days"


def options_items(options: Any) -> list[tuple[str, str]]:
    """A run's options as (name, value) text, by name: ``("dry run", "no")``, ``("limit", "—")``.

    By name, since PostgreSQL's JSON keeps no order of its own.
    """
    if not isinstance(options, dict):
        return []
    return [
        (str(key).replace("_", " "), _option_value(value)) for key, value in sorted(options.items())
    ]


def options_text(options: Any) -> str:
    """A run's options on one line: "dry run: no, only: —, listing ids: none, ..."."""
    return ", ".join(f"{name}: {value}" for name, value in options_items(options))


def _option_value(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None:
        return "—"
    if isinstance(value, list | tuple):
        return ", ".join(str(item) for item in value) if value else "none"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items()) if value else "none"
    return str(value)


SUMMARY_COUNTERS = SyncRun.COUNTERS

# The old service's counters as its summary named them, in its order (with republished,
# which it never did, after unpublished).
COUNTER_LABELS: tuple[tuple[str, str], ...] = (
    ("properties_created", "Properties created"),
    ("properties_updated", "Properties updated"),
    ("properties_unpublished", "Properties unpublished"),
    ("properties_republished", "Properties republished"),
    ("images_downloaded", "Images downloaded"),
    ("images_deactivated", "Images deactivated"),
    ("images_failed", "Images failed"),
    ("users_created", "Users created"),
    ("users_updated", "Users updated"),
    ("errors", "Errors"),
)

#: The same counters in a dry run, which writes nothing: what the real run would do.
DRY_RUN_LABELS: dict[str, str] = {
    "properties_created": "Would create properties",
    "properties_updated": "Would update properties",
    "properties_unpublished": "Would unpublish properties",
    "properties_republished": "Would republish properties",
    "images_downloaded": "Would download images",
    "images_deactivated": "Would deactivate images",
    "users_created": "Would create users",
    "users_updated": "Would update users",
}


def counter_labels(dry_run: bool = False) -> list[tuple[str, str]]:
    """COUNTER_LABELS, or in a dry run the verbs of what the real run would do."""
    if not dry_run:
        return list(COUNTER_LABELS)
    return [(key, DRY_RUN_LABELS.get(key, label)) for key, label in COUNTER_LABELS]


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
