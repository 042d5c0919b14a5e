"""The listings stage: fetch → map → plan images → download → write rows → record.

``ListingStage.save(listings)`` takes one page of listings (or the one listing
of a webhook event): it maps them, skips those whose fingerprint says nothing
changed, plans each listing's images against its rows, downloads the missing
ones in the shared thread pool, writes each listing in its own transaction
from this thread only (Django connections are per thread), and records every
outcome. Shared by the nightly sync and the webhook batch.
"""

from __future__ import annotations

import logging
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from django.core.files.storage import Storage
from django.db import DatabaseError, InterfaceError, OperationalError

from pfsync_app.atlas import records
from pfsync_app.exceptions import (
    ImageDownloadError,
    MediaStorageFull,
    RecordRejected,
    first_line,
)
from pfsync_app.hostmap import host_map
from pfsync_app.jobs.pipeline import Progress
from pfsync_app.mapping import PropertyValues, map_listing
from pfsync_app.media.download import ImageDownloader, StoredImage
from pfsync_app.media.files import discard, file_exists
from pfsync_app.media.policy import safe_url
from pfsync_app.models import Property
from pfsync_app.reports.causes import Cause, cause_of
from pfsync_app.reports.recorder import RunRecorder
from pfsync_app.words import plural, verb
from pfsync_app.writers.fit import clean_text
from pfsync_app.writers.images import ImagePlan, plan_images
from pfsync_app.writers.listings import (
    Lookups,
    id_problem,
    listing_agrees_with_rows,
    listing_fingerprints,
    properties_with_images,
    save_listing,
)
from pfsync_app.writers.outcomes import CREATED, UPDATED, ListingOutcome

logger = logging.getLogger("pfsync.sync")


@dataclass
class _Planned:
    """One changed listing between planning and writing: its downloads are in flight."""

    values: PropertyValues
    fingerprint: str
    existing: Property | None
    plan: ImagePlan
    downloads: dict[int, Future]


