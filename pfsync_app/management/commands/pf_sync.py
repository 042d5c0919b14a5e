"""pf_sync: bring users, listings and images from Property Finder into the host's tables."""

from __future__ import annotations

import json
import sys

from django.core.management.base import CommandError, CommandParser

from pfsync_app.jobs.sync import SyncOptions, SyncResult, run_nightly
from pfsync_app.management.base import PfsyncCommand
from pfsync_app.management.options import (
    add_concurrency,
    add_dry_run,
    add_json,
    pf_id,
    positive_int,
)
from pfsync_app.management.progress import progress_for
from pfsync_app.reports.failures import summarize_failures
from pfsync_app.reports.summary import counter_labels
from pfsync_app.words import plural
from pfsync_app.writers.areas import unmapped_kind

# Unmapped locations listed after a run (-v 2: all of them).
UNMAPPED_SHOWN = 20


def examples_for(verbosity: int) -> int:
    """Failures shown under each cause: a few, or more with -v 2 (pf_report --run has all)."""
    return 20 if verbosity > 1 else 3


class Command(PfsyncCommand):
    help = (
        "Sync agents, listings and images from Property Finder (create and update, never delete)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        add_dry_run(
            parser, "Fetch everything and report what would change; write and download nothing."
        )
        parser.add_argument(
            "--only",
            choices=["users", "listings"],
            help="Sync only users or only listings (default: users, then listings).",
        )
        parser.add_argument(
            "--listing",
            action="append",
            default=[],
            metavar="PF_ID",
            type=pf_id,
            help="Sync just this listing (repeatable).",
        )
        parser.add_argument("--no-images", action="store_true", help="Do not download images.")
        parser.add_argument(
            "--limit",
            type=positive_int,
            metavar="N",
            help="Stop after N listings (default: all); such a run unpublishes nothing.",
        )
        parser.add_argument(
            "--full",
            action="store_true",
            help="Rewrite every listing, not only changed ones (present images are kept).",
        )
        parser.add_argument(
            "--allow-mass-unpublish",
            action="store_true",
            help="Unpublish even when more than PF_SYNC_MAX_UNPUBLISH_PERCENT (a percentage, "
            "default 10) of the published properties are gone.",
        )
        add_concurrency(parser)
        add_json(parser, "summary")

    def handle(self, *args, **options) -> None:
        if options["listing"] and options["only"] == "users":
            raise CommandError("--listing cannot be combined with --only users.", returncode=2)
        sync_options = SyncOptions(
            dry_run=options["dry_run"],
            only=options["only"],
            listing_ids=options["listing"],
            images=not options["no_images"],
            limit=options["limit"],
            full=options["full"],
            allow_mass_unpublish=options["allow_mass_unpublish"],
            concurrency=options["concurrency"],
        )
        verbosity = 0 if options["json"] else options["verbosity"]
        # The raw stream: OutputWrapper would end each of the bar's redraws with a newline.
        progress = progress_for(self.stderr._out, verbosity)
        nightly = run_nightly(sync_options, progress)
        result, webhooks = nightly.sync, nightly.webhooks
        if nightly.webhooks_problem:
            self.stderr.write(nightly.webhooks_problem)
        if options["json"]:
            payload = self.as_json(result, sync_options)
            if webhooks is not None:
                payload["webhooks"] = webhooks.text()
            self.stdout.write(json.dumps(payload, ensure_ascii=False))
        else:
            self.print_summary(result, sync_options, options["verbosity"])
            if webhooks is not None and webhooks.total:
                self.stdout.write(f"  Webhook events: {webhooks.text()}")
        if nightly.exit_code:
            sys.exit(nightly.exit_code)

    @staticmethod
    def as_json(result: SyncResult, options: SyncOptions) -> dict:
        """The machine-readable summary."""
        by_cause = summarize_failures(result.run_id) if result.run_id is not None else None
        return {
            "run_id": result.run_id,
            "status": "finished_with_errors" if result.exit_code else "succeeded",
            "exit_code": result.exit_code,
            "dry_run": options.dry_run,
            "counters": result.counters,
            "listings_received": result.listings_received,
            "listings_unchanged": result.listings_skipped_unchanged,
            "listings_found_again": result.listings_found_again,
            "listings_confirmed_gone": result.listings_confirmed_gone,
            "failures": result.failures,
            "failures_by_cause": by_cause.as_dict() if by_cause is not None else None,
            "unmapped_locations": {str(k): v for k, v in result.unmapped_locations.items()},
            "unpublish_note": result.unpublish_note,
            "changes": result.changes,
        }

    def print_summary(self, result: SyncResult, options: SyncOptions, verbosity: int) -> None:
        """The old service's counters, then what failed and what needs attention."""
        out = self.stdout
        if options.dry_run:
            out.write(self.style.WARNING("DRY RUN: what a sync would change (nothing is written):"))
            for line in result.changes:
                out.write(f"  {line}")
        title = "Dry run finished" if options.dry_run else "Sync finished"
        if result.exit_code:
            title += " with errors"
        style = self.style.SUCCESS if not result.exit_code else self.style.WARNING
        written = ": nothing was written or downloaded" if options.dry_run else ""
        out.write(style(f"{title} (run {result.run_id}){written}"))
        labels = counter_labels(options.dry_run)
        width = max(24, max(len(label) for _, label in labels) + 2)
        for key, label in labels:
            out.write(f"  {label + ':':<{width}}{result.counters.get(key, 0)}")
        out.write(
            f"  {'Listings unchanged:':<{width}}{result.listings_skipped_unchanged} "
            f"of {result.listings_received} received"
        )
        if result.listings_found_again or result.listings_confirmed_gone:
            out.write(
                f"  {'Not in the pages:':<{width}}{result.listings_found_again} found again live "
                f"by a direct look-up, {result.listings_confirmed_gone} confirmed gone"
            )
        if result.unpublish_note:
            out.write(self.style.WARNING(f"  Unpublishing skipped: {result.unpublish_note}"))
        if result.unmapped_locations:
            out.write(
                self.style.WARNING(
                    # pf_areas unmapped's words; it counts every synced listing, this run's only.
                    f"  {plural(len(result.unmapped_locations), unmapped_kind())} in this "
                    "run's listings (python manage.py pf_areas unmapped):"
                )
            )
            ranked = sorted(result.unmapped_locations.items(), key=lambda item: -item[1])
            shown = ranked if verbosity > 1 else ranked[:UNMAPPED_SHOWN]
            for location_id, count in shown:
                out.write(f"    location {location_id}: {plural(count, 'listing')}")
            if len(ranked) > len(shown):
                out.write(f"    and {len(ranked) - len(shown)} more")
        if result.run_id is None:
            return
        summary = summarize_failures(result.run_id, examples=examples_for(verbosity))
        if not summary:
            return
        for line in summary.lines(examples_for(verbosity)):
            # Headlines in the error colour; the examples under them plain.
            out.write(f"  {line}" if line.startswith(" ") else self.style.ERROR(f"  {line}"))
        out.write(
            f"  All entries: python manage.py pf_report --run {result.run_id} "
            f"(or run {result.run_id} in the admin)"
        )
