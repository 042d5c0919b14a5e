"""pf_repair: download missing, empty or corrupt image files again and point their rows at them."""

from __future__ import annotations

import json
import sys
from typing import Any

from django.core.management.base import CommandParser

from pfsync_app.jobs.check import MissingImage
from pfsync_app.jobs.repair import (
    RepairedImage,
    RepairEvents,
    RepairFailure,
    RepairOptions,
    RepairResult,
    repair_images,
)
from pfsync_app.management.base import PfsyncCommand
from pfsync_app.management.options import (
    add_concurrency,
    add_dry_run,
    add_json,
    add_property,
    positive_int,
)
from pfsync_app.words import plural


class PrintedEvents(RepairEvents):
    """Prints the old service's lines as the repair goes."""

    def __init__(self, command: PfsyncCommand, dry_run: bool) -> None:
        self.command = command
        self.dry_run = dry_run

    def found(self, total: int, selected: list[MissingImage]) -> None:
        out = self.command.stdout
        if not total:
            out.write(self.command.style.SUCCESS("✓ No missing images found. Nothing to repair."))
            return
        limited = f" (the first {len(selected)}: --limit)" if len(selected) < total else ""
        if self.dry_run:
            out.write(f"Found {plural(total, 'missing image')}. Would repair{limited}:")
            for item in selected:
                out.write(
                    f"  image {item.image_id} of property {item.property_id} "
                    f"(pf_id: {item.pf_id}): {item.name or '(no file)'} {item.reason}, "
                    f"from {item.source_url or '(no URL)'}"
                )
            return
        out.write(f"Found {plural(total, 'missing image')}. Starting repair{limited}...")

    def repaired(self, item: RepairedImage) -> None:
        moved = " (new URL from the listing)" if item.url_changed else ""
        self.command.stdout.write(
            self.command.style.SUCCESS(
                f"Successfully repaired image for property {item.image.property_id}: "
                f"{item.name}{moved}"
            )
        )

    def failed(self, failure: RepairFailure) -> None:
        item = failure.image
        self.command.stdout.write(
            self.command.style.ERROR(
                f"Failed to repair image {item.image_id} for property {item.property_id}: "
                f"{failure.cause}"
            )
        )


class Command(PfsyncCommand):
    help = (
        "Download missing or empty image files again (from the listing's current URL when "
        "Property Finder moved them); never overwrites or deletes a file."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        add_dry_run(parser, "List what would be repaired; download and write nothing.")
        parser.add_argument(
            "--limit",
            type=positive_int,
            metavar="N",
            help="Repair at most N images (default: all).",
        )
        add_property(parser, "Repair")
        parser.add_argument(
            "--verify",
            action="store_true",
            help=(
                "Also repair files whose size or sha256 differs from what pf_sync stored, "
                "or that no longer decode as an image."
            ),
        )
        add_concurrency(parser)
        add_json(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        repair_options = RepairOptions(
            dry_run=options["dry_run"],
            limit=options["limit"],
            pf_id=options["property"],
            verify=options["verify"],
            concurrency=options["concurrency"],
        )
        quiet = options["json"] or options["verbosity"] == 0
        if not quiet:
            self.stdout.write("PF IMAGE REPAIR STARTED...")
        events = RepairEvents() if quiet else PrintedEvents(self, repair_options.dry_run)
        result = repair_images(repair_options, events=events)
        if options["json"]:
            self.stdout.write(json.dumps(result.as_json(), ensure_ascii=False))
        elif not quiet:
            self.print_summary(result)
            if options["verbosity"] > 1:
                self.stdout.write(f"Recorded as run {result.run_id} (python manage.py pf_report).")
        if result.exit_code:
            sys.exit(result.exit_code)

    def print_summary(self, result: RepairResult) -> None:
        """The final count."""
        if not result.total_found:
            return
        if result.dry_run:
            self.stdout.write(
                self.style.WARNING(
                    f"DRY RUN: nothing was downloaded; {result.still_missing} still missing."
                )
            )
            return
        style = self.style.SUCCESS if not result.still_missing else self.style.WARNING
        self.stdout.write(
            style(
                f"Repaired {len(result.repaired)} of {plural(len(result.selected), 'image')}; "
                f"{result.still_missing} still missing."
            )
        )
