"""pf_check: find image rows whose file is missing, empty or corrupt.

The check reads the host's image rows (active images of Property Finder
properties) as a stream of tuples and asks storage about each file, listing
every folder once instead of one ``exists()`` per row wherever storage can
list. It never deletes or overwrites a file and writes no host row.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from django.core.files.storage import FileSystemStorage, Storage, default_storage

from pfsync_app.conf import pfsync_settings
from pfsync_app.exceptions import SyncAborted, UnknownProperty
from pfsync_app.jobs.base import Job
from pfsync_app.media.files import StoredFiles, inspect_stored, storage_location
from pfsync_app.models import SyncRun
from pfsync_app.reports.causes import Cause
from pfsync_app.words import plural
from pfsync_app.writers.images import image_rows, recorded_files, referenced_names
from pfsync_app.writers.listings import property_exists

logger = logging.getLogger("pfsync.check")


MISSING = "missing"


EMPTY = "empty"


CORRUPT = "corrupt"


REASONS = (MISSING, EMPTY, CORRUPT)


CHUNK_SIZE = 2000


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

    With ``verify`` each present file is also read back, compared with the size
    and sha256 pfsync recorded when it stored it (rows without a record, or whose
    record is of another file, are counted as ``unverified``), and decoded: a
    file that is not a whole image is ``corrupt`` whatever its checksum says.
    Reads only; raises SyncAborted when storage cannot be read.
    """
    files = StoredFiles(storage if storage is not None else default_storage)
    result = ScanResult()
    workers = verify_workers or max(1, min(8, int(pfsync_settings.PF_SYNC_CONCURRENCY)))
    # Reading files back is I/O: a few threads overlap it (hashlib and Pillow release the
    # GIL; media.decode lets one decode a core run at once).
    pool = ThreadPoolExecutor(
        max_workers=workers if verify else 1, thread_name_prefix="pfsync-verify"
    )
    try:
        for batch in _chunks(image_rows(pf_id, chunk_size=chunk_size), chunk_size):
            present: list[tuple[tuple, int]] = []
            for row in batch:
                name = row[3]  # the "image" column of IMAGE_ROW_FIELDS
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
    """Read back and decode the present files of one batch; compare them with the records."""
    records_by_id = recorded_files([row[0] for row, _ in present])
    to_read: list[tuple[tuple, tuple[int, str] | None]] = []
    for row, size in present:
        record = records_by_id.get(row[0])
        if record is None or record[0] != row[3]:
            # pfsync did not store this file (or the host has since changed it): nothing to
            # compare with, but it must still decode.
            result.unverified += 1
            to_read.append((row, None))
            continue
        result.verified += 1
        _, recorded_size, recorded_sha = record
        if size != recorded_size:
            result.missing.append(
                _corrupt(
                    row, f"{plural(size, 'byte')} stored, {plural(recorded_size, 'byte')} recorded"
                )
            )
            continue
        to_read.append((row, (recorded_size, recorded_sha)))
    max_pixels = int(pfsync_settings.PF_IMAGE_MAX_PIXELS)
    futures = [
        (row, recorded, pool.submit(inspect_stored, storage, row[3], max_pixels=max_pixels))
        for row, recorded in to_read
    ]
    for row, recorded, future in futures:
        stored = future.result()
        if stored is None:
            result.missing.append(_missing(row, "removed while it was being verified"))
        elif recorded is not None and stored.size != recorded[0]:
            result.missing.append(
                _corrupt(
                    row,
                    f"{plural(stored.size, 'byte')} stored, {plural(recorded[0], 'byte')} recorded",
                )
            )
        elif recorded is not None and stored.sha256 != recorded[1]:
            result.missing.append(_corrupt(row, "sha256 differs from the one recorded"))
        elif stored.problem:
            # The checksum of a broken file matches itself: only decoding tells.
            result.missing.append(_corrupt(row, f"it does not decode: {stored.problem}"))


def _missing(row: tuple, detail: str) -> MissingImage:
    return MissingImage(*row, reason=MISSING, detail=detail)


def _sizes(stored: int, recorded: int) -> str:
    """A file's size against pf_sync's record of it: "1 byte stored, 20 bytes recorded"."""
    return f"{plural(stored, 'byte')} stored, {plural(recorded, 'byte')} recorded"


