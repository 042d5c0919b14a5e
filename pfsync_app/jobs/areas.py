"""pf_areas: search Property Finder locations and link them to host areas.

A listing carries only its location's id and the Atlas API cannot look a
location up by id alone, so pf_sync never guesses: a listing of an unmapped
location is saved with no area. These functions close that gap: search
candidates, link a location to an area (filling the waiting properties at
once), or propose links by exact name. Linking is a recorded job that holds
the writer lock, so no pf_sync saves listings with a stale map meanwhile; the
rows themselves are written by ``writers.areas``. Nothing here prints.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db.utils import DatabaseError

from pfsync_app.atlas import records
from pfsync_app.exceptions import AreaError
from pfsync_app.jobs.base import Job
from pfsync_app.models import SyncRun
from pfsync_app.words import plural
from pfsync_app.writers.areas import (
    LinkResult,
    areas_linking,
    has_areas,
    link,
    link_name,
    linked_locations,
    require_areas,
    unlinked_areas,
)

logger = logging.getLogger("pfsync.areas")

MIN_SEARCH_CHARS = 2


# filter[type] values the API accepts (the spec's enum).
LOCATION_TYPES = (
    "REGION",
    "GOVERNORATE",
    "CITY",
    "TOWN",
    "VILLAGE",
    "DISTRICT",
    "STREET",
    "COMMUNITY",
    "SUBCOMMUNITY",
    "PROJECT",
    "TOWER",
    "COMPOUND",
    "AREA",
    "PROVINCE",
    "SUBDISTRICT",
)


MATCH = "match"


AMBIGUOUS = "ambiguous"


NO_MATCH = "none"


TAKEN = "taken"


DUPLICATE = "duplicate"


UNSEARCHABLE = "unsearchable"


@dataclass(frozen=True)
class Candidate:
    """A location found by a search, and the host area (or name) that already links it."""

    location: records.Location
    area_id: int | None = None
    area_name: str | None = None
    #: False when the host's links could not be read (no database): the search still answers.
    links_known: bool = True

    @property
    def path(self) -> str:
        """The location's tree as text: ``Dubai > Dubai Marina > Marina Gate 1``."""
        return location_path(self.location)


@dataclass
class Proposal:
    """automap's verdict for one unlinked host area."""

    area_id: int
    area_name: str
    status: str  # MATCH, AMBIGUOUS, NO_MATCH, TAKEN, DUPLICATE or UNSEARCHABLE
    location: records.Location | None = None
    candidates: list[records.Location] = field(default_factory=list)
    taken_by: int | None = None
    linked: bool = False
    properties_filled: int = 0
    error: str = ""

    @property
    def path(self) -> str:
        """The proposed location's tree as text, or '' when there is none."""
        return location_path(self.location) if self.location is not None else ""


def location_path(location: records.Location) -> str:
    """Names from the root down to the location itself, joined by ' > '."""
    names = [node.name or str(node.id) for node in location.path]
    if not location.path or location.path[-1].id != location.id:
        # The API's tree may stop at the parent; the location belongs at the end either way.
        names.append(location.name or str(location.id))
    return " > ".join(names)


def check_search_text(text: str) -> str:
    """The search text stripped; AreaError when it is shorter than the API accepts."""
    stripped = (text or "").strip()
    if len(stripped) < MIN_SEARCH_CHARS:
        raise AreaError(
            f"search text must have at least {MIN_SEARCH_CHARS} characters "
            f"(the Property Finder API's minimum), got {text!r}."
        )
    return stripped


def check_location_type(value: str | None) -> str | None:
    """The location type in the API's spelling, None when not given; AreaError when unknown."""
    if value is None or not value.strip():
        return None
    upper = value.strip().upper()
    if upper not in LOCATION_TYPES:
        raise AreaError(
            f"location type {value!r} is not one the API knows ({', '.join(LOCATION_TYPES)})."
        )
    return upper


def parent_filter(value: str | None) -> str | None:
    """``filter[parent]``: the hierarchy of names, root first, comma-separated.

    Accepts the path as pf_areas prints it ("Dubai > Dubai Hills Estate") too.
    """
    if value is None:
        return None
    names = [part.strip() for part in value.replace(">", ",").split(",") if part.strip()]
    return ", ".join(names) or None


