"""The image URL policy refuses private targets before any request, and errors say why.

No test here opens a connection: requests go to a recording stand-in session,
names resolve through a monkeypatched ``socket.getaddrinfo``, and a guard
fails any test that tries to connect anywhere.
"""

import io
import pickle
import socket

import pytest
import requests
from django.core.files.storage import InMemoryStorage

from pfsync_app.exceptions import ImageDownloadError
from pfsync_app.media.download import ImageDownloader, sniff_image_type
from pfsync_app.media.policy import require_allowed_url, safe_url

PUBLIC = "93.184.216.34"


@pytest.fixture(autouse=True)
def no_connections(monkeypatch):
    """Any attempt to connect is a test failure: this file must send nothing anywhere."""

    def refuse(sock, address):
        raise AssertionError(f"test tried to connect to {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


@pytest.fixture
def dns(monkeypatch):
    """A fake resolver: ``dns["name"] = ["addr", ...]``; unknown names fail to resolve."""
    table = {}
    asked = []

    def getaddrinfo(host, port, *args, **kwargs):
        asked.append(host)
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (
                socket.AF_INET6 if ":" in address else socket.AF_INET,
                socket.SOCK_STREAM,
                6,
                "",
                (address, port, 0, 0) if ":" in address else (address, port),
            )
            for address in table[host]
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    table["asked"] = asked
    return table


def make_response(status, headers=None, body=b""):
    response = requests.Response()
    response.status_code = status
    response.headers.update(headers or {})
    response.raw = io.BytesIO(body)
    return response


class RecordingSession:
    """Stands in for requests.Session: records each GET and answers from a script."""

    def __init__(self, *responses):
        self.responses = list(responses)
        self.requested = []

    def get(self, url, **options):
        self.requested.append(url)
        return self.responses.pop(0)


def downloader(session, **options):
    options.setdefault("allow_private_hosts", False)
    return ImageDownloader(
        session, storage=InMemoryStorage(), sleep=lambda seconds: None, **options
    )


def refusal(url, **options):
    """The error a download of ``url`` fails with, before any request (the session has none)."""
    session = RecordingSession()
    with pytest.raises(ImageDownloadError) as caught:
        downloader(session, **options).download(url)
    assert session.requested == []
    return caught.value


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("https://127.0.0.1/a.jpg", "127.0.0.1 is a loopback address"),
        ("https://10.0.0.1/a.jpg", "10.0.0.1 is a private address"),
        ("https://192.168.1.20/a.jpg", "192.168.1.20 is a private address"),
        ("https://169.254.169.254/latest/meta-data", "169.254.169.254 is a cloud metadata address"),
        ("https://169.254.10.1/a.jpg", "169.254.10.1 is a link-local address"),
        ("https://[::1]/a.png", "::1 is a loopback address"),
        ("https://[fd00:ec2::254]/latest", "fd00:ec2::254 is a cloud metadata address"),
        ("https://[::ffff:127.0.0.1]/a.png", "::ffff:127.0.0.1 is a loopback address"),
        ("https://224.0.0.1/a.png", "224.0.0.1 is a multicast address"),
        ("https://0.0.0.0/a.png", "0.0.0.0 is an unspecified address"),
        ("https://240.0.0.1/a.png", "240.0.0.1 is a reserved address"),
        ("https://100.64.0.1/a.png", "100.64.0.1 is not a public address"),
    ],
)
def test_https_urls_on_non_public_addresses_are_refused(url, why):
    error = refusal(url)

    assert (error.reason, error.permanent) == ("blocked_url", True)
    assert error.message == f"image {url}: refused, {why}"


def test_plain_http_is_refused_even_on_a_public_address():
    error = refusal(f"http://{PUBLIC}/a.jpg")

    assert error.reason == "blocked_url"
    assert "scheme 'http' is not https" in error.message


@pytest.mark.parametrize("url", ["ftp://cdn.example.com/a.jpg", "file:///etc/passwd", "/a.jpg"])
def test_other_schemes_are_refused_even_when_private_hosts_are_allowed(url):
    assert refusal(url, allow_private_hosts=True).reason == "blocked_url"


def test_a_url_without_a_host_is_refused():
    assert "the URL has no host" in refusal("https:///a.jpg").message


