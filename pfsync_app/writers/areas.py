"""Areas: the host's area rows and the properties waiting for one, read and linked.

A listing carries only its location's id, so a property of a location no host
area links is saved without an area and its location id stays in pfsync's
ListingState; linking the location fills those properties at once (their area,
and the location's name where the map names a column for it). A site without
an areas table links a location to a name instead, kept in pfsync's
LocationName. Only UPDATE and INSERT: an area is never deleted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Count, Min, Q
from django.utils import timezone

from pfsync_app.exceptions import AreaError, RecordRejected, RowRefused, first_line
from pfsync_app.hostmap import README_SECTION
from pfsync_app.introspection import model_columns
from pfsync_app.models import Area, ListingState, LocationName, Property
from pfsync_app.writers.columns import host_table
from pfsync_app.writers.fit import clean_text, fit_row

#: The longest name pfsync keeps for a location (and HOST_SCHEMA's area name).
AREA_NAME_MAX = LocationName._meta.get_field("name").max_length


def has_areas() -> bool:
    """Whether the site has an areas table (PFSYNC_HOST["area"] is not None)."""
    return host_table("area").present


def unmapped_kind() -> str:
    """What pf_areas unmapped calls a location waiting for a link on this site: 'unmapped
    location' (no host area linked) or, on a site without an areas table, 'unnamed location'."""
    return "unmapped location" if has_areas() else "unnamed location"


def require_areas(what: str) -> None:
    """AreaError, one sentence, when the site has no areas table for ``what``."""
    if not has_areas():
        raise AreaError(
            f"{what} needs a host areas table, and PFSYNC_HOST['area'] says this site has "
            f"none; link locations to names instead: pf_areas link PF_LOCATION_ID --name "
            f"TEXT ({README_SECTION})."
        )


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


@dataclass
class LinkResult:
    """What one link did (``area_id`` is None for a name link: a site without areas)."""

    location_id: int
    area_id: int | None
    area_name: str
    created: bool = False
    already_linked: bool = False
    previous_location_id: int | None = None
    properties_filled: int = 0
    properties_cleared: int = 0
    #: Synced listings at this location (0: none yet, perhaps a mistyped id).
    synced_listings: int = 0
    #: What was removed from the name to store it ("had 1 NUL character, removed").
    name_notes: list[str] = field(default_factory=list)


