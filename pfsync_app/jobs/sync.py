"""pf_sync: users, then listings page by page with their images, then unpublishing.

``SyncJob`` wires the stages (the lifecycle is ``jobs.base.Job``'s): the Atlas
client fetches, the first listing pages arriving while the users are synced
(``prefetch``); ``UserStage`` and ``ListingStage`` map, download and write; and
after a complete fetch the properties Property Finder no longer returns are
unpublished, within the circuit breaker. ``run_nightly`` is what the command
runs: the sync, then the webhook events still pending.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any

from django.utils import timezone

from pfsync_app.atlas import records
from pfsync_app.atlas.errors import AtlasError, AuthenticationError
from pfsync_app.atlas.records import RecordError
from pfsync_app.conf import pfsync_settings
from pfsync_app.exceptions import SyncAborted
from pfsync_app.jobs.base import Job, atlas_failure
from pfsync_app.jobs.listings import ListingStage
from pfsync_app.jobs.pipeline import Prefetcher, Progress, prefetch
from pfsync_app.jobs.users import UserStage
from pfsync_app.media.files import require_writable_storage, sweep_stale_downloads
from pfsync_app.models import SyncRun
from pfsync_app.reports.alerts import send_run_alert, send_stopped_run_alert
from pfsync_app.reports.causes import Cause, cause_of
from pfsync_app.words import plural, verb
from pfsync_app.writers.fit import clean_text
from pfsync_app.writers.listings import published_pf_ids, unpublish

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
    listings_found_again: int = 0  # missed by paging, found live by the direct look-up
    listings_confirmed_gone: int = 0


class SyncJob(Job):
    """One pf_sync run. ``SyncJob(options).run()`` or ``run_sync(options)``."""

    command = SyncRun.Command.SYNC
    writes = True

    def __init__(self, options: SyncOptions, **resources: Any) -> None:
        super().__init__(**resources)
        self.sync_options = options
        self.sync_result = SyncResult(run_id=None, counters={}, exit_code=0)
        self.seen: set[str] = set()
        self.fetch_complete = True
        # Listing records the pages brought but nobody can name (not an object, no id).
        self.unnamed_unreadable = 0
        # Every id the confirm look-up returned, live or not.
        self.looked_up: set[str] = set()
        self.listings: ListingStage | None = None

    # -- the lifecycle's hooks -----------------------------------------------

    @property
    def dry_run(self) -> bool:
        return self.sync_options.dry_run

    def options(self) -> dict[str, Any]:
        return self.sync_options.as_dict()

    def preflight(self) -> None:
        super().preflight()
        options = self.sync_options
        if not options.dry_run and options.images and options.only != "users":
            require_writable_storage(self.storage)

    def work(self) -> None:
        options = self.sync_options
        self.sync_result.run_id = self.recorder.run.pk
        self.on_close(self.progress.close)
        if not options.dry_run:
            sweep_stale_downloads(self.storage)
        client = self.open_client(options.concurrency)
        self.authenticate()
        pages: Prefetcher[records.Page] | None = None
        if options.only != "users" and not options.listing_ids:
            # The first listing pages arrive while the users are synced.
            pages = prefetch(client.iter_listing_pages())
            self.on_close(pages.close)
        if options.only != "listings" and not options.listing_ids:
            self.sync_users()
        if options.only != "users":
            self.sync_listings(pages)

    def result(self) -> SyncResult:
        result = self.sync_result
        result.counters = dict(self.recorder.counters)
        result.exit_code = 1 if result.counters.get("errors", 0) else 0
        return result

    # -- users -----------------------------------------------------------------

    def sync_users(self) -> None:
        """Every PF user into the host's user table."""
        stage = UserStage(
            self.recorder,
            dry_run=self.dry_run,
            failures=self.sync_result.failures,
            changes=self.sync_result.changes,
            now=timezone.now(),
        )
        self.progress.stage("users")
        for page in self._pages(self.client.iter_user_pages(), "users"):
            if page.page == 1 or page.page == page.total_pages:
                self.progress.total("users", page.total)
            self._record_page_errors(page, "user")
            stage.save(page.items, lambda: self.progress.advance("users"))
            self.recorder.checkpoint()

    # -- listings --------------------------------------------------------------

    def sync_listings(self, pages: Prefetcher[records.Page] | None) -> None:
        """Listings page by page, their images, and then unpublishing what PF no longer has."""
        options = self.sync_options
        self.progress.stage("listings")
        self.progress.stage("images", 0)
        concurrency = options.concurrency or int(pfsync_settings.PF_SYNC_CONCURRENCY)
        pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="pfsync-image")
        try:
            self.listings = ListingStage(
                self.recorder,
                downloader=self.open_downloader(),
                storage=self.storage,
                pool=pool,
                progress=self.progress,
                failures=self.sync_result.failures,
                changes=self.sync_result.changes,
                images=options.images,
                dry_run=options.dry_run,
                skip_unchanged=options.incremental and not options.full,
            )
            if options.listing_ids:
                self._sync_given_listings()
            else:
                with closing(pages or prefetch(self.client.iter_listing_pages())) as fetched:
                    for page in self._pages(fetched, "listings"):
                        self.progress.total("listings", page.total)
                        if not self._sync_page(page):
                            break
                if options.limit is None:
                    self._unpublish_missing()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        self.sync_result.listings_skipped_unchanged = self.listings.skipped_unchanged
        self.sync_result.unmapped_locations = dict(self.listings.unmapped)
        self.listings.report_unmapped()

    def _sync_given_listings(self) -> None:
        wanted = list(dict.fromkeys(self.sync_options.listing_ids))
        unreadable: list[RecordError] = []
        try:
            listings = self.client.get_listings(wanted, unreadable=unreadable)
        except AtlasError as exc:
            raise atlas_failure(
                exc, f"cannot fetch listings {', '.join(wanted)}", mid_run=True
            ) from exc
        if unreadable:
            raise SyncAborted(
                "Property Finder's record cannot be read: "
                + "; ".join(str(error) for error in unreadable)
            )
        found = {listing.id for listing in listings}
        missing = [pf_id for pf_id in wanted if pf_id not in found]
        if missing:
            raise SyncAborted(
                f"listing {', '.join(missing)} does not exist on Property Finder "
                "(or is not visible to this API key)"
            )
        self.progress.total("listings", len(listings))
        self.sync_result.listings_received += len(listings)
        self.seen.update(found)
        self.listings.save(listings)

    def _pages(self, pages: Iterable[records.Page], what: str) -> Iterator[records.Page]:
        """Pages as they arrive; a fetch that fails ends the stage and marks it incomplete."""
        iterator = iter(pages)
        while True:
            try:
                page = next(iterator)
            except StopIteration:
                return
            except AuthenticationError as exc:
                raise atlas_failure(exc, f"{what} fetch", mid_run=True) from exc
            except AtlasError as exc:
                self.fetch_complete = False
                self._fail(
                    f"{what} fetch",
                    f"{what}.fetch_failed",
                    f"{exc}; the rest was not fetched",
                    cause=cause_of(exc),
                )
                return
            yield page

    def _record_page_errors(self, page: records.Page, kind: str) -> None:
        for error in page.errors:
            if kind == "listing" and error.record_id:
                self.seen.add(str(error.record_id))
            elif kind == "listing":
                # A listing we cannot name might be any of the published ones: the page
                # came whole, so the fetch is complete, but only a record the confirm
                # look-up returns may unpublish a property (_unpublish_missing).
                self.unnamed_unreadable += 1
            field_text = f" (field {error.field})" if error.field else ""
            # Named as its report entry names it: a NUL or lone surrogate cannot be printed.
            name = clean_text(str(error.record_id or "?"))[0]
            self._fail(
                f"{kind} {name}",
                f"{kind}.invalid",
                f"{error.message}{field_text}",
                str(error.record_id or ""),
                cause=Cause("invalid_record"),
            )

    def _sync_page(self, page: records.Page) -> bool:
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
        self.sync_result.listings_received += len(page.items) + len(page.errors)
        limit = self.sync_options.limit
        reached = False
        if limit is not None:
            room = limit - done_before
            if room <= len(listings):
                listings, reached = listings[: max(room, 0)], True
        self.listings.save(listings)
        return not reached

    def _fail(
        self, what: str, action: str, message: str, pf_id: str = "", cause: Cause | None = None
    ) -> None:
        self.recorder.error(action, message, pf_id=pf_id, cause=cause)
        self.sync_result.failures.append(f"{what}: {message}")

    # -- unpublishing ----------------------------------------------------------

    def _unpublish_missing(self) -> None:
        """Unpublish what Property Finder confirms is gone; sync what paging merely missed.

        Offset paging over a list that changes while it is read can miss a live
        listing, so the published properties the pages did not bring are looked up
        again directly (``filter[ids]``). Those still returned and live are synced and
        stay published; only those the look-up confirms as gone or not live are
        unpublished, within the circuit breaker. A fetch or look-up that did not
        complete unpublishes nothing.
        """
        if not self.fetch_complete:
            self._skip_unpublishing("the listing fetch did not complete; nothing was unpublished")
            return
        published = published_pf_ids()
        unseen = {pf_id: pk for pf_id, pk in published.items() if pf_id not in self.seen}
        if not unseen:
            return
        found_again = self._look_up(sorted(unseen))
        if found_again is None:
            return
        gone = {pf_id: pk for pf_id, pk in unseen.items() if pf_id not in found_again}
        if self.unnamed_unreadable:
            gone = self._keep_what_could_be_unreadable(gone)
        self.sync_result.listings_found_again = len(found_again)
        self.sync_result.listings_confirmed_gone = len(gone)
        self.recorder.info(
            "unpublish.confirmed",
            f"{plural(len(unseen), 'published property')} "
            f"{verb(len(unseen), 'was', 'were')} not in the listing pages; a direct "
            f"look-up found {len(found_again)} still live (synced, kept published) and "
            f"confirmed {len(gone)} gone",
        )
        if gone:
            self._unpublish(gone, len(published))

    def _keep_what_could_be_unreadable(self, gone: dict[str, int]) -> dict[str, int]:
        """Of ``gone``, those the look-up returned (not live); the others stay published.

        A listing record that could not be read and names no id could be any
        published listing the look-up did not return either: those are kept, with
        a warning, and only a record the look-up returned as not live unpublishes.
        """
        confirmed = {pf_id: pk for pf_id, pk in gone.items() if pf_id in self.looked_up}
        kept = len(gone) - len(confirmed)
        if kept:
            self.recorder.warning(
                "unpublish.kept",
                f"{plural(kept, 'published property')} not returned "
                f"by the look-up kept published: {plural(self.unnamed_unreadable, 'listing')} "
                "of the pages could not be read and named no id, and could be any of them",
            )
        return confirmed

    def _look_up(self, pf_ids: list[str]) -> set[str] | None:
        """Fetch these listings directly and sync the live ones; their ids, or None on failure."""
        live: list[records.Listing] = []
        try:
            for page in self.client.iter_listing_pages_by_ids(pf_ids):
                if page.errors:
                    self._skip_unpublishing(
                        f"{plural(len(page.errors), 'listing')} of the look-up of unpaged "
                        "properties could not be read; nothing was unpublished"
                    )
                    return None
                self.looked_up.update(listing.id for listing in page.items)
                live.extend(listing for listing in page.items if listing.is_live)
        except AuthenticationError as exc:
            raise atlas_failure(exc, "", mid_run=True) from exc
        except AtlasError as exc:
            self._skip_unpublishing(
                f"looking up {plural(len(pf_ids), 'unpaged property')} failed: {exc}; "
                "nothing was unpublished"
            )
            return None
        found = {listing.id for listing in live}
        self.seen.update(found)
        if live:
            # Missed by paging, not gone: written like any other listing of the night.
            self.listings.save(live)
        return found

    def _unpublish(self, gone: dict[str, int], published: int) -> None:
        recorder = self.recorder
        limit = float(pfsync_settings.PF_SYNC_MAX_UNPUBLISH_PERCENT)
        share = 100.0 * len(gone) / max(published, 1)
        if share > limit and not self.sync_options.allow_mass_unpublish:
            self._skip_unpublishing(
                f"{len(gone)} of {plural(published, 'published property')} ({share:.0f}%) "
                f"{verb(len(gone), 'is', 'are')} "
                f"no longer on Property Finder, above PF_SYNC_MAX_UNPUBLISH_PERCENT="
                f"{limit:g}; nothing was unpublished (use --allow-mass-unpublish if this "
                "is real)"
            )
            return
        if self.dry_run:
            recorder.count("properties_unpublished", len(gone))
            for pf_id in sorted(gone):
                self.sync_result.changes.append(f"listing {pf_id}: would be unpublished")
            return
        done = unpublish(sorted(gone.values()))
        recorder.count("properties_unpublished", done)
        for pf_id, pk in sorted(gone.items()):
            recorder.info(
                "property.unpublished",
                "no longer returned by Property Finder (confirmed by a direct look-up)",
                pf_id=pf_id,
                object_type="property",
                object_id=pk,
            )

    def _skip_unpublishing(self, note: str) -> None:
        self.sync_result.unpublish_note = note
        self.recorder.warning("unpublish.skipped", note)


