"""Image downloads against a real HTTP server on 127.0.0.1: what is stored, retried and refused."""

import base64
import contextlib
import errno
import hashlib
import io
import logging
import os
import re
import socket
import struct
import tempfile
import threading
import time
import zlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from django.core.files.storage import FileSystemStorage, InMemoryStorage
from PIL import Image

from pfsync_app.deadline import DeadlineAdapter
from pfsync_app.exceptions import ImageDownloadError, MediaStorageFull
from pfsync_app.media import download, files
from pfsync_app.media.download import ImageDownloader
from pfsync_app.media.files import TEMP_DIR_NAME, verify_stored
from pfsync_app.sandbox.images import bomb_png


def make_png(width=3, height=2):
    """A valid RGB PNG, built by hand."""

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = b"".join(b"\x00" + bytes([200, 30, 60]) * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


PNG = make_png()
# The well-known 125-byte 1x1 JPEG (baseline header, arithmetic-coded scan).
JPEG = bytes.fromhex(
    "ffd8ffe000104a46494600010101004800480000"
    "ffdb004300030202020202030202020303030304060404040404080606050609080a0a090809090a0c0f0c0a0b0e0b09090d110d0e0f101011100a0c12131210130f101010"
    "ffc9000b080001000101011100"
    "ffcc000600101005"
    "ffda0008010100003f00d2cf20ffd9"
)
GIF = base64.b64decode("R0lGODlhAQABAIAAAP///wAAACH5BAEAAAAALAAAAAABAAEAAAICRAEAOw==")
WEBP = base64.b64decode("UklGRhoAAABXRUJQVlA4TA0AAAAvAAAAEAcQERGIiP4HAA==")
HTML = b"<!doctype html><html><body><h1>Temporarily unavailable</h1></body></html>"


# ---- the image host ---------------------------------------------------------------------------


def reply(status=200, body=b"", content_type="image/png", length=None, headers=None):
    """A response: status, Content-Type, Content-Length (the real one unless given)."""

    def respond(handler):
        handler.send_response(status)
        if content_type:
            handler.send_header("Content-Type", content_type)
        if length != "omit":
            handler.send_header("Content-Length", str(len(body) if length is None else length))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(body)

    return respond


def redirect(location, status=302):
    return reply(status, b"", content_type=None, headers={"Location": location})


def stall(seconds, then):
    """Wait before answering at all."""

    def respond(handler):
        time.sleep(seconds)
        then(handler)

    return respond


def drip(body, piece=16, interval=0.05, content_type="image/png"):
    """Send the body a few bytes at a time: every read is quick, the whole is slow."""

    def respond(handler):
        handler.send_response(200)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        for start in range(0, len(body), piece):
            handler.wfile.write(body[start : start + piece])
            handler.wfile.flush()
            time.sleep(interval)

    return respond


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # many downloads connect at once in the thread test


class ImageHost:
    """Routes of scripted responses; each path serves its responses in order, the last repeats."""

    def __init__(self):
        self.routes = {}
        self.hits = Counter()
        self.headers = {}
        self.lock = threading.Lock()
        host = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                path = self.path.split("?", 1)[0]
                with host.lock:
                    host.hits[path] += 1
                    host.headers[path] = dict(self.headers)
                    responses = host.routes.get(path, [reply(404, b"", content_type=None)])
                    respond = responses[min(host.hits[path], len(responses)) - 1]
                # The client hanging up first is what some tests intend.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    respond(self)

            def log_message(self, format, *args):
                pass

        self.server = QuietServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    def route(self, path, *responses):
        self.routes[path] = list(responses)
        return self.url(path)

    def url(self, path):
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"


@pytest.fixture
def image_host():
    host = ImageHost()
    host.thread.start()
    yield host
    host.server.shutdown()
    host.server.server_close()


@pytest.fixture
def media_root(settings):
    root = settings.MEDIA_ROOT
    root.mkdir(parents=True, exist_ok=True)
    return root


@pytest.fixture
def sleeps():
    return []


@pytest.fixture
def session():
    with requests.Session() as session:
        session.trust_env = False  # no proxy from the environment: 127.0.0.1 only
        yield session


@pytest.fixture
def make_downloader(session, media_root, sleeps):
    def make(**options):
        options.setdefault("storage", FileSystemStorage(location=media_root))
        options.setdefault("allow_private_hosts", True)
        options.setdefault("timeout", 3.0)
        options.setdefault("retry_delay", 2.0)
        options.setdefault("max_retries", 3)
        options.setdefault("upload_dir", "property_images")
        return ImageDownloader(session, sleep=sleeps.append, **options)

    return make


def files_under(root):
    """Every file below ``root``, the temporary folder included, relative to it."""
    return sorted(
        os.path.relpath(os.path.join(folder, name), root)
        for folder, _dirs, names in os.walk(root)
        for name in names
    )


def download_error(downloader, url):
    with pytest.raises(ImageDownloadError) as caught:
        downloader.download(url)
    return caught.value


# ---- success ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type", "extension"),
    [
        (PNG, "image/png", "png"),
        (JPEG, "image/jpeg", "jpg"),
        (GIF, "image/gif", "gif"),
        (WEBP, "image/webp", "webp"),
    ],
    ids=["png", "jpeg", "gif", "webp"],
)
def test_an_image_is_stored_byte_for_byte_under_a_uuid_name_with_its_sniffed_extension(
    image_host, make_downloader, media_root, body, content_type, extension
):
    url = image_host.route(f"/photo.{extension}", reply(200, body, content_type))
    downloader = make_downloader()

    stored = downloader.download(url)

    assert re.fullmatch(rf"property_images/[0-9a-f]{{32}}\.{extension}", stored.name)
    assert (media_root / stored.name).read_bytes() == body
    assert stored.size == len(body)
    assert stored.sha256 == hashlib.sha256(body).hexdigest()
    assert stored.content_type == content_type
    assert files_under(media_root) == [stored.name]


