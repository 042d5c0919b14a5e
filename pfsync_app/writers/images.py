"""Images rows: which of a listing's images need a download, and writing their rows.

Rows are matched to the listing's images by source URL; an image gone from
the listing is deactivated (``is_active = false``), never deleted. An image's
source URL, position, size and active flag live in the host's columns when it
has them, else in pfsync's ``ImageState`` (a host images table may hold only
the file): ``image_rows_of`` reads both as one ``ImageRow``, so matching and
incremental runs work the same either way.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from pfsync_app.atlas.records import ListingImage
from pfsync_app.mapping import ImageValues, PropertyValues
from pfsync_app.media.download import StoredImage
from pfsync_app.models import ImageFile, ImageState, ListingState, Property, PropertyImage
from pfsync_app.signals import after_image_save, before_image_save
from pfsync_app.writers.columns import HostTable, host_table, send_signal
from pfsync_app.writers.outcomes import ListingOutcome
from pfsync_app.writers.rows import UnreadableCell, read_all

#: The facts of an image pfsync keeps itself when the host's table has no column for them.
FACTS = ("source_url", "position", "width", "height", "is_active")
_FACT_DEFAULTS = {"source_url": "", "position": 0, "width": None, "height": None, "is_active": True}


def images() -> HostTable:
    """The host's images table as the writers see it."""
    return host_table("image")


def _keeps_facts() -> bool:
    return any(images().kept(name) for name in FACTS)


@dataclass
class ImageRow:
    """What one image row holds: its host columns and the facts pfsync keeps, as one."""

    id: int
    property_id: int
    image: str
    source_url: str
    position: int
    width: int | None
    height: int | None
    is_active: bool
    host: dict[str, Any] = field(default_factory=dict, repr=False)  # host column -> value

    @property
    def pk(self) -> int:
        """The row's id."""
        return self.id


def as_image_row(row: Any, state: ImageState | None = None) -> ImageRow:
    """An ImageRow from a host row (pfsync's PropertyImage) and its kept facts."""
    if isinstance(row, ImageRow):
        return row
    table = images()
    facts = {}
    for name in FACTS:
        if table.holds(name):
            facts[name] = getattr(row, name)
        else:
            facts[name] = getattr(state, name, _FACT_DEFAULTS[name])
    return ImageRow(
        id=row.pk,
        property_id=row.property_id,
        image=row.image,
        host=table.read(row),
        **facts,
    )


def image_rows_of(
    property_ids: Iterable[int], unreadable: list[tuple[int, UnreadableCell]] | None = None
) -> dict[int, list[ImageRow]]:
    """The image rows of these properties, with their kept facts, by property id.

    A row holding a value Django cannot convert comes with that field None;
    ``unreadable``, when given, receives (property id, cell) for each such value.
    """
    rows, cells = read_all(PropertyImage.objects.filter(property_id__in=list(property_ids)))
    if unreadable is not None and cells:
        owners = {row.pk: row.property_id for row in rows}
        unreadable.extend((owners[cell.pk], cell) for cell in cells)
    states = {}
    if rows and _keeps_facts():
        states = ImageState.objects.in_bulk([row.pk for row in rows], field_name="image_id")
    found: dict[int, list[ImageRow]] = {}
    for row in rows:
        found.setdefault(row.property_id, []).append(as_image_row(row, states.get(row.pk)))
    return found


@dataclass
class ImagePlan:
    """What a listing's images need: downloads for some positions, updates for the rest."""

    download: list[ImageValues]
    keep: dict[int, Any]  # position -> existing row with the same source URL
    deactivate: list[Any]
    replace: dict[int, Any]  # position -> row whose file is missing


