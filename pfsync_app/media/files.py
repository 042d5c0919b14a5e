"""Stored image files: can storage be written, what is in it, and reading files back.

Every listing of storage and every read of a stored file's bytes is here:
``StoredFiles`` lists each folder once (os.scandir on the filesystem, one
listing per prefix on S3, ``listdir`` elsewhere) instead of asking per name.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import posixpath
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import SuspiciousFileOperation
from django.core.files.storage import FileSystemStorage, Storage

from pfsync_app.conf import pfsync_settings
from pfsync_app.deadline import os_error_text
from pfsync_app.exceptions import ImageRejected, SyncAborted, first_line
from pfsync_app.media.decode import decode_image
from pfsync_app.words import plural

logger = logging.getLogger("pfsync.media")

CHUNK_SIZE = 64 * 1024

#: errno values that mean the storage has no room left (a full disk, a spent quota).
STORAGE_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})

#: errno values after which every later write fails too, and what each says of the
#: storage: a full disk or spent quota, a folder remounted read-only, a media root
#: whose permissions changed. A per-file error (a name too long) is not among them.
STORAGE_BROKEN_ERRNOS: dict[int, str] = {
    **dict.fromkeys(STORAGE_FULL_ERRNOS, "is full"),
    errno.EROFS: "is read-only",
    errno.EACCES: "refuses writes (permission denied)",
}

# Temporary downloads live inside a FileSystemStorage's own folder so the final
# move into place is a rename on the same filesystem: atomic.
TEMP_DIR_NAME = ".pfsync-tmp"


def storage_write_problem(storage: Storage, upload_dir: str | None = None) -> str | None:
    """Why images cannot be written to ``storage``, or None when they can.

    A media folder that is read-only or on a full disk, or a bucket that is
    missing or refuses writes, would otherwise fail every download one by one.
    A filesystem storage is probed where pfsync writes (its temporary folder and
    the image folder); any other storage by saving and deleting a small object.
    """
    if not isinstance(storage, FileSystemStorage):
        return _object_write_problem(storage)
    folder = os.path.join(storage.location, TEMP_DIR_NAME)
    target = os.path.join(storage.location, upload_dir or pfsync_settings.PF_IMAGE_UPLOAD_DIR)
    try:
        os.makedirs(folder, exist_ok=True)
        os.makedirs(target, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix="probe-", suffix=".part") as probe:
            probe.write(b"pfsync")
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as exc:
        if exc.errno in STORAGE_FULL_ERRNOS:
            return f"the media storage is full: {storage.location} has no room left"
        return f"the media folder {storage.location} cannot be written: {os_error_text(exc)}"
    return None


def _object_write_problem(storage: Storage) -> str | None:
    """An object storage (S3...): save a probe object and delete it; why that failed, or None."""
    from django.core.files.base import ContentFile

    name = f"{TEMP_DIR_NAME}/probe-{os.getpid()}-{time.monotonic_ns()}.part"
    try:
        saved = storage.save(name, ContentFile(b"pfsync"))
        storage.delete(saved)
    except Exception as exc:  # each storage backend raises its own (botocore's ClientError...)
        return f"the media storage {storage_location(storage)} cannot be written: {first_line(exc)}"
    return None


def storage_location(storage: Storage) -> str:
    """Where a storage keeps its files, as the operator configured it."""
    if isinstance(storage, FileSystemStorage):
        return f"MEDIA_ROOT={storage.location}"
    bucket = getattr(storage, "bucket_name", None)
    if bucket:
        return f"bucket {bucket}"
    return type(storage).__name__


def require_writable_storage(storage: Storage) -> None:
    """Raise SyncAborted, one sentence, when images cannot be written to ``storage``."""
    problem = storage_write_problem(storage)
    if problem:
        if isinstance(storage, FileSystemStorage):
            where = "MEDIA_ROOT and its permissions"
        elif getattr(storage, "bucket_name", None):
            where = "AWS_STORAGE_BUCKET_NAME and what its credentials may do"
        else:
            where = "the media storage's settings"
        raise SyncAborted(f"{problem} (check {where})")


@dataclass(frozen=True)
class StoredCheck:
    """A stored file read back: its size, its sha256, and why it does not decode ("" if it does)."""

    size: int
    sha256: str
    problem: str = ""


def inspect_stored(storage: Storage, name: str, *, max_pixels: int) -> StoredCheck | None:
    """Read a stored file back and decode it; None when it is gone, SyncAborted when unreadable."""
    try:
        with storage.open(name, "rb") as stored, contextlib.ExitStack() as cleanup:
            hasher = hashlib.sha256()
            size = 0
            # A file that cannot seek is decoded from a copy (Pillow needs to seek).
            copy = None
            if not _seekable(stored):
                copy = cleanup.enter_context(tempfile.SpooledTemporaryFile(8 * CHUNK_SIZE))
            for chunk in stored.chunks(CHUNK_SIZE):
                hasher.update(chunk)
                size += len(chunk)
                if copy is not None:
                    copy.write(chunk)
            problem = _decode_problem(stored if copy is None else copy, max_pixels)
    except FileNotFoundError:
        return None
    except Exception as exc:
        raise SyncAborted(f"cannot read storage file {name!r}: {error_text(exc)}") from exc
    return StoredCheck(size, hasher.hexdigest(), problem)


def _seekable(file: Any) -> bool:
    try:
        return bool(file.seekable())
    except (AttributeError, OSError, ValueError):
        return False


def _decode_problem(file: Any, max_pixels: int) -> str:
    """Why the file's bytes are not a whole image ("" when they are)."""
    try:
        decode_image(file, max_pixels=max_pixels)
    except ImageRejected as exc:
        return f"{exc.cause} ({exc.reason})"
    return ""