def run_sync(options: SyncOptions | None = None, **resources: Any) -> SyncResult:
    """Run one pf_sync (``resources``: client, downloader, storage, progress, as Job takes)."""
    return SyncJob(options or SyncOptions(), **resources).run()


@dataclass
class NightlyResult:
    """A pf_sync run and the pending webhook events processed after it."""

    sync: SyncResult
    webhooks: Any = None  # jobs.webhooks.ProcessSummary, when events were processed
    webhooks_problem: str = ""

    @property
    def exit_code(self) -> int:
        """The sync's exit status, else 1 when the events could not all be processed."""
        if self.sync.exit_code:
            return self.sync.exit_code
        if self.webhooks_problem:
            return 1
        return self.webhooks.exit_code if self.webhooks is not None else 0


def run_nightly(options: SyncOptions, progress: Progress | None = None) -> NightlyResult:
    """pf_sync as the command runs it: the sync, the webhook events still pending, the alert.

    Events that failed earlier, or waited for this run's lock, are retried once
    the sync has released the lock; not after a dry run or a --listing run.
    A failure there never hides the sync's own outcome. Last, a nightly run that
    needs a person is e-mailed about (``reports.alerts``), also when it could
    not run; the e-mail never changes the run's status or exit code.
    """
    from pfsync_app.jobs.webhooks import process_pending

    started = timezone.now()
    try:
        result = NightlyResult(run_sync(options, progress=progress))
    except SyncAborted:
        send_stopped_run_alert(SyncRun.Command.SYNC, started)
        raise
    if not (options.dry_run or options.listing_ids):
        try:
            result.webhooks = process_pending()
        except Exception as exc:  # the sync itself is done and recorded; say what failed
            result.webhooks_problem = f"pending webhook events were not processed: {exc}"
    send_run_alert(result.sync.run_id)
    return result
