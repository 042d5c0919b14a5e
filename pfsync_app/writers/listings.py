"""Listings: a mapped listing into the host's property row, its images and its cursor.

One transaction per listing. Writers only INSERT and UPDATE: a listing gone
from Property Finder is unpublished, never deleted. A property's listing id
lives in the host's ``pf_id`` column when it has one, else in pfsync's
``ListingState`` (the listing's cursor), which is written in the same
transaction as the row.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from functools import cache
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from pfsync_app.exceptions import RecordRejected, RowRefused
from pfsync_app.introspection import TableColumns, model_columns
from pfsync_app.mapping import PropertyValues, render_changes
from pfsync_app.media.download import StoredImage
from pfsync_app.models import Area, ListingState, LocationName, Property
from pfsync_app.signals import after_property_save, before_property_save
from pfsync_app.writers.columns import HostTable, host_table, send_signal
from pfsync_app.writers.fit import Fitted, clean_text, fit_row
from pfsync_app.writers.images import (
    ImagePlan,
    ImageRow,
    cover_image,
    image_rows_agree,
    image_rows_of,
    plan_images,
    write_images,
)
from pfsync_app.writers.outcomes import CREATED, UNCHANGED, UPDATED, ListingOutcome
from pfsync_app.writers.rows import UnreadableCell, read_rows
from pfsync_app.writers.users import agent_by_reference, agents_by_profile

#: Values never altered to fit: the listing's id, and the cover image's file name.
IDENTIFIERS = ("pf_id", "cover_image")


def properties() -> HostTable:
    """The host's property table as the writers see it."""
    return host_table("property")


class Lookups:
    """What a listing's ids resolve to, cached for a run.

    Public profile id -> host user, location id -> host area (and its name, or
    the name given with ``pf_areas link --name`` when the host has no areas),
    and the fallback agent of the map.
    """

    def __init__(self) -> None:
        self.agents: dict[int, int] = {}
        self.areas: dict[int, int] = {}
        self.names: dict[int, str] = {}
        self.fallback: int | None = None
        self.reload()

    def reload(self) -> None:
        """Read the maps again (after users were synced, or locations linked)."""
        self.agents = agents_by_profile()
        self.areas, self.names = {}, {}
        if host_table("area").present:
            for location, pk, name in Area.objects.filter(pf_location_id__isnull=False).values_list(
                "pf_location_id", "pk", "name"
            ):
                self.areas[location] = pk
                self.names[location] = name
        else:
            self.names = dict(LocationName.objects.values_list("location_id", "name"))
        reference = properties().map.fallback_agent
        self.fallback = None if reference is None else agent_by_reference(reference)

    def agent_id(self, public_profile_id: int | None) -> int | None:
        """The host user whose public profile is the listing's assignedTo.id."""
        return None if public_profile_id is None else self.agents.get(public_profile_id)

    def uses_fallback(self, values: PropertyValues) -> bool:
        """Whether this listing's agent is unknown, so the map's fallback agent is used."""
        return self.fallback is not None and self.agent_id(values.assigned_to_id) is None

    def area_id(self, location_id: int | None) -> int | None:
        """The host area whose pf_location_id is the listing's location.id."""
        return None if location_id is None else self.areas.get(location_id)

    def linked(self, location_id: int | None) -> bool:
        """Whether the location is linked (to a host area, or to a name)."""
        return location_id is not None and location_id in self.names

    def location_name(self, location_id: int | None) -> str | None:
        """The name of the listing's location, once it is linked."""
        return None if location_id is None else self.names.get(location_id)


def property_fields(values: PropertyValues, lookups: Lookups) -> dict[str, Any]:
    """pfsync's property fields for a listing, its agent, area and location name resolved."""
    target = dict(values.fields)
    target["pf_id"] = values.pf_id
    agent = lookups.agent_id(values.assigned_to_id)
    target["user"] = agent if agent is not None else lookups.fallback
    target["area"] = lookups.area_id(values.location_id)
    target["location_name"] = lookups.location_name(values.location_id)
    return target


