"""Writers: mapped values into the host's rows, one transaction per user or listing.

Writers know the ORM and transactions, nothing of HTTP. They only INSERT and
UPDATE: no row is ever deleted, an image gone from a listing is deactivated,
a listing gone from Property Finder is unpublished.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.contrib.auth.hashers import make_password
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from pfsync_app.mapping import ImageValues, PropertyValues, UserValues, describe_changes
from pfsync_app.media import StoredImage
from pfsync_app.models import Agent, Area, ImageFile, ListingState, Property, PropertyImage

USER_FIELDS = ("first_name", "last_name", "email", "phone", "role")
CREATED = "created"
UPDATED = "updated"
UNCHANGED = "unchanged"


@dataclass
class UserOutcome:
    """What saving one user did."""

    action: str
    agent_id: int | None
    changes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass
class ListingOutcome:
    """What saving one listing did."""

    action: str
    property_id: int
    changes: list[str] = field(default_factory=list)
    images_added: int = 0
    images_replaced: int = 0
    images_deactivated: int = 0
    area_id: int | None = None


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


# ---------------------------------------------------------------------------
# Users
# ---------------------------------------------------------------------------


def _username_for(values: UserValues) -> str:
    base = values.fields["email"].split("@")[0] if values.fields["email"] else ""
    base = re.sub(r"[^\w.@+-]", "", base)[:120] or "pf-agent"
    taken = set(Agent.objects.filter(username__startswith=base).values_list("username", flat=True))
    candidates = (base, f"{base}-pf{values.pf_user_id}")
    for candidate in candidates:
        if candidate[:150] not in taken:
            return candidate[:150]
    suffix = 2
    while f"{base}-pf{values.pf_user_id}-{suffix}" in taken:
        suffix += 1
    return f"{base}-pf{values.pf_user_id}-{suffix}"[:150]


def unchanged_users(users: list[UserValues]) -> set[int]:
    """The PF user ids whose linked host user already holds exactly these values (one query)."""
    names = [*USER_FIELDS, "pf_user_id", "pf_public_profile_id"]
    current = {
        row["pf_user_id"]: row
        for row in Agent.objects.filter(pf_user_id__in=[u.pf_user_id for u in users]).values(*names)
    }
    same = set()
    for values in users:
        row = current.get(values.pf_user_id)
        if row is None or row["pf_public_profile_id"] != values.pf_public_profile_id:
            continue
        if all(row[name] == values.fields[name] for name in USER_FIELDS):
            same.add(values.pf_user_id)
    return same


def find_agent(values: UserValues) -> tuple[Agent | None, bool]:
    """The host user for a PF user: by pf_user_id, else an unlinked one with the same e-mail."""
    agent = Agent.objects.filter(pf_user_id=values.pf_user_id).first()
    if agent is not None:
        return agent, False
    email = values.fields["email"]
    if email:
        agent = (
            Agent.objects.filter(email__iexact=email, pf_user_id__isnull=True)
            .order_by("id")
            .first()
        )
        if agent is not None:
            return agent, True
    return None, False


def save_user(
    values: UserValues, *, dry_run: bool = False, now: datetime | None = None
) -> UserOutcome:
    """Create or update one host user from a PF user; never touches password or privileges."""
    now = now or timezone.now()
    warnings = list(values.warnings)
    with transaction.atomic():
        agent, linked = find_agent(values)
        target = dict(values.fields)
        target["pf_user_id"] = values.pf_user_id
        profile_id = values.pf_public_profile_id
        if profile_id is not None:
            holder = Agent.objects.filter(pf_public_profile_id=profile_id)
            if agent is not None:
                holder = holder.exclude(pk=agent.pk)
            # A holder's pf_user_id may be NULL, so the row's presence is what counts.
            holders = list(holder.order_by("pk").values_list("pf_user_id", flat=True)[:1])
            if holders:
                warnings.append(
                    f"public profile {profile_id} already belongs to PF user {holders[0]}; "
                    "not linked"
                )
                profile_id = agent.pf_public_profile_id if agent else None
        target["pf_public_profile_id"] = profile_id
        email = values.fields["email"]
        if email:
            sharing = Agent.objects.filter(email__iexact=email)
            if agent is not None:
                sharing = sharing.exclude(pk=agent.pk)
            other = sharing.values_list("pk", flat=True).first()
            if other is not None:
                warnings.append(f"e-mail {email} is also the e-mail of host user {other}")
        if agent is None:
            if dry_run:
                return UserOutcome(CREATED, None, [], warnings)
            agent = Agent(
                username=_username_for(values),
                password=make_password(None),
                is_staff=False,
                is_superuser=False,
                is_active=True,
                date_joined=now,
                **target,
            )
            agent.save(force_insert=True)
            return UserOutcome(CREATED, agent.pk, [], warnings)
        current = {name: getattr(agent, name) for name in target}
        changes = describe_changes(current, target)
        if linked:
            changes.insert(0, f"linked by e-mail to host user {agent.pk}")
        if not changes:
            return UserOutcome(UNCHANGED, agent.pk, [], warnings)
        if not dry_run:
            updates = {k: v for k, v in target.items() if current[k] != v}
            Agent.objects.filter(pk=agent.pk).update(**updates)
        return UserOutcome(UPDATED, agent.pk, changes, warnings)


# ---------------------------------------------------------------------------
# Listings
# ---------------------------------------------------------------------------


@dataclass
class ImagePlan:
    """What a listing's images need: downloads for some positions, updates for the rest."""

    download: list[ImageValues]
    keep: dict[int, PropertyImage]  # position -> existing row with the same source URL
    deactivate: list[PropertyImage]
    replace: dict[int, PropertyImage]  # position -> row whose file is missing


