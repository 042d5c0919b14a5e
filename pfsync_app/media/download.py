"""Image downloads: retries, a total deadline, decoding, and saving into storage.

A download either leaves one complete image in storage under a new name
``<PF_IMAGE_UPLOAD_DIR>/<uuid4 hex>.<ext>`` (the extension that of the format
the bytes decode as) or raises ``ImageDownloadError`` and leaves nothing behind.
Nothing is kept that Pillow does not decode whole (``media.decode``). A media
storage found full raises ``MediaStorageFull`` instead: every further image
would fail the same way, so the run stops. Media knows URLs, HTTP and Django's
storage API, nothing of listings or the ORM.
"""

from __future__ import annotations

import contextlib
import hashlib
import http
import logging
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any
from urllib.parse import urljoin

import requests
import urllib3
from django.core.files import File
from django.core.files.storage import FileSystemStorage, Storage, default_storage
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

import pfsync_app
from pfsync_app.conf import pfsync_settings
from pfsync_app.deadline import Deadline, DeadlineAdapter, error_causes, is_timeout, within
from pfsync_app.exceptions import (
    DownloadAttemptFailed,
    ImageDownloadError,
    ImageRejected,
    MediaStorageFull,
    download_retryable,
)
from pfsync_app.media.decode import (
    IMAGE_TYPES,
    SNIFF_BYTES,
    DecodedImage,
    declared_type_problem,
    decode_image,
    require_image_start,
    sniff_image_type,
)
from pfsync_app.media.files import CHUNK_SIZE, STORAGE_BROKEN_ERRNOS, TEMP_DIR_NAME
from pfsync_app.media.policy import (
    PRIVATE_HOSTS_HINT,
    os_error_text,
    require_allowed_url,
    safe_url,
)
from pfsync_app.words import plural

__all__ = [
    "IMAGE_TYPES",
    "MAX_REDIRECTS",
    "USER_AGENT",
    "ImageDownloader",
    "StoredImage",
    "sniff_image_type",
]

logger = logging.getLogger("pfsync.media")


USER_AGENT = f"pfsync/{pfsync_app.__version__}"


MAX_REDIRECTS = 5


@dataclass(frozen=True)
class StoredImage:
    """A downloaded image as saved in storage; width and height are the decoded pixels'."""

    name: str
    size: int
    sha256: str
    content_type: str
    width: int | None = None
    height: int | None = None


def _status_text(response: requests.Response) -> str:
    """``HTTP 404 Not Found``: the status code and its standard phrase."""
    try:
        phrase = http.HTTPStatus(response.status_code).phrase
    except ValueError:
        phrase = response.reason or ""
    return f"HTTP {response.status_code} {phrase}".rstrip()


#: The longest wait between two attempts at an image, in seconds (unless the delay is longer).
LONGEST_WAIT = 60.0


class _DownloadedFile(File):
    """A finished temporary file that FileSystemStorage moves into place instead of copying."""

    def __init__(self, file: IO[bytes], path: str) -> None:
        super().__init__(file, name=os.path.basename(path))
        self._path = path

    def temporary_file_path(self) -> str:
        """Where the file is now; FileSystemStorage renames it to its final name."""
        return self._path