def plan_images(
    images: list[ImageValues],
    rows: Iterable[Any],
    file_exists: Any,
) -> ImagePlan:
    """Match a listing's images to its rows, one row per image; decide downloads and deactivations.

    An image matches a row with its source URL, and each row serves one image:
    the same URL at two positions of ``media.images`` is two rows, each at its
    own position (HOST_SCHEMA: position is the index in ``media.images``). A row
    already at the image's position is taken first, so a listing's rows stay put
    from run to run; then an active row, then the oldest. Active rows no image
    took are deactivated, duplicates included.
    """
    rows = list(rows)
    free: dict[str, list[Any]] = {}
    for row in sorted(rows, key=lambda r: (not r.is_active, r.id)):
        free.setdefault(row.source_url, []).append(row)
    matched: dict[int, Any] = {}
    for image in images:
        candidates = free.get(image.source_url, [])
        for row in candidates:
            if row.is_active and row.position == image.position:
                matched[image.position] = row
                candidates.remove(row)
                break
    for image in images:
        candidates = free.get(image.source_url)
        if image.position not in matched and candidates:
            matched[image.position] = candidates.pop(0)
    plan = ImagePlan(download=[], keep={}, deactivate=[], replace={})
    for image in images:
        row = matched.get(image.position)
        if row is None:
            plan.download.append(image)
        elif file_exists(row.image):
            plan.keep[image.position] = row
        else:
            plan.download.append(image)
            plan.replace[image.position] = row
    used = {row.id for row in matched.values()}
    plan.deactivate = [row for row in rows if row.is_active and row.id not in used]
    return plan


def cover_image(values: PropertyValues, plan: ImagePlan, stored: Mapping[int, StoredImage]) -> Any:
    """The storage name of the listing's first image that will have a file, or None."""
    for image in sorted(values.images, key=lambda i: i.position):
        file = stored.get(image.position)
        if file is not None:
            return file.name
        row = plan.keep.get(image.position)
        if row is not None:
            return row.image
    return None


def image_facts(
    image: ImageValues, file: StoredImage | None, row: ImageRow | None = None
) -> dict[str, Any]:
    """What pfsync writes about one image of the listing (its URL, position, size, active).

    The size is the API's (HOST_SCHEMA: "from the API"); where the API gives none,
    the decoded file's, and for a row kept as it is, the size it was filled with.
    """
    width, height = _dimensions(image, file, row)
    return {
        "source_url": image.source_url,
        "position": image.position,
        "width": width,
        "height": height,
        "is_active": True,
    }


def _dimensions(
    image: ImageValues, file: StoredImage | None, row: ImageRow | None
) -> tuple[int | None, int | None]:
    """The API's width and height; when it gives none, the decoded file's (else the row's)."""
    if image.width is not None or image.height is not None:
        return image.width, image.height
    if file is not None and file.width is not None:
        return file.width, file.height
    if row is not None:
        return row.width, row.height
    return None, None


@dataclass
class _Write:
    """One image row to update: its facts as they are and as they will be."""

    row: ImageRow
    facts: dict[str, Any]
    image: ImageValues | None
    file: StoredImage | None = None


def write_images(
    outcome: ListingOutcome,
    values: PropertyValues,
    plan: ImagePlan,
    stored: Mapping[int, StoredImage],
    now: datetime,
) -> None:
    """Write a listing's image rows: new ones, moved or repaired ones, deactivated ones."""
    updates: list[_Write] = []
    new: list[tuple[ImageValues, StoredImage]] = []
    for image in values.images:
        row = plan.keep.get(image.position) or plan.replace.get(image.position)
        file = stored.get(image.position)
        if row is not None:
            current = as_image_row(row)
            facts = image_facts(image, file, current)
            facts.pop("source_url")
            write = _Write(current, facts, image)
            if image.position in plan.replace and file is not None:
                write.facts["image"] = file.name
                write.file = file
                outcome.images_replaced += 1
            updates.append(write)
        elif file is not None:
            new.append((image, file))
    for row in plan.deactivate:
        updates.append(_Write(as_image_row(row), {"is_active": False}, None))
    outcome.images_deactivated = len(plan.deactivate)
    checksums: list[tuple[int, str, StoredImage]] = []
    for write in updates:
        if _update_row(write, values) and write.file is not None:
            checksums.append((write.row.id, write.row.source_url, write.file))
    if new:
        ids = _insert_rows(outcome.property_id, new, values, now)
        checksums += [
            (image_id, image.source_url, file)
            for image_id, (image, file) in zip(ids, new, strict=True)
        ]
        outcome.images_added = len(ids)
    record_checksums(checksums, now)