def id_problem(pf_id: str) -> str | None:
    """Why a listing id cannot be stored unaltered (a NUL, a lone surrogate, too long), or None.

    Asked before a page's rows are looked up: a query naming such an id fails as
    its write would, and would take the whole page with it. The id lives in
    pfsync's cursor (``ListingState``) and in the host's pf_id column when it
    has one; ids are never altered (``writers.fit``), so such a listing fails alone.
    """
    try:
        fit_row(_state_columns(), {"pf_id": pf_id}, identifiers={"pf_id"})
        table = properties()
        if table.holds("pf_id"):
            table.fit(table.to_columns({"pf_id": pf_id}), identifiers=("pf_id",))
    except RowRefused as exc:
        return str(exc)
    return None


def property_target(values: PropertyValues, fields: dict[str, Any], cover: str | None) -> Fitted:
    """What the host's property row would hold for a listing, by host column, fitted.

    ``fields`` are ``property_fields(values, lookups)``; ``cover`` the storage name
    of its first image. The one target both saving and comparing use (compare it
    with ``properties().read(row)`` through ``properties().changes``). Raises
    RowRefused when a value fits no way.
    """
    table = properties()
    if not table.holds("pf_id"):
        # The listing's id is kept in pfsync's own cursor: it must fit there, unaltered.
        fit_row(_state_columns(), {"pf_id": values.pf_id}, identifiers={"pf_id"})
    target = {**table.to_columns({**fields, "cover_image": cover}), **values.extras}
    return table.fit(target, identifiers=IDENTIFIERS)


def listing_agrees_with_rows(
    values: PropertyValues, existing: Property, rows: list[ImageRow], lookups: Lookups
) -> bool:
    """Whether the host already holds this listing: saving it would write nothing.

    The property row must hold what ``property_target`` would write (its
    ``is_published`` flag included: a listing pfsync unpublished that is live again
    does not agree), and its image rows what ``write_images`` would write: an
    active row at each image's position with its size (or the decoded size pfsync
    filled in), and no other active row. Reads nothing: ``existing`` and its
    ``rows`` come from ``properties_with_images`` for a whole page. Whether the
    files are still in storage is left to the writer and ``pf_check``.
    """
    plan = plan_images(values.images, rows, lambda name: True)
    if not image_rows_agree(values.images, plan):
        return False
    table = properties()
    try:
        fitted = property_target(
            values, property_fields(values, lookups), cover_image(values, plan, {})
        )
    except RecordRejected:
        return False  # the writer reports it
    return not table.changes(table.read(existing), fitted.values)


