"""media.decode: only bytes Pillow decodes whole, as JPEG, PNG, WebP or GIF, are an image.

The broken variants are made here with Pillow: a JPEG cut at several points, a
PNG with a damaged chunk, HTML behind image magic bytes, headers declaring more
pixels than allowed; the odd but valid files are made the same way.
"""

from __future__ import annotations

import io
import struct
import threading
import time
import zlib

import pytest
from PIL import Image

from pfsync_app.exceptions import ImageRejected
from pfsync_app.media import decode
from pfsync_app.media.decode import declared_type_problem, decode_image
from pfsync_app.sandbox.images import bomb_png, render_image

CAP = 50_000_000


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def noisy(width: int = 320, height: int = 240, mode: str = "RGB") -> Image.Image:
    """A picture with detail in every block, so every cut lands inside real image data."""
    return Image.merge("RGB", [Image.effect_noise((width, height), 50)] * 3).convert(mode)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def rejected(data: bytes, max_pixels: int = CAP) -> ImageRejected:
    with pytest.raises(ImageRejected) as caught:
        decode_image(io.BytesIO(data), max_pixels=max_pixels)
    return caught.value


JPEG = encode(noisy(), "JPEG", quality=90)
PNG = encode(noisy(), "PNG")


# ---- what is refused, and why ------------------------------------------------------------------


@pytest.mark.parametrize("share", [0.01, 0.1, 0.5, 0.9, 0.999])
def test_a_jpeg_cut_anywhere_is_truncated(share):
    cut = JPEG[: int(len(JPEG) * share)]

    error = rejected(cut)

    assert (error.reason, error.cause) == ("truncated", "the JPEG data ends before the image does")


