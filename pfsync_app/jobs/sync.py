"""One pf_sync run: users, then listings page by page with their images, then unpublishing.

The stages are wired here and nowhere else: the Atlas client fetches (the next
page is fetched while the current one's images download), mapping turns records
into row values, a thread pool downloads images, and the writers save each
listing in its own transaction from this thread only (Django connections are
per thread). Every outcome goes to the run's recorder.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, closing
from dataclasses import dataclass, field
from typing import Any

from django.core.files.storage import default_storage
from django.db import DatabaseError, InterfaceError, OperationalError
from django.utils import timezone

from pfsync_app.atlas import AtlasClient, records
from pfsync_app.atlas.errors import AtlasError, AuthenticationError
from pfsync_app.checks import check_host_schema, check_settings
from pfsync_app.conf import pfsync_settings
from pfsync_app.exceptions import ImageDownloadError, SyncAborted, first_line
from pfsync_app.jobs.pipeline import Prefetcher, Progress, prefetch
from pfsync_app.mapping import (
    PropertyValues,
    UserValues,
    describe_changes,
    map_listing,
    map_user,
)
from pfsync_app.media.download import ImageDownloader, StoredImage
from pfsync_app.media.files import storage_write_problem, sweep_stale_downloads
from pfsync_app.models import ListingState, Property, PropertyImage
from pfsync_app.reports.recorder import RunRecorder, recording_outcome
from pfsync_app.writers.images import ImagePlan, plan_images
from pfsync_app.writers.listings import (
    Lookups,
    property_fields,
    published_pf_ids,
    save_listing,
    unpublish,
)
from pfsync_app.writers.lock import writer_lock
from pfsync_app.writers.outcomes import CREATED, UPDATED, UserOutcome
from pfsync_app.writers.users import save_user, unchanged_users

logger = logging.getLogger("pfsync.sync")


@dataclass
class SyncOptions:
    """What one pf_sync run does (the command line's options)."""

    dry_run: bool = False
    only: str | None = None  # "users" or "listings"
    listing_ids: list[str] = field(default_factory=list)
    images: bool = True
    limit: int | None = None
    full: bool = False
    incremental: bool = True
    allow_mass_unpublish: bool = False
    concurrency: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """The options as recorded on the run."""
        return {
            "dry_run": self.dry_run,
            "only": self.only,
            "listing_ids": list(self.listing_ids),
            "images": self.images,
            "limit": self.limit,
            "full": self.full,
            "incremental": self.incremental,
            "allow_mass_unpublish": self.allow_mass_unpublish,
            "concurrency": self.concurrency,
        }


@dataclass
class SyncResult:
    """What a run did, for the command to print and for tests."""

    run_id: int | None
    counters: dict[str, int]
    exit_code: int
    changes: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    unmapped_locations: dict[int, int] = field(default_factory=dict)
    unpublish_note: str = ""
    listings_received: int = 0
    listings_skipped_unchanged: int = 0


class Sync:
    """One pf_sync run. ``Sync(options).run()`` or ``run_sync(options)``."""

    def __init__(
        self,
        options: SyncOptions,
        *,
        client: AtlasClient | None = None,
        downloader: ImageDownloader | None = None,
        progress: Progress | None = None,
        recorder: RunRecorder | None = None,
        storage: Any = None,
    ) -> None:
        self.options = options
        self.client = client
        self.downloader = downloader
        self.progress = progress or Progress()
        self.recorder = recorder
        self.storage = storage or default_storage
        self.result = SyncResult(run_id=None, counters={}, exit_code=0)
        self.seen: set[str] = set()
        self.unmapped: Counter[int] = Counter()
        self.fetch_complete = True
        self.totals_seen: set[int] = set()
        self.lookups: Lookups | None = None
        self._listing_pages: Prefetcher[records.Page] | None = None

    # -- the run -----------------------------------------------------------

    def run(self) -> SyncResult:
        """Run the sync; raise SyncAborted when it cannot run or must stop."""
        preflight()
        if not self.options.dry_run and self.options.images and self.options.only != "users":
            problem = storage_write_problem(self.storage)
            if problem:
                raise SyncAborted(f"{problem} (check MEDIA_ROOT and its permissions)")
        with ExitStack() as stack:
            if not self.options.dry_run:
                stack.enter_context(writer_lock("pf_sync"))
            return self._run()

    def _run(self) -> SyncResult:
        if not self.options.dry_run:
            sweep_stale_downloads(self.storage)
        recorder = self.recorder or RunRecorder.start(
            "pf_sync", options=self.options.as_dict(), holding_lock=not self.options.dry_run
        )
        self.recorder = recorder
        self.result.run_id = recorder.run.pk
        owns_client = self.client is None
        try:
            with recording_outcome(recorder):
                if owns_client:
                    from pfsync_app.jobs.clients import build_client

                    self.client = build_client(self.options.concurrency)
                self._authenticate()
                self.lookups = Lookups()
                if self.options.only != "listings" and not self.options.listing_ids:
                    if self.options.only != "users":
                        # The first listing pages arrive while the users are synced.
                        self._listing_pages = prefetch(self.client.iter_listing_pages())
                    self.sync_users()
                    self.lookups.reload()
                if self.options.only != "users":
                    self.sync_listings()
                self._report_unmapped()
        finally:
            if self._listing_pages is not None:
                self._listing_pages.close()
            self.progress.close()
            if owns_client and self.client is not None:
                self.client.close()
        recorder.finish()
        self.result.counters = dict(recorder.counters)
        self.result.exit_code = 1 if recorder.counters.get("errors", 0) else 0
        return self.result

    def _authenticate(self) -> None:
        try:
            self.client.authenticate()
        except AuthenticationError as exc:
            raise SyncAborted(
                f"Property Finder refused the credentials (PF_API_KEY/PF_API_SECRET): {exc}"
            ) from exc
        except AtlasError as exc:
            raise SyncAborted(f"cannot reach the Property Finder API: {exc}") from exc

    # -- users -------------------------------------------------------------

    def sync_users(self) -> None:
        """Every PF user into the host's user table."""
        recorder = self.recorder
        self.progress.stage("users")
        now = timezone.now()
        for page in self._pages(self.client.iter_user_pages(), "users"):
            if page.page == 1 or page.page == page.total_pages:
                self.progress.total("users", page.total)
            self._record_page_errors(page, "user")
            mapped = [map_user(user) for user in page.items]
            # One query tells which users are already up to date: they cost nothing more.
            unchanged = unchanged_users(mapped)
            for user, values in zip(page.items, mapped, strict=True):
                if user.id in unchanged and not values.warnings:
                    self.progress.advance("users")
                    continue
                try:
                    outcome = save_user(values, dry_run=self.options.dry_run, now=now)
                except (OperationalError, InterfaceError):
                    raise
                except DatabaseError as exc:
                    self._fail(f"user {user.id}", "user.failed", first_line(exc), str(user.id))
                    continue
                record_user_outcome(recorder, user.id, values, outcome)
                if self.options.dry_run and outcome.action == UPDATED:
                    self.result.changes.append(f"user {user.id}: " + "; ".join(outcome.changes))
                self.progress.advance("users")
            recorder.checkpoint()

    # -- listings ----------------------------------------------------------

    def sync_listings(self) -> None:
        """Listings page by page, their images, and then unpublishing what PF no longer has."""
        self.progress.stage("listings")
        self.progress.stage("images", 0)
        concurrency = self.options.concurrency or int(pfsync_settings.PF_SYNC_CONCURRENCY)
        downloader = self.downloader
        owns_downloader = downloader is None
        if owns_downloader:
            from pfsync_app.jobs.clients import build_downloader

            downloader = build_downloader(self.client)
        self.downloader = downloader
        pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="pfsync-image")
        try:
            if self.options.listing_ids:
                self._sync_given_listings(pool)
            else:
                # Started before the users stage when there was one; closed on every way out.
                pages = self._listing_pages or prefetch(self.client.iter_listing_pages())
                with closing(pages):
                    for page in self._pages(pages, "listings"):
                        self.totals_seen.add(page.total)
                        self.progress.total("listings", page.total)
                        if not self._sync_page(page, pool):
                            break
                if self.options.limit is None:
                    self._unpublish_missing()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            if owns_downloader:
                downloader.close()

    def _sync_given_listings(self, pool: ThreadPoolExecutor) -> None:
        wanted = list(dict.fromkeys(self.options.listing_ids))
        try:
            listings = self.client.get_listings(wanted)
        except AuthenticationError as exc:
            raise SyncAborted(f"Property Finder refused the credentials mid-run: {exc}") from exc
        except AtlasError as exc:
            raise SyncAborted(f"cannot fetch listings {', '.join(wanted)}: {exc}") from exc
        found = {listing.id for listing in listings}
        missing = [pf_id for pf_id in wanted if pf_id not in found]
        if missing:
            raise SyncAborted(
                f"listing {', '.join(missing)} does not exist on Property Finder "
                "(or is not visible to this API key)"
            )
        page = records.Page(
            items=listings,
            errors=[],
            page=1,
            per_page=len(listings),
            total=len(listings),
            total_pages=1,
            next_page=None,
        )
        self.progress.total("listings", len(listings))
        self._sync_page(page, pool)

    def _pages(self, pages: Iterable[records.Page], what: str) -> Iterator[records.Page]:
        """Pages as they arrive; a fetch that fails ends the stage and marks it incomplete."""
        iterator = iter(pages)
        while True:
            try:
                page = next(iterator)
            except StopIteration:
                return
            except AuthenticationError as exc:
                raise SyncAborted(
                    f"Property Finder refused the credentials mid-run: {exc}"
                ) from exc
            except AtlasError as exc:
                self.fetch_complete = False
                self._fail(
                    f"{what} fetch", f"{what}.fetch_failed", f"{exc}; the rest was not fetched", ""
                )
                return
            yield page

    def _record_page_errors(self, page: records.Page, kind: str) -> None:
        for error in page.errors:
            if kind == "listing" and error.record_id:
                self.seen.add(str(error.record_id))
            elif kind == "listing":
                # A listing we cannot name might be any of the published ones.
                self.fetch_complete = False
            field_text = f" (field {error.field})" if error.field else ""
            self._fail(
                f"{kind} {error.record_id or '?'}",
                f"{kind}.invalid",
                f"{error.message}{field_text}",
                str(error.record_id or ""),
            )

    def _sync_page(self, page: records.Page, pool: ThreadPoolExecutor) -> bool:
        """Sync one page of listings; False when --limit is reached."""
        # Counted before this page's listings join ``seen``: --limit is about listings synced.
        done_before = len(self.seen)
        self._record_page_errors(page, "listing")
        listings: list[records.Listing] = []
        for listing in page.items:
            if listing.id in self.seen:
                self.recorder.warning(
                    "listing.duplicate",
                    "listing came back twice while paging (the data moved); synced once",
                    pf_id=listing.id,
                )
                continue
            self.seen.add(listing.id)
            listings.append(listing)
        self.result.listings_received += len(page.items) + len(page.errors)
        limit = self.options.limit
        reached = False
        if limit is not None:
            room = limit - done_before
            if room <= len(listings):
                listings, reached = listings[: max(room, 0)], True
        mapped = [map_listing(listing) for listing in listings]
        states = {
            s.pf_id: s
            for s in ListingState.objects.filter(pf_id__in=[v.pf_id for v in mapped]).only(
                "pf_id", "fingerprint", "property_id"
            )
        }
        work: list[tuple[PropertyValues, str]] = []
        for values in mapped:
            fingerprint = values.fingerprint()
            state = states.get(values.pf_id)
            self._note_location(values)
            if (
                self.options.incremental
                and not self.options.full
                and state is not None
                and state.property_id is not None
                and state.fingerprint == fingerprint
            ):
                self.result.listings_skipped_unchanged += 1
                self.progress.advance("listings")
                continue
            work.append((values, fingerprint))
        if work:
            self._sync_changed(work, pool)
        self.recorder.checkpoint()
        return not reached

    def _note_location(self, values: PropertyValues) -> None:
        if values.location_id is not None and self.lookups.area_id(values.location_id) is None:
            self.unmapped[values.location_id] += 1

    def _sync_changed(
        self, work: list[tuple[PropertyValues, str]], pool: ThreadPoolExecutor
    ) -> None:
        ids = [values.pf_id for values, _ in work]
        existing = Property.objects.in_bulk(ids, field_name="pf_id")
        rows_by_property: dict[int, list[PropertyImage]] = {}
        if existing:
            for row in PropertyImage.objects.filter(
                property_id__in=[p.pk for p in existing.values()]
            ):
                rows_by_property.setdefault(row.property_id, []).append(row)
        planned = []
        for values, fingerprint in work:
            prop = existing.get(values.pf_id)
            rows = rows_by_property.get(prop.pk, []) if prop else []
            if self.options.images:
                plan = plan_images(values.images, rows, self._file_exists)
            else:
                plan = plan_images(values.images, rows, lambda name: True)
                if plan.download or plan.deactivate:
                    # The images left out are the next image run's work: it must not skip this.
                    fingerprint = ""
                plan.download, plan.deactivate = [], []
            futures: dict[int, Future] = {}
            if not self.options.dry_run:
                for image in plan.download:
                    futures[image.position] = pool.submit(
                        self.downloader.download, image.source_url
                    )
            if futures:
                self.progress.total("images", len(futures))
            planned.append((values, fingerprint, prop, plan, futures))
        for index, (values, fingerprint, prop, plan, futures) in enumerate(planned):
            try:
                self._save_listing(values, fingerprint, prop, plan, futures)
            except BaseException:
                # The run stops here: files already downloaded for the listings after
                # this one would be referenced by no row.
                for *_, later in planned[index + 1 :]:
                    self._abandon(later)
                raise

    def _abandon(self, futures: dict[int, Future]) -> None:
        """Cancel a listing's downloads, removing the files of those already finished."""
        for future in futures.values():
            # A failed download stored nothing; its failure no longer matters.
            if future.cancel() or future.exception() is not None:
                continue
            self._discard([future.result()])

    def _file_exists(self, name: str) -> bool:
        try:
            return bool(name) and self.storage.exists(name)
        except OSError:
            return False

    def _save_listing(
        self,
        values: PropertyValues,
        fingerprint: str,
        prop: Property | None,
        plan: ImagePlan,
        futures: dict[int, Future],
    ) -> None:
        recorder = self.recorder
        pf_id = values.pf_id
        try:
            stored = self._collect_images(pf_id, prop, futures)
        except BaseException:
            # Interrupted while waiting: no row will refer to the files already downloaded.
            self._abandon(futures)
            raise
        failed = len(futures) - len(stored)
        for warning in values.warnings:
            recorder.warning("listing.warning", warning, pf_id=pf_id)
        if self.options.dry_run:
            self._dry_run_listing(values, prop, plan)
            self.progress.advance("listings")
            return
        try:
            outcome = save_listing(
                values,
                prop,
                plan,
                stored,
                self.lookups,
                # An incomplete listing is retried next run: its fingerprint is not recorded.
                fingerprint="" if failed else fingerprint,
            )
        except (DatabaseError, ValueError, TypeError) as exc:
            # The transaction rolled back: no row refers to the files downloaded for it.
            self._discard(stored.values())
            if isinstance(exc, OperationalError | InterfaceError):
                raise
            self._fail(f"listing {pf_id}", "listing.failed", first_line(exc), pf_id)
            self.progress.advance("listings")
            return
        except BaseException:
            self._discard(stored.values())
            raise
        downloaded = len(stored)
        recorder.count("images_downloaded", downloaded)
        recorder.count("images_deactivated", outcome.images_deactivated)
        if outcome.action == CREATED:
            recorder.count("properties_created")
            recorder.info(
                "property.created",
                f"{values.fields['title'] or pf_id} ({downloaded} images)",
                pf_id=pf_id,
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
                pf_id=pf_id,
                object_type="property",
                object_id=outcome.property_id,
            )
        self.progress.advance("listings")

    def _collect_images(
        self, pf_id: str, prop: Property | None, futures: dict[int, Future]
    ) -> dict[int, StoredImage]:
        """The listing's downloaded files by position; each failed download is recorded."""
        stored: dict[int, StoredImage] = {}
        for position, future in futures.items():
            try:
                stored[position] = future.result()
            except Exception as exc:  # an unexpected bug in one download must not stop the run
                if isinstance(exc, ImageDownloadError):
                    message = f"image {position}: {exc} ({exc.reason})"
                else:
                    message = f"image {position}: {type(exc).__name__}: {exc}"
                self.recorder.count("images_failed")
                self.recorder.error(
                    "image.failed",
                    message,
                    pf_id=pf_id,
                    object_type="property",
                    object_id=prop.pk if prop else None,
                )
            self.progress.advance("images")
        return stored

    def _dry_run_listing(
        self, values: PropertyValues, prop: Property | None, plan: ImagePlan
    ) -> None:
        recorder = self.recorder
        if prop is None:
            recorder.count("properties_created")
            self.result.changes.append(
                f"listing {values.pf_id}: would be created ({len(plan.download)} images)"
            )
            return
        target = property_fields(values, self.lookups)
        current = {name: getattr(prop, name) for name in target}
        changes = describe_changes(current, target)
        if plan.download:
            changes.append(f"images to download: {len(plan.download)}")
        if plan.deactivate:
            changes.append(f"images to deactivate: {len(plan.deactivate)}")
        if changes:
            recorder.count("properties_updated")
            self.result.changes.append(f"listing {values.pf_id}: " + "; ".join(changes))

    def _discard(self, files: Iterable[StoredImage]) -> None:
        """Remove files downloaded for a listing whose rows could not be written."""
        # Any error, not only OSError: remote storages raise their own, and this often runs
        # while another exception is on its way out, which must not be replaced.
        for file in files:
            try:
                self.storage.delete(file.name)
            except Exception as exc:
                logger.warning("could not remove unused file %s: %s", file.name, exc)

    def _fail(self, what: str, action: str, message: str, pf_id: str) -> None:
        self.recorder.error(action, message, pf_id=pf_id)
        self.result.failures.append(f"{what}: {message}")

    # -- unpublishing ------------------------------------------------------

    def _unpublish_missing(self) -> None:
        recorder = self.recorder
        note = self._unpublish_blocker()
        published = published_pf_ids()
        gone = {pf_id: pk for pf_id, pk in published.items() if pf_id not in self.seen}
        if not gone:
            return
        if note is None:
            limit = float(pfsync_settings.PF_SYNC_MAX_UNPUBLISH_PERCENT)
            share = 100.0 * len(gone) / max(len(published), 1)
            if share > limit and not self.options.allow_mass_unpublish:
                note = (
                    f"{len(gone)} of {len(published)} published properties ({share:.0f}%) are "
                    f"no longer on Property Finder, above PF_SYNC_MAX_UNPUBLISH_PERCENT="
                    f"{limit:g}; nothing was unpublished (use --allow-mass-unpublish if this "
                    "is real)"
                )
        if note is not None:
            self.result.unpublish_note = note
            recorder.warning("unpublish.skipped", note)
            return
        if self.options.dry_run:
            recorder.count("properties_unpublished", len(gone))
            for pf_id in sorted(gone):
                self.result.changes.append(f"listing {pf_id}: would be unpublished")
            return
        done = unpublish(sorted(gone.values()))
        recorder.count("properties_unpublished", done)
        for pf_id, pk in sorted(gone.items()):
            recorder.info(
                "property.unpublished",
                "no longer returned by Property Finder",
                pf_id=pf_id,
                object_type="property",
                object_id=pk,
            )

    def _unpublish_blocker(self) -> str | None:
        """Why unpublishing would be unsafe this run, or None when the fetch was complete."""
        if not self.fetch_complete:
            return "the listing fetch did not complete; nothing was unpublished"
        if len(self.totals_seen) != 1:
            return (
                "the number of listings Property Finder announced changed while paging "
                f"({sorted(self.totals_seen)}); nothing was unpublished"
            )
        (total,) = self.totals_seen
        received = len(self.seen)
        if received != total:
            return (
                f"received {received} listings but Property Finder announced {total}; "
                "nothing was unpublished"
            )
        return None

    # -- locations ---------------------------------------------------------

    def _report_unmapped(self) -> None:
        self.result.unmapped_locations = dict(self.unmapped)
        for location_id, count in self.unmapped.most_common():
            self.recorder.warning(
                "location.unmapped",
                f"location {location_id}: {count} listing(s) saved with no area "
                f"(link it: python manage.py pf_areas link {location_id} AREA_ID)",
                pf_id=str(location_id),
            )


