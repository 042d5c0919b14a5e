"""Areas: the host's area rows and the properties waiting for one, read and linked.

A listing carries only its location's id, so a property of a location no host
area links is saved without an area and its location id stays in pfsync's
ListingState; linking the location fills those properties at once. Only
UPDATE and INSERT: an area is never deleted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Count, Min, Q
from django.utils import timezone

from pfsync_app.exceptions import AreaError, first_line
from pfsync_app.models import Area, ListingState, Property

#: The longest area name the host's column holds.
AREA_NAME_MAX = Area._meta.get_field("name").max_length


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
    """What one link did."""

    location_id: int
    area_id: int
    area_name: str
    created: bool = False
    already_linked: bool = False
    previous_location_id: int | None = None
    properties_filled: int = 0
    properties_cleared: int = 0


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


def areas_linking(location_ids: list[int]) -> dict[int, tuple[int, str]]:
    """The host area linking each of these locations: location id -> (area id, area name)."""
    return {
        location_id: (pk, name)
        for pk, name, location_id in Area.objects.filter(
            pf_location_id__in=location_ids
        ).values_list("pk", "name", "pf_location_id")
    }


def unlinked_areas() -> list[tuple[int, str]]:
    """The host areas that link no location yet, as (id, name), by name."""
    return list(
        Area.objects.filter(pf_location_id__isnull=True)
        .order_by("name", "pk")
        .values_list("pk", "name")
    )


def linked_locations() -> dict[int, int]:
    """Every linked location: location id -> area id."""
    return dict(
        Area.objects.filter(pf_location_id__isnull=False).values_list("pf_location_id", "pk")
    )


def link(location_id: int, area_id: int | None, create_name: str | None, force: bool) -> LinkResult:
    """Link a location to an area (or a new one) in one transaction; AreaError when refused."""
    try:
        with transaction.atomic():
            return _link(location_id, area_id, create_name, force)
    except IntegrityError as exc:
        # Another process linked the same location between our check and our write.
        raise AreaError(f"location {location_id} could not be linked: {first_line(exc)}.") from None