def test_the_extension_comes_from_the_bytes_not_from_the_url_or_the_content_type(
    image_host, make_downloader
):
    url = image_host.route("/evil.php", reply(200, PNG, "image/jpeg"))

    stored = make_downloader().download(url + "?name=x.html")

    assert stored.name.endswith(".png")
    assert stored.content_type == "image/png"


def test_downloading_the_same_url_twice_stores_two_files_and_overwrites_nothing(
    image_host, make_downloader, media_root
):
    url = image_host.route("/a.png", reply(200, PNG))
    downloader = make_downloader()

    first = downloader.download(url)
    second = downloader.download(url)

    assert first.name != second.name
    assert (media_root / first.name).read_bytes() == PNG
    assert (media_root / second.name).read_bytes() == PNG


def test_a_relative_redirect_is_followed_to_the_image(image_host, make_downloader, media_root):
    image_host.route("/new/a.jpg", reply(200, JPEG, "image/jpeg"))
    url = image_host.route("/old/a.jpg", redirect("/new/a.jpg", status=301))

    stored = make_downloader().download(url)

    assert (media_root / stored.name).read_bytes() == JPEG
    assert image_host.hits == Counter({"/old/a.jpg": 1, "/new/a.jpg": 1})


def test_a_chain_of_exactly_five_redirects_is_followed(image_host, make_downloader):
    for hop in range(5):
        image_host.route(f"/hop{hop}", redirect(f"/hop{hop + 1}"))
    image_host.route("/hop5", reply(200, PNG))

    stored = make_downloader().download(image_host.url("/hop0"))

    assert stored.size == len(PNG)


def test_a_chain_of_more_than_five_redirects_is_refused_without_retrying(
    image_host, make_downloader, media_root, sleeps
):
    for hop in range(7):
        image_host.route(f"/hop{hop}", redirect(f"/hop{hop + 1}"))
    image_host.route("/hop7", reply(200, PNG))
    url = image_host.url("/hop0")

    error = download_error(make_downloader(), url)

    assert error.reason == "http_status"
    assert error.message == f"image {url}: more than 5 redirects after 1 attempt"
    assert [image_host.hits[f"/hop{hop}"] for hop in range(8)] == [1, 1, 1, 1, 1, 1, 0, 0]
    assert sleeps == []
    assert files_under(media_root) == []


def test_the_shared_sessions_credentials_never_reach_the_image_host(
    image_host, make_downloader, session
):
    session.headers["Authorization"] = "Bearer atlas-token"
    session.auth = ("atlas", "secret")
    image_host.route("/new.png", reply(200, PNG))
    url = image_host.route("/a.png", redirect("/new.png"))

    make_downloader().download(url)

    for path in ("/a.png", "/new.png"):
        assert "Authorization" not in image_host.headers[path]
        assert image_host.headers[path]["Accept-Encoding"] == "identity"


