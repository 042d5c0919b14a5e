"""Only whole, real images reach the site, and a slow API page cannot hold a run.

Each case runs a full pf_sync against the sandbox with a fault that other
importers have stored by mistake: the broken file is not in storage, the failure
is in the report with its reason, the listing is not marked synced, and the next
run, once the sandbox serves the right bytes, downloads it (``converge``).
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from pfsync_app.jobs.sync import SyncOptions, run_sync
from pfsync_app.models import Property, PropertyImage
from tests.fixtures.faults import Scenario, entries, media_root, messages, stray_files

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.fault_scenario]


def pillow(fmt: str, width: int = 120, height: int = 80) -> bytes:
    out = io.BytesIO()
    noise = Image.merge("RGB", [Image.effect_noise((width, height), 40)] * 3)
    noise.save(out, fmt)
    return out.getvalue()


JPEG = pillow("JPEG")
PNG = pillow("PNG")


def damaged_png() -> bytes:
    data = bytearray(PNG)
    data[len(data) // 2] ^= 0xFF
    return bytes(data)


# 64 bytes of HTML that happen to start with the JPEG magic bytes.
HTML_BEHIND_MAGIC = b"\xff\xd8\xff\xe0<!DOCTYPE html><html><body>Gone</body></html>".ljust(64)

BROKEN = {
    "half-a-jpeg": ({"body": JPEG[: len(JPEG) // 2]}, "bytes", "truncated"),
    "html-behind-jpeg-magic": ({"body": HTML_BEHIND_MAGIC}, "bytes", "not_an_image"),
    "png-with-a-damaged-chunk": ({"body": damaged_png()}, "bytes", "not_an_image"),
    "cut-off-without-content-length": ({"content_length": False}, "truncated", "truncated"),
    "cut-off-with-content-length": ({}, "truncated", "truncated"),
    "decompression-bomb": ({}, "bomb", "too_many_pixels"),
    "avif": (
        {"body": b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf" + bytes(200)},
        "bytes",
        "unsupported_format",
    ),
}


@pytest.fixture
def scenario(sandbox_settings, settings):
    """A fault scenario on the small sandbox, with few retries."""
    settings.IMAGE_DOWNLOAD_MAX_RETRIES = 2
    return Scenario(sandbox_settings)


def two_images(sb) -> tuple[str, str, str]:
    """(listing id, its first image URL, its second image URL) of a listing with two images."""
    raw = next(
        r for r in sb.data.listings() if len((r.get("media") or {}).get("images") or []) >= 2
    )
    images = raw["media"]["images"]
    return raw["id"], images[0]["original"]["url"], images[1]["original"]["url"]


def stored_files() -> list[Path]:
    return [p for p in media_root().rglob("*") if p.is_file()]


@pytest.mark.parametrize("name", list(BROKEN))
def test_a_broken_image_is_not_stored_is_reported_with_its_reason_and_is_fetched_next_run(
    scenario, name
):
    sb = scenario.sb
    params, kind, reason = BROKEN[name]
    pf_id, bad_url, good_url = two_images(sb)
    sb.faults.add_image(bad_url, kind, times=None, **params)

    result = scenario.sync()

    assert result.exit_code == 1
    failed = entries(result.run_id, level="error", action="image.failed")
    assert [e.pf_id for e in failed] == [pf_id]
    assert failed[0].message.endswith(f"({reason})")
    assert result.counters["images_failed"] == 1
    assert not PropertyImage.objects.filter(source_url=bad_url).exists()
    assert PropertyImage.objects.get(source_url=good_url).is_active
    # Nothing in storage but the good images, each decodable; no temporary file left.
    for path in stored_files():
        Image.open(path).load()
    assert len(stored_files()) == PropertyImage.objects.count()
    assert stray_files() == []
    again = scenario.converge()
    assert again.counters["images_downloaded"] == 1


def test_an_image_cut_off_once_without_content_length_is_fetched_again_in_the_same_run(scenario):
    _, url, _ = two_images(scenario.sb)
    scenario.sb.faults.add_image(url, "truncated", times=1, content_length=False)

    result = scenario.sync()

    assert result.exit_code == 0, result.failures
    assert PropertyImage.objects.filter(source_url=url, is_active=True).count() == 1
    scenario.converge()


@pytest.mark.parametrize("content_type", ["binary/octet-stream", "application/octet-stream", ""])
def test_a_valid_image_served_as_binary_or_without_a_type_is_stored(scenario, content_type):
    sb = scenario.sb
    for raw in sb.data.listings():
        for image in (raw.get("media") or {}).get("images") or []:
            sb.faults.add_image(
                image["original"]["url"], "wrong_type", times=None, content_type=content_type
            )

    result = scenario.sync()

    assert result.exit_code == 0, result.failures
    assert result.counters["images_downloaded"] == PropertyImage.objects.count() > 0
    scenario.converge()


def test_an_image_served_as_html_is_still_refused(scenario):
    sb = scenario.sb
    _, url, _ = two_images(sb)
    sb.faults.add_image(url, "wrong_type", times=None, content_type="text/html")

    result = scenario.sync()

    assert result.exit_code == 1
    assert "Content-Type 'text/html' is not an image" in messages(result.run_id, level="error")
    scenario.converge()


def test_a_listings_page_dripping_past_pf_api_timeout_is_cut_and_fetched_again(scenario, settings):
    settings.PF_API_TIMEOUT = 1
    sb = scenario.sb
    # About 48 s at 20 bytes every 0.4 s for the first page (several kB): the run does not wait.
    sb.faults.add("/v1/listings", "drip", times=1, piece=20, interval=0.4)

    result = scenario.sync()

    assert result.exit_code == 0, result.failures
    assert Property.objects.count() == len(sb.data.listings())
    first_page = [r for r in sb.requests if r.path == "/v1/listings" and r.query.get("page") == "1"]
    assert len(first_page) == 2
    scenario.converge()


def test_a_listings_page_that_always_drips_fails_the_fetch_and_unpublishes_nothing(
    scenario, settings
):
    settings.PF_API_TIMEOUT = 1
    sb = scenario.sb
    scenario.baseline(limit=12)
    gone = next(p.pf_id for p in Property.objects.filter(is_published=True))
    sb.data.remove_listing(gone)
    sb.faults.add("/v1/listings", "drip", times=None, piece=20, interval=0.4)

    result = scenario.sync(client=scenario.client(max_attempts=2))

    assert result.exit_code == 1
    text = messages(result.run_id, level="error")
    assert "listings.fetch_failed" in text and "timed out after 1 s (2 attempts over" in text
    assert Property.objects.get(pf_id=gone).is_published is True
    scenario.converge()


def test_the_api_size_of_an_image_is_kept_and_the_decoded_one_fills_a_row_the_api_leaves_empty(
    scenario,
):
    sb = scenario.sb
    pf_id, sized_url, unsized_url = two_images(sb)

    def drop_size(listing):
        original = listing["media"]["images"][1]["original"]
        original.pop("width")
        original.pop("height")

    sb.data.update_listing(pf_id, drop_size)

    result = run_sync(SyncOptions(), client=scenario.client())

    assert result.exit_code == 0, result.failures
    sized = PropertyImage.objects.get(source_url=sized_url)
    unsized = PropertyImage.objects.get(source_url=unsized_url)
    api = sb.data.listing(pf_id)["media"]["images"][0]["original"]
    assert (sized.width, sized.height) == (api["width"], api["height"])
    with Image.open(media_root() / unsized.image) as stored:
        assert (unsized.width, unsized.height) == stored.size
    # The filled size is what the next runs compare with: nothing is rewritten.
    again = run_sync(SyncOptions(full=True), client=scenario.client())
    assert again.counters.get("properties_updated", 0) == 0
    assert PropertyImage.objects.get(pk=unsized.pk).width == unsized.width
    scenario.converge()
