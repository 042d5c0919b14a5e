"""Image downloads: retries, a total deadline, validation, and saving into storage.

A download either leaves one complete, validated image in storage under a new
name ``<PF_IMAGE_UPLOAD_DIR>/<uuid4 hex>.<ext>`` (the extension sniffed from the
bytes) or raises ``ImageDownloadError`` and leaves nothing behind. Media knows
URLs, HTTP and Django's storage API, nothing of listings or the ORM.
"""

from __future__ import annotations

import contextlib
import hashlib
import http
import logging
import os
import socket
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
from requests.adapters import HTTPAdapter
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

import pfsync_app
from pfsync_app.conf import pfsync_settings
from pfsync_app.exceptions import DownloadAttemptFailed, ImageDownloadError, download_retryable
from pfsync_app.media.files import CHUNK_SIZE, TEMP_DIR_NAME
from pfsync_app.media.policy import (
    error_causes,
    os_error_text,
    require_allowed_url,
    safe_url,
)

logger = logging.getLogger("pfsync.media")


USER_AGENT = f"pfsync/{pfsync_app.__version__}"


MAX_REDIRECTS = 5


IMAGE_TYPES = {"jpg": "image/jpeg", "png": "image/png", "webp": "image/webp", "gif": "image/gif"}


SNIFF_BYTES = 12


@dataclass(frozen=True)
class StoredImage:
    """A downloaded image as saved in storage."""

    name: str
    size: int
    sha256: str
    content_type: str


def sniff_image_type(head: bytes) -> str | None:
    """The image extension (jpg, png, webp, gif) the leading bytes prove, or None."""
    if head.startswith(b"\xff\xd8\xff"):
        return "jpg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return None


def _status_text(response: requests.Response) -> str:
    """``HTTP 404 Not Found``: the status code and its standard phrase."""
    try:
        phrase = http.HTTPStatus(response.status_code).phrase
    except ValueError:
        phrase = response.reason or ""
    return f"HTTP {response.status_code} {phrase}".rstrip()


class _DownloadedFile(File):
    """A finished temporary file that FileSystemStorage moves into place instead of copying."""

    def __init__(self, file: IO[bytes], path: str) -> None:
        super().__init__(file, name=os.path.basename(path))
        self._path = path

    def temporary_file_path(self) -> str:
        """Where the file is now; FileSystemStorage renames it to its final name."""
        return self._path


class _Watchdog:
    """Cuts a response's connection at the attempt's deadline, so a dripping body cannot stall.

    A blocked read waits for a whole chunk and each socket timeout covers one
    recv only, so a server sending a byte now and then would hold an attempt
    forever; shutting the socket down at the deadline ends the read at once.
    """

    def __init__(self, response: requests.Response, deadline: float) -> None:
        self.fired = False
        self._lock = threading.Lock()
        self._done = False
        # Our own descriptor of the same socket: it stays valid (never reused for
        # another file) until stop(), whatever urllib3 does with its own.
        self._sock = _duplicate_socket(response)
        self._timer: threading.Timer | None = None
        if self._sock is not None:
            self._timer = threading.Timer(max(0.0, deadline - time.monotonic()), self._fire)
            self._timer.daemon = True
            self._timer.start()

    def _fire(self) -> None:
        with self._lock:
            if self._done or self._sock is None:
                return
            self.fired = True
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        """Disarm; after this the connection is never touched."""
        if self._timer is not None:
            self._timer.cancel()
        with self._lock:
            self._done = True
            if self._sock is not None:
                self._sock.close()
                self._sock = None