def save_listing(
    values: PropertyValues,
    existing: Property | None,
    plan: ImagePlan,
    stored: Mapping[int, StoredImage],
    lookups: Lookups,
    *,
    fingerprint: str,
    now: datetime | None = None,
    dry_run: bool = False,
) -> ListingOutcome:
    """Write one listing, its images rows and its cursor in one transaction.

    With ``dry_run`` nothing is written: the outcome says what would change (the
    field differences, and the images the plan would download and deactivate).
    Raises RecordRejected when a value fits no way or a receiver fails: nothing
    of the listing is then written.
    """
    now = now or timezone.now()
    table = properties()
    fields = property_fields(values, lookups)
    fitted = property_target(values, fields, cover_image(values, plan, stored))
    changed = {}
    if existing is not None:
        changed = table.changes(table.read(existing), fitted.values)
    if dry_run:
        outcome = _planned(existing, changed, plan)
        outcome.warnings = fitted.warnings
        return outcome
    with transaction.atomic():
        if existing is None:
            row = {**fitted.values, **table.to_columns({"created_at": now, "updated_at": now})}
            row.update(table.insert_defaults(row))
            send_signal(
                before_property_save,
                "before_property_save",
                Property,
                values=row,
                created=True,
                property_id=None,
                listing=values.record,
            )
            written = table.fit(row, identifiers=IDENTIFIERS)
            [property_id] = table.insert([written.values])
            outcome = ListingOutcome(CREATED, property_id)
        else:
            if changed:
                row = {column: fitted.values[column] for column in changed}
                row.update(table.to_columns({"updated_at": now}))
                send_signal(
                    before_property_save,
                    "before_property_save",
                    Property,
                    values=row,
                    created=False,
                    property_id=existing.pk,
                    listing=values.record,
                )
                written = table.fit(row, identifiers=IDENTIFIERS)
                table.update([existing.pk], written.values)
            outcome = ListingOutcome(
                UPDATED if changed else UNCHANGED, existing.pk, render_changes(changed)
            )
            outcome.republished = _republishes(changed)
        outcome.warnings = list(fitted.warnings)
        if existing is None or changed:
            outcome.warnings += [w for w in written.warnings if w not in outcome.warnings]
        outcome.area_id = fields["area"]
        write_images(outcome, values, plan, stored, now)
        outcome.warnings += _save_state(values, outcome.property_id, fingerprint, now)
        if existing is None or changed:
            send_signal(
                after_property_save,
                "after_property_save",
                Property,
                property_id=outcome.property_id,
                created=existing is None,
                changed=changed,
                listing=values.record,
            )
    if outcome.action == UNCHANGED and (
        outcome.images_added or outcome.images_replaced or outcome.images_deactivated
    ):
        outcome.action = UPDATED
    return outcome


def _republishes(changed: dict) -> bool:
    """Whether these row changes publish again a property that was unpublished."""
    column = properties().column("is_published")
    if column is None or column not in changed:
        return False
    before, after = changed[column]
    return not before and bool(after)


def _planned(existing: Property | None, changed: dict, plan: ImagePlan) -> ListingOutcome:
    """What saving would do: created, or updated when a field or an image would change."""
    if existing is None:
        return ListingOutcome(CREATED, None, images_added=len(plan.download))
    action = UPDATED if changed or plan.download or plan.deactivate else UNCHANGED
    return ListingOutcome(
        action,
        existing.pk,
        render_changes(changed),
        images_added=len(plan.download),
        images_deactivated=len(plan.deactivate),
        republished=_republishes(changed),
    )


#: The longest title ListingState keeps (for pf_areas unmapped's sample titles).
STATE_TITLE_MAX = ListingState._meta.get_field("title").max_length


@cache
def _state_columns() -> TableColumns:
    """The listing cursor's own columns (a listing's id lives there when the host has no pf_id)."""
    return model_columns(ListingState)


def _save_state(
    values: PropertyValues, property_id: int, fingerprint: str, now: datetime
) -> list[str]:
    """Record the listing's cursor: what was written, to skip it next time when unchanged.

    Returns the warnings of fitting its location id (one beyond the column is kept empty).
    """
    location = fit_row(_state_columns(), {"location_id": values.location_id})
    ListingState.objects.bulk_create(
        [
            ListingState(
                pf_id=values.pf_id,
                property_id=property_id,
                pf_updated_at=values.fields.get("pf_updated_at"),
                fingerprint=fingerprint,
                location_id=location.values["location_id"],
                title=clean_text(str(values.fields.get("title") or ""))[0][:STATE_TITLE_MAX],
                synced_at=now,
            )
        ],
        update_conflicts=True,
        unique_fields=["pf_id"],
        update_fields=[
            "property_id",
            "pf_updated_at",
            "fingerprint",
            "location_id",
            "title",
            "synced_at",
        ],
    )
    return location.warnings


def listing_fingerprints(pf_ids: list[str]) -> dict[str, str]:
    """The recorded fingerprint of each of these listings that has a property, by pf_id."""
    return dict(
        ListingState.objects.filter(pf_id__in=pf_ids, property_id__isnull=False).values_list(
            "pf_id", "fingerprint"
        )
    )