def test_a_name_resolving_to_a_private_address_is_refused(dns):
    dns["cdn.example.com"] = ["10.20.30.40"]

    error = refusal("https://cdn.example.com/a.jpg")

    assert error.message == (
        "image https://cdn.example.com/a.jpg: refused, "
        "cdn.example.com (10.20.30.40) is a private address"
    )


def test_a_name_is_refused_when_any_of_its_addresses_is_private(dns):
    dns["cdn.example.com"] = [PUBLIC, "2606:2800:220:1::1", "127.0.0.1"]

    assert "(127.0.0.1) is a loopback address" in refusal("https://cdn.example.com/a.jpg").message


def test_a_name_resolving_only_to_public_addresses_is_accepted(dns):
    dns["cdn.example.com"] = [PUBLIC, "2606:2800:220:1:248:1893:25c8:1946"]

    require_allowed_url("https://cdn.example.com/a.jpg", allow_private_hosts=False)

    assert dns["asked"] == ["cdn.example.com"]


def test_private_hosts_and_plain_http_are_accepted_when_allowed(dns):
    require_allowed_url("http://127.0.0.1:8000/a.jpg", allow_private_hosts=True)
    require_allowed_url("https://10.0.0.1/a.jpg", allow_private_hosts=True)

    assert dns["asked"] == []


def test_a_refused_url_sends_no_request_and_is_not_retried():
    session = RecordingSession()

    with pytest.raises(ImageDownloadError) as caught:
        downloader(session).download("https://169.254.169.254/latest/meta-data/iam")

    assert caught.value.reason == "blocked_url"
    assert session.requested == []


def test_a_public_url_redirecting_to_a_private_name_is_refused_at_the_redirect(dns):
    dns["cdn.example.com"] = [PUBLIC]
    dns["internal.example.com"] = ["10.0.0.7"]
    session = RecordingSession(
        make_response(302, {"Location": "https://internal.example.com/admin?token=abc"})
    )

    with pytest.raises(ImageDownloadError) as caught:
        downloader(session).download("https://cdn.example.com/a.jpg")

    assert caught.value.reason == "blocked_url"
    assert caught.value.message == (
        "image https://cdn.example.com/a.jpg: refused, it redirects to "
        "https://internal.example.com/admin and "
        "internal.example.com (10.0.0.7) is a private address"
    )
    assert session.requested == ["https://cdn.example.com/a.jpg"]


def test_a_redirect_to_the_metadata_service_over_http_is_refused(dns):
    dns["cdn.example.com"] = [PUBLIC]
    session = RecordingSession(
        make_response(301, {"Location": "http://169.254.169.254/latest/meta-data/"})
    )

    with pytest.raises(ImageDownloadError) as caught:
        downloader(session).download("https://cdn.example.com/a.jpg")

    assert caught.value.reason == "blocked_url"
    assert session.requested == ["https://cdn.example.com/a.jpg"]


def test_a_name_that_does_not_resolve_is_a_retried_connection_failure(dns):
    sleeps = []
    session = RecordingSession()
    images = ImageDownloader(
        session, storage=InMemoryStorage(), allow_private_hosts=False, sleep=sleeps.append
    )

    with pytest.raises(ImageDownloadError) as caught:
        images.download("https://gone.example.com/a.jpg")

    assert caught.value.reason == "connection"
    assert "cannot resolve host gone.example.com: Name or service not known" in str(caught.value)
    assert len(dns["asked"]) == images.max_retries
    assert len(sleeps) == images.max_retries - 1
    assert session.requested == []


@pytest.mark.parametrize(
    ("reason", "status", "permanent", "retryable"),
    [
        ("http_status", 403, True, False),
        ("http_status", 404, True, False),
        ("http_status", 410, True, False),
        ("http_status", 400, False, False),
        ("http_status", 429, False, True),
        ("http_status", 500, False, True),
        ("http_status", 503, False, True),
        ("blocked_url", None, True, False),
        ("not_an_image", None, True, False),
        ("too_large", None, True, False),
        ("timeout", None, False, True),
        ("connection", None, False, True),
        ("truncated", None, False, True),
        ("storage", None, False, False),
    ],
)
def test_an_error_says_whether_it_is_permanent_and_whether_a_retry_may_help(
    reason, status, permanent, retryable
):
    error = ImageDownloadError("https://cdn.example.com/a.jpg", reason, "message", status=status)

    assert (error.permanent, error.retryable) == (permanent, retryable)