def _row_changes(
    row: ImageRow, facts: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any], dict[str, tuple[Any, Any]]]:
    """What writing ``facts`` would change in one image row.

    (the fitted host values, the host columns that differ -> (before, after), the
    kept facts that differ -> (before, after)). The one comparison both writing and
    skipping an unchanged listing use.
    """
    table = images()
    fitted = table.fit(table.to_columns(facts), identifiers=("image",))
    changed = table.changes(row.host, fitted.values)
    kept = {
        name: (getattr(row, name), wanted)
        for name, wanted in facts.items()
        if table.kept(name) and getattr(row, name) != wanted
    }
    return fitted.values, changed, kept


def image_rows_agree(images: list[ImageValues], plan: ImagePlan) -> bool:
    """Whether a listing's image rows already hold its images: nothing to download or write.

    ``plan`` is ``plan_images`` of these images against the rows (file existence is
    not this question's: pass a ``file_exists`` that says yes). Compares what
    ``write_images`` would write for each image (position, size, the decoded size
    pfsync filled in, the active flag) with its row.
    """
    if plan.download or plan.deactivate or plan.replace:
        return False
    for image in images:
        row = as_image_row(plan.keep[image.position])
        facts = image_facts(image, None, row)
        facts.pop("source_url")
        _, changed, kept = _row_changes(row, facts)
        if changed or kept:
            return False
    return True


def _update_row(write: _Write, values: PropertyValues) -> bool:
    """Write what changed in one existing image row (host columns, kept facts); whether any."""
    table = images()
    row = write.row
    fitted_values, changed, kept = _row_changes(row, write.facts)
    if not changed and not kept:
        return False
    columns = {column: fitted_values[column] for column in changed}
    send_signal(
        before_image_save,
        "before_image_save",
        PropertyImage,
        values=columns,
        created=False,
        image_id=row.id,
        property_id=row.property_id,
        image=write.image,
        listing=values.record,
    )
    table.update([row.id], table.fit(columns, identifiers=("image",)).values)
    for name, (_, wanted) in kept.items():
        setattr(row, name, wanted)
    if kept:
        _keep_facts([row])
    send_signal(
        after_image_save,
        "after_image_save",
        PropertyImage,
        image_id=row.id,
        property_id=row.property_id,
        created=False,
        changed={**changed, **kept},
        image=write.image,
        listing=values.record,
    )
    return True


def _insert_rows(
    property_id: int,
    new: list[tuple[ImageValues, StoredImage]],
    values: PropertyValues,
    now: datetime,
) -> list[int]:
    """INSERT the rows of newly downloaded images (one statement); their ids."""
    table = images()
    rows = []
    for image, file in new:
        facts = image_facts(image, file)
        row = table.to_columns(
            {"property": property_id, "image": file.name, "created_at": now, **facts}
        )
        row.update(table.insert_defaults(row))
        send_signal(
            before_image_save,
            "before_image_save",
            PropertyImage,
            values=row,
            created=True,
            image_id=None,
            property_id=property_id,
            image=image,
            listing=values.record,
        )
        rows.append(table.fit(row, identifiers=("image", "source_url")).values)
    ids = table.insert(rows)
    if _keeps_facts():
        _keep_facts(
            [
                ImageRow(image_id, property_id, file.name, **image_facts(image, file))
                for image_id, (image, file) in zip(ids, new, strict=True)
            ]
        )
    for image_id, (image, _) in zip(ids, new, strict=True):
        send_signal(
            after_image_save,
            "after_image_save",
            PropertyImage,
            image_id=image_id,
            property_id=property_id,
            created=True,
            changed={},
            image=image,
            listing=values.record,
        )
    return ids


def _keep_facts(rows: list[ImageRow]) -> None:
    """Record the facts of these rows in pfsync's ImageState (the host has no column for some)."""
    ImageState.objects.bulk_create(
        [
            ImageState(
                image_id=row.id,
                property_id=row.property_id,
                source_url=row.source_url,
                position=row.position,
                width=row.width,
                height=row.height,
                is_active=row.is_active,
            )
            for row in rows
        ],
        update_conflicts=True,
        unique_fields=["image_id"],
        update_fields=["property_id", "source_url", "position", "width", "height", "is_active"],
    )