@pytest.mark.parametrize(("fmt", "name"), [("PNG", "PNG"), ("WEBP", "WebP"), ("GIF", "GIF")])
def test_other_formats_cut_in_half_are_truncated(fmt, name):
    whole = encode(noisy(mode="P" if fmt == "GIF" else "RGB"), fmt)

    error = rejected(whole[: len(whole) // 2])

    assert (error.reason, error.cause) == (
        "truncated",
        f"the {name} data ends before the image does",
    )


def test_a_png_with_a_damaged_chunk_is_not_an_image():
    damaged = bytearray(PNG)
    damaged[len(damaged) // 2] ^= 0xFF

    error = rejected(bytes(damaged))

    assert error.reason == "not_an_image"
    assert error.cause.startswith("it does not decode as a PNG image: ")


def test_a_png_whose_header_chunk_is_damaged_is_not_an_image():
    damaged = bytearray(PNG)
    damaged[20] ^= 0xFF  # inside IHDR: its checksum no longer matches

    assert (rejected(bytes(damaged)).reason, rejected(bytes(damaged)).cause) == (
        "not_an_image",
        "its PNG header is damaged",
    )


def test_a_jpeg_damaged_in_the_middle_is_not_an_image():
    damaged = bytearray(JPEG)
    for index in range(len(damaged) // 3, len(damaged) - 100, 97):
        damaged[index] ^= 0x5A

    error = rejected(bytes(damaged))

    assert error.reason == "not_an_image"
    assert error.cause.startswith("it does not decode as a JPEG image: ")


@pytest.mark.parametrize(
    "magic", [b"\xff\xd8\xff", b"\xff\xd8\xff\xe0", b"\x89PNG\r\n\x1a\n", b"GIF89a"]
)
def test_html_behind_image_magic_bytes_is_not_an_image(magic):
    page = b"<!DOCTYPE html><html><body><h1>Service unavailable</h1></body></html>"

    error = rejected((magic + page)[:64])

    assert error.reason == "not_an_image"
    assert "goes on as text (an HTML page?)" in error.cause


@pytest.mark.parametrize(
    "data",
    [b"", b"\xff\xd8", b"<html><body>Not found</body></html>", b'{"error": "not found"}'],
    ids=["empty", "two-bytes", "html", "json"],
)
def test_bytes_that_start_no_image_are_not_an_image(data):
    error = rejected(data)

    assert (error.reason, error.cause) == (
        "not_an_image",
        "the content is not a JPEG, PNG, WebP or GIF image",
    )


def test_a_header_declaring_50000_by_50000_pixels_is_refused_as_too_many_pixels():
    error = rejected(bomb_png(50_000, 50_000))

    assert error.reason == "too_many_pixels"
    assert error.cause == (
        "it declares 2500000000 pixels, more than the 50000000 allowed (PF_IMAGE_MAX_PIXELS)"
    )


def test_the_pixel_cap_is_read_from_the_header_before_anything_is_decoded():
    # 8000 x 8000 with only a few rows of data: decoding it would find it truncated.
    bomb = bomb_png(8000, 8000)

    error = rejected(bomb)

    assert (error.reason, error.cause) == (
        "too_many_pixels",
        "8000 x 8000 pixels is more than the 50000000 allowed (PF_IMAGE_MAX_PIXELS)",
    )


def test_the_cap_is_pfsyncs_own_and_pillows_global_limit_is_never_changed():
    before = Image.MAX_IMAGE_PIXELS

    assert rejected(JPEG, max_pixels=320 * 240 - 1).reason == "too_many_pixels"
    assert decode_image(io.BytesIO(JPEG), max_pixels=320 * 240).width == 320
    decode_image(io.BytesIO(encode(noisy(2000, 1000), "JPEG")), max_pixels=CAP)

    assert before == Image.MAX_IMAGE_PIXELS


@pytest.mark.parametrize(
    ("data", "name"),
    [
        (b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf" + bytes(64), "AVIF"),
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64), "HEIC"),
        (encode(noisy(40, 30), "TIFF"), "TIFF"),
        (encode(noisy(40, 30), "BMP"), "BMP"),
        (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>', "SVG"),
    ],
    ids=["avif", "heic", "tiff", "bmp", "svg"],
)
def test_image_formats_pfsync_does_not_store_are_unsupported(data, name):
    error = rejected(data)

    assert (error.reason, error.cause) == (
        "unsupported_format",
        f"the content is {name}, an image format pfsync does not store "
        "(only JPEG, PNG, WebP or GIF)",
    )


# ---- what is accepted --------------------------------------------------------------------------


def rotated_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: turn 90 degrees to show
    return encode(noisy(300, 200), "JPEG", exif=exif)


def animated(fmt: str) -> bytes:
    frames = [noisy(60, 40, "RGB" if fmt == "WEBP" else "P") for _ in range(3)]
    return encode(frames[0], fmt, save_all=True, append_images=frames[1:])


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (encode(noisy(300, 200, "CMYK"), "JPEG"), ("jpg", 300, 200)),
        (encode(noisy(300, 200), "JPEG", progressive=True), ("jpg", 300, 200)),
        (encode(noisy(300, 200, "L"), "JPEG"), ("jpg", 300, 200)),
        (rotated_jpeg(), ("jpg", 300, 200)),
        (encode(Image.new("I;16", (300, 200), 40000), "PNG"), ("png", 300, 200)),
        (encode(noisy(300, 200, "RGBA"), "PNG"), ("png", 300, 200)),
        (encode(noisy(300, 200), "PNG", optimize=True, bits=4), ("png", 300, 200)),
        (encode(noisy(300, 200), "WEBP"), ("webp", 300, 200)),
        (encode(noisy(300, 200), "WEBP", lossless=True), ("webp", 300, 200)),
        (encode(noisy(300, 200, "P"), "GIF"), ("gif", 300, 200)),
        (animated("GIF"), ("gif", 60, 40)),
        (animated("WEBP"), ("webp", 60, 40)),
    ],
    ids=[
        "cmyk-jpeg",
        "progressive-jpeg",
        "grey-jpeg",
        "exif-rotated-jpeg",
        "16-bit-png",
        "rgba-png",
        "4-bit-png",
        "webp",
        "lossless-webp",
        "gif",
        "animated-gif",
        "animated-webp",
    ],
)
def test_odd_but_valid_images_are_accepted_with_their_stored_pixels_size(data, expected):
    decoded = decode_image(io.BytesIO(data), max_pixels=CAP)

    assert (decoded.extension, decoded.width, decoded.height) == expected


def test_an_exif_rotated_jpeg_keeps_the_size_of_its_stored_pixels_not_the_turned_one():
    decoded = decode_image(io.BytesIO(rotated_jpeg()), max_pixels=CAP)

    assert (decoded.width, decoded.height, decoded.content_type) == (300, 200, "image/jpeg")


@pytest.mark.parametrize("path", ["/images/L1/a.jpg", "/images/L1/b.png"])
@pytest.mark.parametrize("size", [2_000, 20_000, 200_000])
def test_the_sandboxs_own_images_are_accepted(path, size):
    decoded = decode_image(io.BytesIO(render_image(path, size, 1600, 1200)), max_pixels=CAP)

    assert decoded.extension == path.rsplit(".", 1)[1]


def test_a_png_cut_inside_its_last_checksum_still_has_every_pixel_and_is_accepted():
    assert decode_image(io.BytesIO(PNG[:-2]), max_pixels=CAP).width == 320


# ---- the declared type is a hint ---------------------------------------------------------------


@pytest.mark.parametrize(
    "declared",
    [
        "image/jpeg",
        "image/png; charset=binary",
        "IMAGE/WEBP",
        "image/x-anything",
        "application/octet-stream",
        "binary/octet-stream",
        "",
    ],
)
def test_image_and_binary_content_types_and_none_leave_the_verdict_to_the_bytes(declared):
    assert declared_type_problem(declared) is None


@pytest.mark.parametrize("declared", ["text/html; charset=utf-8", "text/plain", "application/json"])
def test_other_content_types_rule_an_image_out(declared):
    assert declared_type_problem(declared) == (
        f"Content-Type {declared.split(';')[0]!r} is not an image"
    )


# ---- decode memory ----------------------------------------------------------------------------


def test_no_more_images_are_decoded_at_once_than_the_machine_has_cores(monkeypatch):
    cores = decode._slot_count()
    lock = threading.Lock()
    state = {"started": 0, "active": 0, "most": 0}
    full = threading.Event()
    release = threading.Event()
    real = decode._decode

    def counting(*args, **kwargs):
        with lock:
            state["active"] += 1
            state["most"] = max(state["most"], state["active"])
            if state["active"] == cores:
                full.set()
        release.wait(30)
        try:
            return real(*args, **kwargs)
        finally:
            with lock:
                state["active"] -= 1

    def one():
        with lock:
            state["started"] += 1
        decode_image(io.BytesIO(JPEG), max_pixels=CAP)

    monkeypatch.setattr(decode, "_decode", counting)
    threads = [threading.Thread(target=one) for _ in range(cores * 3)]
    for thread in threads:
        thread.start()
    assert full.wait(30)
    while state["started"] < len(threads):
        time.sleep(0.01)
    # Time for any decode beyond the limit to begin, were it allowed to.
    time.sleep(0.2)
    release.set()
    for thread in threads:
        thread.join(30)

    assert state["most"] == cores
