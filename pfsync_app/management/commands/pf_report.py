"""pf_report: pf_sync totals per day, one run's entries, or whether the nightly sync is healthy."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.db import DatabaseError

from pfsync_app.database import database_problem
from pfsync_app.exceptions import SyncAborted
from pfsync_app.management.base import COULD_NOT_RUN, PfsyncCommand
from pfsync_app.management.options import add_json, positive_int
from pfsync_app.models import SyncRun
from pfsync_app.reports.causes import cause_label
from pfsync_app.reports.failures import entry_dict, run_entries, summarize_failures
from pfsync_app.reports.health import sync_health
from pfsync_app.reports.summary import (
    daily_summary,
    format_duration,
    local_datetime_text,
    options_text,
    summary_json,
    summary_table,
)
from pfsync_app.words import plural

MAX_DAYS = 3650


class Command(PfsyncCommand):
    help = (
        "Show what pf_sync did per day (in TIME_ZONE days), newest first; --run N: one run's "
        "entries; --check: whether the nightly sync is healthy (exit 0, 1 when not)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--days",
            type=days_back,
            default=7,
            metavar="N",
            help=f"How many days to show, today included (1 to {MAX_DAYS}; default %(default)s).",
        )
        which = parser.add_mutually_exclusive_group()
        which.add_argument(
            "--run",
            type=positive_int,
            metavar="N",
            help="Print run N: what failed by cause, then every entry (errors first).",
        )
        which.add_argument(
            "--check",
            action="store_true",
            help=(
                "Exit 0 when the nightly pf_sync is healthy, 1 when it is not (as the health "
                "view says), 2 when it cannot be checked."
            ),
        )
        add_json(parser)

    def records_run(self, options: dict[str, Any]) -> bool:
        return False  # it reads runs

    def handle(self, *args: Any, **options: Any) -> None:
        if options["check"]:
            self.check_health(options["json"])
        elif options["run"] is not None:
            self.print_run(options["run"], options["json"])
        else:
            try:  # again, for call_command(days=...), which skips argparse's types
                days = days_back(options["days"])
            except argparse.ArgumentTypeError as exc:
                raise CommandError(f"argument --days: {exc}") from None
            self.print_days(days, options["json"])

    def print_days(self, days: int, as_json: bool) -> None:
        """The per-day totals table (or JSON)."""
        summary = daily_summary(days)
        if as_json:
            self.stdout.write(summary_json(summary))
            return
        for line in summary_table(summary):
            self.stdout.write(line)

    def print_run(self, run_id: int, as_json: bool) -> None:
        """One run: its line, its failures by cause, and every entry it kept."""
        run = SyncRun.objects.filter(pk=run_id).first()
        if run is None:
            raise CommandError(
                f"there is no run {run_id} (the admin's Runs list every run with its id).",
                returncode=COULD_NOT_RUN,
            )
        summary = summarize_failures(run, examples=0)
        entries = run_entries(run.pk)
        if as_json:
            self.stdout.write(
                json.dumps(
                    {
                        "run": {
                            "id": run.pk,
                            "command": run.command,
                            "status": run.status,
                            "started_at": run.started_at.isoformat(),
                            "finished_at": run.finished_at.isoformat() if run.finished_at else None,
                            "message": run.message,
                            "options": run.options,
                            "counters": {name: getattr(run, name) for name in SyncRun.COUNTERS},
                            "entries_dropped": run.entries_dropped,
                        },
                        "failures": summary.as_dict(),
                        "entries": [entry_dict(entry) for entry in entries.iterator()],
                    },
                    ensure_ascii=False,
                    indent=2,
                )
            )
            return
        out = self.stdout
        out.write(f"Run {run.pk}: {run.command}, {run.get_status_display()}")
        out.write(
            f"  started {local_datetime_text(run.started_at)}, took {format_duration(run.duration)}"
        )
        if run.options:
            out.write(f"  options: {options_text(run.options)}")
        if run.message:
            out.write(f"  {run.message}")
        for line in summary.lines(examples=0):
            out.write(self.style.ERROR(line))
        count = 0
        for entry in entries.iterator():
            count += 1
            cause = f" [{cause_label(entry.reason, entry.http_status)}]" if entry.reason else ""
            subject = f" {entry.pf_id}" if entry.pf_id else ""
            out.write(f"{entry.level:<7} {entry.action}{subject}{cause}: {entry.message}")
        out.write(plural(count, "entry") + _dropped(run))

    def check_health(self, as_json: bool) -> None:
        """The health rule: exit 0 healthy, 1 unhealthy (SyncAborted, exit 2: cannot tell)."""
        try:
            health = sync_health()
        except DatabaseError as exc:
            raise SyncAborted(f"cannot check the nightly sync: {database_problem(exc)}") from exc
        if as_json:
            self.stdout.write(json.dumps(health.as_dict(), indent=2))
        else:
            word = "healthy" if health.healthy else "UNHEALTHY"
            self.stdout.write(f"{word}: {health.sentence()}")
        if not health.healthy:
            sys.exit(1)


def _dropped(run: SyncRun) -> str:
    if not run.entries_dropped:
        return "."
    return f"; {run.entries_dropped} more were not kept (PF_REPORT_MAX_ENTRIES)."


def days_back(value: Any) -> int:
    """argparse type for --days: a whole number of days within 1..MAX_DAYS.

    Refused the way every option is: argparse names --days, exit status 2.
    """
    try:
        days = int(str(value).strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a whole number of days, got {value!r}"
        ) from None
    if not 1 <= days <= MAX_DAYS:
        raise argparse.ArgumentTypeError(f"expected 1 to {MAX_DAYS} days, got {days}")
    return days
