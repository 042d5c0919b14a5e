"""pf_repair: download missing, empty or corrupt image files again and point their rows at them.

Each image is downloaded again from the row's source URL or, when Property
Finder has moved the image, from the listing's current URL at the same
position, saved under a new name, and its row pointed at it. No file is ever
deleted or overwritten.
"""

from __future__ import annotations

from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from typing import Any

from django.db import DatabaseError, InterfaceError, OperationalError

from pfsync_app.atlas import records
from pfsync_app.atlas.errors import AtlasError, AuthenticationError
from pfsync_app.conf import pfsync_settings
from pfsync_app.exceptions import (
    PERMANENT_STATUSES,
    ImageDownloadError,
    MediaStorageFull,
    RowRefused,
    SyncAborted,
    first_line,
)
from pfsync_app.jobs.base import Job, atlas_failure
from pfsync_app.jobs.check import (
    MissingImage,
    describe,
    find_missing_images,
    require_property,
)
from pfsync_app.media.download import StoredImage
from pfsync_app.media.files import discard, require_writable_storage
from pfsync_app.media.policy import safe_url
from pfsync_app.models import SyncRun
from pfsync_app.reports.causes import Cause
from pfsync_app.words import plural, verb
from pfsync_app.writers.images import max_source_url, repoint_image

# Listings fetched again in one go once this many properties have dead image URLs.
REFETCH_BATCH = 50


# Report entries and counters are written to the database every this many outcomes.
CHECKPOINT_EVERY = 100


@dataclass
class RepairOptions:
    """What one pf_repair run does (the command line's options)."""

    dry_run: bool = False
    limit: int | None = None
    pf_id: str | None = None
    verify: bool = False
    concurrency: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """The options as recorded on the run."""
        return asdict(self)


@dataclass(frozen=True)
class RepairedImage:
    """An image row now pointing at a freshly downloaded file."""

    image: MissingImage
    name: str
    source_url: str
    size: int
    sha256: str

    @property
    def url_changed(self) -> bool:
        """Whether the download came from the listing's current URL instead of the old one."""
        return self.source_url != self.image.source_url

    def as_dict(self) -> dict[str, Any]:
        """The repair as pf_repair --json shows it."""
        return {
            "image_id": self.image.image_id,
            "property_id": self.image.property_id,
            "pf_id": self.image.pf_id,
            "reason": self.image.reason,
            "old_name": self.image.name,
            "name": self.name,
            "old_source_url": self.image.source_url,
            "source_url": self.source_url,
            "url_changed": self.url_changed,
            "size": self.size,
            "sha256": self.sha256,
        }


@dataclass(frozen=True)
class RepairFailure:
    """An image that could not be repaired, and why."""

    image: MissingImage
    cause: str
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        """The failure as pf_repair --json shows it."""
        return {**self.image.as_dict(), "error": self.cause, "error_reason": self.reason}


@dataclass
class RepairResult:
    """What a pf_repair run did."""

    run_id: int | None = None
    dry_run: bool = False
    total_found: int = 0
    selected: list[MissingImage] = field(default_factory=list)
    repaired: list[RepairedImage] = field(default_factory=list)
    failed: list[RepairFailure] = field(default_factory=list)

    @property
    def still_missing(self) -> int:
        """Images still missing, empty or corrupt (including any left out by --limit)."""
        return self.total_found - len(self.repaired)

    @property
    def exit_code(self) -> int:
        """0 when nothing is missing any more, 1 when some images still are."""
        return 1 if self.still_missing else 0

    def as_json(self) -> dict[str, Any]:
        """The machine-readable report of pf_repair --json."""
        return {
            "run_id": self.run_id,
            "exit_code": self.exit_code,
            "dry_run": self.dry_run,
            "found": self.total_found,
            "selected": len(self.selected),
            "repaired_count": len(self.repaired),
            "failed_count": len(self.failed),
            "still_missing": self.still_missing,
            "to_repair": [item.as_dict() for item in self.selected] if self.dry_run else [],
            "repaired": [item.as_dict() for item in self.repaired],
            "failed": [item.as_dict() for item in self.failed],
        }


class RepairEvents:
    """Callbacks as the repair goes (called from the thread that runs it); the command prints."""

    def found(self, total: int, selected: list[MissingImage]) -> None:
        """The scan is done: ``total`` images need repair, ``selected`` will be repaired."""

    def repaired(self, item: RepairedImage) -> None:
        """One image was repaired."""

    def failed(self, failure: RepairFailure) -> None:
        """One image could not be repaired."""


