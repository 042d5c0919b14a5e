"""Real, distinct PNG and JPEG files made from an image URL's path, without any imaging library.

Every image is a skyline-like picture in colours drawn from the path, padded with
random bytes in an ancillary chunk (PNG) or a comment segment (JPEG) until it
reaches the size asked for. The same path and size always give the same bytes, so
nothing is kept in memory but a small cache.

``photo(path)`` is the other kind, for benchmarks: one of a few noisy JPEG
photos of 2000-4000 px and 1-3 MB, made with Pillow, as costly to decode as a
real listing photo (the flat pictures above decode in no time).
"""

from __future__ import annotations

import functools
import hashlib
import io
import math
import random
import struct
import zlib
from collections.abc import Iterator

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SIGNATURE = b"\xff\xd8\xff"

# Headers of a JPEG with the tables below, before the entropy-coded data; used to
# shrink the picture when a small size is asked for.
_JPEG_OVERHEAD = 200


def content_type_for(path: str) -> str:
    """The Content-Type an image path is served with: by its extension."""
    return "image/png" if path.lower().endswith(".png") else "image/jpeg"


def _rng(path: str, purpose: str) -> random.Random:
    return random.Random(hashlib.sha256(f"{purpose}:{path}".encode()).digest())


def _colours(path: str) -> list[tuple[int, int, int]]:
    """Sky, two building tones and the ground, varied per path."""
    rng = _rng(path, "colours")

    def jitter(base: tuple[int, int, int], spread: int) -> tuple[int, int, int]:
        return tuple(max(0, min(255, c + rng.randint(-spread, spread))) for c in base)  # type: ignore[return-value]

    return [
        jitter((135, 190, 235), 40),
        jitter((90, 90, 110), 60),
        jitter((200, 170, 120), 55),
        jitter((220, 200, 150), 30),
    ]


@functools.lru_cache(maxsize=512)
def render_image(path: str, target_bytes: int, width: int, height: int) -> bytes:
    """The image served at ``path``: PNG or JPEG by extension, about ``target_bytes`` long."""
    if path.lower().endswith(".png"):
        return _png(path, target_bytes, width, height)
    return _jpeg(path, target_bytes, width, height)


# --- PNG: palette image whose pixels depend only on the size (cached), colours on the path.


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _building_tops(width: int, height: int) -> list[int]:
    rng = random.Random(width * 100_003 + height)
    groups = math.ceil(width / 16)
    return [int(height * 0.25) + rng.randrange(max(1, int(height * 0.45))) for _ in range(groups)]


@functools.lru_cache(maxsize=32)
def _png_idat(width: int, height: int) -> bytes:
    """Compressed 2-bit palette pixels: sky, buildings 16 px wide, ground."""
    tops = _building_tops(width, height)
    row_bytes = math.ceil(width / 4)
    ground = int(height * 0.88)
    rows = []
    previous = b""
    for y in range(height):
        if y >= ground:
            row = bytes([0xFF]) * row_bytes
        else:
            # 16 pixels at 2 bits are 4 bytes of one repeated 2-bit value.
            row = b"".join(
                bytes([(0 if y < top else 1 + (g % 2)) * 0x55]) * 4 for g, top in enumerate(tops)
            )[:row_bytes]
        # Filter "Up" turns a row equal to the one above into zeros, which deflate to nothing.
        rows.append(b"\x02" + bytes(row_bytes) if row == previous else b"\x00" + row)
        previous = row
    return zlib.compress(b"".join(rows), 9)


def _png(path: str, target_bytes: int, width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 2, 3, 0, 0, 0)
    palette = b"".join(bytes(c) for c in _colours(path))
    head = PNG_SIGNATURE + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"PLTE", palette)
    body = _png_chunk(b"IDAT", _png_idat(width, height))
    tail = _png_chunk(b"IEND", b"")
    padding = max(16, target_bytes - len(head) - len(body) - len(tail) - 12)
    # "pfPd": ancillary, private, safe-to-copy; decoders skip it.
    pad = _png_chunk(b"pfPd", _rng(path, "padding").randbytes(padding))
    return head + body + pad + tail


# --- JPEG: baseline, 4:2:0, one flat colour per band, so every block is a DC value and EOB.

# Huffman tables of our own: DC category 0 and the AC end-of-block are one bit each,
# which keeps a 1600x1200 picture under 12 kB of entropy-coded data.
_DC_BITS = [1, 0, 0, 0, 11] + [0] * 11
_DC_VALUES = list(range(12))
_AC_BITS = [1] + [0] * 15
_AC_VALUES = [0x00]
_DC_CODES = {0: "0"} | {cat: format(16 + cat - 1, "05b") for cat in range(1, 12)}
_EOB = "0"


def _segment(marker: int, payload: bytes) -> bytes:
    return struct.pack(">HH", marker, len(payload) + 2) + payload


def _dc_bits(diff: int) -> str:
    if diff == 0:
        return _DC_CODES[0]
    cat = abs(diff).bit_length()
    value = diff if diff > 0 else diff + (1 << cat) - 1
    return _DC_CODES[cat] + format(value, f"0{cat}b")


