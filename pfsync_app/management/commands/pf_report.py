"""pf_report: pf_sync totals per day, as a table or JSON."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser

from pfsync_app.management.base import PfsyncCommand
from pfsync_app.reports.summary import daily_summary, summary_json, summary_table

MAX_DAYS = 3650


class Command(PfsyncCommand):
    help = "Show what pf_sync did per day (in TIME_ZONE days), newest first."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--days",
            default="7",
            help=f"How many days to show, today included (1 to {MAX_DAYS}; default 7).",
        )
        parser.add_argument("--json", action="store_true", help="Print JSON instead of a table.")

    def handle(self, *args: Any, **options: Any) -> None:
        days = _parse_days(options["days"])
        summary = daily_summary(days)
        if options["json"]:
            self.stdout.write(summary_json(summary))
            return
        for line in summary_table(summary):
            self.stdout.write(line)


def _parse_days(value: Any) -> int:
    """--days as a whole number of days within 1..MAX_DAYS."""
    try:
        days = int(str(value).strip())
    except ValueError:
        raise CommandError(f"--days must be a whole number of days, got {value!r}.") from None
    if not 1 <= days <= MAX_DAYS:
        raise CommandError(f"--days must be between 1 and {MAX_DAYS}, got {days}.")
    return days