def unmapped_locations() -> list[UnmappedLocation]:
    """Locations of synced listings with no host area (or name), most waiting properties first."""
    if has_areas():
        linked = Area.objects.filter(pf_location_id__isnull=False).values("pf_location_id")
    else:
        linked = LocationName.objects.values("location_id")
    states = ListingState.objects.filter(location_id__isnull=False, property_id__isnull=False)
    if host_table("property").holds("area"):
        states = states.filter(
            property_id__in=Property.objects.filter(area_id__isnull=True).values("pk")
        )
    rows = (
        states.exclude(location_id__in=linked)
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


def _storable_location_id(location_id: int, table: str) -> None:
    """AreaError when the location id does not fit the column that would hold it unaltered."""
    if table == "area":
        areas = host_table("area")
        values, identifiers = areas.to_columns({"pf_location_id": location_id}), areas.columns()
    else:
        values, identifiers = {"location_id": location_id}, model_columns(LocationName)
    try:
        fit_row(identifiers, values, identifiers=set(values))
    except RowRefused as exc:
        raise AreaError(f"location id {location_id} cannot be stored: {exc}.") from None


def _link(
    location_id: int, area_id: int | None, create_name: str | None, force: bool
) -> LinkResult:
    _storable_location_id(location_id, "area")
    holder = Area.objects.select_for_update().filter(pf_location_id=location_id).first()
    if holder is not None and (area_id is None or holder.pk != area_id):
        raise AreaError(
            f"location {location_id} is already linked to area {holder.pk} "
            f"'{holder.name}'; one location links one area."
        )
    now = timezone.now()
    if create_name is not None:
        name, notes = _clean_name(create_name)
        area = _create_area(name, location_id, force)
        result = LinkResult(location_id, area.pk, area.name, created=True, name_notes=notes)
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
    result.properties_filled = _fill_properties(location_id, area.pk, now, area.name)
    result.synced_listings = synced_listings_at(location_id)
    return result


def _clean_name(name: str | None) -> tuple[str, list[str]]:
    """A name as the database keeps it: no NUL or lone surrogate, one space between words.

    The name may come from the API (``pf_areas link --search``) or the command
    line; what had to be removed is returned, for the command to say.
    """
    text, notes = clean_text(name or "")
    return " ".join(text.split()), notes


def _create_area(name: str, location_id: int, force: bool) -> Area:
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


def synced_listings_at(location_id: int) -> int:
    """How many synced listings (pfsync's listing state) have this Property Finder location."""
    return ListingState.objects.filter(location_id=location_id).count()


def _waiting_for(location_id: int) -> Any:
    return ListingState.objects.filter(location_id=location_id, property_id__isnull=False).values(
        "property_id"
    )


def _stamped(updates: dict[str, Any], now: Any) -> dict[str, Any]:
    """``updates`` plus updated_at, where the host has that column."""
    if host_table("property").holds("updated_at"):
        return {**updates, "updated_at": now}
    return updates


def _name_value(name: str | None) -> Any:
    """A location's name fitted to the host's location name column (None: it has none)."""
    table = host_table("property")
    column = table.column("location_name")
    if column is None:
        return None
    try:
        return table.fit({column: name}).values[column]
    except RecordRejected as exc:
        raise AreaError(f"the name cannot be written to the properties: {exc}.") from None


def _fill_properties(location_id: int, area_id: int, now: Any, name: str | None = None) -> int:
    """Give the properties waiting for this location (area NULL) the area and its name."""
    table = host_table("property")
    waiting = Property.objects.filter(pk__in=_waiting_for(location_id))
    if not table.holds("area"):
        return _fill_names(location_id, name, now)
    updates: dict[str, Any] = {"area_id": area_id}
    if table.holds("location_name"):
        updates["location_name"] = _name_value(name)
    filled = waiting.filter(area_id__isnull=True).update(**_stamped(updates, now))
    if table.holds("location_name"):
        # Properties that had the area already still take the name, when it differs.
        _fill_names(location_id, name, now)
    return filled


def _fill_names(location_id: int, name: str | None, now: Any) -> int:
    """Write the location's name into its properties' location name column (where it differs)."""
    if not host_table("property").holds("location_name"):
        return 0
    value = _name_value(name)
    waiting = Property.objects.filter(pk__in=_waiting_for(location_id))
    return waiting.exclude(location_name=value).update(**_stamped({"location_name": value}, now))


def _clear_properties(area_id: int, location_id: int, now: Any) -> int:
    """Take the area off the properties it had only through the location it no longer links."""
    if not host_table("property").holds("area"):
        return 0
    updates: dict[str, Any] = {"area_id": None}
    if host_table("property").holds("location_name"):
        updates["location_name"] = _name_value(None)
    return Property.objects.filter(area_id=area_id, pk__in=_waiting_for(location_id)).update(
        **_stamped(updates, now)
    )


def areas_linking(location_ids: list[int]) -> dict[int, tuple[int | None, str]]:
    """The host area (or name) linking each location: location id -> (area id, name)."""
    if not has_areas():
        return {
            location_id: (None, name)
            for location_id, name in LocationName.objects.filter(
                location_id__in=location_ids
            ).values_list("location_id", "name")
        }
    return {
        location_id: (pk, name)
        for pk, name, location_id in Area.objects.filter(
            pf_location_id__in=location_ids
        ).values_list("pk", "name", "pf_location_id")
    }


def unlinked_areas() -> list[tuple[int, str]]:
    """The host areas that link no location yet, as (id, name), by name."""
    require_areas("automap (which matches host area names)")
    return list(
        Area.objects.filter(pf_location_id__isnull=True)
        .order_by("name", "pk")
        .values_list("pk", "name")
    )


def linked_locations() -> dict[int, int]:
    """Every linked location: location id -> area id."""
    require_areas("automap (which matches host area names)")
    return dict(
        Area.objects.filter(pf_location_id__isnull=False).values_list("pf_location_id", "pk")
    )


def link(location_id: int, area_id: int | None, create_name: str | None, force: bool) -> LinkResult:
    """Link a location to an area (or a new one) in one transaction; AreaError when refused."""
    require_areas("linking a location to an area")
    try:
        with transaction.atomic():
            return _link(location_id, area_id, create_name, force)
    except IntegrityError as exc:
        # Another process linked the same location between our check and our write.
        raise AreaError(f"location {location_id} could not be linked: {first_line(exc)}.") from None


def link_name(location_id: int, name: str, force: bool) -> LinkResult:
    """Give a location its name (a site without areas) and fill its properties' name column."""
    _storable_location_id(location_id, "name")
    name, notes = _clean_name(name)
    if not name:
        raise AreaError("--name needs a non-empty name.")
    if len(name) > AREA_NAME_MAX:
        raise AreaError(f"a name may have at most {AREA_NAME_MAX} characters, not {len(name)}.")
    try:
        with transaction.atomic():
            current = LocationName.objects.select_for_update().filter(location_id=location_id)
            held = current.first()
            result = LinkResult(location_id, None, name, name_notes=notes)
            if held is not None and held.name == name:
                result.already_linked = True
            elif held is not None and not force:
                raise AreaError(
                    f"location {location_id} is already named '{held.name}'; use --force to "
                    "name it anew."
                )
            else:
                LocationName.objects.update_or_create(
                    location_id=location_id, defaults={"name": name, "linked_at": timezone.now()}
                )
            result.properties_filled = _fill_names(location_id, name, timezone.now())
            result.synced_listings = synced_listings_at(location_id)
            return result
    except IntegrityError as exc:
        raise AreaError(f"location {location_id} could not be named: {first_line(exc)}.") from None