def test_the_default_downloader_reads_pfsync_settings_and_saves_to_default_storage(
    image_host, settings, media_root
):
    settings.PF_MEDIA_ALLOW_PRIVATE_HOSTS = True
    settings.PF_IMAGE_UPLOAD_DIR = "listing_photos"
    url = image_host.route("/a.png", reply(200, PNG))

    with ImageDownloader() as downloader:
        stored = downloader.download(url)

    assert stored.name.startswith("listing_photos/")
    assert (media_root / stored.name).read_bytes() == PNG


def test_unset_options_come_from_pfsync_settings_at_construction(settings):
    settings.IMAGE_DOWNLOAD_TIMEOUT = 4.5
    settings.IMAGE_DOWNLOAD_MAX_RETRIES = 7
    settings.IMAGE_DOWNLOAD_RETRY_DELAY = 0.25
    settings.PF_IMAGE_MAX_BYTES = 12345
    settings.PF_MEDIA_ALLOW_PRIVATE_HOSTS = True

    with ImageDownloader() as downloader:
        assert (downloader.timeout, downloader.max_retries, downloader.retry_delay) == (
            4.5,
            7,
            0.25,
        )
        assert (downloader.max_bytes, downloader.allow_private_hosts) == (12345, True)
        assert downloader.upload_dir == "property_images"


def test_a_non_filesystem_storage_receives_the_complete_file(
    image_host, make_downloader, media_root
):
    storage = InMemoryStorage()
    url = image_host.route("/a.png", reply(200, PNG))

    stored = make_downloader(storage=storage).download(url)

    with storage.open(stored.name, "rb") as saved:
        assert saved.read() == PNG
    assert files_under(media_root) == []


def test_a_filesystem_save_moves_the_finished_temporary_file_into_place(
    image_host, make_downloader, media_root
):
    moves = []

    class RecordingStorage(FileSystemStorage):
        def _save(self, name, content):
            path = content.temporary_file_path()
            moves.append((path, os.stat(path).st_ino))
            return super()._save(name, content)

    url = image_host.route("/a.png", reply(200, PNG))

    stored = make_downloader(storage=RecordingStorage(location=media_root)).download(url)

    [(temp_path, temp_inode)] = moves
    assert os.path.dirname(temp_path) == str(media_root / TEMP_DIR_NAME)
    # Same inode: a rename, so the file appeared whole under its final name.
    assert os.stat(media_root / stored.name).st_ino == temp_inode
    assert files_under(media_root) == [stored.name]


def test_one_downloader_serves_many_threads_at_once(image_host, make_downloader, media_root):
    bodies = {f"/p{n}.png": make_png(n + 1, n + 2) for n in range(24)}
    for path, body in bodies.items():
        image_host.route(path, reply(200, body))
    downloader = make_downloader()

    with ThreadPoolExecutor(max_workers=8) as pool:
        images = pool.map(downloader.download, map(image_host.url, bodies))
        stored = dict(zip(bodies, images, strict=True))

    assert len({image.name for image in stored.values()}) == len(bodies)
    for path, image in stored.items():
        assert (media_root / image.name).read_bytes() == bodies[path]


def test_verify_stored_reads_a_file_back_and_hashes_it(image_host, make_downloader, media_root):
    url = image_host.route("/a.jpg", reply(200, JPEG, "image/jpeg"))
    storage = FileSystemStorage(location=media_root)
    stored = make_downloader(storage=storage).download(url)

    assert verify_stored(storage, stored.name) == (len(JPEG), hashlib.sha256(JPEG).hexdigest())


def test_verify_stored_works_on_any_storage():
    storage = InMemoryStorage()
    name = storage.save("property_images/x.gif", io.BytesIO(GIF))

    assert verify_stored(storage, name) == (len(GIF), hashlib.sha256(GIF).hexdigest())


# ---- HTTP failures and retries ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "phrase"), [(403, "Forbidden"), (404, "Not Found"), (410, "Gone")]
)
def test_a_gone_image_fails_at_once_as_permanent_without_retrying(
    image_host, make_downloader, media_root, sleeps, status, phrase
):
    url = image_host.route("/a.jpg", reply(status, b"nope", "text/plain"))

    error = download_error(make_downloader(), url)

    assert (error.reason, error.status, error.permanent) == ("http_status", status, True)
    assert error.message == f"image {url}: HTTP {status} {phrase} after 1 attempt"
    assert image_host.hits["/a.jpg"] == 1
    assert sleeps == []
    assert files_under(media_root) == []


