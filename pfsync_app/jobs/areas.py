"""pf_areas: find, search and link the Property Finder locations no host area maps yet.

A listing carries only its location's id and the Atlas API cannot look a
location up by id alone, so pf_sync never guesses: a listing of an unmapped
location is saved with no area and its location id stays in ListingState.
These functions close that gap: list what waits, search candidates, link a
location to an area (filling the waiting properties at once), or propose links
by exact name. They only UPDATE and INSERT host rows, and print nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Count, Min, Q
from django.utils import timezone

from pfsync_app.atlas import records
from pfsync_app.exceptions import AreaError, WriterBusy, first_line
from pfsync_app.models import Area, ListingState, Property
from pfsync_app.writers.lock import writer_lock

MIN_SEARCH_CHARS = 2
AREA_NAME_MAX = Area._meta.get_field("name").max_length

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
class UnmappedLocation:
    """A location id PF listings use that no host area links, with its waiting properties."""

    location_id: int
    listings: int
    sample_title: str

    def as_dict(self) -> dict[str, Any]:
        """The row as JSON-ready values."""
        return {
            "location_id": self.location_id,
            "listings": self.listings,
            "sample_title": self.sample_title,
        }


@dataclass(frozen=True)
class Candidate:
    """A location found by a search, and the host area that already links it (if any)."""

    location: records.Location
    area_id: int | None = None
    area_name: str | None = None

    @property
    def path(self) -> str:
        """The location's tree as text: ``Dubai > Dubai Marina > Marina Gate 1``."""
        return location_path(self.location)


@dataclass
class LinkResult:
    """What one link did."""

    location_id: int
    area_id: int
    area_name: str
    created: bool = False
    already_linked: bool = False
    previous_location_id: int | None = None
    properties_filled: int = 0
    properties_cleared: int = 0


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


# ---------------------------------------------------------------------------
# Unmapped locations
# ---------------------------------------------------------------------------


def unmapped_locations() -> list[UnmappedLocation]:
    """Locations of synced listings with no host area, most waiting properties first."""
    waiting = Property.objects.filter(area_id__isnull=True).values("pk")
    linked = Area.objects.filter(pf_location_id__isnull=False).values("pf_location_id")
    rows = (
        ListingState.objects.filter(location_id__isnull=False, property_id__in=waiting)
        .exclude(location_id__in=linked)
        .values("location_id")
        .annotate(listings=Count("id"), sample=Min("title", filter=~Q(title="")))
        .order_by("-listings", "location_id")
    )
    return [
        UnmappedLocation(
            location_id=row["location_id"],
            listings=row["listings"],
            sample_title=row["sample"] or "",
        )
        for row in rows
    ]


# ---------------------------------------------------------------------------
# Search
# ---------------------------------------------------------------------------


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


def with_areas(locations: Iterable[records.Location]) -> list[Candidate]:
    """Pair each location with the host area that links it, if one does."""
    locations = list(locations)
    areas = {
        area.pf_location_id: area
        for area in Area.objects.filter(pf_location_id__in=[loc.id for loc in locations])
    }
    result = []
    for location in locations:
        area = areas.get(location.id)
        result.append(
            Candidate(
                location=location,
                area_id=area.pk if area else None,
                area_name=area.name if area else None,
            )
        )
    return result


# ---------------------------------------------------------------------------
# Link
# ---------------------------------------------------------------------------


def link_location(
    location_id: int,
    area_id: int | None = None,
    *,
    create_name: str | None = None,
    force: bool = False,
) -> LinkResult:
    """Link a PF location to a host area (or a new one) and give the waiting properties the area.

    ``force`` lets an area that links another location move to this one (its
    properties from the old location lose the area) or lets ``create_name``
    repeat an existing area's name. Runs under pfsync's writer lock, so no
    pf_sync saves listings with a stale map meanwhile.
    """
    location_id = _positive_id(location_id, "location id")
    if (area_id is None) == (create_name is None):
        raise AreaError("give either an AREA_ID or --create NAME, not both or neither.")
    if area_id is not None:
        area_id = _positive_id(area_id, "area id")
    try:
        with writer_lock("pf_areas"):
            try:
                with transaction.atomic():
                    return _link(location_id, area_id, create_name, force)
            except IntegrityError as exc:
                # Another process linked the same location between our check and our write.
                raise AreaError(
                    f"location {location_id} could not be linked: {first_line(exc)}."
                ) from None
    except WriterBusy as exc:
        raise AreaError(f"{exc}; link again when it has finished.") from None


