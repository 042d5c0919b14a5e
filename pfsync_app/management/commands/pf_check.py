"""pf_check: report image rows whose file is missing, empty or (with --verify) corrupt."""

from __future__ import annotations

import json
import sys

from django.core.management.base import CommandParser

from pfsync_app.jobs.check import MISSING, CheckResult, check_images, find_unreferenced_files
from pfsync_app.management.base import PfsyncCommand
from pfsync_app.management.options import add_json, add_property
from pfsync_app.words import plural


class Command(PfsyncCommand):
    help = (
        "Report the images of Property Finder properties whose file is missing or empty "
        "(read-only; exit status 1 when any is)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        add_property(parser, "Check")
        parser.add_argument(
            "--verify",
            action="store_true",
            help=(
                "Also read every file back, compare its size and sha256 with what pf_sync "
                "stored, and decode it as an image."
            ),
        )
        parser.add_argument(
            "--unreferenced",
            action="store_true",
            help="Also list files in the image folder that no image row names (never deleted).",
        )
        add_json(parser)

    def handle(self, *args, **options) -> None:
        result = check_images(pf_id=options["property"], verify=options["verify"])
        unreferenced = find_unreferenced_files() if options["unreferenced"] else None
        if options["json"]:
            payload = result.as_json()
            if options["unreferenced"]:
                payload["unreferenced"] = unreferenced
            self.stdout.write(json.dumps(payload, ensure_ascii=False))
        else:
            self.print_report(result, options["verbosity"])
            if options["unreferenced"]:
                self.print_unreferenced(unreferenced, options["verbosity"])
        if result.exit_code:
            sys.exit(result.exit_code)

    def print_report(self, result: CheckResult, verbosity: int) -> None:
        """The old service's report: one line in all, or one line per property."""
        out = self.stdout
        if not result.missing:
            out.write(self.style.SUCCESS("✓ No missing images found. All images are present."))
        else:
            out.write(self.style.ERROR(f"✗ Found {plural(len(result.missing), 'missing image')}:"))
            for group in result.by_property():
                line = (
                    f"  Property ID {group.property_id} (pf_id: {group.pf_id}): "
                    f"{plural(group.total, 'missing image')}"
                )
                if set(group.reasons) != {MISSING}:
                    line += " (" + ", ".join(f"{n} {r}" for r, n in group.reasons.items()) + ")"
                out.write(line)
            if verbosity > 1:
                for item in result.missing:
                    detail = f": {item.detail}" if item.detail else ""
                    out.write(f"    image {item.image_id} {item.name!r} {item.reason}{detail}")
        if verbosity > 0:
            checked = f"Checked {plural(result.checked, 'image')}"
            if result.verify:
                checked += (
                    f" ({result.verified} verified, {result.unverified} without a recorded "
                    "checksum)"
                )
            out.write(f"{checked} (run {result.run_id}).")

    def print_unreferenced(self, names: list[str] | None, verbosity: int) -> None:
        """Files no row names: informational, they change no exit status."""
        if names is None:
            self.stdout.write("This storage cannot list its files; unreferenced files unknown.")
        elif not names:
            self.stdout.write("No unreferenced files in the image folder.")
        else:
            self.stdout.write(
                self.style.WARNING(
                    f"{plural(len(names), 'file')} in the image folder not referenced by any "
                    "image row (left by an interrupted run; safe to remove):"
                )
            )
            shown = names if verbosity > 1 else names[:50]
            for name in shown:
                self.stdout.write(f"  {name}")
            if len(shown) < len(names):
                self.stdout.write(f"  ... and {len(names) - len(shown)} more (-v 2 lists all)")
