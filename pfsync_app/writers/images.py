"""Images rows: which of a listing's images need a download, and writing their rows.

Rows are matched to the listing's images by source URL; an image gone from
the listing is deactivated (``is_active = false``), never deleted.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import Q, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from pfsync_app.atlas.records import ListingImage
from pfsync_app.mapping import ImageValues, PropertyValues
from pfsync_app.media.download import StoredImage
from pfsync_app.models import ImageFile, PropertyImage
from pfsync_app.writers.outcomes import ListingOutcome


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


def write_images(
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
        width, height = _dimensions(image, file, row)
        if row is not None:
            dirty = False
            for attr, value in (
                ("position", image.position),
                ("width", width),
                ("height", height),
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
                width=width,
                height=height,
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


def _dimensions(
    image: ImageValues, file: StoredImage | None, row: PropertyImage | None
) -> tuple[int | None, int | None]:
    """The API's width and height; when it gives none, the decoded file's (else the row's)."""
    if image.width is not None or image.height is not None:
        return image.width, image.height
    if file is not None and file.width is not None:
        return file.width, file.height
    if row is not None:
        return row.width, row.height
    return None, None


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


# The columns of an image row as pf_check and pf_repair read them, in this order.
IMAGE_ROW_FIELDS = ("id", "property_id", "property__pf_id", "image", "source_url", "position")
#: The longest source URL an image row can hold.
MAX_SOURCE_URL = PropertyImage._meta.get_field("source_url").max_length


def image_rows(pf_id: str | None = None, *, chunk_size: int = 2000) -> Iterator[tuple]:
    """The active image rows of Property Finder properties as tuples of IMAGE_ROW_FIELDS.

    Streamed in property, position order; ``pf_id`` keeps one property's rows.
    Read in keyset pages of ``chunk_size`` rows, each its own short query: no
    server-side cursor, which a transaction pooler (PgBouncer) breaks between
    transactions, and never the whole table in memory, which Django's
    DISABLE_SERVER_SIDE_CURSORS would otherwise bring.
    """
    rows = PropertyImage.objects.filter(is_active=True).exclude(
        Q(property__pf_id__isnull=True) | Q(property__pf_id="")
    )
    if pf_id is not None:
        rows = rows.filter(property__pf_id=pf_id)
    ordered = rows.order_by("property_id", "position", "id").values_list(*IMAGE_ROW_FIELDS)
    page = list(ordered[:chunk_size])
    while page:
        yield from page
        if len(page) < chunk_size:
            return
        last = dict(zip(IMAGE_ROW_FIELDS, page[-1], strict=True))
        after = (
            Q(property_id__gt=last["property_id"])
            | Q(property_id=last["property_id"], position__gt=last["position"])
            | Q(property_id=last["property_id"], position=last["position"], id__gt=last["id"])
        )
        # The plain bound lets the database start from the property_id index.
        page = list(ordered.filter(after, property_id__gte=last["property_id"])[:chunk_size])


def recorded_files(image_ids: list[int]) -> dict[int, tuple[str, int, str]]:
    """What pfsync recorded when it stored each image's file: id -> (name, size, sha256)."""
    return {
        image_id: (name, size, sha256)
        for image_id, name, size, sha256 in ImageFile.objects.filter(
            image_id__in=image_ids
        ).values_list("image_id", "name", "size", "sha256")
    }


def referenced_names(prefix: str, *, chunk_size: int = 2000) -> set[str]:
    """The file names image rows hold that start with ``prefix`` (read in keyset pages by id)."""
    rows = PropertyImage.objects.filter(image__startswith=prefix).order_by("id")
    names: set[str] = set()
    last_id = None
    while True:
        page = rows if last_id is None else rows.filter(id__gt=last_id)
        batch = list(page.values_list("id", "image")[:chunk_size])
        names.update(name for _, name in batch)
        if len(batch) < chunk_size:
            return names
        last_id = batch[-1][0]


def repoint_image(
    image_id: int,
    old_name: str,
    stored: StoredImage,
    *,
    source_url: str,
    moved: ListingImage | None = None,
) -> bool:
    """Point an active image row at a newly stored file, and record the file's checksum.

    ``moved`` is the listing's current image when Property Finder moved it (its
    URL and size then replace the row's). False when the row changed meanwhile
    (another file, or deactivated): then nothing is written.
    """
    updates: dict[str, Any] = {"image": stored.name}
    if moved is not None:
        updates.update(source_url=moved.url, width=moved.width, height=moved.height)
        if moved.width is None and moved.height is None:
            updates.update(width=stored.width, height=stored.height)
    elif stored.width is not None:
        # A row the API gave no size for takes the decoded one; any other keeps its own.
        updates.update(
            width=Coalesce("width", Value(stored.width)),
            height=Coalesce("height", Value(stored.height)),
        )
    with transaction.atomic():
        changed = PropertyImage.objects.filter(pk=image_id, image=old_name, is_active=True).update(
            **updates
        )
        if changed:
            row = PropertyImage(id=image_id, source_url=source_url)
            record_checksums([(row, stored)], timezone.now())
    return bool(changed)