def _link(
    location_id: int, area_id: int | None, create_name: str | None, force: bool
) -> LinkResult:
    holder = Area.objects.select_for_update().filter(pf_location_id=location_id).first()
    if holder is not None and (area_id is None or holder.pk != area_id):
        raise AreaError(
            f"location {location_id} is already linked to area {holder.pk} "
            f"'{holder.name}'; one location links one area."
        )
    now = timezone.now()
    if create_name is not None:
        area = _create_area(create_name, location_id, force)
        result = LinkResult(location_id, area.pk, area.name, created=True)
    else:
        area = Area.objects.select_for_update().filter(pk=area_id).first()
        if area is None:
            raise AreaError(f"area {area_id} does not exist.")
        result = LinkResult(location_id, area.pk, area.name)
        previous = area.pf_location_id
        if previous == location_id:
            result.already_linked = True
        else:
            if previous is not None:
                if not force:
                    raise AreaError(
                        f"area {area.pk} '{area.name}' already links location {previous}; "
                        "use --force to link it to the new location instead."
                    )
                result.previous_location_id = previous
                result.properties_cleared = _clear_properties(area.pk, previous, now)
            Area.objects.filter(pk=area.pk).update(pf_location_id=location_id)
    result.properties_filled = _fill_properties(location_id, area.pk, now)
    return result


def _create_area(name: str, location_id: int, force: bool) -> Area:
    name = " ".join((name or "").split())
    if not name:
        raise AreaError("--create needs a non-empty area name.")
    if len(name) > AREA_NAME_MAX:
        raise AreaError(f"area name may have at most {AREA_NAME_MAX} characters, not {len(name)}.")
    same = Area.objects.filter(name__iexact=name).order_by("pk").first()
    if same is not None and not force:
        raise AreaError(
            f"area {same.pk} is already called '{same.name}'; link to it "
            f"(pf_areas link {location_id} {same.pk}) or use --force to create another."
        )
    area = Area(name=name, pf_location_id=location_id)
    area.save(force_insert=True)
    return area


def _waiting_for(location_id: int) -> Any:
    return ListingState.objects.filter(location_id=location_id, property_id__isnull=False).values(
        "property_id"
    )


def _fill_properties(location_id: int, area_id: int, now: Any) -> int:
    """Give the properties waiting for this location (area NULL) the area."""
    return Property.objects.filter(area_id__isnull=True, pk__in=_waiting_for(location_id)).update(
        area_id=area_id, updated_at=now
    )


def _clear_properties(area_id: int, location_id: int, now: Any) -> int:
    """Take the area off the properties it had only through the location it no longer links."""
    return Property.objects.filter(area_id=area_id, pk__in=_waiting_for(location_id)).update(
        area_id=None, updated_at=now
    )


def _positive_id(value: Any, what: str) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        raise AreaError(f"{what} must be a whole number, got {value!r}.") from None
    if number <= 0:
        raise AreaError(f"{what} must be a positive number, got {number}.")
    return number


# ---------------------------------------------------------------------------
# Automap
# ---------------------------------------------------------------------------


def _normal(name: str | None) -> str:
    return " ".join((name or "").split()).casefold()


def automap(client: Any, apply: bool = False) -> list[Proposal]:
    """Propose a link for each unlinked host area whose name matches exactly one location.

    One search per area, one after another (the client keeps to the API's rate
    limit). Every search runs before anything is written, so an API failure
    half way links nothing. With ``apply`` each match is linked as
    ``link_location`` does; a link refused meanwhile is reported in ``error``.
    """
    areas = list(Area.objects.filter(pf_location_id__isnull=True).order_by("name", "pk"))
    linked = dict(
        Area.objects.filter(pf_location_id__isnull=False).values_list("pf_location_id", "pk")
    )
    proposals = [_propose(client, area, linked) for area in areas]
    claims: dict[int, list[Proposal]] = {}
    for proposal in proposals:
        if proposal.status == MATCH:
            claims.setdefault(proposal.location.id, []).append(proposal)
    for claimants in claims.values():
        if len(claimants) > 1:
            # Two host areas with the same name: which one the location belongs to is a human call.
            for proposal in claimants:
                proposal.status = DUPLICATE
    if apply:
        for proposal in proposals:
            if proposal.status != MATCH:
                continue
            try:
                result = link_location(proposal.location.id, proposal.area_id)
            except AreaError as exc:
                proposal.error = str(exc)
                continue
            proposal.linked = True
            proposal.properties_filled = result.properties_filled
    return proposals


def _propose(client: Any, area: Area, linked: dict[int, int]) -> Proposal:
    proposal = Proposal(area_id=area.pk, area_name=area.name, status=NO_MATCH)
    text = " ".join(area.name.split())
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