class ImageDownloader:
    """Downloads images into storage; thread-safe, one shared ``requests.Session``."""

    def __init__(
        self,
        session: requests.Session | None = None,
        *,
        storage: Storage | None = None,
        upload_dir: str | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        retry_delay: float | None = None,
        max_bytes: int | None = None,
        max_pixels: int | None = None,
        allow_private_hosts: bool | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._owns_session = session is None
        self.session = session if session is not None else self._new_session()
        self.storage = storage if storage is not None else default_storage
        self.upload_dir = _setting(upload_dir, "PF_IMAGE_UPLOAD_DIR").strip("/")
        self.timeout = float(_setting(timeout, "IMAGE_DOWNLOAD_TIMEOUT"))
        self.max_retries = max(1, int(_setting(max_retries, "IMAGE_DOWNLOAD_MAX_RETRIES")))
        self.retry_delay = float(_setting(retry_delay, "IMAGE_DOWNLOAD_RETRY_DELAY"))
        self.max_bytes = int(_setting(max_bytes, "PF_IMAGE_MAX_BYTES"))
        self.max_pixels = int(_setting(max_pixels, "PF_IMAGE_MAX_PIXELS"))
        self.allow_private_hosts = bool(
            _setting(allow_private_hosts, "PF_MEDIA_ALLOW_PRIVATE_HOSTS")
        )
        self.sleep = sleep
        # Once the storage is known to be full, later downloads stop before fetching.
        self._full: MediaStorageFull | None = None
        self._full_lock = threading.Lock()
        # Refusals PF_MEDIA_ALLOW_PRIVATE_HOSTS would lift, since the last close().
        self._private_refusals = 0

    @staticmethod
    def _new_session() -> requests.Session:
        """A session whose pool holds as many connections as downloads run at once."""
        session = requests.Session()
        session.headers["User-Agent"] = USER_AGENT
        size = max(10, int(pfsync_settings.PF_SYNC_CONCURRENCY))
        adapter = DeadlineAdapter(pool_connections=size, pool_maxsize=size)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        return session

    def close(self) -> None:
        """Say how many refusals were not logged one by one; close the session if it is ours."""
        self._log_private_refusals()
        if self._owns_session:
            self.session.close()

    def __enter__(self) -> ImageDownloader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def download(self, url: str) -> StoredImage:
        """Download ``url`` into storage, retrying transient failures; raise ImageDownloadError.

        Raises MediaStorageFull, not retried, when every write would fail (full, read-only).
        """
        attempts = 0

        def attempt() -> StoredImage:
            nonlocal attempts
            if self._full is not None:
                raise self._full
            attempts += 1
            return self._attempt(url)

        retrying = Retrying(
            stop=stop_after_attempt(self.max_retries),
            # Doubling, but never past a minute (or the delay itself, when set longer):
            # twenty doublings of even 2 s would otherwise wait for weeks.
            wait=wait_exponential(
                multiplier=self.retry_delay, exp_base=2, max=max(self.retry_delay, LONGEST_WAIT)
            ),
            retry=retry_if_exception(
                lambda exc: (
                    isinstance(exc, DownloadAttemptFailed)
                    and download_retryable(exc.reason, exc.status)
                )
            ),
            before_sleep=lambda state: self._log_retry(url, state),
            sleep=self.sleep,
            reraise=True,
        )
        try:
            return retrying(attempt)
        except DownloadAttemptFailed as exc:
            error = _final_error(url, exc, attempts)
            self._log_failure(error, exc)
            raise error from exc

    def _log_failure(self, error: ImageDownloadError, failure: DownloadAttemptFailed) -> None:
        """One warning per failed image; refusals the sandbox flag would lift: the first only.

        The first such refusal says how to allow it; the others are counted and
        said as one line when the downloader closes ("and 269 more like it").
        """
        if not failure.private_host:
            logger.warning("%s", error.message)
            return
        with self._full_lock:
            self._private_refusals += 1
            first = self._private_refusals == 1
        if first:
            logger.warning("%s (%s)", error.message, PRIVATE_HOSTS_HINT)

    def _log_private_refusals(self) -> None:
        """The count of private-host refusals not logged one by one."""
        with self._full_lock:
            more, self._private_refusals = self._private_refusals - 1, 0
        if more > 0:
            logger.warning(
                "and %s refused like it (PF_MEDIA_ALLOW_PRIVATE_HOSTS)", plural(more, "more image")
            )

    def _log_retry(self, url: str, state: Any) -> None:
        failure = state.outcome.exception()
        logger.info(
            "image %s: %s (attempt %d of %d), retrying in %.1f s",
            safe_url(url),
            failure,
            state.attempt_number,
            self.max_retries,
            state.next_action.sleep,
        )

    def _attempt(self, url: str) -> StoredImage:
        """One attempt: the answer within ``timeout`` seconds, then decoded and saved."""
        with within(self.timeout) as deadline:
            response = self._open(url, deadline)
            try:
                return self._receive(response, deadline)
            finally:
                response.close()

    def _check_deadline(self, deadline: Deadline) -> None:
        if deadline.passed:
            raise DownloadAttemptFailed("timeout", self._timeout_text())

    def _timeout_text(self) -> str:
        return f"no complete answer within {self.timeout:g} s"

    def _open(self, url: str, deadline: Deadline) -> requests.Response:
        """GET ``url``, following at most MAX_REDIRECTS redirects, each hop checked by policy."""
        current = url
        for hop in range(MAX_REDIRECTS + 1):
            try:
                require_allowed_url(current, self.allow_private_hosts)
            except DownloadAttemptFailed as exc:
                if hop and exc.reason == "blocked_url":
                    raise DownloadAttemptFailed(
                        "blocked_url",
                        f"it redirects to {safe_url(current)} and {exc.cause}",
                        private_host=exc.private_host,
                    ) from exc
                raise
            self._check_deadline(deadline)
            try:
                response = self.session.get(
                    current,
                    stream=True,
                    allow_redirects=False,
                    timeout=deadline.timeouts(),
                    # Identity encoding keeps Content-Length comparable with the bytes received.
                    # The session may be the Atlas client's: None drops any Authorization
                    # header it carries, and the no-op auth replaces its auth and .netrc,
                    # so no credential of ours ever reaches an image host.
                    headers={
                        "Accept": "image/*",
                        "Accept-Encoding": "identity",
                        "Authorization": None,
                    },
                    auth=_no_credentials,
                )
            except requests.RequestException as exc:
                if deadline.passed or is_timeout(exc):
                    raise DownloadAttemptFailed("timeout", self._timeout_text()) from exc
                raise DownloadAttemptFailed(
                    "connection", f"connection failed: {os_error_text(exc)}"
                ) from exc
            location = response.headers.get("Location")
            if response.is_redirect and location:
                response.close()
                current = urljoin(current, location)
                continue
            if response.status_code != 200:
                response.close()
                raise DownloadAttemptFailed(
                    "http_status", _status_text(response), status=response.status_code
                )
            return response
        raise DownloadAttemptFailed(
            "http_status",
            f"more than {MAX_REDIRECTS} redirects",
            status=response.status_code,
        )

    def _receive(self, response: requests.Response, deadline: Deadline) -> StoredImage:
        """Stream the body into a temporary file, decode it, then save it to storage."""
        problem = declared_type_problem(response.headers.get("Content-Type", ""))
        if problem:
            raise DownloadAttemptFailed("not_an_image", problem)
        expected = _content_length(response)
        if expected is not None and expected > self.max_bytes:
            raise DownloadAttemptFailed(
                "too_large", f"{expected} bytes is more than the {self.max_bytes} allowed"
            )
        deadline.cover(response)
        temp, temp_path = self._temp_file()
        try:
            size, digest = self._stream(response, temp, deadline, expected)
            # The body is complete: the connection may serve another request from now on.
            deadline.stop()
            decoded = self._decode(temp)
            return StoredImage(
                name=self._save(temp, temp_path, decoded.extension),
                size=size,
                sha256=digest,
                content_type=decoded.content_type,
                width=decoded.width,
                height=decoded.height,
            )
        finally:
            # Clean-up never raises: the error on its way out is the one that matters.
            _close_quietly(temp)
            if temp_path is not None:
                _unlink_quietly(temp_path)

    def _stream(
        self,
        response: requests.Response,
        temp: IO[bytes],
        deadline: Deadline,
        expected: int | None,
    ) -> tuple[int, str]:
        """Copy the body into ``temp``: (size, sha256 hex)."""
        hasher = hashlib.sha256()
        size = 0
        head = b""
        try:
            for chunk in response.iter_content(CHUNK_SIZE):
                size += len(chunk)
                if size > self.max_bytes:
                    raise DownloadAttemptFailed(
                        "too_large", f"body passed the {self.max_bytes} bytes allowed"
                    )
                if len(head) < SNIFF_BYTES:
                    head += chunk[: SNIFF_BYTES - len(head)]
                    if len(head) >= SNIFF_BYTES:
                        _require_image_start(head)
                hasher.update(chunk)
                self._write(temp, chunk)
                self._check_deadline(deadline)
        except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:
            if deadline.passed or is_timeout(exc):
                raise DownloadAttemptFailed("timeout", self._timeout_text()) from exc
            if isinstance(exc, requests.exceptions.ChunkedEncodingError):
                raise DownloadAttemptFailed("truncated", _short_body_text(expected)) from exc
            raise DownloadAttemptFailed(
                "connection", f"connection failed: {os_error_text(exc)}"
            ) from exc
        # A connection cut at the deadline looks like a body that ended.
        if deadline.fired:
            raise DownloadAttemptFailed("timeout", self._timeout_text())
        if expected is not None and size != expected:
            raise DownloadAttemptFailed("truncated", _short_body_text(expected))
        _require_image_start(head)
        try:
            temp.flush()
        except OSError as exc:
            raise self._storage_error(exc, "cannot write a temporary file") from exc
        return size, hasher.hexdigest()

    def _decode(self, temp: IO[bytes]) -> DecodedImage:
        """The temporary file decoded whole; DownloadAttemptFailed with the reason otherwise."""
        try:
            return decode_image(temp, max_pixels=self.max_pixels)
        except ImageRejected as exc:
            raise DownloadAttemptFailed(exc.reason, exc.cause) from exc

    def _write(self, temp: IO[bytes], chunk: bytes) -> None:
        try:
            temp.write(chunk)
        except OSError as exc:
            raise self._storage_error(exc, "cannot write a temporary file") from exc

    def _temp_file(self) -> tuple[IO[bytes], str | None]:
        """A temporary file; beside the storage folder for FileSystemStorage, else anonymous."""
        try:
            if isinstance(self.storage, FileSystemStorage):
                folder = os.path.join(self.storage.location, TEMP_DIR_NAME)
                os.makedirs(folder, exist_ok=True)
                temp = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed by _receive
                    dir=folder, prefix="download-", suffix=".part", delete=False
                )
                return temp, temp.name
            return tempfile.TemporaryFile(), None
        except OSError as exc:
            raise self._storage_error(exc, "cannot create a temporary file") from exc

    def _save(self, temp: IO[bytes], temp_path: str | None, extension: str) -> str:
        """Save the finished file under a new unique name; return the storage name."""
        name = f"{uuid.uuid4().hex}.{extension}"
        if self.upload_dir:
            name = f"{self.upload_dir}/{name}"
        temp.seek(0)
        content = _DownloadedFile(temp, temp_path) if temp_path else File(temp, name=name)
        try:
            return self.storage.save(name, content)
        except Exception as exc:
            # A storage that wrote part of the file before failing must not keep it.
            with contextlib.suppress(Exception):
                self.storage.delete(name)
            raise self._storage_error(exc, f"cannot save {name}") from exc

    def _storage_error(self, exc: BaseException, doing: str) -> Exception:
        """DownloadAttemptFailed("storage"), or MediaStorageFull when every write would fail.

        Every write fails alike on a full disk, a spent quota, a read-only remount or a
        media root that refuses writes (``STORAGE_BROKEN_ERRNOS``): the run stops with
        one sentence, "the media storage is read-only: cannot save ...", exit status 2.
        """
        text = f"{doing}: {_storage_text(exc)}"
        broken = _storage_broken(exc)
        if broken is None:
            return DownloadAttemptFailed("storage", text)
        with self._full_lock:
            if self._full is None:
                self._full = MediaStorageFull(f"the media storage {broken}: {text}")
                logger.error("%s", self._full)
            return self._full


