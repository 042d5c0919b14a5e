"""Every fault the sandbox can inject does what it says."""

from __future__ import annotations

import io
import socket
import struct
import time

import pytest
import requests
from PIL import Image

from pfsync_app.sandbox import Sandbox
from tests.fixtures.sandbox import SandboxApi


def _first_image(sandbox: Sandbox) -> str:
    for listing in sandbox.data.listings():
        images = (listing.get("media") or {}).get("images")
        if images:
            return images[0]["original"]["url"]
    raise AssertionError("the sandbox made no image")


def test_a_status_fault_answers_with_that_status_then_stops(sandbox_api: SandboxApi) -> None:
    sandbox_api.sandbox.faults.add("/v1/listings", "status", times=2, status=503, retry_after=7)
    first = sandbox_api.get("/v1/listings")
    assert first.status_code == 503
    assert first.headers["Retry-After"] == "7"
    assert first.headers["Content-Type"] == "application/problem+json"
    assert sandbox_api.get("/v1/listings").status_code == 503
    assert sandbox_api.get("/v1/listings").status_code == 200


def test_a_status_fault_can_carry_its_own_body(sandbox_api: SandboxApi) -> None:
    sandbox_api.sandbox.faults.add(
        "/v1/users", "status", status=500, content_type="text/plain", body="boom"
    )
    response = sandbox_api.get("/v1/users")
    assert (response.status_code, response.headers["Content-Type"], response.text) == (
        500,
        "text/plain",
        "boom",
    )


def test_a_fault_with_a_query_prefix_hits_only_that_page(sandbox_api: SandboxApi) -> None:
    sandbox_api.sandbox.faults.add("/v1/listings?page=2", "status", status=502)
    assert sandbox_api.get("/v1/listings", params={"page": 1}).status_code == 200
    assert sandbox_api.get("/v1/listings", params={"page": 2}).status_code == 502


def test_html_block_answers_a_cdn_page(sandbox_api: SandboxApi) -> None:
    sandbox_api.sandbox.faults.add("/v1", "html_block")
    response = sandbox_api.get("/v1/users")
    assert response.status_code == 403
    assert response.headers["Content-Type"].startswith("text/html")
    assert "Cloudflare" in response.text


def test_invalid_json_is_not_json(sandbox_api: SandboxApi) -> None:
    sandbox_api.sandbox.faults.add("/v1/listings", "invalid_json")
    response = sandbox_api.get("/v1/listings")
    assert response.status_code == 200
    with pytest.raises(requests.JSONDecodeError):
        response.json()


def test_truncated_cuts_the_json_body(sandbox_api: SandboxApi) -> None:
    sandbox_api.sandbox.faults.add("/v1/listings", "truncated")
    response = sandbox_api.get("/v1/listings")
    assert response.status_code == 200
    with pytest.raises(requests.JSONDecodeError):
        response.json()


def test_truncated_incomplete_declares_more_than_it_sends(sandbox_api: SandboxApi) -> None:
    sandbox_api.sandbox.faults.add("/v1/listings", "truncated", incomplete=True)
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        sandbox_api.get("/v1/listings")


def test_missing_results_drops_the_results_key(sandbox_api: SandboxApi) -> None:
    sandbox_api.sandbox.faults.add("/v1/listings", "missing_results")
    body = sandbox_api.get("/v1/listings").json()
    assert "results" not in body
    assert body["pagination"]["total"] == 12


def test_hang_waits_before_answering(sandbox_api: SandboxApi) -> None:
    sandbox_api.sandbox.faults.add("/v1/users", "hang", seconds=0.3)
    started = time.monotonic()
    assert sandbox_api.get("/v1/users").status_code == 200
    assert time.monotonic() - started >= 0.3
    with pytest.raises(requests.exceptions.ReadTimeout):
        sandbox_api.sandbox.faults.add("/v1/users", "hang", seconds=1)
        sandbox_api.get("/v1/users", timeout=0.2)


def test_reset_drops_the_connection(sandbox_api: SandboxApi) -> None:
    sandbox_api.sandbox.faults.add("/v1/users", "reset")
    with pytest.raises(requests.exceptions.ConnectionError):
        sandbox_api.get("/v1/users")
    assert sandbox_api.get("/v1/users").status_code == 200