def record_checksums(rows: list[tuple[int, str, StoredImage]], now: datetime) -> None:
    """Remember the size and sha256 of files pfsync stored (pf_check --verify reads them).

    ``rows``: (image row id, its source URL, the stored file).
    """
    if not rows:
        return
    ImageFile.objects.bulk_create(
        [
            ImageFile(
                image_id=image_id,
                name=file.name,
                size=file.size,
                sha256=file.sha256,
                content_type=file.content_type,
                source_url=source_url,
                stored_at=now,
            )
            for image_id, source_url, file in rows
        ],
        update_conflicts=True,
        unique_fields=["image_id"],
        update_fields=["name", "size", "sha256", "content_type", "source_url", "stored_at"],
    )


# The columns of an image row as pf_check and pf_repair read them, in this order.
IMAGE_ROW_FIELDS = ("id", "property_id", "property__pf_id", "image", "source_url", "position")


def max_source_url() -> int:
    """The longest source URL an image row can hold (the host's column, or pfsync's own)."""
    table = images()
    column = table.column("source_url")
    if column is not None:
        found = table.columns().get(column)
        if found is not None and found.max_length:
            return found.max_length
    return ImageState._meta.get_field("source_url").max_length


def image_rows(pf_id: str | None = None, *, chunk_size: int = 2000) -> Iterator[tuple]:
    """The active image rows of Property Finder properties as tuples of IMAGE_ROW_FIELDS.

    Streamed in property, position order; ``pf_id`` keeps one property's rows.
    """
    if not _keeps_facts() and images_holds_links():
        rows = PropertyImage.objects.filter(is_active=True).exclude(
            Q(property__pf_id__isnull=True) | Q(property__pf_id="")
        )
        if pf_id is not None:
            rows = rows.filter(property__pf_id=pf_id)
        yield from in_keyset_pages(
            rows.values_list(*IMAGE_ROW_FIELDS),
            IMAGE_ROW_FIELDS,
            ("property_id", "position", "id"),
            chunk_size,
        )
        return
    yield from _merged_rows(pf_id, chunk_size)


def images_holds_links() -> bool:
    """Whether the host's property table holds the listing id (pf_id) itself."""
    return host_table("property").holds("pf_id")


def _merged_rows(pf_id: str | None, chunk_size: int) -> Iterator[tuple]:
    """image_rows for a host whose tables lack some columns: host rows joined with kept facts."""
    links = _pf_ids_by_property(pf_id)
    if not links:
        return
    fields = ("id", "property_id", "image")
    rows = PropertyImage.objects.filter(property_id__in=list(links)).values_list(*fields)
    batch: list[tuple] = []
    current = None
    for row in in_keyset_pages(rows, fields, ("property_id", "id"), chunk_size):
        if row[1] != current and len(batch) >= chunk_size:
            yield from _merge(batch, links)
            batch = []
        current = row[1]
        batch.append(row)
    if batch:
        yield from _merge(batch, links)


def _merge(batch: list[tuple], links: dict[int, str]) -> Iterator[tuple]:
    """One batch of host image rows (whole properties) with their facts, in position order."""
    ids = [row[0] for row in batch]
    table = images()
    states = ImageState.objects.in_bulk(ids, field_name="image_id") if _keeps_facts() else {}
    held = [name for name in FACTS if table.holds(name)]
    hosted = {}
    if held:
        hosted = {
            values["id"]: values
            for values in PropertyImage.objects.filter(pk__in=ids).values("id", *held)
        }
    merged = []
    for image_id, property_id, name in batch:
        facts = {}
        for fact in FACTS:
            if fact in held:
                facts[fact] = hosted.get(image_id, {}).get(fact, _FACT_DEFAULTS[fact])
            else:
                facts[fact] = getattr(states.get(image_id), fact, _FACT_DEFAULTS[fact])
        if not facts["is_active"]:
            continue
        merged.append(
            (
                image_id,
                property_id,
                links[property_id],
                name,
                facts["source_url"],
                facts["position"],
            )
        )
    merged.sort(key=lambda row: (row[1], row[5], row[0]))
    yield from merged