def forget_fingerprint(pf_id: str) -> None:
    """Make the next pf_sync compare this listing again instead of skipping it as unchanged."""
    ListingState.objects.filter(pf_id=pf_id).update(fingerprint="")


def properties_by_pf_id(
    pf_ids: list[str], unreadable: list[tuple[str, UnreadableCell]] | None = None
) -> dict[str, Property]:
    """The host properties of these listings, by listing id (host column or pfsync's link).

    A row holding a value Django cannot convert is returned with that field None;
    ``unreadable``, when given, receives (pf_id, cell) for each such value.
    """
    if properties().holds("pf_id"):
        found, cells = read_rows(Property, pf_ids, field_name="pf_id")
        by_pk = {row.pk: pf_id for pf_id, row in found.items()}
        if unreadable is not None:
            unreadable.extend((by_pk[cell.pk], cell) for cell in cells)
        return found
    links = dict(
        ListingState.objects.filter(pf_id__in=pf_ids, property_id__isnull=False).values_list(
            "pf_id", "property_id"
        )
    )
    rows, cells = read_rows(Property, list(links.values()))
    if unreadable is not None:
        by_pk = {pk: pf_id for pf_id, pk in links.items()}
        unreadable.extend((by_pk[cell.pk], cell) for cell in cells)
    return {pf_id: rows[pk] for pf_id, pk in links.items() if pk in rows}


def properties_with_images(
    pf_ids: list[str], unreadable: list[tuple[str, UnreadableCell]] | None = None
) -> tuple[dict[str, Property], dict[int, list]]:
    """The host properties of these listings by pf_id, and their image rows by property id.

    ``unreadable`` receives the values of these properties Django cannot convert
    (see ``properties_by_pf_id``).
    """
    existing = properties_by_pf_id(pf_ids, unreadable)
    rows: dict[int, list] = {}
    if existing:
        images_unreadable: list[tuple[int, UnreadableCell]] = []
        rows = image_rows_of((p.pk for p in existing.values()), images_unreadable)
        if unreadable is not None and images_unreadable:
            pf_id_of = {p.pk: pf_id for pf_id, p in existing.items()}
            unreadable.extend(
                (pf_id_of[owner], cell) for owner, cell in images_unreadable if owner in pf_id_of
            )
    return existing, rows


def property_id_of(pf_id: str) -> int | None:
    """The id of the host property linked to this listing, or None."""
    if not pf_id:
        return None
    found = properties_by_pf_id([pf_id]).get(pf_id)
    return found.pk if found is not None else None


def property_exists(pf_id: str) -> bool:
    """Whether a host property is linked to this listing."""
    return property_id_of(pf_id) is not None


def can_unpublish() -> bool:
    """Whether the host can hide a property at all (it has an is_published column)."""
    return properties().holds("is_published")


def unpublish(property_ids: list[int], *, now: datetime | None = None) -> int:
    """Set is_published = false on these properties (never deletes them).

    A host without an is_published column cannot hide a property: 0.
    """
    if not can_unpublish():
        return 0
    now = now or timezone.now()
    stamp = {"updated_at": now} if properties().holds("updated_at") else {}
    done = 0
    for start in range(0, len(property_ids), 500):
        chunk = property_ids[start : start + 500]
        done += Property.objects.filter(pk__in=chunk, is_published=True).update(
            is_published=False, **stamp
        )
    return done


def published_pf_ids() -> dict[str, int]:
    """The published properties that came from Property Finder, pf_id -> id."""
    if not can_unpublish():
        return {}
    if properties().holds("pf_id"):
        return dict(
            Property.objects.filter(is_published=True)
            .exclude(Q(pf_id__isnull=True) | Q(pf_id=""))
            .values_list("pf_id", "id")
        )
    links = ListingState.objects.filter(property_id__isnull=False)
    published = set(
        Property.objects.filter(is_published=True, pk__in=links.values("property_id")).values_list(
            "pk", flat=True
        )
    )
    return {pf_id: pk for pf_id, pk in links.values_list("pf_id", "property_id") if pk in published}