def test_a_server_error_is_retried_and_the_second_answer_stored(
    image_host, make_downloader, media_root, sleeps
):
    url = image_host.route("/a.png", reply(500, b"oops", "text/plain"), reply(200, PNG))

    stored = make_downloader().download(url)

    assert image_host.hits["/a.png"] == 2
    assert sleeps == [2.0]
    assert files_under(media_root) == [stored.name]


def test_lasting_server_errors_use_every_attempt_with_exponential_backoff(
    image_host, make_downloader, media_root, sleeps
):
    url = image_host.route("/a.png", reply(503, b"", "text/plain"))

    error = download_error(make_downloader(max_retries=4, retry_delay=0.5), url)

    assert (error.reason, error.status, error.permanent) == ("http_status", 503, False)
    assert error.message == f"image {url}: HTTP 503 Service Unavailable after 4 attempts"
    assert image_host.hits["/a.png"] == 4
    assert sleeps == [0.5, 1.0, 2.0]
    assert files_under(media_root) == []


def test_too_many_requests_is_retried(image_host, make_downloader, sleeps):
    url = image_host.route("/a.png", reply(429, b"", "text/plain"), reply(200, PNG))

    make_downloader().download(url)

    assert image_host.hits["/a.png"] == 2
    assert sleeps == [2.0]


def test_the_query_string_never_appears_in_the_message_or_the_log(
    image_host, make_downloader, caplog
):
    url = image_host.route("/a.png", reply(500, b"", "text/plain"))
    caplog.set_level(logging.INFO, logger="pfsync.media")

    error = download_error(make_downloader(max_retries=2), url + "?X-Amz-Signature=s3cr3t")

    assert error.message == f"image {url}: HTTP 500 Internal Server Error after 2 attempts"
    assert "s3cr3t" not in str(error) and "s3cr3t" not in repr(error)
    assert "s3cr3t" not in caplog.text


def test_each_retry_and_the_final_failure_are_logged_once(image_host, make_downloader, caplog):
    url = image_host.route("/a.png", reply(502, b"", "text/plain"))
    caplog.set_level(logging.INFO, logger="pfsync.media")

    download_error(make_downloader(max_retries=3), url)

    records = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "pfsync.media"]
    assert records == [
        ("INFO", f"image {url}: HTTP 502 Bad Gateway (attempt 1 of 3), retrying in 2.0 s"),
        ("INFO", f"image {url}: HTTP 502 Bad Gateway (attempt 2 of 3), retrying in 4.0 s"),
        ("WARNING", f"image {url}: HTTP 502 Bad Gateway after 3 attempts"),
    ]


def test_a_refused_connection_is_retried_and_reported_as_connection(make_downloader, sleeps):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/a.png"

    error = download_error(make_downloader(max_retries=2), url)

    assert error.reason == "connection"
    assert error.message == f"image {url}: connection failed: Connection refused after 2 attempts"
    assert sleeps == [2.0]


# ---- deadlines --------------------------------------------------------------------------------


def test_a_server_that_does_not_answer_in_time_times_out_and_is_retried(
    image_host, make_downloader, media_root, sleeps
):
    url = image_host.route("/a.png", stall(1.5, reply(200, PNG)))

    error = download_error(make_downloader(timeout=0.5, max_retries=2), url)

    assert (error.reason, error.permanent) == ("timeout", False)
    assert error.message == f"image {url}: no complete answer within 0.5 s after 2 attempts"
    assert image_host.hits["/a.png"] == 2
    assert sleeps == [2.0]
    assert files_under(media_root) == []


def test_a_body_dripping_in_slower_than_the_total_deadline_is_cut_at_the_deadline(
    image_host, make_downloader, media_root
):
    body = PNG + b"\x00" * 2000  # about 7 s at 16 bytes every 50 ms
    url = image_host.route("/a.png", drip(body))

    started = time.monotonic()
    error = download_error(make_downloader(timeout=0.5, max_retries=1), url)
    elapsed = time.monotonic() - started

    assert error.reason == "timeout"
    assert elapsed < 3.0  # the whole body would take about 7 s; a busy machine gets slack
    assert files_under(media_root) == []


