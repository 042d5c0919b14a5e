"""The overview's 30-day chart, drawn on the server as SVG: no JavaScript, no CDN, no library.

One row per measure (created, updated, unpublished, images downloaded,
failures), one column per day, one bar per nightly pf_sync run, each row scaled
to its own largest value (written at its right end) so that 15 created and 1,245
images downloaded are both readable. A day without a nightly run is shaded, and
a run that could not run is marked with a cross, so a cron job that stopped is
seen at a glance. Each bar links to its run and names its figures on hover.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from pfsync_app.models import SyncRun
from pfsync_app.reports.overview import DayOfRuns
from pfsync_app.reports.summary import local_datetime_text

# (SyncRun counter, row label, CSS class of its bars)
SERIES: tuple[tuple[str, str, str], ...] = (
    ("properties_created", "created", "pf-created"),
    ("properties_updated", "updated", "pf-updated"),
    ("properties_unpublished", "unpublished", "pf-unpublished"),
    ("images_downloaded", "images downloaded", "pf-images"),
    ("errors", "failures", "pf-failures"),
)

WIDTH = 760
LABELS = 128  # the row labels, left
MAXES = 56  # each row's largest value, right
ROW = 38
GAP = 8
TOP = 6
AXIS = 22

FAILED = (SyncRun.Status.FAILED, SyncRun.Status.INTERRUPTED)
ENDED = (SyncRun.Status.SUCCEEDED, SyncRun.Status.FINISHED_WITH_ERRORS)


def runs_chart(days: Sequence[DayOfRuns], run_url: Callable[[SyncRun], str]) -> SafeString:
    """The chart of ``days`` as inline SVG; ``run_url`` gives each bar's link."""
    if not days:
        return SafeString("")
    height = TOP + len(SERIES) * (ROW + GAP) + AXIS
    slot = (WIDTH - LABELS - MAXES) / len(days)
    parts = [_day_backgrounds(days, slot, height - AXIS)]
    for row, (counter, label, css) in enumerate(SERIES):
        parts.append(_row(days, slot, row, counter, label, css, run_url))
    parts.append(_axis(days, slot, height - AXIS))
    first, last = days[0].day, days[-1].day
    return format_html(
        '<svg class="pf-chart" viewBox="0 0 {} {}" role="img" aria-labelledby="pf-chart-title">'
        '<title id="pf-chart-title">Nightly pf_sync runs from {} to {}: created, updated, '
        "unpublished, images downloaded and failures per run</title>{}</svg>",
        WIDTH,
        height,
        first.isoformat(),
        last.isoformat(),
        mark_safe("".join(parts)),  # noqa: S308 (each part is built with format_html)
    )


def _x(slot: float, index: int) -> float:
    return LABELS + slot * index


def _day_backgrounds(days: Sequence[DayOfRuns], slot: float, bottom: float) -> str:
    """Shade the days without a nightly run, and those whose runs could not run."""
    shades = []
    for index, day in enumerate(days):
        statuses = {run.status for run in day.runs}
        if not day.runs:
            css, why = "pf-noruns", "no nightly pf_sync"
        elif statuses & set(FAILED) and not statuses & set(ENDED):
            css, why = "pf-norun-ok", "no nightly pf_sync ran to the end"
        else:
            continue
        shades.append(
            (css, f"{_x(slot, index):.1f}", TOP, f"{slot:.1f}", f"{bottom - TOP:.1f}", day.day, why)
        )
    return format_html_join(
        "",
        '<rect class="{}" x="{}" y="{}" width="{}" height="{}"><title>{}: {}</title></rect>',
        shades,
    )


def _row(
    days: Sequence[DayOfRuns],
    slot: float,
    row: int,
    counter: str,
    label: str,
    css: str,
    run_url: Callable[[SyncRun], str],
) -> str:
    top = TOP + row * (ROW + GAP)
    base = top + ROW
    largest = max((getattr(run, counter) for day in days for run in day.runs), default=0)
    parts = [
        format_html(
            '<text class="pf-label" x="{}" y="{}">{}</text>'
            '<line class="pf-base" x1="{}" y1="{}" x2="{}" y2="{}"></line>'
            '<text class="pf-max" x="{}" y="{}">{}</text>',
            LABELS - 8,
            base - 4,
            label,
            LABELS,
            base,
            WIDTH - MAXES,
            base,
            WIDTH - MAXES + 6,
            top + 11,
            f"{largest:,}",
        )
    ]
    for index, day in enumerate(days):
        if not day.runs:
            continue
        width = max((slot - 3) / len(day.runs), 1.0)
        for n, run in enumerate(day.runs):
            x = _x(slot, index) + 1.5 + n * width
            value = getattr(run, counter)
            when = local_datetime_text(run.started_at)[:16]
            if counter == "errors" and run.status in FAILED:
                parts.append(
                    format_html(
                        '<a href="{}"><text class="pf-failed" x="{}" y="{}">✗<title>{} run {}: '
                        "{}</title></text></a>",
                        run_url(run),
                        f"{x + width / 2:.1f}",
                        base - 5,
                        when,
                        run.pk,
                        run.get_status_display(),
                    )
                )
                continue
            if not value:
                continue
            bar = max(value / largest * (ROW - 3), 1.5)
            parts.append(
                format_html(
                    '<a href="{}"><rect class="{}" x="{}" y="{}" width="{}" height="{}">'
                    "<title>{} run {}: {} {}</title></rect></a>",
                    run_url(run),
                    css,
                    f"{x:.1f}",
                    f"{base - bar:.1f}",
                    f"{max(width - 1, 1):.1f}",
                    f"{bar:.1f}",
                    when,
                    run.pk,
                    f"{value:,}",
                    label,
                )
            )
    return "".join(parts)


def _axis(days: Sequence[DayOfRuns], slot: float, bottom: float) -> str:
    """Dates under every seventh day, counted back from today."""
    today = timezone.localdate()
    ticks = []
    for index in range(len(days) - 1, -1, -7):
        day = days[index].day
        text = "today" if day == today else day.strftime("%d %b")
        ticks.append((f"{_x(slot, index) + slot / 2:.1f}", bottom + 15, text))
    return format_html_join("", '<text class="pf-tick" x="{}" y="{}">{}</text>', ticks)
