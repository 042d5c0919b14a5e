"""pf_schema: the column map in effect, and what a site could add to hold what it lacks."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import CommandParser

from pfsync_app.database import connection_problem
from pfsync_app.exceptions import SyncAborted
from pfsync_app.hostschema import schema_report
from pfsync_app.management.base import PfsyncCommand
from pfsync_app.management.options import add_json, database_alias


class Command(PfsyncCommand):
    help = (
        "Print the column map in effect for each host table (pfsync field -> host column -> "
        "type), and the Django model fields a site could add for the fields it has no column for."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--database",
            default="default",
            type=database_alias,
            help="The database alias (a key of DATABASES) to compare the map with "
            "(default %(default)s).",
        )
        add_json(parser, "map")

    def records_run(self, options: dict[str, Any]) -> bool:
        return False  # it compares the map with the database

    def handle(self, *args: Any, **options: Any) -> None:
        # A database that cannot be reached would show every host table as missing.
        problem = connection_problem(options["database"])
        if problem:
            raise SyncAborted(problem)
        reports = schema_report(options["database"])
        if options["json"]:
            self.stdout.write(json.dumps([r.as_dict() for r in reports], ensure_ascii=False))
            return
        for report in reports:
            self.stdout.write(
                self.style.MIGRATE_HEADING(f"{report.key}: {report.table or '(none)'}")
            )
            if report.table is None:
                self.stdout.write(
                    f"  The site has no such table (PFSYNC_HOST[{report.key!r}] is None)."
                )
            elif not report.exists:
                self.stdout.write(self.style.ERROR(f"  Table {report.table} does not exist."))
            width = max((len(line.name) for line in report.fields), default=0)
            columns = max((len(line.column or "-") for line in report.fields), default=0)
            for line in report.fields:
                text = f"  {line.name:<{width}}  ->  {line.column or '-':<{columns}}  {line.type}"
                if line.type == "missing":
                    text = self.style.ERROR(text)
                self.stdout.write(text)
            for column, path, kind in report.extra:
                self.stdout.write(f"  extra: {column} <- {path}  {kind}")
            for column, value in report.defaults:
                self.stdout.write(f"  default: {column} = {value}")
            if report.receivers:
                self.stdout.write(f"  filled by receivers: {', '.join(report.receivers)}")
            if report.paste:
                self.stdout.write(
                    "  To hold the fields it has no column for, a site could add to its model "
                    "(then map them in PFSYNC_HOST):"
                )
                for line in report.paste:
                    self.stdout.write(f"      {line}")
            self.stdout.write("")