def test_a_dripping_body_that_finishes_within_the_deadline_is_stored(
    image_host, make_downloader, media_root
):
    url = image_host.route("/a.png", drip(PNG, piece=20, interval=0.01))

    stored = make_downloader(timeout=3.0).download(url)

    assert (media_root / stored.name).read_bytes() == PNG


# ---- validation -------------------------------------------------------------------------------


def test_an_html_error_page_served_with_200_is_refused(image_host, make_downloader, media_root):
    url = image_host.route("/a.jpg", reply(200, HTML, "text/html; charset=utf-8"))

    error = download_error(make_downloader(), url)

    assert (error.reason, error.permanent) == ("not_an_image", True)
    assert error.message == f"image {url}: Content-Type 'text/html' is not an image after 1 attempt"
    assert image_host.hits["/a.jpg"] == 1
    assert files_under(media_root) == []


def test_image_bytes_served_as_text_are_refused(image_host, make_downloader, media_root):
    url = image_host.route("/a.png", reply(200, PNG, "text/plain"))

    assert download_error(make_downloader(), url).reason == "not_an_image"
    assert files_under(media_root) == []


def test_html_served_as_image_jpeg_is_refused_by_its_bytes(image_host, make_downloader, media_root):
    url = image_host.route("/a.jpg", reply(200, HTML, "image/jpeg"))

    error = download_error(make_downloader(), url)

    assert error.reason == "not_an_image"
    assert "not a JPEG, PNG, WebP or GIF image" in error.message
    assert files_under(media_root) == []


def test_an_svg_is_refused_as_a_format_pfsync_does_not_store(image_host, make_downloader):
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    url = image_host.route("/a.svg", reply(200, svg, "image/svg+xml"))

    error = download_error(make_downloader(), url)

    assert (error.reason, error.permanent) == ("unsupported_format", True)
    assert "the content is SVG, an image format pfsync does not store" in error.message


def test_a_declared_length_above_the_cap_is_refused_before_reading(
    image_host, make_downloader, media_root, sleeps
):
    url = image_host.route("/a.png", reply(200, PNG + b"\x00" * 5000))

    error = download_error(make_downloader(max_bytes=1024), url)

    assert (error.reason, error.permanent) == ("too_large", True)
    assert error.message == (
        f"image {url}: {len(PNG) + 5000} bytes is more than the 1024 allowed after 1 attempt"
    )
    assert sleeps == []
    assert files_under(media_root) == []


def test_a_body_without_length_is_cut_when_it_passes_the_cap(
    image_host, make_downloader, media_root
):
    url = image_host.route("/a.png", reply(200, PNG + b"\x00" * 300_000, length="omit"))

    error = download_error(make_downloader(max_bytes=100_000), url)

    assert error.reason == "too_large"
    assert "body passed the 100000 bytes allowed" in error.message
    assert files_under(media_root) == []


def test_an_image_exactly_at_the_cap_is_accepted(image_host, make_downloader):
    url = image_host.route("/a.png", reply(200, PNG))

    assert make_downloader(max_bytes=len(PNG)).download(url).size == len(PNG)


def test_a_body_shorter_than_its_content_length_is_truncated_and_retried(
    image_host, make_downloader, media_root, sleeps
):
    url = image_host.route("/a.png", reply(200, PNG, length=len(PNG) + 500))

    error = download_error(make_downloader(max_retries=2), url)

    assert (error.reason, error.permanent) == ("truncated", False)
    assert error.message == (
        f"image {url}: body ended before its declared {len(PNG) + 500} bytes after 2 attempts"
    )
    assert image_host.hits["/a.png"] == 2
    assert sleeps == [2.0]
    assert files_under(media_root) == []


# ---- storage failures -------------------------------------------------------------------------


def test_a_file_the_storage_cannot_write_fails_with_the_os_error_and_leaves_nothing(
    image_host, make_downloader, media_root, sleeps
):
    # A per-file error: only this image fails (a read-only storage stops the run, below).
    text = "File name too long"

    class FailingStorage(FileSystemStorage):
        def _save(self, name, content):
            raise OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG))

    url = image_host.route("/a.png", reply(200, PNG))

    error = download_error(make_downloader(storage=FailingStorage(location=media_root)), url)

    assert (error.reason, error.permanent) == ("storage", False)
    assert re.fullmatch(
        rf"image {re.escape(url)}: cannot save property_images/[0-9a-f]{{32}}\.png: {text} "
        r"after 1 attempt",
        error.message,
    )
    assert sleeps == []
    assert files_under(media_root) == []