def _duplicate_socket(response: requests.Response) -> socket.socket | None:
    """A duplicate of the response's socket, or None when it has none (a test double)."""
    try:
        descriptor = os.dup(response.raw.fileno())
    except (AttributeError, OSError, ValueError):
        return None
    try:
        return socket.socket(fileno=descriptor)
    except OSError:
        os.close(descriptor)
        return None


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
        self.allow_private_hosts = bool(
            _setting(allow_private_hosts, "PF_MEDIA_ALLOW_PRIVATE_HOSTS")
        )
        self.sleep = sleep

    @staticmethod
    def _new_session() -> requests.Session:
        """A session whose pool holds as many connections as downloads run at once."""
        session = requests.Session()
        session.headers["User-Agent"] = USER_AGENT
        size = max(10, int(pfsync_settings.PF_SYNC_CONCURRENCY))
        adapter = HTTPAdapter(pool_connections=size, pool_maxsize=size)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        return session

    def close(self) -> None:
        """Close the session if this downloader created it."""
        if self._owns_session:
            self.session.close()

    def __enter__(self) -> ImageDownloader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def download(self, url: str) -> StoredImage:
        """Download ``url`` into storage, retrying transient failures; raise ImageDownloadError."""
        attempts = 0

        def attempt() -> StoredImage:
            nonlocal attempts
            attempts += 1
            return self._attempt(url)

        retrying = Retrying(
            stop=stop_after_attempt(self.max_retries),
            wait=wait_exponential(multiplier=self.retry_delay, exp_base=2),
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
            logger.warning("%s", error.message)
            raise error from exc

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
        """One attempt, all of it within ``timeout`` seconds."""
        deadline = time.monotonic() + self.timeout
        response = self._open(url, deadline)
        try:
            return self._receive(response, deadline)
        finally:
            response.close()

    def _remaining(self, deadline: float) -> float:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise DownloadAttemptFailed("timeout", self._timeout_text())
        return remaining

    def _timeout_text(self) -> str:
        return f"no complete answer within {self.timeout:g} s"

    def _open(self, url: str, deadline: float) -> requests.Response:
        """GET ``url``, following at most MAX_REDIRECTS redirects, each hop checked by policy."""
        current = url
        for hop in range(MAX_REDIRECTS + 1):
            try:
                require_allowed_url(current, self.allow_private_hosts)
            except DownloadAttemptFailed as exc:
                if hop and exc.reason == "blocked_url":
                    raise DownloadAttemptFailed(
                        "blocked_url", f"it redirects to {safe_url(current)} and {exc.cause}"
                    ) from exc
                raise
            remaining = self._remaining(deadline)
            try:
                response = self.session.get(
                    current,
                    stream=True,
                    allow_redirects=False,
                    timeout=(remaining, remaining),
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
            except requests.Timeout as exc:
                raise DownloadAttemptFailed("timeout", self._timeout_text()) from exc
            except requests.RequestException as exc:
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

    def _receive(self, response: requests.Response, deadline: float) -> StoredImage:
        """Validate and stream the body into a temporary file, then save it to storage."""
        declared_type = response.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        if not declared_type.startswith("image/"):
            raise DownloadAttemptFailed(
                "not_an_image", f"Content-Type {declared_type or '(none)'!r} is not an image"
            )
        expected = _content_length(response)
        if expected is not None and expected > self.max_bytes:
            raise DownloadAttemptFailed(
                "too_large", f"{expected} bytes is more than the {self.max_bytes} allowed"
            )
        temp, temp_path = self._temp_file()
        watchdog = _Watchdog(response, deadline)
        try:
            size, digest, extension = self._stream(response, temp, deadline, watchdog, expected)
            # Disarm before saving: the connection may already serve another download.
            watchdog.stop()
            return StoredImage(
                name=self._save(temp, temp_path, extension),
                size=size,
                sha256=digest,
                content_type=IMAGE_TYPES[extension],
            )
        finally:
            watchdog.stop()
            temp.close()
            if temp_path is not None:
                _unlink_quietly(temp_path)

    def _stream(
        self,
        response: requests.Response,
        temp: IO[bytes],
        deadline: float,
        watchdog: _Watchdog,
        expected: int | None,
    ) -> tuple[int, str, str]:
        """Copy the body into ``temp``: (size, sha256 hex, sniffed extension)."""
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
                        _require_image(head)
                hasher.update(chunk)
                _write(temp, chunk)
                self._remaining(deadline)
        except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:
            if watchdog.fired or time.monotonic() >= deadline or _is_read_timeout(exc):
                raise DownloadAttemptFailed("timeout", self._timeout_text()) from exc
            if isinstance(exc, requests.exceptions.ChunkedEncodingError):
                raise DownloadAttemptFailed("truncated", _short_body_text(expected)) from exc
            raise DownloadAttemptFailed(
                "connection", f"connection failed: {os_error_text(exc)}"
            ) from exc
        if watchdog.fired:
            raise DownloadAttemptFailed("timeout", self._timeout_text())
        if expected is not None and size != expected:
            raise DownloadAttemptFailed("truncated", _short_body_text(expected))
        extension = _require_image(head)
        try:
            temp.flush()
        except OSError as exc:
            raise DownloadAttemptFailed(
                "storage", f"cannot write temporary file: {os_error_text(exc)}"
            ) from exc
        return size, hasher.hexdigest(), extension

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
            raise DownloadAttemptFailed(
                "storage", f"cannot create a temporary file: {os_error_text(exc)}"
            ) from exc

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
            raise DownloadAttemptFailed(
                "storage", f"cannot save {name}: {_storage_text(exc)}"
            ) from exc


def _no_credentials(request: requests.PreparedRequest) -> requests.PreparedRequest:
    """Authentication that adds nothing."""
    return request


def _setting(value: Any, name: str) -> Any:
    return getattr(pfsync_settings, name) if value is None else value


def _require_image(head: bytes) -> str:
    extension = sniff_image_type(head)
    if extension is None:
        raise DownloadAttemptFailed(
            "not_an_image", "the content is not a JPEG, PNG, WebP or GIF image"
        )
    return extension


def _write(temp: IO[bytes], chunk: bytes) -> None:
    try:
        temp.write(chunk)
    except OSError as exc:
        raise DownloadAttemptFailed(
            "storage", f"cannot write temporary file: {os_error_text(exc)}"
        ) from exc


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


def _is_read_timeout(exc: BaseException) -> bool:
    """requests reports a read timeout while streaming as a ConnectionError; find it."""
    timeouts = (requests.Timeout, urllib3.exceptions.TimeoutError, TimeoutError)
    return any(isinstance(cause, timeouts) for cause in error_causes(exc))


def _storage_text(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _final_error(url: str, failure: DownloadAttemptFailed, attempts: int) -> ImageDownloadError:
    """The error download() raises: one sentence naming the URL, the cause and the attempts."""
    if failure.reason == "blocked_url" or attempts == 0:
        message = f"image {safe_url(url)}: refused, {failure.cause}"
    else:
        message = f"image {safe_url(url)}: {failure.cause} after {_plural(attempts, 'attempt')}"
    return ImageDownloadError(url, failure.reason, message, status=failure.status)