def test_an_unknown_reason_is_a_programming_error():
    with pytest.raises(ValueError, match="unknown image download failure reason 'oops'"):
        ImageDownloadError("https://cdn.example.com/a.jpg", "oops", "message")


def test_an_error_survives_pickling_with_its_fields():
    error = ImageDownloadError("https://cdn.example.com/a.jpg", "http_status", "gone", status=410)

    copy = pickle.loads(pickle.dumps(error))

    assert (copy.url, copy.reason, copy.message, copy.status) == (
        error.url,
        "http_status",
        "gone",
        410,
    )


@pytest.mark.parametrize(
    ("url", "safe"),
    [
        ("https://cdn.example.com/a.jpg?X-Amz-Signature=abc#x", "https://cdn.example.com/a.jpg"),
        ("https://user:secret@cdn.example.com:8443/a.jpg", "https://cdn.example.com:8443/a.jpg"),
        ("https://[::1]/a.png?k=v", "https://[::1]/a.png"),
        ("https://cdn.example.com:bad/a.jpg?k=v", "https://cdn.example.com:bad/a.jpg"),
    ],
)
def test_safe_url_drops_query_fragment_and_credentials(url, safe):
    assert safe_url(url) == safe


@pytest.mark.parametrize(
    ("head", "extension"),
    [
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01", "jpg"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\r", "png"),
        (b"GIF89a\x01\x00\x01\x00\x80\x00", "gif"),
        (b"GIF87a\x01\x00\x01\x00\x80\x00", "gif"),
        (b"RIFF\x1a\x00\x00\x00WEBP", "webp"),
        (b"RIFF\x1a\x00\x00\x00WAVE", None),
        (b"<!doctype html>", None),
        (b"<svg xmlns=", None),
        (b"", None),
    ],
)
def test_the_image_type_is_sniffed_from_the_leading_bytes(head, extension):
    assert sniff_image_type(head) == extension


def refusal_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "pfsync.media"]


def test_the_first_private_host_refusal_says_how_to_allow_it_and_the_rest_are_counted(caplog):
    caplog.set_level("WARNING", logger="pfsync.media")
    session = RecordingSession()
    images = downloader(session)
    urls = [f"http://127.0.0.1:8765/images/{n}.jpg" for n in range(270)]
    urls += [f"https://10.0.0.{n}/a.jpg" for n in range(1, 6)]

    for url in urls:
        with pytest.raises(ImageDownloadError):
            images.download(url)
    images.close()

    first, counted = refusal_lines(caplog)
    assert first.startswith("image http://127.0.0.1:8765/images/0.jpg: refused, scheme 'http'")
    assert "the setting PF_MEDIA_ALLOW_PRIVATE_HOSTS = True (or the variable" in first
    assert "PF_MEDIA_ALLOW_PRIVATE_HOSTS=true" in first
    assert "for the sandbox only" in first
    assert counted == "and 274 more images refused like it (PF_MEDIA_ALLOW_PRIVATE_HOSTS)"
    assert session.requested == []


def test_refusals_the_sandbox_flag_would_not_lift_are_each_said_without_the_hint(caplog):
    caplog.set_level("WARNING", logger="pfsync.media")
    images = downloader(RecordingSession())

    for url in ("ftp://example.com/a.jpg", "https://169.254.169.254/x", "https:///a.jpg"):
        with pytest.raises(ImageDownloadError):
            images.download(url)
    images.close()

    lines = refusal_lines(caplog)
    # The metadata address is private as well: the flag would lift it, so it is the hinted one.
    assert len(lines) == 3
    assert sum("PF_MEDIA_ALLOW_PRIVATE_HOSTS=true" in line for line in lines) == 1
    assert not any("more images refused" in line for line in lines)


def test_a_new_run_of_the_same_downloader_gets_the_hint_again(caplog):
    caplog.set_level("WARNING", logger="pfsync.media")
    images = downloader(RecordingSession())
    for _ in range(2):
        with pytest.raises(ImageDownloadError):
            images.download("http://127.0.0.1:1/a.jpg")
        images.close()

    hinted = [line for line in refusal_lines(caplog) if "PF_MEDIA_ALLOW_PRIVATE_HOSTS=true" in line]
    assert len(hinted) == 2