def test_a_full_disk_stops_with_one_sentence_and_later_downloads_fetch_nothing(
    image_host, make_downloader, media_root, sleeps
):
    class FullStorage(FileSystemStorage):
        def _save(self, name, content):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), name)

    url = image_host.route("/a.png", reply(200, PNG))
    downloader = make_downloader(storage=FullStorage(location=media_root))

    with pytest.raises(MediaStorageFull) as full:
        downloader.download(url)
    with pytest.raises(MediaStorageFull) as again:
        downloader.download(url)

    assert re.fullmatch(
        r"the media storage is full: cannot save property_images/[0-9a-f]{32}\.png: "
        r"No space left on device",
        str(full.value),
    )
    assert again.value is full.value
    assert image_host.hits["/a.png"] == 1
    assert sleeps == []
    assert files_under(media_root) == []


class FullTempFile:
    """A temporary file on a full disk: writes fail, and so does the final flush of close()."""

    def __init__(self, real, code):
        self.real = real
        self.name = real.name
        self.code = code

    def write(self, data):
        raise OSError(self.code, os.strerror(self.code))

    def close(self):
        self.real.close()
        raise OSError(self.code, os.strerror(self.code))


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_a_temporary_file_on_a_full_disk_is_removed_and_its_error_is_the_one_reported(
    image_host, make_downloader, media_root, monkeypatch, code
):
    real = tempfile.NamedTemporaryFile

    def on_full_disk(*args, **kwargs):
        return FullTempFile(real(*args, **kwargs), code)

    monkeypatch.setattr(download.tempfile, "NamedTemporaryFile", on_full_disk)
    url = image_host.route("/a.png", reply(200, PNG))

    with pytest.raises(MediaStorageFull) as full:
        make_downloader().download(url)

    assert str(full.value) == (
        f"the media storage is full: cannot write a temporary file: {os.strerror(code)}"
    )
    assert files_under(media_root) == []


# ---- decoding before accepting ----------------------------------------------------------------


def pillow_jpeg(width=120, height=80):
    out = io.BytesIO()
    noise = Image.effect_noise((width, height), 40)
    Image.merge("RGB", [noise] * 3).save(out, "JPEG", quality=90)
    return out.getvalue()


PHOTO = pillow_jpeg()


@pytest.mark.parametrize(
    "content_type", ["application/octet-stream", "binary/octet-stream", None, "image/jpeg"]
)
def test_a_jpeg_served_as_binary_or_without_a_type_is_stored_because_it_decodes(
    image_host, make_downloader, media_root, content_type
):
    url = image_host.route("/a.jpg", reply(200, PHOTO, content_type))

    stored = make_downloader().download(url)

    assert (media_root / stored.name).read_bytes() == PHOTO
    assert (stored.content_type, stored.width, stored.height) == ("image/jpeg", 120, 80)


@pytest.mark.parametrize("content_type", ["application/octet-stream", "binary/octet-stream", None])
def test_html_served_as_binary_is_refused_by_its_bytes(
    image_host, make_downloader, media_root, content_type
):
    url = image_host.route("/a.jpg", reply(200, HTML, content_type))

    assert download_error(make_downloader(), url).reason == "not_an_image"
    assert files_under(media_root) == []


