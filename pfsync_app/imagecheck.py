"""pf_check and pf_repair: find image rows whose file is missing, empty or corrupt, and mend them.

The check reads the host's image rows (active images of Property Finder
properties) as a stream of tuples and asks storage about each file, listing
every folder once instead of one ``exists()`` per row wherever storage can
list. The repair downloads each such image again (from the row's source URL,
or, when Property Finder has moved the image, from the listing's current URL
at the same position), saves it under a new name and points the row at it.
Neither ever deletes or overwrites a file; only the repair writes rows.
"""

from __future__ import annotations

import logging
import os
import posixpath
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from typing import Any

from django.core.exceptions import SuspiciousFileOperation
from django.core.files.storage import FileSystemStorage, Storage, default_storage
from django.db import DatabaseError, InterfaceError, OperationalError, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from pfsync_app import writers
from pfsync_app.atlas import AtlasClient, records
from pfsync_app.atlas.errors import AtlasError, AuthenticationError
from pfsync_app.checks import first_line
from pfsync_app.conf import pfsync_settings
from pfsync_app.exceptions import WriterBusy
from pfsync_app.locking import LockBusy, writer_lock
from pfsync_app.media import (
    PERMANENT_STATUSES,
    ImageDownloader,
    ImageDownloadError,
    StoredImage,
    verify_stored,
)
from pfsync_app.models import ImageFile, Property, PropertyImage
from pfsync_app.reports import RunRecorder, recording_outcome
from pfsync_app.sync import SyncAborted, preflight

logger = logging.getLogger("pfsync.imagecheck")

MISSING = "missing"
EMPTY = "empty"
CORRUPT = "corrupt"
REASONS = (MISSING, EMPTY, CORRUPT)

CHUNK_SIZE = 2000
# Listings fetched again in one go once this many properties have dead image URLs.
REFETCH_BATCH = 50
# Report entries and counters are written to the database every this many outcomes.
CHECKPOINT_EVERY = 100
MAX_SOURCE_URL = PropertyImage._meta.get_field("source_url").max_length

_ROW_FIELDS = ("id", "property_id", "property__pf_id", "image", "source_url", "position")


class UnknownProperty(SyncAborted):
    """``--property PF_ID`` names no property of the host."""