def _ids(api: SandboxApi, page: int) -> list[str]:
    body = api.get("/v1/listings", params={"page": page, "perPage": 5}).json()
    return [item["id"] for item in body["results"]]


def test_duplicate_first_repeats_the_previous_pages_last_listing(sandbox_api: SandboxApi) -> None:
    all_ids = [item["id"] for item in sandbox_api.sandbox.data.listings()]
    sandbox_api.sandbox.faults.add("/v1/listings", "duplicate_first")
    assert _ids(sandbox_api, 1) == all_ids[:5]  # page 1 has no previous page: not used up
    assert _ids(sandbox_api, 2) == all_ids[4:9]
    assert _ids(sandbox_api, 2) == all_ids[5:10]


def test_skip_one_skips_a_listing(sandbox_api: SandboxApi) -> None:
    all_ids = [item["id"] for item in sandbox_api.sandbox.data.listings()]
    sandbox_api.sandbox.faults.add("/v1/listings?page=2", "skip_one")
    seen = _ids(sandbox_api, 1) + _ids(sandbox_api, 2) + _ids(sandbox_api, 3)
    assert all_ids[5] not in seen
    assert len(set(seen)) == 11


def test_unknown_fault_kinds_are_refused(sandbox: Sandbox) -> None:
    with pytest.raises(ValueError, match="unknown API fault 'explode'"):
        sandbox.faults.add("/v1", "explode")
    with pytest.raises(ValueError, match="needs status"):
        sandbox.faults.add("/v1", "status")
    with pytest.raises(ValueError, match="unknown image fault '500'"):
        sandbox.faults.add_image("x", "500")


def test_fault_rate_fails_that_share_of_requests_in_a_seeded_order() -> None:
    def statuses() -> list[int]:
        # Unauthenticated on purpose: a request without an injected fault answers 401.
        with Sandbox(users=1, listings=1, fault_rate=0.3, seed=4) as sb, requests.Session() as s:
            return [s.get(f"{sb.url}/v1/users", timeout=5).status_code for _ in range(40)]

    first = statuses()
    assert first == statuses()
    failures = [s for s in first if s != 401]
    assert set(failures) <= {429, 500, 502}
    assert 4 <= len(failures) <= 20


def test_latency_delays_api_answers(sandbox_api: SandboxApi) -> None:
    sandbox_api.sandbox.faults.latency_ms = 200
    started = time.monotonic()
    sandbox_api.get("/v1/users")
    assert time.monotonic() - started >= 0.2


def test_clear_makes_the_server_healthy_again(sandbox_api: SandboxApi) -> None:
    faults = sandbox_api.sandbox.faults
    faults.add("/v1", "status", times=None, status=500)
    faults.add_image(_first_image(sandbox_api.sandbox), "404")
    faults.fault_rate = 1.0
    faults.revoke_credentials()
    faults.clear()
    assert faults.pending == []
    sandbox_api.session.headers["Authorization"] = f"Bearer {sandbox_api.token()}"
    assert sandbox_api.get("/v1/users").status_code == 200


@pytest.mark.parametrize(("kind", "status"), [("404", 404), ("403", 403), ("410", 410)])
def test_image_status_faults(sandbox: Sandbox, kind: str, status: int) -> None:
    url = _first_image(sandbox)
    sandbox.faults.add_image(url, kind, times=1)
    assert requests.get(url, timeout=5).status_code == status
    assert requests.get(url, timeout=5).status_code == 200


def test_image_faults_by_listing_id_hit_all_its_images(sandbox: Sandbox) -> None:
    listing = next(
        item for item in sandbox.data.listings() if (item.get("media") or {}).get("images")
    )
    sandbox.faults.add_image(listing["id"], "403")
    for image in listing["media"]["images"]:
        assert requests.get(image["original"]["url"], timeout=5).status_code == 403


def test_slow_images_wait(sandbox: Sandbox) -> None:
    url = _first_image(sandbox)
    sandbox.faults.add_image(url, "slow", seconds=0.3)
    started = time.monotonic()
    assert requests.get(url, timeout=5).status_code == 200
    assert time.monotonic() - started >= 0.3


