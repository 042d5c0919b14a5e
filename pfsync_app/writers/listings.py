"""Listings: a mapped listing into the host's property row, its images and its cursor.

One transaction per listing. Writers only INSERT and UPDATE: a listing gone
from Property Finder is unpublished, never deleted.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from pfsync_app.mapping import PropertyValues, changed_fields, render_changes
from pfsync_app.media.download import StoredImage
from pfsync_app.models import Agent, Area, ListingState, Property, PropertyImage
from pfsync_app.writers.images import ImagePlan, write_images
from pfsync_app.writers.outcomes import CREATED, UNCHANGED, UPDATED, ListingOutcome


class Lookups:
    """Agent and area look-ups cached for a run: public profile id -> user, location -> area."""

    def __init__(self) -> None:
        self.agents: dict[int, int] = {}
        self.areas: dict[int, int] = {}
        self.reload()

    def reload(self) -> None:
        """Read both maps again (after users were synced, or areas linked)."""
        self.agents = dict(
            Agent.objects.filter(pf_public_profile_id__isnull=False).values_list(
                "pf_public_profile_id", "id"
            )
        )
        self.areas = dict(
            Area.objects.filter(pf_location_id__isnull=False).values_list("pf_location_id", "id")
        )

    def agent_id(self, public_profile_id: int | None) -> int | None:
        """The host user whose pf_public_profile_id is the listing's assignedTo.id."""
        return None if public_profile_id is None else self.agents.get(public_profile_id)

    def area_id(self, location_id: int | None) -> int | None:
        """The host area whose pf_location_id is the listing's location.id."""
        return None if location_id is None else self.areas.get(location_id)


def property_fields(values: PropertyValues, lookups: Lookups) -> dict[str, Any]:
    """The host property's column values for a listing, its agent and area resolved."""
    target = dict(values.fields)
    target["user_id"] = lookups.agent_id(values.assigned_to_id)
    target["area_id"] = lookups.area_id(values.location_id)
    return target


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
    """
    now = now or timezone.now()
    target = property_fields(values, lookups)
    changed = {}
    if existing is not None:
        changed = changed_fields({name: getattr(existing, name) for name in target}, target)
    if dry_run:
        return _planned(existing, changed, plan)
    with transaction.atomic():
        if existing is None:
            prop = Property(pf_id=values.pf_id, created_at=now, updated_at=now, **target)
            prop.save(force_insert=True)
            outcome = ListingOutcome(CREATED, prop.pk)
        else:
            if changed:
                updates = {name: target[name] for name in changed}
                Property.objects.filter(pk=existing.pk).update(updated_at=now, **updates)
            action = UPDATED if changed else UNCHANGED
            outcome = ListingOutcome(action, existing.pk, render_changes(changed))
        outcome.area_id = target["area_id"]
        write_images(outcome, values, plan, stored, now)
        _save_state(values, outcome.property_id, fingerprint, now)
    if outcome.action == UNCHANGED and (
        outcome.images_added or outcome.images_replaced or outcome.images_deactivated
    ):
        outcome.action = UPDATED
    return outcome


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
    )


def _save_state(values: PropertyValues, property_id: int, fingerprint: str, now: datetime) -> None:
    """Record the listing's cursor: what was written, to skip it next time when unchanged."""
    ListingState.objects.bulk_create(
        [
            ListingState(
                pf_id=values.pf_id,
                property_id=property_id,
                pf_updated_at=values.fields.get("pf_updated_at"),
                fingerprint=fingerprint,
                location_id=values.location_id,
                title=values.fields.get("title", "")[:255],
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


def properties_with_images(pf_ids: list[str]) -> tuple[dict[str, Property], dict[int, list]]:
    """The host properties of these listings by pf_id, and their image rows by property id."""
    existing = Property.objects.in_bulk(pf_ids, field_name="pf_id")
    rows: dict[int, list] = {}
    if existing:
        for row in PropertyImage.objects.filter(property_id__in=[p.pk for p in existing.values()]):
            rows.setdefault(row.property_id, []).append(row)
    return existing, rows


def property_id_of(pf_id: str) -> int | None:
    """The id of the host property linked to this listing, or None."""
    if not pf_id:
        return None
    return Property.objects.filter(pf_id=pf_id).values_list("pk", flat=True).first()


def property_exists(pf_id: str) -> bool:
    """Whether a host property is linked to this listing."""
    return Property.objects.filter(pf_id=pf_id).exists()


def unpublish(property_ids: list[int], *, now: datetime | None = None) -> int:
    """Set is_published = false on these properties (never deletes them)."""
    now = now or timezone.now()
    done = 0
    for start in range(0, len(property_ids), 500):
        chunk = property_ids[start : start + 500]
        done += Property.objects.filter(pk__in=chunk, is_published=True).update(
            is_published=False, updated_at=now
        )
    return done


def published_pf_ids() -> dict[str, int]:
    """The published properties that came from Property Finder, pf_id -> id."""
    return dict(
        Property.objects.filter(is_published=True)
        .exclude(Q(pf_id__isnull=True) | Q(pf_id=""))
        .values_list("pf_id", "id")
    )