def location_named_by_search(client: Any, location_id: int, text: str) -> str:
    """The name of location ``location_id`` as a search for ``text`` finds it (pick from search)."""
    search = check_search_text(text)
    for location in client.search_locations(search):
        if location.id == location_id:
            if not (location.name or "").strip():
                raise AreaError(f"location {location_id} has no name on Property Finder.")
            return location.name
    raise AreaError(
        f"a search for {search!r} does not find location {location_id}; search again "
        "(pf_areas search TEXT) and pick an id it lists, or give --name TEXT."
    )


def search_locations(
    client: Any,
    text: str,
    *,
    type: str | None = None,
    parent: str | None = None,
) -> list[Candidate]:
    """Locations matching ``text`` (GET /v1/locations), each with the host area linking it.

    ``parent`` narrows by hierarchy of names ("Dubai, Dubai Hills Estate"), as
    the API's ``filter[parent]`` does; ``type`` is one of ``LOCATION_TYPES``.
    """
    search = check_search_text(text)
    found = list(
        client.search_locations(
            search, type=check_location_type(type), parent=parent_filter(parent)
        )
    )
    return with_areas(found)


def check_location_id(value: Any) -> int:
    """A location id as a positive number; AreaError when it is not one."""
    return _positive_id(value, "location id")


def _positive_id(value: Any, what: str) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        raise AreaError(f"{what} must be a whole number, got {value!r}.") from None
    if number <= 0:
        raise AreaError(f"{what} must be a positive number, got {number}.")
    return number


def _normal(name: str | None) -> str:
    return " ".join((name or "").split()).casefold()


def with_areas(locations: Iterable[records.Location]) -> list[Candidate]:
    """Pair each location with the host area that links it, if one does."""
    locations = list(locations)
    try:
        linking = areas_linking([location.id for location in locations])
    except DatabaseError as exc:
        # Searching needs only the API: without the database the links are just unknown.
        logger.debug("links of the found locations unknown: %s", exc)
        return [Candidate(location=location, links_known=False) for location in locations]
    result = []
    for location in locations:
        area_id, area_name = linking.get(location.id, (None, None))
        result.append(Candidate(location=location, area_id=area_id, area_name=area_name))
    return result


@dataclass(frozen=True)
class LinkRequest:
    """One link to make: a location to an existing area, a new area, or (no areas) a name."""

    location_id: int
    area_id: int | None = None
    create_name: str | None = None
    force: bool = False
    name: str | None = None


class LinkJob(Job):
    """Links locations to areas under the writer lock, as one recorded pf_areas run.

    With ``keep_going`` a refused link is recorded and the next one is tried
    (automap); otherwise the first refusal ends the run (``AreaError``).
    """

    command = SyncRun.Command.AREAS
    writes = True

    def __init__(self, requests: list[LinkRequest], *, keep_going: bool = False) -> None:
        super().__init__()
        self.requests = requests
        self.keep_going = keep_going
        self.results: list[LinkResult | AreaError] = []

    def options(self) -> dict[str, Any]:
        return {
            "links": [
                {
                    "location": r.location_id,
                    "area": r.area_id,
                    "create": r.create_name,
                    "name": r.name,
                }
                for r in self.requests[:100]
            ],
            "force": any(r.force for r in self.requests),
        }

    def work(self) -> None:
        for request in self.requests:
            try:
                if request.name is not None:
                    result = link_name(request.location_id, request.name, request.force)
                else:
                    result = link(
                        request.location_id, request.area_id, request.create_name, request.force
                    )
            except AreaError as exc:
                if not self.keep_going:
                    raise
                self.recorder.error("area.link_failed", str(exc), pf_id=str(request.location_id))
                self.results.append(exc)
                continue
            self.results.append(result)
            if result.area_id is None:
                text = (
                    f"location {result.location_id} is now named '{result.area_name}'; "
                    f"{plural(result.properties_filled, 'property')} got the name"
                )
            else:
                text = (
                    f"location {result.location_id} now links area {result.area_id} "
                    f"'{result.area_name}'; "
                    f"{plural(result.properties_filled, 'property')} got the area"
                )
            self.recorder.info("area.linked", text, pf_id=str(result.location_id))
            if not result.synced_listings:
                self.recorder.warning(
                    "area.unknown_location",
                    unknown_location(result.location_id),
                    pf_id=str(result.location_id),
                )

    def finish_message(self) -> str:
        done = sum(isinstance(r, LinkResult) for r in self.results)
        return f"linked {done} of {plural(len(self.requests), 'location')}"

    def result(self) -> list[LinkResult | AreaError]:
        return self.results