def verify_stored(storage: Storage, name: str) -> tuple[int, str]:
    """Read a stored file back, streaming: (size in bytes, sha256 hex)."""
    hasher = hashlib.sha256()
    size = 0
    with storage.open(name, "rb") as stored:
        for chunk in stored.chunks(CHUNK_SIZE):
            hasher.update(chunk)
            size += len(chunk)
    return size, hasher.hexdigest()


def sweep_stale_downloads(storage: Any) -> int:
    """Remove temporary downloads a killed process left behind; return how many.

    A download attempt lasts at most IMAGE_DOWNLOAD_TIMEOUT seconds, so a
    ``.part`` file much older than that belongs to no running download (another
    process's fresh one is left alone).
    """
    location = getattr(storage, "location", None)
    if not isinstance(storage, FileSystemStorage) or not location:
        return 0
    folder = os.path.join(location, TEMP_DIR_NAME)
    cutoff = time.time() - (3 * float(pfsync_settings.IMAGE_DOWNLOAD_TIMEOUT) + 60)
    removed = 0
    try:
        names = os.listdir(folder)
    except OSError:
        return 0
    for name in names:
        path = os.path.join(folder, name)
        try:
            if name.endswith(".part") and os.stat(path).st_mtime < cutoff:
                os.unlink(path)
                removed += 1
        except OSError as exc:
            logger.warning("could not remove stale temporary download %s: %s", path, exc)
    if removed:
        logger.info("removed %s left by an interrupted run", plural(removed, "temporary download"))
    return removed


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
                f"cannot list storage folder {folder or '(root)'!r}: {error_text(exc)}"
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
                f"cannot list storage folder {folder or '(root)'!r}: {error_text(exc)}"
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
                f"cannot list storage folder {folder or '(root)'!r}: {error_text(exc)}"
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
            raise SyncAborted(f"cannot read storage file {name!r}: {error_text(exc)}") from exc


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


def error_text(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return first_line(exc)


def file_exists(storage: Storage, name: str) -> bool:
    """Whether storage holds a file of this name (False for an empty name or a storage error)."""
    try:
        return bool(name) and storage.exists(name)
    except OSError:
        return False


def discard(storage: Storage, names: Iterable[str]) -> None:
    """Remove files pfsync stored for rows that were never written (never raises).

    Any error, not only OSError: remote storages raise their own, and this often
    runs while another exception is on its way out, which must not be replaced.
    """
    for name in names:
        try:
            storage.delete(name)
        except Exception as exc:
            logger.warning("could not remove unused file %s: %s", name, exc)