# ---------------------------------------------------------------------------
# What was found
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MissingImage:
    """One image row whose file is missing, empty or corrupt."""

    image_id: int
    property_id: int
    pf_id: str
    name: str
    source_url: str
    position: int
    reason: str
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        """The row as pf_check --json shows it."""
        return {
            "image_id": self.image_id,
            "property_id": self.property_id,
            "pf_id": self.pf_id,
            "name": self.name,
            "source_url": self.source_url,
            "position": self.position,
            "reason": self.reason,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class PropertyCount:
    """How many of one property's images are missing, by reason."""

    property_id: int
    pf_id: str
    total: int
    reasons: dict[str, int]


@dataclass
class ScanResult:
    """What a scan of the image rows found."""

    checked: int = 0
    verified: int = 0
    unverified: int = 0
    missing: list[MissingImage] = field(default_factory=list)

    def reasons(self) -> dict[str, int]:
        """How many rows were found for each reason (every reason present, zero or not)."""
        counts = Counter(item.reason for item in self.missing)
        return {reason: counts.get(reason, 0) for reason in REASONS}

    def by_property(self) -> list[PropertyCount]:
        """The missing rows counted per property, in property id order."""
        return group_by_property(self.missing)


def group_by_property(items: Iterable[MissingImage]) -> list[PropertyCount]:
    """``items`` counted per property, in property id order."""
    groups: dict[int, tuple[str, Counter[str]]] = {}
    for item in items:
        groups.setdefault(item.property_id, (item.pf_id, Counter()))[1][item.reason] += 1
    return [
        PropertyCount(property_id, pf_id, sum(counts.values()), dict(counts))
        for property_id, (pf_id, counts) in sorted(groups.items())
    ]


@dataclass
class CheckResult(ScanResult):
    """What pf_check found, with its run."""

    run_id: int | None = None
    verify: bool = False
    pf_id: str | None = None

    @property
    def exit_code(self) -> int:
        """0 when every file is present (and sound), 1 when something is missing."""
        return 1 if self.missing else 0

    def as_json(self) -> dict[str, Any]:
        """The machine-readable report of pf_check --json."""
        return {
            "run_id": self.run_id,
            "exit_code": self.exit_code,
            "verify": self.verify,
            "property": self.pf_id,
            "checked": self.checked,
            "verified": self.verified,
            "unverified": self.unverified,
            "missing_count": len(self.missing),
            "reasons": self.reasons(),
            "properties": [
                {
                    "property_id": group.property_id,
                    "pf_id": group.pf_id,
                    "missing": group.total,
                    "reasons": group.reasons,
                }
                for group in self.by_property()
            ],
            "missing": [item.as_dict() for item in self.missing],
        }


# ---------------------------------------------------------------------------
# Asking storage about files
# ---------------------------------------------------------------------------


class StoredFiles:
    """Sizes of stored files by name, listing each folder of storage at most once.

    ``size(name)`` is the file's size in bytes, or None when there is no such
    file. On FileSystemStorage one ``os.scandir`` per folder, and on
    django-storages' S3Storage one object listing per prefix, gives names and
    sizes together; on other storages that can list, ``listdir`` per folder
    tells which files exist and ``size()`` is asked only of those; on storages
    that cannot list, each name is asked with ``exists()`` and ``size()``.
    """

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.filesystem = isinstance(storage, FileSystemStorage)
        s3_storage = _s3_storage_class()
        self.s3 = s3_storage is not None and isinstance(storage, s3_storage)
        self.can_list = True
        # folder -> {file name: size, or None when storage has not said yet}
        self._folders: dict[str, dict[str, int | None]] = {}

    def size(self, name: str) -> int | None:
        """The size of the stored file ``name`` in bytes, or None when it does not exist."""
        if not name:
            return None
        split = _listable(name)
        if split is None or not self.can_list:
            return self._size_of(name)
        folder, base = split
        files = self._folders.get(folder)
        if files is None:
            files = self._list(folder)
            if files is None:
                return self._size_of(name)
            self._folders[folder] = files
        if base not in files:
            return None
        size = files[base]
        if size is None:
            size = self._size_of(name, listed=True)
            files[base] = size
        return size

    def files(self, folder: str) -> dict[str, int | None] | None:
        """Every file of ``folder`` with its size when known; None when storage cannot list."""
        if folder not in self._folders:
            listing = self._list(folder)
            if listing is None:
                return None
            self._folders[folder] = listing
        return self._folders[folder]

    def _list(self, folder: str) -> dict[str, int | None] | None:
        """Every file of ``folder``; None when this storage cannot list (then ask per name)."""
        if self.filesystem:
            return self._scan(folder)
        if self.s3:
            return self._list_s3(folder)
        try:
            _, names = self.storage.listdir(folder)
        except NotImplementedError:
            self.can_list = False
            return None
        except (FileNotFoundError, NotADirectoryError):
            return {}
        except Exception as exc:
            raise SyncAborted(
                f"cannot list storage folder {folder or '(root)'!r}: {_error_text(exc)}"
            ) from exc
        return dict.fromkeys(names)

    def _scan(self, folder: str) -> dict[str, int | None]:
        """One pass over a FileSystemStorage folder: names and sizes of its files."""
        files: dict[str, int | None] = {}
        try:
            path = self.storage.path(folder)
            with os.scandir(path) as entries:
                for entry in entries:
                    try:
                        if entry.is_file():
                            files[entry.name] = entry.stat().st_size
                    except FileNotFoundError:
                        continue  # removed (or a broken link) while we looked
        except (FileNotFoundError, NotADirectoryError):
            return {}
        except OSError as exc:
            raise SyncAborted(
                f"cannot list storage folder {folder or '(root)'!r}: {_error_text(exc)}"
            ) from exc
        return files

    def _list_s3(self, folder: str) -> dict[str, int]:
        """One listing of an S3 prefix: names and sizes (S3Storage.listdir drops the sizes).

        Without the sizes every present object would cost a HEAD request, which
        on a large bucket makes the check take hours instead of seconds.
        """
        storage = self.storage
        # The key prefix S3Storage.listdir(folder) lists: AWS_LOCATION, the folder, a slash.
        prefix = posixpath.join(storage.location, folder).strip("/")
        prefix = f"{prefix}/" if prefix else ""
        files: dict[str, int] = {}
        try:
            pages = storage.connection.meta.client.get_paginator("list_objects").paginate(
                Bucket=storage.bucket_name, Prefix=prefix, Delimiter="/"
            )
            for page in pages:
                for entry in page.get("Contents", ()):
                    base = entry["Key"][len(prefix) :]
                    if base:  # the prefix itself is a folder marker, not a file
                        files[base] = int(entry["Size"])
        except Exception as exc:
            raise SyncAborted(
                f"cannot list storage folder {folder or '(root)'!r}: {_error_text(exc)}"
            ) from exc
        return files

    def _size_of(self, name: str, *, listed: bool = False) -> int | None:
        """Ask storage about one name (``listed``: its folder's listing named it)."""
        try:
            if self.filesystem:
                path = self.storage.path(name)
                if not os.path.isfile(path):
                    return None
                return os.stat(path).st_size
            if not listed and not self.storage.exists(name):
                return None
            return int(self.storage.size(name))
        except SuspiciousFileOperation:
            return None  # a name outside storage cannot be a stored file
        except FileNotFoundError:
            return None
        except Exception as exc:
            raise SyncAborted(f"cannot read storage file {name!r}: {_error_text(exc)}") from exc


def _s3_storage_class() -> type | None:
    """django-storages' S3Storage, when that optional dependency is installed."""
    try:
        from storages.backends.s3 import S3Storage
    except ImportError:
        return None
    return S3Storage


def _listable(name: str) -> tuple[str, str] | None:
    """(folder, file name) of a plain relative storage name; None for anything unusual."""
    if "\\" in name or name.startswith("/"):
        return None
    folder, base = posixpath.split(name)
    if not base or base in (".", ".."):
        return None
    if folder and any(part in ("", ".", "..") for part in folder.split("/")):
        return None
    return folder, base


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return first_line(exc)


# ---------------------------------------------------------------------------
# The scan
# ---------------------------------------------------------------------------


def image_rows(pf_id: str | None = None) -> QuerySet:
    """The active image rows of Property Finder properties, as a queryset of tuples."""
    rows = PropertyImage.objects.filter(is_active=True).exclude(
        Q(property__pf_id__isnull=True) | Q(property__pf_id="")
    )
    if pf_id is not None:
        rows = rows.filter(property__pf_id=pf_id)
    return rows.order_by("property_id", "position", "id").values_list(*_ROW_FIELDS)


def _chunks(rows: Iterable[tuple], size: int) -> Iterator[list[tuple]]:
    batch: list[tuple] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def find_missing_images(
    storage: Storage | None = None,
    *,
    pf_id: str | None = None,
    verify: bool = False,
    chunk_size: int = CHUNK_SIZE,
    verify_workers: int | None = None,
) -> ScanResult:
    """Every active image row of a PF property whose file is missing or empty (or corrupt).

    With ``verify`` each present file is also read back and compared with the
    size and sha256 pfsync recorded when it stored it (rows without a record,
    or whose record is of another file, are counted as ``unverified``).
    Reads only; raises SyncAborted when storage cannot be read.
    """
    files = StoredFiles(storage if storage is not None else default_storage)
    result = ScanResult()
    workers = verify_workers or max(1, min(8, int(pfsync_settings.PF_SYNC_CONCURRENCY)))
    # Reading files back is I/O: a few threads overlap it (hashlib releases the GIL).
    pool = ThreadPoolExecutor(
        max_workers=workers if verify else 1, thread_name_prefix="pfsync-verify"
    )
    try:
        stream = image_rows(pf_id).iterator(chunk_size=chunk_size)
        for batch in _chunks(stream, chunk_size):
            present: list[tuple[tuple, int]] = []
            for row in batch:
                name = row[3]  # the "image" column of _ROW_FIELDS
                result.checked += 1
                size = files.size(name)
                if size is None or size == 0:
                    reason = MISSING if size is None else EMPTY
                    detail = "" if name else "the row names no file"
                    result.missing.append(MissingImage(*row, reason=reason, detail=detail))
                elif verify:
                    present.append((row, size))
            if present:
                _verify_batch(files.storage, present, result, pool)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return result


def _verify_batch(
    storage: Storage,
    present: list[tuple[tuple, int]],
    result: ScanResult,
    pool: ThreadPoolExecutor,
) -> None:
    """Compare the present files of one batch with pfsync's ImageFile records."""
    records_by_id = {
        image_id: (name, size, sha256)
        for image_id, name, size, sha256 in ImageFile.objects.filter(
            image_id__in=[row[0] for row, _ in present]
        ).values_list("image_id", "name", "size", "sha256")
    }
    to_read: list[tuple[tuple, int, int, str]] = []
    for row, size in present:
        record = records_by_id.get(row[0])
        if record is None or record[0] != row[3]:
            # pfsync did not store this file (or the host has since changed it): nothing to
            # compare with.
            result.unverified += 1
            continue
        result.verified += 1
        _, recorded_size, recorded_sha = record
        if size != recorded_size:
            result.missing.append(
                _corrupt(row, f"{size} bytes stored, {recorded_size} bytes recorded")
            )
            continue
        to_read.append((row, size, recorded_size, recorded_sha))
    futures = [(item, pool.submit(_read_back, storage, item[0][3])) for item in to_read]
    for (row, _size, recorded_size, recorded_sha), future in futures:
        read_size, read_sha = future.result()
        if read_size is None:
            result.missing.append(_missing(row, "removed while it was being verified"))
        elif read_size != recorded_size:
            result.missing.append(
                _corrupt(row, f"{read_size} bytes stored, {recorded_size} bytes recorded")
            )
        elif read_sha != recorded_sha:
            result.missing.append(_corrupt(row, "sha256 differs from the one recorded"))


def _read_back(storage: Storage, name: str) -> tuple[int | None, str]:
    try:
        return verify_stored(storage, name)
    except FileNotFoundError:
        return None, ""
    except Exception as exc:
        raise SyncAborted(f"cannot read storage file {name!r}: {_error_text(exc)}") from exc


def _missing(row: tuple, detail: str) -> MissingImage:
    return MissingImage(*row, reason=MISSING, detail=detail)


def _corrupt(row: tuple, detail: str) -> MissingImage:
    return MissingImage(*row, reason=CORRUPT, detail=detail)


def require_property(pf_id: str | None) -> None:
    """Raise UnknownProperty unless a host property has this pf_id (None: nothing to check)."""
    if pf_id is not None and not Property.objects.filter(pf_id=pf_id).exists():
        raise UnknownProperty(f"no property has pf_id {pf_id!r}")


def _record_abort(command: str, options: dict[str, Any], message: str) -> None:
    """Record a run that could not start, when pfsync's own tables can be written."""
    try:
        RunRecorder.start(command, options=options).fail(message)
    except DatabaseError:
        logger.warning("could not record the %s run that failed: %s", command, message)


def _finish_message(what: str, found: int, reasons: dict[str, int]) -> str:
    parts = ", ".join(f"{count} {reason}" for reason, count in reasons.items() if count)
    return f"{what}; {found} to repair ({parts})" if found else f"{what}; nothing missing"


# ---------------------------------------------------------------------------
# pf_check
# ---------------------------------------------------------------------------


def find_unreferenced_files(storage: Storage | None = None) -> list[str] | None:
    """Files in pfsync's image folder that no image row names; None when storage cannot list.

    A process killed between storing an image and committing its listing leaves
    such a file. They are harmless and pfsync never deletes them: this only says
    which they are, for ops to remove if they like.
    """
    storage = storage if storage is not None else default_storage
    folder = str(pfsync_settings.PF_IMAGE_UPLOAD_DIR).strip("/")
    listing = StoredFiles(storage).files(folder)
    if listing is None:
        return None
    prefix = f"{folder}/" if folder else ""
    referenced = set(
        PropertyImage.objects.filter(image__startswith=prefix)
        .values_list("image", flat=True)
        .iterator(chunk_size=CHUNK_SIZE)
    )
    return sorted(f"{prefix}{name}" for name in listing if f"{prefix}{name}" not in referenced)


def check_images(
    storage: Storage | None = None,
    *,
    pf_id: str | None = None,
    verify: bool = False,
    chunk_size: int = CHUNK_SIZE,
) -> CheckResult:
    """pf_check: find the missing, empty (and with ``verify`` corrupt) image files; record the run.

    Writes nothing to the host tables and never takes the writer lock. Raises
    SyncAborted (exit status 2) when it cannot run.
    """
    options = {"property": pf_id, "verify": verify}
    try:
        preflight()
        require_property(pf_id)
    except SyncAborted as exc:
        _record_abort("pf_check", options, str(exc))
        raise
    recorder = RunRecorder.start("pf_check", options=options)
    with recording_outcome(recorder):
        scan = find_missing_images(storage, pf_id=pf_id, verify=verify, chunk_size=chunk_size)
    for item in scan.missing:
        recorder.error(
            f"image.{item.reason}",
            _describe(item),
            pf_id=item.pf_id,
            object_type="image",
            object_id=item.image_id,
        )
    checked = f"checked {scan.checked} images"
    if verify:
        checked += f" ({scan.verified} verified, {scan.unverified} without a recorded checksum)"
    recorder.finish(message=_finish_message(checked, len(scan.missing), scan.reasons()))
    return CheckResult(
        checked=scan.checked,
        verified=scan.verified,
        unverified=scan.unverified,
        missing=scan.missing,
        run_id=recorder.run.pk,
        verify=verify,
        pf_id=pf_id,
    )


def _describe(item: MissingImage) -> str:
    what = {
        MISSING: "file is missing",
        EMPTY: "file is empty (0 bytes)",
        CORRUPT: "file differs from what was downloaded",
    }[item.reason]
    detail = f" ({item.detail})" if item.detail else ""
    return f"image {item.image_id} of property {item.property_id}: {item.name!r} {what}{detail}"


# ---------------------------------------------------------------------------
# pf_repair
# ---------------------------------------------------------------------------


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


class Repair:
    """One pf_repair run. ``Repair(options).run()`` or ``repair_images(options)``."""

    def __init__(
        self,
        options: RepairOptions,
        *,
        storage: Storage | None = None,
        client: AtlasClient | None = None,
        downloader: ImageDownloader | None = None,
        events: RepairEvents | None = None,
        client_factory: Callable[[], AtlasClient] | None = None,
    ) -> None:
        self.options = options
        self.storage = storage if storage is not None else default_storage
        self.client = client
        self.downloader = downloader
        self.events = events or RepairEvents()
        self.client_factory = client_factory
        self.result = RepairResult(dry_run=options.dry_run)
        self.recorder: RunRecorder | None = None
        self.api_problem = ""
        self._outcomes = 0

    def run(self) -> RepairResult:
        """Repair; raise SyncAborted (exit status 2) when it cannot run."""
        options = self.options.as_dict()
        with ExitStack() as stack:
            try:
                preflight()
                require_property(self.options.pf_id)
                if not self.options.dry_run:
                    try:
                        stack.enter_context(writer_lock("pf_repair"))
                    except LockBusy as exc:
                        raise WriterBusy(str(exc)) from None
            except SyncAborted as exc:
                _record_abort("pf_repair", options, str(exc))
                raise
            self.recorder = RunRecorder.start(
                "pf_repair", options=options, holding_lock=not self.options.dry_run
            )
            self.result.run_id = self.recorder.run.pk
            return self._run()

    def _run(self) -> RepairResult:
        recorder = self.recorder
        with recording_outcome(recorder):
            scan = find_missing_images(
                self.storage, pf_id=self.options.pf_id, verify=self.options.verify
            )
            selected = scan.missing
            if self.options.limit is not None:
                selected = selected[: self.options.limit]
            self.result.total_found = len(scan.missing)
            self.result.selected = selected
            self.events.found(len(scan.missing), selected)
            if self.options.dry_run:
                for item in selected:
                    recorder.info(
                        "image.would_repair",
                        _describe(item),
                        pf_id=item.pf_id,
                        object_type="image",
                        object_id=item.image_id,
                    )
            elif selected:
                self._repair(selected)
        result = self.result
        if self.options.dry_run:
            message = (
                f"dry run: {result.total_found} images need repair; "
                f"{len(result.selected)} listed, nothing downloaded"
            )
        else:
            message = (
                f"repaired {len(result.repaired)} of {len(result.selected)} images; "
                f"{result.still_missing} still missing"
            )
        recorder.finish(message=message)
        return result

    # -- repairing ---------------------------------------------------------

    def _repair(self, selected: list[MissingImage]) -> None:
        concurrency = self.options.concurrency or int(pfsync_settings.PF_SYNC_CONCURRENCY)
        # Closed in reverse order, and also when building a later piece fails.
        with ExitStack() as cleanup:
            if self.client is None:
                if self.client_factory is not None:
                    self.client = self.client_factory()
                else:
                    self.client = _default_client(concurrency)
                cleanup.callback(self.client.close)
            if self.downloader is None:
                self.downloader = ImageDownloader(session=self.client.session, storage=self.storage)
                cleanup.callback(self.downloader.close)
            pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="pfsync-repair")
            cleanup.callback(pool.shutdown, wait=True, cancel_futures=True)
            self._authenticate()
            self._download_all(selected, pool)

    def _authenticate(self) -> None:
        try:
            self.client.authenticate()
        except AuthenticationError as exc:
            raise SyncAborted(
                f"Property Finder refused the credentials (PF_API_KEY/PF_API_SECRET): {exc}"
            ) from exc
        except AtlasError as exc:
            # Old URLs may still work: go on, and say why moved images cannot be followed.
            self.api_problem = f"the Property Finder API cannot be reached: {exc}"
            self.recorder.warning("api.unreachable", self.api_problem)

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
                except ImageDownloadError as exc:
                    if job.current is None and exc.permanent and exc.status in PERMANENT_STATUSES:
                        job.first_error = exc.message
                        moved.append(job)
                    else:
                        self._fail(job, _with_first(job, exc.message), exc.reason)
                except Exception as exc:  # a bug in one download must not stop the run
                    self._fail(job, f"{type(exc).__name__}: {first_line(exc)}", "unexpected")
                else:
                    self._save(job, stored)

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
            raise SyncAborted(f"Property Finder refused the credentials mid-run: {exc}") from exc
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
                elif len(current.url) > MAX_SOURCE_URL:
                    why = f"the listing's current URL is longer than {MAX_SOURCE_URL} characters"
                else:
                    retries.append(_Job(item, current.url, current, job.first_error))
                    continue
            self._fail(job, f"{job.first_error}; {why}", "listing")
        return retries

    def _save(self, job: _Job, stored: StoredImage) -> None:
        """Point the row at the new file and record its checksum (this thread only)."""
        item = job.image
        updates: dict[str, Any] = {"image": stored.name}
        if job.current is not None:
            updates.update(
                source_url=job.current.url, width=job.current.width, height=job.current.height
            )
        source_url = updates.get("source_url", item.source_url)
        try:
            with transaction.atomic():
                changed = PropertyImage.objects.filter(
                    pk=item.image_id, image=item.name, is_active=True
                ).update(**updates)
                if changed:
                    row = PropertyImage(id=item.image_id, source_url=source_url)
                    writers.record_checksums([(row, stored)], timezone.now())
        except (OperationalError, InterfaceError):
            raise
        except DatabaseError as exc:
            self._fail(
                job, f"cannot update the row: {first_line(exc)} ({stored.name} is unused)", "db"
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
        self.result.repaired.append(repaired)
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

    def _fail(self, job: _Job, cause: str, reason: str) -> None:
        item = job.image
        failure = RepairFailure(item, cause, reason)
        self.result.failed.append(failure)
        self.recorder.count("images_failed")
        self.recorder.error(
            "image.repair_failed",
            f"image {item.image_id} ({item.reason}, {item.name!r}): {cause}",
            pf_id=item.pf_id,
            object_type="image",
            object_id=item.image_id,
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


def _default_client(concurrency: int) -> AtlasClient:
    """The client from settings, its connection pool sized for ``concurrency`` downloads."""
    from pfsync_app.api import build_client

    return build_client(concurrency)


def repair_images(options: RepairOptions | None = None, **kwargs: Any) -> RepairResult:
    """Run one pf_repair (see Repair for the keyword arguments)."""
    return Repair(options or RepairOptions(), **kwargs).run()


__all__ = [
    "CORRUPT",
    "EMPTY",
    "MISSING",
    "CheckResult",
    "MissingImage",
    "PropertyCount",
    "Repair",
    "RepairEvents",
    "RepairFailure",
    "RepairOptions",
    "RepairResult",
    "RepairedImage",
    "ScanResult",
    "StoredFiles",
    "UnknownProperty",
    "check_images",
    "find_missing_images",
    "group_by_property",
    "image_rows",
    "repair_images",
    "require_property",
]