def test_huge_images_stream_past_any_sane_cap(sandbox: Sandbox) -> None:
    url = _first_image(sandbox)
    sandbox.faults.add_image(url, "huge")
    with requests.get(url, stream=True, timeout=5) as response:
        assert int(response.headers["Content-Length"]) == 30 * 1024 * 1024
        received = 0
        for chunk in response.iter_content(64 * 1024):
            received += len(chunk)
            if received > 2 * 1024 * 1024:
                break
    assert received > 2 * 1024 * 1024


def test_html200_serves_an_error_page_as_success(sandbox: Sandbox) -> None:
    url = _first_image(sandbox)
    sandbox.faults.add_image(url, "html200")
    response = requests.get(url, timeout=5)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")


def test_truncated_images_send_less_than_announced(sandbox: Sandbox) -> None:
    url = _first_image(sandbox)
    sandbox.faults.add_image(url, "truncated", times=1)
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        requests.get(url, timeout=5)
    assert requests.get(url, timeout=5).content == sandbox.data.image_bytes(url)


def test_wrong_type_mislabels_images_and_non_images(sandbox: Sandbox) -> None:
    url = _first_image(sandbox)
    sandbox.faults.add_image(url, "wrong_type", times=1)
    labelled_text = requests.get(url, timeout=5)
    assert labelled_text.headers["Content-Type"] == "text/plain"
    assert labelled_text.content == sandbox.data.image_bytes(url)
    sandbox.faults.add_image(url, "wrong_type", times=1, body="text")
    labelled_image = requests.get(url, timeout=5)
    assert labelled_image.headers["Content-Type"] == "image/jpeg"
    assert not labelled_image.content.startswith(b"\xff\xd8")


def test_image_fault_rate_breaks_a_fixed_share_of_urls() -> None:
    with Sandbox(users=2, listings=60, images_per_listing=2, image_bytes=1000, seed=3) as sb:
        sb.faults.image_fault_rate = 0.25
        sb.faults.slow_image_seconds = 0.01
        urls = [
            image["original"]["url"]
            for listing in sb.data.listings()
            for image in (listing.get("media") or {}).get("images") or []
        ]
        with requests.Session() as session:
            first = [_outcome(session, url) for url in urls]
            second = [_outcome(session, url) for url in urls]
    bad = [o for o in first if o != "ok"]
    assert 0.1 * len(urls) <= len(bad) <= 0.4 * len(urls)
    assert {"404", "403"} <= set(bad)
    # 404 and 403 stay; a truncated download works when tried again.
    assert [o for o in second if o in ("404", "403")] == [o for o in first if o in ("404", "403")]
    assert "truncated" not in second


def _outcome(session: requests.Session, url: str) -> str:
    try:
        response = session.get(url, timeout=5)
    except requests.exceptions.ChunkedEncodingError:
        return "truncated"
    return "ok" if response.status_code == 200 else str(response.status_code)