def plan_images(
    images: list[ImageValues],
    rows: Iterable[PropertyImage],
    file_exists: Any,
) -> ImagePlan:
    """Match a listing's images to its rows by source URL; decide downloads and deactivations."""
    by_url: dict[str, PropertyImage] = {}
    for row in sorted(rows, key=lambda r: (not r.is_active, r.id)):
        by_url.setdefault(row.source_url, row)
    wanted = {image.source_url for image in images}
    plan = ImagePlan(download=[], keep={}, deactivate=[], replace={})
    for image in images:
        row = by_url.get(image.source_url)
        if row is None:
            plan.download.append(image)
        elif file_exists(row.image):
            plan.keep[image.position] = row
        else:
            plan.download.append(image)
            plan.replace[image.position] = row
    used = {row.id for row in plan.keep.values()} | {row.id for row in plan.replace.values()}
    for row in by_url.values():
        if row.source_url not in wanted and row.is_active and row.id not in used:
            plan.deactivate.append(row)
    # Rows sharing a URL with a kept row (older duplicates) stay as they are.
    return plan


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
) -> ListingOutcome:
    """Write one listing, its images rows and its cursor in one transaction."""
    now = now or timezone.now()
    target = property_fields(values, lookups)
    with transaction.atomic():
        if existing is None:
            prop = Property(pf_id=values.pf_id, created_at=now, updated_at=now, **target)
            prop.save(force_insert=True)
            outcome = ListingOutcome(CREATED, prop.pk)
        else:
            current = {name: getattr(existing, name) for name in target}
            changes = describe_changes(current, target)
            if changes:
                changed = _changed(current, target)
                updates = {k: v for k, v in target.items() if k in changed}
                Property.objects.filter(pk=existing.pk).update(updated_at=now, **updates)
            outcome = ListingOutcome(UPDATED if changes else UNCHANGED, existing.pk, changes)
        outcome.area_id = target["area_id"]
        _write_images(outcome, values, plan, stored, now)
        ListingState.objects.bulk_create(
            [
                ListingState(
                    pf_id=values.pf_id,
                    property_id=outcome.property_id,
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
    if outcome.action == UNCHANGED and (
        outcome.images_added or outcome.images_replaced or outcome.images_deactivated
    ):
        outcome.action = UPDATED
    return outcome


def _changed(current: dict[str, Any], target: dict[str, Any]) -> set[str]:
    return {
        name for name in target if describe_changes({name: current[name]}, {name: target[name]})
    }


def _write_images(
    outcome: ListingOutcome,
    values: PropertyValues,
    plan: ImagePlan,
    stored: Mapping[int, StoredImage],
    now: datetime,
) -> None:
    new_rows: list[PropertyImage] = []
    updated: list[PropertyImage] = []
    # Paired where a file is attached: a deactivated row may hold a replaced row's old position.
    checksum_rows: list[tuple[PropertyImage, StoredImage]] = []
    for image in values.images:
        row = plan.keep.get(image.position) or plan.replace.get(image.position)
        file = stored.get(image.position)
        if row is not None:
            dirty = False
            for attr, value in (
                ("position", image.position),
                ("width", image.width),
                ("height", image.height),
                ("is_active", True),
            ):
                if getattr(row, attr) != value:
                    setattr(row, attr, value)
                    dirty = True
            if image.position in plan.replace and file is not None:
                row.image = file.name
                dirty = True
                outcome.images_replaced += 1
                checksum_rows.append((row, file))
            if dirty:
                updated.append(row)
        elif file is not None:
            row = PropertyImage(
                property_id=outcome.property_id,
                image=file.name,
                source_url=image.source_url,
                position=image.position,
                width=image.width,
                height=image.height,
                is_active=True,
                created_at=now,
            )
            new_rows.append(row)
            checksum_rows.append((row, file))
    for row in plan.deactivate:
        row.is_active = False
        updated.append(row)
    outcome.images_deactivated = len(plan.deactivate)
    if updated:
        PropertyImage.objects.bulk_update(
            updated, ["image", "position", "width", "height", "is_active"]
        )
    if new_rows:
        created = PropertyImage.objects.bulk_create(new_rows)
        if any(row.pk is None for row in created):
            # Backends that cannot return ids from a bulk insert: read them back by file name.
            ids = dict(
                PropertyImage.objects.filter(image__in=[row.image for row in created]).values_list(
                    "image", "id"
                )
            )
            for row in created:
                row.pk = row.id = ids[row.image]
        outcome.images_added = len(created)
    record_checksums(checksum_rows, now)


def record_checksums(rows: list[tuple[PropertyImage, StoredImage]], now: datetime) -> None:
    """Remember the size and sha256 of files pfsync stored (pf_check --verify reads them)."""
    if not rows:
        return
    ImageFile.objects.bulk_create(
        [
            ImageFile(
                image_id=row.pk,
                name=file.name,
                size=file.size,
                sha256=file.sha256,
                content_type=file.content_type,
                source_url=row.source_url,
                stored_at=now,
            )
            for row, file in rows
        ],
        update_conflicts=True,
        unique_fields=["image_id"],
        update_fields=["name", "size", "sha256", "content_type", "source_url", "stored_at"],
    )


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


__all__ = [
    "CREATED",
    "UNCHANGED",
    "UPDATED",
    "ImagePlan",
    "ListingOutcome",
    "Lookups",
    "UserOutcome",
    "find_agent",
    "plan_images",
    "property_fields",
    "published_pf_ids",
    "record_checksums",
    "save_listing",
    "save_user",
    "unchanged_users",
    "unpublish",
]