def unknown_location(location_id: int) -> str:
    """The warning for a link to a location no synced listing has (kept: listings may come)."""
    return (
        f"no synced listing has location {location_id} yet; the link is kept for listings "
        "to come (check the id with pf_areas search if it was a typo)"
    )


def link_location(
    location_id: int,
    area_id: int | None = None,
    *,
    create_name: str | None = None,
    name: str | None = None,
    force: bool = False,
) -> LinkResult:
    """Link a PF location to a host area (or a new one) and give the waiting properties the area.

    A site without an areas table gives the location a ``name`` instead: its
    properties' location name column is filled at once. ``force`` lets an area
    that links another location move to this one (its properties from the old
    location lose the area), lets ``create_name`` repeat an existing area's
    name, or renames a named location. Raises AreaError with one sentence when
    the link is refused, SyncAborted when it cannot run (another run holds the lock).
    """
    location_id = _positive_id(location_id, "location id")
    if name is not None:
        if area_id is not None or create_name is not None:
            raise AreaError("give --name alone, without an AREA_ID or --create.")
        if has_areas():
            raise AreaError(
                "--name is for a site without an areas table; this one has areas: give the "
                "AREA_ID to link to, or --create NAME for a new area."
            )
        (result,) = LinkJob([LinkRequest(location_id, name=name, force=force)]).run()
        return result
    require_areas("linking a location to an area")
    if (area_id is None) == (create_name is None):
        raise AreaError("give either an AREA_ID or --create NAME, not both or neither.")
    if area_id is not None:
        area_id = _positive_id(area_id, "area id")
    request = LinkRequest(location_id, area_id, create_name, force)
    (result,) = LinkJob([request]).run()
    return result


def automap(client: Any, apply: bool = False) -> list[Proposal]:
    """Propose a link for each unlinked host area whose name matches exactly one location.

    One search per area, one after another (the client keeps to the API's rate
    limit). Every search runs before anything is written, so an API failure
    half way links nothing. With ``apply`` the matches are linked in one
    recorded run; a link refused meanwhile is reported in the proposal's ``error``.
    """
    require_areas("automap (which matches host area names)")
    linked = linked_locations()
    proposals = [_propose(client, area_id, name, linked) for area_id, name in unlinked_areas()]
    claims: dict[int, list[Proposal]] = {}
    for proposal in proposals:
        if proposal.status == MATCH:
            claims.setdefault(proposal.location.id, []).append(proposal)
    for claimants in claims.values():
        if len(claimants) > 1:
            # Two host areas with the same name: which one the location belongs to is a human call.
            for proposal in claimants:
                proposal.status = DUPLICATE
    matches = [p for p in proposals if p.status == MATCH]
    if apply and matches:
        requests = [LinkRequest(p.location.id, p.area_id) for p in matches]
        outcomes = LinkJob(requests, keep_going=True).run()
        for proposal, outcome in zip(matches, outcomes, strict=True):
            if isinstance(outcome, AreaError):
                proposal.error = str(outcome)
            else:
                proposal.linked = True
                proposal.properties_filled = outcome.properties_filled
    return proposals


def _propose(client: Any, area_id: int, name: str, linked: dict[int, int]) -> Proposal:
    proposal = Proposal(area_id=area_id, area_name=name, status=NO_MATCH)
    text = " ".join(name.split())
    if len(text) < MIN_SEARCH_CHARS:
        proposal.status = UNSEARCHABLE
        return proposal
    wanted = _normal(text)
    exact = [loc for loc in client.search_locations(text) if _normal(loc.name) == wanted]
    proposal.candidates = exact
    if len(exact) > 1:
        proposal.status = AMBIGUOUS
    elif len(exact) == 1:
        proposal.location = exact[0]
        holder = linked.get(exact[0].id)
        if holder is not None:
            proposal.status = TAKEN
            proposal.taken_by = holder
        else:
            proposal.status = MATCH
    return proposal