def test_a_body_cut_off_without_content_length_is_truncated_retried_and_never_stored(
    image_host, make_downloader, media_root, sleeps
):
    half = PHOTO[: len(PHOTO) // 2]
    url = image_host.route("/a.jpg", reply(200, half, "image/jpeg", length="omit"))

    error = download_error(make_downloader(max_retries=2), url)

    assert (error.reason, error.permanent) == ("truncated", False)
    assert error.message == (
        f"image {url}: the JPEG data ends before the image does after 2 attempts"
    )
    assert image_host.hits["/a.jpg"] == 2
    assert sleeps == [2.0]
    assert files_under(media_root) == []


def test_a_cut_off_body_is_stored_once_a_retry_brings_the_whole_image(
    image_host, make_downloader, media_root
):
    half = PHOTO[: len(PHOTO) // 2]
    url = image_host.route(
        "/a.jpg", reply(200, half, "image/jpeg", length="omit"), reply(200, PHOTO, "image/jpeg")
    )

    stored = make_downloader().download(url)

    assert (media_root / stored.name).read_bytes() == PHOTO
    assert files_under(media_root) == [stored.name]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"\xff\xd8\xff\xe0" + HTML[:60], "not_an_image"),
        (bomb_png(50_000, 50_000), "too_many_pixels"),
        (b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf" + bytes(64), "unsupported_format"),
    ],
    ids=["html-behind-jpeg-magic", "bomb", "avif"],
)
def test_bytes_that_are_not_a_whole_stored_image_are_refused_at_once_and_leave_nothing(
    image_host, make_downloader, media_root, sleeps, body, reason
):
    url = image_host.route("/a.jpg", reply(200, body, "image/jpeg"))

    error = download_error(make_downloader(), url)

    assert (error.reason, error.permanent) == (reason, True)
    assert image_host.hits["/a.jpg"] == 1
    assert sleeps == []
    assert files_under(media_root) == []


def test_the_pixel_cap_comes_from_pf_image_max_pixels(image_host, make_downloader, settings):
    settings.PF_IMAGE_MAX_PIXELS = 120 * 80 - 1
    url = image_host.route("/a.jpg", reply(200, PHOTO, "image/jpeg"))

    assert make_downloader().max_pixels == 120 * 80 - 1
    assert download_error(make_downloader(), url).reason == "too_many_pixels"


def slow_headers(then, seen, lines=30, interval=0.2):
    """Send the status line, one header line every ``interval`` s, then ``then`` (body, type).

    ``seen["cut"]`` tells whether the client hung up before the headers were all sent.
    """

    def respond(handler):
        try:
            handler.wfile.write(b"HTTP/1.1 200 OK\r\n")
            for index in range(lines):
                handler.wfile.write(f"X-Pad-{index}: {'x' * 20}\r\n".encode())
                handler.wfile.flush()
                time.sleep(interval)
        except OSError:
            seen["cut"] = True
            return
        seen["cut"] = False
        handler.wfile.write(
            f"Content-Type: {then[1]}\r\nContent-Length: {len(then[0])}\r\n\r\n".encode()
        )
        handler.wfile.write(then[0])

    return respond


def test_headers_dripping_in_slower_than_the_deadline_are_cut_on_a_deadline_session(
    image_host, media_root
):
    seen = {}
    url = image_host.route("/a.jpg", slow_headers((PHOTO, "image/jpeg"), seen))
    with requests.Session() as session:
        session.trust_env = False
        session.mount("http://", DeadlineAdapter())
        downloader = ImageDownloader(
            session,
            storage=FileSystemStorage(location=media_root),
            allow_private_hosts=True,
            timeout=1.0,
            max_retries=1,
        )

        error = download_error(downloader, url)

    assert error.reason == "timeout"
    wait_until(lambda: "cut" in seen)
    assert seen["cut"] is True, "the connection was left open until the headers were all sent"
    assert files_under(media_root) == []


def wait_until(condition, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_a_media_folder_already_full_is_said_so_before_any_download(media_root, monkeypatch, code):
    def full_disk(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(files.tempfile, "NamedTemporaryFile", full_disk)

    problem = files.storage_write_problem(FileSystemStorage(location=media_root))

    assert problem == f"the media storage is full: {media_root} has no room left"


@pytest.mark.parametrize(
    ("code", "says"),
    [
        (errno.EROFS, "is read-only"),
        (errno.EACCES, "refuses writes (permission denied)"),
        (errno.EDQUOT, "is full"),
    ],
)
def test_a_storage_every_write_fails_on_stops_like_a_full_disk(
    image_host, make_downloader, media_root, sleeps, code, says
):
    class BrokenStorage(FileSystemStorage):
        def _save(self, name, content):
            raise OSError(code, os.strerror(code), name)

    url = image_host.route("/a.png", reply(200, PNG))
    downloader = make_downloader(storage=BrokenStorage(location=media_root))

    with pytest.raises(MediaStorageFull) as broken:
        downloader.download(url)
    with pytest.raises(MediaStorageFull) as again:
        downloader.download(url)

    assert str(broken.value).startswith(f"the media storage {says}: cannot save ")
    assert again.value is broken.value
    assert image_host.hits["/a.png"] == 1
    assert files_under(media_root) == []