def _no_credentials(request: requests.PreparedRequest) -> requests.PreparedRequest:
    """Authentication that adds nothing."""
    return request


def _setting(value: Any, name: str) -> Any:
    return getattr(pfsync_settings, name) if value is None else value


def _require_image_start(head: bytes) -> None:
    try:
        require_image_start(head)
    except ImageRejected as exc:
        raise DownloadAttemptFailed(exc.reason, exc.cause) from exc


def _storage_broken(exc: BaseException) -> str | None:
    """What a storage error says of the whole storage ("is full", "is read-only"), else None.

    None for a per-file error (a name too long): only that image fails.
    """
    for cause in error_causes(exc):
        if isinstance(cause, OSError) and cause.errno in STORAGE_BROKEN_ERRNOS:
            return STORAGE_BROKEN_ERRNOS[cause.errno]
    return None


def _close_quietly(temp: IO[bytes]) -> None:
    """Close a temporary file; a full disk's error on the final flush is not news by then."""
    try:
        temp.close()
    except OSError as exc:
        logger.debug("closing a temporary download failed: %s", exc)


def _content_length(response: requests.Response) -> int | None:
    """The declared body size, when it can be compared with the bytes received."""
    encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        return None
    try:
        length = int(response.headers.get("Content-Length", ""))
    except ValueError:
        return None
    return length if length >= 0 else None


def _short_body_text(expected: int | None) -> str:
    # urllib3 drops a short chunk's bytes when it raises, so no count is given.
    if expected is None:
        return "body ended early"
    return f"body ended before its declared {expected} bytes"


def _storage_text(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _unlink_quietly(path: str) -> None:
    """Remove a temporary file; a failure is logged (the next run's sweep removes it)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        logger.warning("could not remove temporary download %s: %s", path, exc)


def _final_error(url: str, failure: DownloadAttemptFailed, attempts: int) -> ImageDownloadError:
    """The error download() raises: one sentence naming the URL, the cause and the attempts."""
    if failure.reason == "blocked_url" or attempts == 0:
        message = f"image {safe_url(url)}: refused, {failure.cause}"
    else:
        message = f"image {safe_url(url)}: {failure.cause} after {plural(attempts, 'attempt')}"
    return ImageDownloadError(url, failure.reason, message, status=failure.status)