def record_user_outcome(
    recorder: RunRecorder,
    user_id: int,
    values: UserValues,
    outcome: UserOutcome,
    why: str = "",
) -> None:
    """Count a saved user and give it a report entry (``why``: what caused the sync)."""
    for warning in outcome.warnings:
        recorder.warning("user.warning", warning, pf_id=str(user_id))
    if outcome.action == CREATED:
        recorder.count("users_created")
        message = f"{values.fields['email'] or user_id} created"
    elif outcome.action == UPDATED:
        recorder.count("users_updated")
        message = "; ".join(outcome.changes)
    else:
        return
    recorder.info(
        f"user.{outcome.action}",
        f"{message} ({why})" if why else message,
        pf_id=str(user_id),
        object_type="user",
        object_id=outcome.agent_id,
    )


def preflight() -> None:
    """Stop with one sentence when a setting, the host schema or the database is wrong."""
    errors = [m for m in check_settings() if m.is_serious()]
    errors = errors or [m for m in check_host_schema() if m.is_serious()]
    if errors:
        first = errors[0]
        more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
        hint = f" {first.hint}" if first.hint else ""
        raise SyncAborted(f"{first.msg.rstrip('.')}{more}.{hint}")


def run_sync(options: SyncOptions | None = None, **kwargs: Any) -> SyncResult:
    """Run one pf_sync (see Sync for the keyword arguments)."""
    return Sync(options or SyncOptions(), **kwargs).run()
