"""The sandbox's image host serves real, distinct images, deterministic per URL."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from PIL import Image

from pfsync_app.sandbox import Sandbox
from pfsync_app.sandbox.images import JPEG_SIGNATURE, PNG_SIGNATURE, render_image


def _image_urls(sandbox: Sandbox, variant: str = "original") -> list[str]:
    return [
        image[variant]["url"]
        for listing in sandbox.data.listings()
        for image in (listing.get("media") or {}).get("images") or []
    ]


def test_every_image_is_a_valid_png_or_jpeg_of_its_declared_size(sandbox: Sandbox) -> None:
    urls = _image_urls(sandbox)
    assert {url.rsplit(".", 1)[1] for url in urls} == {"jpg", "png"}
    for url in urls:
        response = requests.get(url, timeout=5)
        assert response.status_code == 200
        picture = Image.open(io.BytesIO(response.content))
        picture.load()
        if url.endswith(".png"):
            assert response.content.startswith(PNG_SIGNATURE)
            assert response.headers["Content-Type"] == "image/png"
            assert picture.format == "PNG"
        else:
            assert response.content.startswith(JPEG_SIGNATURE)
            assert response.headers["Content-Type"] == "image/jpeg"
            assert picture.format == "JPEG"
        assert int(response.headers["Content-Length"]) == len(response.content)


def test_images_are_distinct_per_url(sandbox: Sandbox) -> None:
    urls = _image_urls(sandbox) + _image_urls(sandbox, "thumbnail")
    bodies = {sandbox.data.image_bytes(url) for url in urls}
    assert len(bodies) == len(urls)


def test_image_bytes_is_exactly_what_http_serves(sandbox: Sandbox) -> None:
    for url in _image_urls(sandbox)[:6]:
        assert requests.get(url, timeout=5).content == sandbox.data.image_bytes(url)


def test_images_are_about_the_size_asked_for() -> None:
    for path in ("/images/L/a.jpg", "/images/L/b.png"):
        body = render_image(path, 20_000, 1200, 800)
        assert len(body) == 20_000
        assert Image.open(io.BytesIO(body)).size == (1200, 800)


def test_a_small_size_shrinks_a_jpeg_but_keeps_it_valid() -> None:
    body = render_image("/images/L/c.jpg", 1500, 1600, 1200)
    picture = Image.open(io.BytesIO(body))
    picture.load()
    assert len(body) <= 1500
    assert picture.size[0] / picture.size[1] == pytest.approx(1600 / 1200, rel=0.02)


def test_the_image_size_knob_changes_what_is_served(sandbox: Sandbox) -> None:
    url = _image_urls(sandbox)[0]
    sandbox.faults.image_bytes = 9000
    assert len(requests.get(url, timeout=5).content) == len(sandbox.data.image_bytes(url))
    assert abs(len(sandbox.data.image_bytes(url)) - 9000) < 3000


def test_unknown_image_urls_answer_404(sandbox: Sandbox) -> None:
    listing_id = sandbox.data.listings()[0]["id"]
    response = requests.get(f"{sandbox.url}/images/{listing_id}/nope.jpg", timeout=5)
    assert response.status_code == 404
    with pytest.raises(KeyError, match="serves no image"):
        sandbox.data.image_bytes(f"{sandbox.url}/images/{listing_id}/nope.jpg")


def test_head_gives_the_length_without_the_body(sandbox: Sandbox) -> None:
    url = _image_urls(sandbox)[0]
    response = requests.head(url, timeout=5)
    assert response.status_code == 200
    assert int(response.headers["Content-Length"]) == len(sandbox.data.image_bytes(url))
    assert response.content == b""


def test_dozens_of_concurrent_downloads_all_complete() -> None:
    with Sandbox(users=2, listings=40, images_per_listing=3, image_bytes=20_000) as sb:
        urls = _image_urls(sb)
        with requests.Session() as session:
            adapter = requests.adapters.HTTPAdapter(pool_connections=48, pool_maxsize=48)
            session.mount("http://", adapter)

            def fetch(url: str) -> bool:
                return session.get(url, timeout=10).content == sb.data.image_bytes(url)

            with ThreadPoolExecutor(max_workers=48) as pool:
                results = list(pool.map(fetch, urls * 2))
        assert len(results) == len(urls) * 2
        assert all(results)