def _raw_get(url: str) -> bytes:
    """Everything the server sends for a GET, headers included, until it closes."""
    parts = requests.utils.urlparse(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as conn:
        conn.sendall(f"GET {parts.path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        received = b""
        while chunk := conn.recv(65536):
            received += chunk
    return received


def test_truncated_images_without_content_length_end_when_the_connection_closes(
    sandbox: Sandbox,
) -> None:
    url = _first_image(sandbox)
    sandbox.faults.add_image(url, "truncated", times=1, content_length=False)
    whole = sandbox.data.image_bytes(url)

    raw = _raw_get(url)

    head, body = raw.split(b"\r\n\r\n", 1)
    assert b"content-length" not in head.lower()
    assert b"connection: close" in head.lower()
    assert body == whole[: len(whole) // 2]
    assert requests.get(url, timeout=5).content == whole


@pytest.mark.parametrize("content_type", ["binary/octet-stream", "application/octet-stream", ""])
def test_wrong_type_can_lie_with_any_content_type_or_none(
    sandbox: Sandbox, content_type: str
) -> None:
    url = _first_image(sandbox)
    sandbox.faults.add_image(url, "wrong_type", times=1, content_type=content_type)

    response = requests.get(url, timeout=5)

    assert response.headers.get("Content-Type") == (content_type or None)
    assert response.content == sandbox.data.image_bytes(url)


def test_bytes_serves_whatever_bytes_are_given_as_the_image(sandbox: Sandbox) -> None:
    url = _first_image(sandbox)
    sandbox.faults.add_image(url, "bytes", times=1, body=b"\xff\xd8\xff half")
    sandbox.faults.add_image(url, "bytes", times=1, body=b"GIF89a", content_type="image/gif")

    first, second = requests.get(url, timeout=5), requests.get(url, timeout=5)

    assert (first.content, first.headers["Content-Type"]) == (b"\xff\xd8\xff half", "image/jpeg")
    assert (second.content, second.headers["Content-Type"]) == (b"GIF89a", "image/gif")


def test_a_bomb_is_a_tiny_png_declaring_a_huge_size(sandbox: Sandbox) -> None:
    url = _first_image(sandbox)
    sandbox.faults.add_image(url, "bomb", times=1)

    response = requests.get(url, timeout=5)

    assert response.headers["Content-Type"] == "image/png"
    assert len(response.content) < 1000
    width, height = struct.unpack(">II", response.content[16:24])
    assert (width, height) == (50_000, 50_000)


def test_drip_sends_an_answer_a_few_bytes_at_a_time(sandbox_api: SandboxApi) -> None:
    sleeps: list[float] = []
    sandbox_api.sandbox._sleep = sleeps.append
    sandbox_api.sandbox.faults.add("/v1/users", "drip", piece=100, interval=0.4)

    response = sandbox_api.get("/v1/users")

    assert response.status_code == 200
    assert response.json()["data"]
    assert len(sleeps) == -(-len(response.content) // 100) - 1
    assert set(sleeps) == {0.4}


def test_drip_with_headers_sends_the_headers_slowly_too(sandbox_api: SandboxApi) -> None:
    sleeps: list[float] = []
    sandbox_api.sandbox._sleep = sleeps.append
    sandbox_api.sandbox.faults.add("/v1/users", "drip", piece=10, interval=0.1, headers=True)

    response = sandbox_api.get("/v1/users")

    assert response.json()["data"]
    # Every 10 bytes of the status line and headers cost a wait as well.
    assert len(sleeps) > len(response.content) // 10 + 5


def test_photos_serve_noisy_jpegs_of_one_to_three_mb_and_2000_to_4000_px() -> None:
    with Sandbox(users=1, listings=6, images_per_listing=3, seed=5) as sb:
        sb.faults.photos = True
        urls = [
            image["original"]["url"]
            for listing in sb.data.listings()
            for image in listing["media"]["images"]
        ]
        assert {url.rsplit(".", 1)[1] for url in urls} == {"jpg", "png"}
        sizes = set()
        for url in urls:
            response = requests.get(url, timeout=30)
            body = response.content
            assert body == sb.data.image_bytes(url)
            assert response.headers["Content-Type"] == "image/jpeg"
            assert 1_000_000 <= len(body) <= 3_000_000
            with Image.open(io.BytesIO(body)) as picture:
                assert 2000 <= picture.width <= 4000 and picture.format == "JPEG"
                picture.load()
                sizes.add(picture.size)
        assert len(sizes) > 1


def test_image_mbps_paces_image_bodies_like_a_link_of_that_speed(sandbox: Sandbox) -> None:
    sleeps: list[float] = []
    sandbox._sleep = sleeps.append
    sandbox.faults.image_bytes = 200_000
    sandbox.faults.image_mbps = 8.0  # one megabyte a second
    url = _first_image(sandbox)

    body = requests.get(url, timeout=30).content

    assert body == sandbox.data.image_bytes(url)
    # A fake sleep passes no time: the last wait is the whole body's time at that speed.
    assert len(sleeps) == 4  # 64 kB at a time
    assert len(body) / 1_000_000 - 0.01 <= max(sleeps) <= len(body) / 1_000_000