class ListingStage:
    """Saves listings with their images, recording every outcome on ``recorder``.

    ``failures`` and ``changes`` (dry-run lines) are the caller's lists;
    ``unmapped`` counts the listings saved with no area, by location id.
    """

    def __init__(
        self,
        recorder: RunRecorder,
        *,
        downloader: ImageDownloader | None,
        storage: Storage,
        pool: ThreadPoolExecutor,
        progress: Progress,
        failures: list[str],
        changes: list[str],
        images: bool = True,
        dry_run: bool = False,
        skip_unchanged: bool = True,
    ) -> None:
        self.recorder = recorder
        self.downloader = downloader
        self.storage = storage
        self.pool = pool
        self.progress = progress
        self.failures = failures
        self.changes = changes
        self.images = images
        self.dry_run = dry_run
        self.skip_unchanged = skip_unchanged
        self.lookups = Lookups()
        self.unmapped: Counter[int] = Counter()
        self.fallback_used = 0
        self.skipped_unchanged = 0
        self.extra = dict(host_map()["property"].extra)

    # -- one page --------------------------------------------------------------

    def save(self, listings: list[records.Listing]) -> None:
        """Map, skip unchanged, download and write these listings (one page's worth).

        A listing is skipped as unchanged only when its fingerprint is the one
        recorded and its rows hold what it would write (``listing_agrees_with_rows``):
        a property unpublished meanwhile, or an edited row, is written again. The
        page's rows are read in bulk, once, for both. A listing whose id cannot be
        stored fails first, alone (``_storable``): a query naming it would fail the page.
        """
        mapped = [
            map_listing(listing, self.extra) for listing in listings if self._storable(listing)
        ]
        pf_ids = [values.pf_id for values in mapped]
        fingerprints = listing_fingerprints(pf_ids) if self.skip_unchanged else {}
        unreadable: list = []
        existing, rows_by_property = properties_with_images(pf_ids, unreadable)
        for pf_id, cell in unreadable:
            # That listing fails, named by the value; the row, read with it as None,
            # disagrees with the listing and is written over with the right value.
            self._fail(pf_id, cell.message, Cause("unreadable_row"))
        work: list[tuple[PropertyValues, str]] = []
        for values in mapped:
            fingerprint = values.fingerprint()
            self._note_location(values)
            prop = existing.get(values.pf_id)
            if (
                self.skip_unchanged
                and prop is not None
                and fingerprints.get(values.pf_id) == fingerprint
                and listing_agrees_with_rows(
                    values, prop, rows_by_property.get(prop.pk, []), self.lookups
                )
            ):
                self.skipped_unchanged += 1
                self.progress.advance("listings")
                continue
            work.append((values, fingerprint))
        if work:
            self._save_changed(work, existing, rows_by_property)
        self.recorder.checkpoint()

    def _storable(self, listing: records.Listing) -> bool:
        """Whether the listing's id can be stored; one that cannot fails here, alone."""
        problem = id_problem(listing.id)
        if problem is None:
            return True
        self._fail(listing.id, f"{problem} (field id)", Cause("invalid_record"))
        self.progress.advance("listings")
        return False

    def _note_location(self, values: PropertyValues) -> None:
        if values.location_id is not None and not self.lookups.linked(values.location_id):
            self.unmapped[values.location_id] += 1

    def _save_changed(
        self,
        work: list[tuple[PropertyValues, str]],
        existing: dict[str, Property],
        rows_by_property: dict[int, list],
    ) -> None:
        planned = [
            self._plan(values, fingerprint, existing.get(values.pf_id), rows_by_property)
            for values, fingerprint in work
        ]
        for index, item in enumerate(planned):
            try:
                self._save_one(item)
            except BaseException:
                # The run stops here: files already downloaded for the listings after
                # this one would be referenced by no row.
                for later in planned[index + 1 :]:
                    self._abandon(later.downloads)
                raise

    def _plan(
        self,
        values: PropertyValues,
        fingerprint: str,
        prop: Property | None,
        rows_by_property: dict[int, list],
    ) -> _Planned:
        """Match the listing's images to its rows and start the downloads it needs."""
        rows = rows_by_property.get(prop.pk, []) if prop else []
        if self.images:
            plan = plan_images(values.images, rows, self._file_exists)
        else:
            plan = plan_images(values.images, rows, lambda name: True)
            if plan.download or plan.deactivate:
                # The images left out are the next image run's work: it must not skip this.
                fingerprint = ""
            plan.download, plan.deactivate = [], []
        downloads: dict[int, Future] = {}
        if not self.dry_run:
            for image in plan.download:
                downloads[image.position] = self.pool.submit(
                    self.downloader.download, image.source_url
                )
        if downloads:
            self.progress.total("images", len(downloads))
        return _Planned(values, fingerprint, prop, plan, downloads)

    def _file_exists(self, name: str) -> bool:
        return file_exists(self.storage, name)

    # -- one listing ---------------------------------------------------------

    def _save_one(self, item: _Planned) -> None:
        values = item.values
        try:
            stored, image_failures = self._collect_images(item.downloads)
        except BaseException:
            # Interrupted while waiting: no row will refer to the files already downloaded.
            self._abandon(item.downloads)
            raise
        failed = len(item.downloads) - len(stored)
        existing_id = item.existing.pk if item.existing else None
        for warning in values.warnings:
            self.recorder.warning("listing.warning", warning, pf_id=values.pf_id)
        try:
            outcome = save_listing(
                values,
                item.existing,
                item.plan,
                stored,
                self.lookups,
                # An incomplete listing is retried next run: its fingerprint is not recorded.
                fingerprint="" if failed else item.fingerprint,
                dry_run=self.dry_run,
            )
        except (DatabaseError, ValueError, TypeError, RecordRejected) as exc:
            # The transaction rolled back: no row refers to the files downloaded for it.
            discard(self.storage, [file.name for file in stored.values()])
            self._record_image_failures(values.pf_id, image_failures, existing_id)
            if isinstance(exc, OperationalError | InterfaceError):
                raise
            self._fail(values.pf_id, first_line(exc), cause_of(exc))
            self.progress.advance("listings")
            return
        except BaseException:
            discard(self.storage, [file.name for file in stored.values()])
            self._record_image_failures(values.pf_id, image_failures, existing_id)
            raise
        # Recorded once the listing is saved, so a new listing's failures link its property.
        self._record_image_failures(
            values.pf_id, image_failures, outcome.property_id or existing_id
        )
        for warning in outcome.warnings:
            self.recorder.warning("listing.warning", warning, pf_id=values.pf_id)
        if self.lookups.uses_fallback(values):
            self.fallback_used += 1
        if self.dry_run:
            self._record_planned(values.pf_id, outcome, values)
        else:
            self._record_saved(values, outcome, len(stored))
        self.progress.advance("listings")

    def _collect_images(
        self, downloads: dict[int, Future]
    ) -> tuple[dict[int, StoredImage], list[tuple[int, Exception]]]:
        """The listing's downloaded files by position, and the failed downloads."""
        stored: dict[int, StoredImage] = {}
        failures: list[tuple[int, Exception]] = []
        for position, future in downloads.items():
            try:
                stored[position] = future.result()
            except MediaStorageFull:
                raise  # every further image would fail the same way: the run stops
            except Exception as exc:  # an unexpected bug in one download must not stop the run
                failures.append((position, exc))
            self.progress.advance("images")
        return stored, failures

    def _record_image_failures(
        self, pf_id: str, failures: list[tuple[int, Exception]], property_id: int | None
    ) -> None:
        """One error entry per failed download, with its cause and URL."""
        for position, exc in failures:
            if isinstance(exc, ImageDownloadError):
                message = f"image {position}: {exc} ({exc.reason})"
                url = safe_url(exc.url)
            else:
                message = f"image {position}: {type(exc).__name__}: {exc}"
                url = ""
            self.recorder.count("images_failed")
            self.recorder.error(
                "image.failed",
                message,
                pf_id=pf_id,
                object_type="property",
                object_id=property_id,
                cause=cause_of(exc),
                url=url,
            )

    def _abandon(self, downloads: dict[int, Future]) -> None:
        """Cancel a listing's downloads, removing the files of those already finished."""
        for future in downloads.values():
            # A failed download stored nothing; its failure no longer matters.
            if future.cancel() or future.exception() is not None:
                continue
            discard(self.storage, [future.result().name])

    # -- recording -------------------------------------------------------------

    def _record_saved(
        self, values: PropertyValues, outcome: ListingOutcome, downloaded: int
    ) -> None:
        recorder = self.recorder
        recorder.count("images_downloaded", downloaded)
        recorder.count("images_deactivated", outcome.images_deactivated)
        if outcome.republished:
            recorder.count("properties_republished")
            recorder.info(
                "property.republished",
                "live on Property Finder again: published again",
                pf_id=values.pf_id,
                object_type="property",
                object_id=outcome.property_id,
            )
        if outcome.action == CREATED:
            recorder.count("properties_created")
            recorder.info(
                "property.created",
                f"{values.fields['title'] or values.pf_id} ({plural(downloaded, 'image')})",
                pf_id=values.pf_id,
                object_type="property",
                object_id=outcome.property_id,
            )
        elif outcome.action == UPDATED:
            recorder.count("properties_updated")
            details = list(outcome.changes)
            if outcome.images_added or outcome.images_replaced:
                details.append(f"images downloaded: {downloaded}")
            if outcome.images_deactivated:
                details.append(f"images deactivated: {outcome.images_deactivated}")
            recorder.info(
                "property.updated",
                "; ".join(details),
                pf_id=values.pf_id,
                object_type="property",
                object_id=outcome.property_id,
            )

    def _record_planned(
        self, pf_id: str, outcome: ListingOutcome, values: PropertyValues | None = None
    ) -> None:
        """A dry run's outcome: counted as it would be, and described in ``changes``."""
        if outcome.republished:
            self.recorder.count("properties_republished")
            self.changes.append(f"listing {pf_id}: would be published again")
        if outcome.action == CREATED:
            self.recorder.count("properties_created")
            self.changes.append(
                f"listing {pf_id}: would be created ({plural(outcome.images_added, 'image')})"
            )
        elif outcome.action == UPDATED:
            details = self._new_agent_named(outcome.changes, values)
            if outcome.images_added:
                details.append(f"images to download: {outcome.images_added}")
            if outcome.images_deactivated:
                details.append(f"images to deactivate: {outcome.images_deactivated}")
            self.recorder.count("properties_updated")
            self.changes.append(f"listing {pf_id}: " + "; ".join(details))

    def _new_agent_named(self, changes: list[str], values: PropertyValues | None) -> list[str]:
        """A dry run's changes, its blank agent target said as the agent the real run creates.

        A dry run creates no host user, so a listing whose agent is new maps to
        no one (``user_id: 7 → ``); the real run would create that agent first.
        """
        if values is None or values.assigned_to_id is None:
            return list(changes)
        if self.lookups.agent_id(values.assigned_to_id) is not None:
            return list(changes)
        column = host_map()["property"].column("user")
        blank = f"{column}: "
        new = f"(a new agent: PF public profile {values.assigned_to_id})"
        return [
            line + new if column and line.startswith(blank) and line.endswith(" → ") else line
            for line in changes
        ]

    def _fail(self, pf_id: str, message: str, cause: Cause | None = None) -> None:
        self.recorder.error("listing.failed", message, pf_id=pf_id, cause=cause)
        # Printed as the report entry names it: a NUL in an id would cut a terminal's line.
        self.failures.append(f"listing {clean_text(pf_id)[0]}: {message}")

    def report_unmapped(self) -> None:
        """One warning per location whose listings were saved with no area; one for the fallback."""
        areas = host_map()["area"].present
        for location_id, count in self.unmapped.most_common():
            how = "AREA_ID" if areas else "--name TEXT"
            what = "no area" if areas else "no location name"
            self.recorder.warning(
                "location.unmapped",
                f"location {location_id}: {plural(count, 'listing')} saved with {what} "
                f"(link it: python manage.py pf_areas link {location_id} {how})",
                pf_id=str(location_id),
            )
        if self.fallback_used:
            reference = host_map()["property"].fallback_agent
            self.recorder.warning(
                "agent.fallback",
                f"{plural(self.fallback_used, 'listing')} "
                f"{verb(self.fallback_used, 'names', 'name')} an agent that is not a synced user; "
                f"{verb(self.fallback_used, 'it was', 'they were')} saved with the fallback agent "
                f"{reference!r} "
                "(PFSYNC_HOST['property']['fallback_agent'])",
            )
            self.fallback_used = 0