@dataclass
class _Job:
    """One download in flight: the row it is for and, on a second try, the listing's image."""

    image: MissingImage
    url: str
    current: records.ListingImage | None = None
    first_error: str = ""
    first_status: int | None = None


class RepairJob(Job):
    """One pf_repair run. ``RepairJob(options).run()`` or ``repair_images(options)``."""

    command = SyncRun.Command.REPAIR
    writes = True

    def __init__(
        self, options: RepairOptions, *, events: RepairEvents | None = None, **resources: Any
    ) -> None:
        super().__init__(**resources)
        self.repair_options = options
        self.events = events or RepairEvents()
        self.repair_result = RepairResult(dry_run=options.dry_run)
        self.api_problem = ""
        self._outcomes = 0

    @property
    def dry_run(self) -> bool:
        return self.repair_options.dry_run

    def options(self) -> dict[str, Any]:
        return self.repair_options.as_dict()

    def preflight(self) -> None:
        super().preflight()
        require_property(self.repair_options.pf_id)
        if not self.dry_run:
            # As pf_sync: an unwritable storage would fail every image, one by one.
            require_writable_storage(self.storage)

    def work(self) -> None:
        options, result = self.repair_options, self.repair_result
        result.run_id = self.recorder.run.pk
        scan = find_missing_images(self.storage, pf_id=options.pf_id, verify=options.verify)
        selected = scan.missing
        if options.limit is not None:
            selected = selected[: options.limit]
        result.total_found = len(scan.missing)
        result.selected = selected
        self.events.found(len(scan.missing), selected)
        if options.dry_run:
            for item in selected:
                self.recorder.info(
                    "image.would_repair",
                    describe(item),
                    pf_id=item.pf_id,
                    object_type="image",
                    object_id=item.image_id,
                )
        elif selected:
            self._repair(selected)

    def finish_message(self) -> str:
        result = self.repair_result
        if self.dry_run:
            return (
                f"dry run: {plural(result.total_found, 'image')} "
                f"{verb(result.total_found, 'needs', 'need')} repair; "
                f"{len(result.selected)} listed, nothing downloaded"
            )
        return (
            f"repaired {len(result.repaired)} of {plural(len(result.selected), 'image')}; "
            f"{result.still_missing} still missing"
        )

    def result(self) -> RepairResult:
        return self.repair_result

    # -- repairing ---------------------------------------------------------

    def _repair(self, selected: list[MissingImage]) -> None:
        concurrency = self.repair_options.concurrency or int(pfsync_settings.PF_SYNC_CONCURRENCY)
        self.open_client(concurrency)
        self.open_downloader()
        pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="pfsync-repair")
        try:
            try:
                self.authenticate()
            except SyncAborted as exc:
                if isinstance(exc.__cause__, AuthenticationError):
                    raise
                # Old URLs may still work: go on, and say why moved images cannot be followed.
                self.api_problem = f"the Property Finder API cannot be reached: {exc.__cause__}"
                self.recorder.warning("api.unreachable", self.api_problem)
            self._download_all(selected, pool)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _download_all(self, selected: list[MissingImage], pool: ThreadPoolExecutor) -> None:
        pending: dict[Future, _Job] = {}
        moved: list[_Job] = []

        def submit(job: _Job) -> None:
            pending[pool.submit(self.downloader.download, job.url)] = job

        for item in selected:
            job = _Job(item, item.source_url)
            if item.source_url:
                submit(job)
            else:
                job.first_error = "the row has no source URL"
                moved.append(job)
        while pending or moved:
            if moved and (not pending or _properties(moved) >= REFETCH_BATCH):
                for job in self._follow_moved(moved):
                    submit(job)
                moved = []
                continue
            done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
            for future in done:
                job = pending.pop(future)
                try:
                    stored = future.result()
                except MediaStorageFull:
                    self._abandon(pending)
                    raise
                except ImageDownloadError as exc:
                    if job.current is None and exc.permanent and exc.status in PERMANENT_STATUSES:
                        job.first_error, job.first_status = exc.message, exc.status
                        moved.append(job)
                    else:
                        self._fail(job, _with_first(job, exc.message), exc.reason, exc.status)
                except Exception as exc:  # a bug in one download must not stop the run
                    self._fail(job, f"{type(exc).__name__}: {first_line(exc)}", "unexpected")
                else:
                    self._save(job, stored)

    def _abandon(self, pending: dict[Future, _Job]) -> None:
        """Cancel the downloads not started; remove the files of those that finish anyway."""
        for future in pending:
            if not future.cancel() and future.exception() is None:
                discard(self.storage, [future.result().name])

    def _follow_moved(self, moved: list[_Job]) -> list[_Job]:
        """Fetch the listings of images whose URL is dead; jobs for their current URLs."""
        if self.api_problem:
            for job in moved:
                self._fail(job, f"{job.first_error}; {self.api_problem}", "listing")
            return []
        pf_ids = list(dict.fromkeys(job.image.pf_id for job in moved))
        try:
            listings = {listing.id: listing for listing in self.client.get_listings(pf_ids)}
        except AuthenticationError as exc:
            raise atlas_failure(exc, "", mid_run=True) from exc
        except AtlasError as exc:
            for job in moved:
                self._fail(
                    job,
                    f"{job.first_error}; fetching listing {job.image.pf_id} again failed: {exc}",
                    "listing",
                )
            return []
        retries: list[_Job] = []
        for job in moved:
            item = job.image
            listing = listings.get(item.pf_id)
            if listing is None:
                why = f"listing {item.pf_id} is no longer on Property Finder"
            else:
                current = next((i for i in listing.images if i.position == item.position), None)
                if current is None or not current.url:
                    why = f"listing {item.pf_id} has no image at position {item.position} any more"
                elif current.url == item.source_url:
                    why = f"listing {item.pf_id} still gives the same URL"
                elif len(current.url) > max_source_url():
                    why = f"the listing's current URL is longer than {max_source_url()} characters"
                else:
                    retries.append(
                        _Job(item, current.url, current, job.first_error, job.first_status)
                    )
                    continue
            self._fail(job, f"{job.first_error}; {why}", "listing")
        return retries

    def _save(self, job: _Job, stored: StoredImage) -> None:
        """Point the row at the new file and record its checksum (this thread only)."""
        item = job.image
        source_url = job.current.url if job.current is not None else item.source_url
        try:
            changed = repoint_image(
                item.image_id, item.name, stored, source_url=source_url, moved=job.current
            )
        except (OperationalError, InterfaceError):
            raise
        except DatabaseError as exc:
            self._fail(
                job, f"cannot update the row: {first_line(exc)} ({stored.name} is unused)", "db"
            )
            return
        except RowRefused as exc:  # the new name does not fit the property's main image column
            self._fail(
                job, f"cannot update the row: {exc} ({stored.name} is unused)", "invalid_value"
            )
            return
        if not changed:
            self._fail(
                job,
                f"the row changed while it was being repaired; {stored.name} is unused",
                "row_changed",
            )
            return
        repaired = RepairedImage(item, stored.name, source_url, stored.size, stored.sha256)
        self.repair_result.repaired.append(repaired)
        self.recorder.count("images_downloaded")
        moved = f" from the listing's current URL ({job.first_error})" if job.current else ""
        self.recorder.info(
            "image.repaired",
            f"image {item.image_id} ({item.reason}) repaired{moved}: {stored.name}",
            pf_id=item.pf_id,
            object_type="image",
            object_id=item.image_id,
        )
        self.events.repaired(repaired)
        self._outcome()

    def _fail(self, job: _Job, cause: str, reason: str, status: int | None = None) -> None:
        item = job.image
        failure = RepairFailure(item, cause, reason)
        self.repair_result.failed.append(failure)
        self.recorder.count("images_failed")
        self.recorder.error(
            "image.repair_failed",
            f"image {item.image_id} ({item.reason}, {item.name!r}): {cause}",
            pf_id=item.pf_id,
            object_type="image",
            object_id=item.image_id,
            # A dead URL the listing could not replace: the first answer is the cause.
            cause=Cause(reason, status if status is not None else job.first_status),
            url=safe_url(job.url) if job.url else "",
        )
        self.events.failed(failure)
        self._outcome()

    def _outcome(self) -> None:
        self._outcomes += 1
        if self._outcomes % CHECKPOINT_EVERY == 0:
            self.recorder.checkpoint()


def _with_first(job: _Job, message: str) -> str:
    return f"{job.first_error}; then {message}" if job.first_error else message


def _properties(jobs: list[_Job]) -> int:
    return len({job.image.pf_id for job in jobs})


def repair_images(options: RepairOptions | None = None, **kwargs: Any) -> RepairResult:
    """Run one pf_repair (``kwargs``: events, and the resources Job takes)."""
    return RepairJob(options or RepairOptions(), **kwargs).run()