def _pf_ids_by_property(pf_id: str | None) -> dict[int, str]:
    """Property id -> listing id, for the properties that came from Property Finder."""
    if images_holds_links():
        rows = Property.objects.exclude(Q(pf_id__isnull=True) | Q(pf_id=""))
        if pf_id is not None:
            rows = rows.filter(pf_id=pf_id)
        return dict(rows.values_list("pk", "pf_id"))
    links = ListingState.objects.filter(property_id__isnull=False)
    if pf_id is not None:
        links = links.filter(pf_id=pf_id)
    found = dict(links.values_list("property_id", "pf_id"))
    existing = set(Property.objects.filter(pk__in=list(found)).values_list("pk", flat=True))
    return {pk: listing for pk, listing in found.items() if pk in existing}


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
    rows = PropertyImage.objects.filter(image__startswith=prefix).values_list("id", "image")
    return {name for _, name in in_keyset_pages(rows, ("id", "image"), ("id",), chunk_size)}


def in_keyset_pages(
    rows: QuerySet, fields: tuple[str, ...], keys: tuple[str, ...], chunk_size: int
) -> Iterator[tuple]:
    """The tuples of ``rows`` (a values_list of ``fields``) ordered by ``keys``, page by page.

    Each page is its own short query starting after the last row of the one
    before: no server-side cursor, which a transaction pooler (PgBouncer) breaks
    between transactions, and never the whole table in memory, which Django's
    DISABLE_SERVER_SIDE_CURSORS would otherwise bring. ``keys`` must order the
    rows uniquely (end with the id).
    """
    at = [fields.index(key) for key in keys]
    ordered = rows.order_by(*keys)
    page = list(ordered[:chunk_size])
    while page:
        yield from page
        if len(page) < chunk_size:
            return
        last = [page[-1][index] for index in at]
        after = Q()
        for depth, key in enumerate(keys):
            same = {name: value for name, value in zip(keys[:depth], last[:depth], strict=True)}
            after |= Q(**same, **{f"{key}__gt": last[depth]})
        # The plain bound lets the database start from the first key's index.
        page = list(ordered.filter(after, **{f"{keys[0]}__gte": last[0]})[:chunk_size])


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
    (another file, or deactivated): then nothing is written. The property's main
    image column (``cover_image``) follows in the same transaction when it named
    the old file or the image is the listing's first (position 0), as pf_sync
    would have set it. RowRefused when the new name does not fit that column.
    """
    table = images()
    with transaction.atomic():
        rows = image_rows_for_update(image_id, old_name)
        if not rows:
            return False
        row = rows[0]
        facts: dict[str, Any] = {}
        if moved is not None:
            facts.update(source_url=moved.url, width=moved.width, height=moved.height)
            if moved.width is None and moved.height is None:
                facts.update(width=stored.width, height=stored.height)
        elif stored.width is not None and row.width is None and row.height is None:
            # A row the API gave no size for takes the decoded one; any other keeps its own.
            facts.update(width=stored.width, height=stored.height)
        host = table.fit(
            table.to_columns({"image": stored.name, **facts}), identifiers=("image", "source_url")
        ).values
        table.update([image_id], host)
        kept = {name: value for name, value in facts.items() if table.kept(name)}
        if kept:
            for name, value in kept.items():
                setattr(row, name, value)
            _keep_facts([row])
        record_checksums([(image_id, source_url, stored)], timezone.now())
        repoint_cover(row, old_name, stored.name)
    return True


def repoint_cover(row: ImageRow, old_name: str, new_name: str) -> bool:
    """Point the property's main image column at ``new_name`` where it should name it.

    That is when the column names the image's old file, or the image is the
    listing's first (position 0: pf_sync's cover is the first image with a file).
    Whether it changed the column; a site without a main image column has none.
    """
    table = host_table("property")
    if table.column("cover_image") is None:
        return False
    current = (
        Property._base_manager.filter(pk=row.property_id)
        .values_list(table.attname("cover_image"), flat=True)
        .first()
    )
    if current == new_name or (current != old_name and row.position != 0):
        return False
    fitted = table.fit(
        table.to_columns({"cover_image": new_name}), identifiers=("cover_image",)
    ).values
    return bool(table.update([row.property_id], fitted))


def image_rows_for_update(image_id: int, name: str) -> list[ImageRow]:
    """The active image row ``image_id`` if it still holds file ``name`` (locked), else []."""
    found = list(PropertyImage.objects.select_for_update().filter(pk=image_id, image=name))
    if not found:
        return []
    state = None
    if _keeps_facts():
        state = ImageState.objects.filter(image_id=image_id).first()
    row = as_image_row(found[0], state)
    return [row] if row.is_active else []