def _ycbcr(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    r, g, b = rgb
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = 128 - 0.168736 * r - 0.331264 * g + 0.5 * b
    cr = 128 + 0.5 * r - 0.418688 * g - 0.081312 * b
    return tuple(max(0, min(255, round(v))) for v in (y, cb, cr))  # type: ignore[return-value]


def _jpeg_scan(path: str, width: int, height: int) -> bytes:
    mcus_x, mcus_y = math.ceil(width / 16), math.ceil(height / 16)
    bands = [_ycbcr(c) for c in _colours(path)]
    previous = [0, 0, 0]
    rest_of_row = "0" * (12 * (mcus_x - 1))
    parts = []
    for my in range(mcus_y):
        # With quantisation 8 everywhere, a flat block's DC coefficient is value - 128.
        dc = [v - 128 for v in bands[my * len(bands) // mcus_y]]
        first = _dc_bits(dc[0] - previous[0]) + _EOB + (_DC_CODES[0] + _EOB) * 3
        first += _dc_bits(dc[1] - previous[1]) + _EOB + _dc_bits(dc[2] - previous[2]) + _EOB
        previous = dc
        parts.append(first + rest_of_row)
    bits = "".join(parts)
    bits += "1" * (-len(bits) % 8)
    data = int(bits, 2).to_bytes(len(bits) // 8, "big")
    return data.replace(b"\xff", b"\xff\x00")


def _jpeg_size_estimate(width: int, height: int) -> int:
    return _JPEG_OVERHEAD + math.ceil(width / 16) * math.ceil(height / 16) * 12 // 8


def _jpeg(path: str, target_bytes: int, width: int, height: int) -> bytes:
    # A small size asked for shrinks the picture: the bytes are what the caller sized.
    scale = 1
    while (
        _jpeg_size_estimate(width // scale, height // scale) > target_bytes
        and min(width, height) // scale > 16
    ):
        scale += 1
    width, height = max(16, width // scale), max(16, height // scale)
    app0 = _segment(0xFFE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")
    dqt = _segment(0xFFDB, b"\x00" + bytes([8]) * 64)
    sof = _segment(
        0xFFC0,
        struct.pack(">BHHB", 8, height, width, 3) + bytes([1, 0x22, 0, 2, 0x11, 0, 3, 0x11, 0]),
    )
    dht = _segment(
        0xFFC4,
        b"\x00"
        + bytes(_DC_BITS)
        + bytes(_DC_VALUES)
        + b"\x10"
        + bytes(_AC_BITS)
        + bytes(_AC_VALUES),
    )
    sos = _segment(0xFFDA, bytes([3, 1, 0x00, 2, 0x00, 3, 0x00, 0, 63, 0]))
    scan = _jpeg_scan(path, width, height)
    fixed = 2 + len(app0) + len(dqt) + len(sof) + len(dht) + len(sos) + len(scan) + 2
    rng = _rng(path, "padding")
    comments = []
    remaining = max(20, target_bytes - fixed)
    while remaining > 0:
        payload = min(remaining - 4, 65533)
        if payload < 16:
            payload = 16
        comments.append(_segment(0xFFFE, rng.randbytes(payload)))
        remaining -= payload + 4
    return b"\xff\xd8" + app0 + b"".join(comments) + dqt + sof + dht + sos + scan + b"\xff\xd9"


# --- photos: noisy JPEGs, costly to decode like a camera's (Pillow makes them, once each).

PHOTO_SIZES = ((2000, 1500), (2400, 1600), (3000, 2000), (3200, 2400), (4000, 2667), (4000, 3000))
PHOTO_BYTES = (1_000_000, 3_000_000)


def photo(path: str) -> bytes:
    """The photo served at ``path``: one of ``len(PHOTO_SIZES)``, chosen by the path."""
    digest = hashlib.sha256(f"photo:{path}".encode()).digest()
    return _photo(digest[0] % len(PHOTO_SIZES))


@functools.lru_cache(maxsize=len(PHOTO_SIZES))
def _photo(index: int) -> bytes:
    """A street scene under a sky, grained like a high-ISO photo, between 1 and 3 MB."""
    from PIL import Image, ImageDraw

    width, height = PHOTO_SIZES[index]
    rng = random.Random(f"photo:{index}")
    scene = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(scene)
    sky = [rng.randrange(90, 200) for _ in range(3)]
    for y in range(0, height, 8):
        share = y / height
        draw.rectangle(
            (0, y, width, y + 8), fill=tuple(int(c * (1 - share) + 60 * share) for c in sky)
        )
    for _ in range(60):
        x, y = rng.randrange(width), rng.randrange(height // 3, height)
        colour = tuple(rng.randrange(40, 220) for _ in range(3))
        draw.rectangle((x, y, x + rng.randrange(width // 10, width // 4), height), fill=colour)
    # Grain: a noise tile repeated; JPEG codes each 8x8 block alone, so it costs as much
    # to decode as noise everywhere, and it is made in a fraction of the time.
    tile = Image.merge("RGB", [Image.effect_noise((256, 256), 40) for _ in range(3)])
    grain = Image.new("RGB", (width, height))
    for x in range(0, width, 256):
        for y in range(0, height, 256):
            grain.paste(tile, (x, y))
    picture = Image.blend(scene, grain, 0.4)
    quality = 90
    while True:
        out = io.BytesIO()
        picture.save(out, "JPEG", quality=quality)
        if out.tell() <= PHOTO_BYTES[1] or quality <= 40:
            return out.getvalue()
        quality -= 4


def bomb_png(width: int, height: int) -> bytes:
    """A tiny PNG declaring ``width`` x ``height`` pixels: a decompression bomb.

    Its pixel data is a few rows of zeros; a decoder that trusts the header would
    allocate ``width * height * 3`` bytes before noticing.
    """
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data = zlib.compress(bytes(min(width * 3 + 1, 1 << 16)))
    chunks = _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", data) + _png_chunk(b"IEND", b"")
    return PNG_SIGNATURE + chunks


def huge_stream(size: int, chunk_size: int = 64 * 1024) -> Iterator[bytes]:
    """``size`` bytes that start like a JPEG and go on with noise: an image far too big."""
    block = random.Random(size).randbytes(chunk_size)
    yield b"\xff\xd8\xff\xe0"
    sent = 4
    while sent < size:
        piece = block[: min(chunk_size, size - sent)]
        sent += len(piece)
        yield piece