def _corrupt(row: tuple, detail: str) -> MissingImage:
    return MissingImage(*row, reason=CORRUPT, detail=detail)


def empty_storage_problem(storage: Storage, scan: ScanResult) -> str | None:
    """The storage itself looks wrong: rows exist, none of their files, and no image folder.

    A MEDIA_ROOT that points at the wrong folder (or a bucket name that is off)
    would otherwise be 503 "missing" images; this says it once, or None.
    """
    if not scan.checked or len(scan.missing) < scan.checked:
        return None
    if any(item.reason != MISSING for item in scan.missing):
        return None
    folder = str(pfsync_settings.PF_IMAGE_UPLOAD_DIR).strip("/")
    if StoredFiles(storage).files(folder):
        return None  # the folder has files, just not these: they are really missing
    where = storage_location(storage)
    if isinstance(storage, FileSystemStorage):
        preposition, setting = "under", "MEDIA_ROOT"
    else:
        preposition, setting = "in", "AWS_STORAGE_BUCKET_NAME" if "bucket" in where else "STORAGES"
    return f"0 of {plural(scan.checked, 'file')} found {preposition} {where}: is {setting} right?"


def require_property(pf_id: str | None) -> None:
    """Raise UnknownProperty unless a host property has this pf_id (None: nothing to check)."""
    if pf_id is not None and not property_exists(pf_id):
        raise UnknownProperty(f"no property has pf_id {pf_id!r}")


def _finish_message(what: str, found: int, reasons: dict[str, int]) -> str:
    parts = ", ".join(f"{count} {reason}" for reason, count in reasons.items() if count)
    return f"{what}; {found} to repair ({parts})" if found else f"{what}; nothing missing"


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
    referenced = referenced_names(prefix, chunk_size=CHUNK_SIZE)
    return sorted(f"{prefix}{name}" for name in listing if f"{prefix}{name}" not in referenced)


class CheckJob(Job):
    """One pf_check run: reads rows and storage, records what is missing; no lock, no client."""

    command = SyncRun.Command.CHECK

    def __init__(
        self,
        *,
        pf_id: str | None = None,
        verify: bool = False,
        chunk_size: int = CHUNK_SIZE,
        storage: Storage | None = None,
    ) -> None:
        super().__init__(storage=storage)
        self.pf_id = pf_id
        self.verify = verify
        self.chunk_size = chunk_size
        self.scan = ScanResult()

    def options(self) -> dict[str, Any]:
        return {"property": self.pf_id, "verify": self.verify}

    def preflight(self) -> None:
        super().preflight()
        require_property(self.pf_id)

    def work(self) -> None:
        self.scan = find_missing_images(
            self.storage, pf_id=self.pf_id, verify=self.verify, chunk_size=self.chunk_size
        )
        problem = empty_storage_problem(self.storage, self.scan)
        if problem:
            raise SyncAborted(problem)
        for item in self.scan.missing:
            self.recorder.error(
                f"image.{item.reason}",
                describe(item),
                pf_id=item.pf_id,
                object_type="image",
                object_id=item.image_id,
                cause=Cause(item.reason),
            )

    def finish_message(self) -> str:
        scan = self.scan
        checked = f"checked {plural(scan.checked, 'image')}"
        if self.verify:
            checked += f" ({scan.verified} verified, {scan.unverified} without a recorded checksum)"
        return _finish_message(checked, len(scan.missing), scan.reasons())

    def result(self) -> CheckResult:
        scan = self.scan
        return CheckResult(
            checked=scan.checked,
            verified=scan.verified,
            unverified=scan.unverified,
            missing=scan.missing,
            run_id=self.recorder.run.pk,
            verify=self.verify,
            pf_id=self.pf_id,
        )


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
    return CheckJob(pf_id=pf_id, verify=verify, chunk_size=chunk_size, storage=storage).run()


def describe(item: MissingImage) -> str:
    """What is wrong with one image row's file, as a report entry says it."""
    what = {
        MISSING: "file is missing",
        EMPTY: "file is empty (0 bytes)",
        CORRUPT: "file is corrupt",
    }[item.reason]
    detail = f" ({item.detail})" if item.detail else ""
    return f"image {item.image_id} of property {item.property_id}: {item.name!r} {what}{detail}"
