"""pf_areas: link the Property Finder locations of synced listings to host areas."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from django.core.management.base import CommandError, CommandParser

from pfsync_app.atlas.errors import AtlasError, CredentialsMissing
from pfsync_app.exceptions import AreaError
from pfsync_app.jobs import areas
from pfsync_app.jobs.base import atlas_failure
from pfsync_app.jobs.clients import build_client
from pfsync_app.management.base import PfsyncCommand
from pfsync_app.management.options import action_parser, add_verbosity
from pfsync_app.words import plural, verb
from pfsync_app.writers.areas import has_areas, unmapped_locations


class Command(PfsyncCommand):
    help = (
        "Close the gap between Property Finder locations and host areas: list unmapped "
        "locations, search them, link them to areas, or propose links by exact name."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(
            dest="action",
            required=True,
            metavar="ACTION",
            help="What to do (each has its own --help):",
        )

        unmapped = action_parser(
            actions, "unmapped", help="Locations of synced listings that no host area links."
        )
        unmapped.add_argument("--json", action="store_true", help="Print JSON instead of a table.")

        search = action_parser(
            actions, "search", help="Search Property Finder locations (GET /v1/locations)."
        )
        search.add_argument("text", help="At least 2 characters of a location's name.")
        search.add_argument(
            "--type", help="Only locations of this type (CITY, COMMUNITY, TOWER, ...)."
        )
        search.add_argument(
            "--parent",
            metavar="NAMES",
            help='Only locations under this hierarchy of names, root first: "Dubai, Dubai '
            'Hills Estate" (a printed path "Dubai > Dubai Hills Estate" works too).',
        )

        link = action_parser(
            actions,
            "link",
            help="Link a location to a host area and give its waiting properties that area.",
        )
        link.add_argument(
            "location_id", metavar="PF_LOCATION_ID", help="The Property Finder location id."
        )
        link.add_argument(
            "area_id", metavar="AREA_ID", nargs="?", help="The host area's id (or --create)."
        )
        link.add_argument("--create", metavar="NAME", help="Create a host area with this name.")
        link.add_argument(
            "--name",
            metavar="TEXT",
            help="A site without an areas table: the location's name, written into its "
            "properties' location name column.",
        )
        link.add_argument(
            "--search",
            metavar="TEXT",
            help="A site without an areas table: take the name from a search for TEXT "
            "(the result with this PF_LOCATION_ID).",
        )
        link.add_argument(
            "--force",
            action="store_true",
            help="Relink an area that links another location, create a same-named area, or "
            "rename a named location.",
        )

        automap = action_parser(
            actions,
            "automap",
            help="Propose a link for each unlinked area whose name matches exactly one location.",
        )
        automap.add_argument("--apply", action="store_true", help="Write the proposed links.")

        for action in (unmapped, search, link, automap):
            # So that "pf_areas automap -v 2" works, not only "pf_areas -v 2 automap".
            add_verbosity(
                action, "also shows the paths of ambiguous candidates" if action is automap else ""
            )

    def records_run(self, options: dict[str, Any]) -> bool:
        """A link, and automap --apply, record a run; unmapped, search and a proposal do not."""
        action = options.get("action")
        return action == "link" or (action == "automap" and bool(options.get("apply")))

    def handle(self, *args: Any, **options: Any) -> None:

        handlers: dict[str, Callable[[dict[str, Any]], None]] = {
            "unmapped": self.unmapped,
            "search": self.search,
            "link": self.link,
            "automap": self.automap,
        }
        try:
            handlers[options["action"]](options)
        except CredentialsMissing as exc:
            # Nothing was sent: said as pf_sync says it, not as a refusal.
            raise atlas_failure(exc, "Property Finder API") from None
        except AtlasError as exc:
            raise CommandError(f"Property Finder API: {exc}", returncode=2) from None

    # -- actions -----------------------------------------------------------

    def unmapped(self, options: dict[str, Any]) -> None:
        rows = unmapped_locations()
        if options["json"]:
            self.stdout.write(json.dumps([row.as_dict() for row in rows], ensure_ascii=False))
            return
        if not rows:
            self.stdout.write(self.style.SUCCESS("Every synced listing's location links an area."))
            return
        self.stdout.write(f"{'location':>10}  {'listings':>8}  sample title")
        for row in rows:
            self.stdout.write(f"{row.location_id:>10}  {row.listings:>8}  {row.sample_title}")
        waiting = sum(row.listings for row in rows)
        if has_areas():
            self.stdout.write(
                f"{plural(len(rows), 'unmapped location')}, {plural(waiting, 'property')} "
                "without an area. "
                "Find one: pf_areas search TEXT; link it: pf_areas link LOCATION_ID AREA_ID."
            )
        else:
            self.stdout.write(
                f"{plural(len(rows), 'unnamed location')}, {plural(waiting, 'property')} "
                "without a location name. Find one: pf_areas search TEXT; name it: "
                "pf_areas link LOCATION_ID --name TEXT (or --search TEXT)."
            )

    def search(self, options: dict[str, Any]) -> None:
        # Mistakes are reported before any connection is opened.
        areas.check_search_text(options["text"])
        areas.check_location_type(options["type"])
        with build_client() as client:
            found = areas.search_locations(
                client, options["text"], type=options["type"], parent=options["parent"]
            )
        if not found:
            self.stdout.write(f"No Property Finder location matches {options['text'].strip()!r}.")
            return
        for candidate in found:
            loc = candidate.location
            if not candidate.links_known:
                linked = "link unknown"
            elif candidate.area_id is not None:
                linked = f"area {candidate.area_id} '{candidate.area_name}'"
            elif candidate.area_name is not None:
                linked = f"named '{candidate.area_name}'"
            else:
                linked = "not linked"
            self.stdout.write(
                f"{loc.id:>8}  {loc.type or '?':<13} {loc.name or '?'}  "
                f"[{candidate.path}]  {linked}"
            )
        if not all(candidate.links_known for candidate in found):
            self.stderr.write(
                self.style.WARNING(
                    "Which host area links each location is not shown: the database cannot be read."
                )
            )

    def link(self, options: dict[str, Any]) -> None:
        name = options["name"]
        if options["search"] is not None:
            if name is not None:
                raise AreaError("give --name or --search, not both.")
            location_id = areas.check_location_id(options["location_id"])
            areas.check_search_text(options["search"])
            with build_client() as client:
                name = areas.location_named_by_search(client, location_id, options["search"])
        if name is None and options["area_id"] is None and options["create"] is None:
            # link_location refuses both too; for neither, a sentence that says what to give.
            if not has_areas():
                raise AreaError(
                    "give the location's name: --name TEXT, or --search TEXT to take it from "
                    "a search (this site has no areas table)."
                )
            raise AreaError("give the AREA_ID to link to, or --create NAME for a new area.")
        result = areas.link_location(
            options["location_id"],
            options["area_id"],
            create_name=options["create"],
            name=name,
            force=options["force"],
        )
        for note in result.name_notes:
            self.stderr.write(f"warning: the name {note}")
        if not result.synced_listings:
            self.stderr.write(
                self.style.WARNING(f"warning: {areas.unknown_location(result.location_id)}.")
            )
        if result.area_id is None:
            if result.already_linked:
                self.stdout.write(
                    f"Location {result.location_id} is already named '{result.area_name}'."
                )
            else:
                self.stdout.write(
                    self.style.SUCCESS(
                        f"Location {result.location_id} is now named '{result.area_name}'."
                    )
                )
            self.stdout.write(f"{plural(result.properties_filled, 'property')} got the name.")
            return
        verb = "Created area" if result.created else "Area"
        if result.already_linked:
            self.stdout.write(
                f"Area {result.area_id} '{result.area_name}' already links location "
                f"{result.location_id}."
            )
        else:
            self.stdout.write(
                self.style.SUCCESS(
                    f"{verb} {result.area_id} '{result.area_name}' now links location "
                    f"{result.location_id}."
                )
            )
        if result.previous_location_id is not None:
            self.stdout.write(
                f"It no longer links location {result.previous_location_id}: "
                f"{plural(result.properties_cleared, 'property')} lost the area."
            )
        self.stdout.write(f"{plural(result.properties_filled, 'property')} got the area.")

    def automap(self, options: dict[str, Any]) -> None:
        with build_client() as client:
            proposals = areas.automap(client, apply=options["apply"])
        if not proposals:
            self.stdout.write(self.style.SUCCESS("Every host area already links a location."))
            return
        for proposal in proposals:
            self.stdout.write(self.describe(proposal, options["verbosity"]))
        matches = [p for p in proposals if p.status == areas.MATCH]
        if not options["apply"]:
            self.stdout.write(
                f"{len(matches)} of {plural(len(proposals), 'unlinked area')} "
                f"{verb(len(matches), 'matches', 'match')} exactly one "
                "location; run with --apply to link them."
            )
            return
        done = [p for p in matches if p.linked]
        filled = sum(p.properties_filled for p in done)
        self.stdout.write(
            self.style.SUCCESS(
                f"Linked {plural(len(done), 'area')}; {plural(filled, 'property')} "
                f"got {verb(filled, 'its', 'their')} area."
            )
        )

    def describe(self, proposal: areas.Proposal, verbosity: int) -> str:
        who = f"area {proposal.area_id} '{proposal.area_name}'"
        status = proposal.status
        if status == areas.MATCH:
            loc = proposal.location
            text = f"{who}: location {loc.id} {loc.type or '?'} [{proposal.path}]"
            if proposal.error:
                return self.style.ERROR(f"{text}: not linked: {proposal.error}")
            if proposal.linked:
                return self.style.SUCCESS(
                    f"{text}: linked, {plural(proposal.properties_filled, 'property')} got the area"
                )
            return text
        if status == areas.AMBIGUOUS:
            many = len(proposal.candidates)
            text = (
                f"{who}: ambiguous, {plural(many, 'location')} {verb(many, 'has', 'have')} "
                "that name"
            )
            if verbosity >= 2:
                text += ": " + "; ".join(
                    f"{loc.id} [{areas.location_path(loc)}]" for loc in proposal.candidates
                )
            else:
                text += f" ({', '.join(str(loc.id) for loc in proposal.candidates)})"
            return self.style.WARNING(text)
        if status == areas.TAKEN:
            return self.style.WARNING(
                f"{who}: location {proposal.location.id} [{proposal.path}] already links "
                f"area {proposal.taken_by}"
            )
        if status == areas.DUPLICATE:
            return self.style.WARNING(
                f"{who}: location {proposal.location.id} [{proposal.path}] matches more than "
                "one host area of that name"
            )
        if status == areas.UNSEARCHABLE:
            return self.style.WARNING(f"{who}: name too short to search")
        return f"{who}: no location has that name"
