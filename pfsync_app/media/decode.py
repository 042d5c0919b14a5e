"""Whether bytes are a whole, real image of a format pfsync stores: sniffed, then decoded.

An image is accepted only when Pillow decodes all of it as JPEG, PNG, WebP or
GIF: the structure is verified and the pixels loaded, so a body cut short, an
HTML page behind image magic bytes or a damaged chunk is refused with one
reason (``truncated``, ``not_an_image``, ``unsupported_format``,
``too_many_pixels``). The pixel count is read from the header before anything
is decoded, against ``PF_IMAGE_MAX_PIXELS``; Pillow's global
``Image.MAX_IMAGE_PIXELS`` is never changed, since pfsync runs inside the host's
process. At most as many images are decoded at once as the machine has cores,
whatever the download concurrency, which bounds the memory decoding takes.
"""

from __future__ import annotations

import math
import os
import re
import threading
from dataclasses import dataclass
from typing import IO

from PIL import Image, UnidentifiedImageError

from pfsync_app.exceptions import ImageRejected, first_line

#: The formats pfsync stores: file extension -> (Pillow's format name, what people call it).
FORMATS = {"jpg": ("JPEG", "JPEG"), "png": ("PNG", "PNG"), "webp": ("WEBP", "WebP"),
           "gif": ("GIF", "GIF")}  # fmt: skip
IMAGE_TYPES = {"jpg": "image/jpeg", "png": "image/png", "webp": "image/webp", "gif": "image/gif"}

#: Enough leading bytes to tell every format below apart.
SNIFF_BYTES = 12
#: Leading bytes read to tell an image from text behind image magic bytes.
HEAD_BYTES = 1024
#: How many bytes at the end of a file are searched for its format's end marker.
TAIL_BYTES = 1024

#: Declared content types taken as a hint that the bytes may be an image (besides image/*).
BINARY_TYPES = frozenset({"application/octet-stream", "binary/octet-stream"})

# Image formats pfsync does not store, by their leading bytes (after ``_ISO_BRANDS``).
_OTHER_MAGIC = (
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"BM", "BMP"),
    (b"\xff\x0a", "JPEG XL"),
    (b"\x00\x00\x00\x0cJXL \r\n\x87\n", "JPEG XL"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000"),
    (b"\xff\x4f\xff\x51", "JPEG 2000"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"8BPS", "Photoshop"),
    (b"qoif", "QOI"),
)
# ISO base media files (``....ftyp<brand>``): which brand is which image format.
_ISO_BRANDS = {
    b"avif": "AVIF", b"avis": "AVIF", b"heic": "HEIC", b"heix": "HEIC", b"heim": "HEIC",
    b"heis": "HEIC", b"hevc": "HEIC", b"hevx": "HEIC", b"mif1": "HEIF", b"msf1": "HEIF",
}  # fmt: skip


def _slot_count() -> int:
    """The cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


# One decode per core at once: a decoded image can take hundreds of MB.
_DECODE_SLOTS = threading.BoundedSemaphore(_slot_count())


@dataclass(frozen=True)
class DecodedImage:
    """What decoding found: the format (as a file extension) and the stored pixels' size."""

    extension: str
    width: int
    height: int

    @property
    def content_type(self) -> str:
        """The image's MIME type."""
        return IMAGE_TYPES[self.extension]


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


def other_image_format(head: bytes) -> str | None:
    """The name of an image format pfsync does not store (AVIF, HEIC, TIFF...), or None."""
    if head[4:8] == b"ftyp" and head[8:12] in _ISO_BRANDS:
        return _ISO_BRANDS[head[8:12]]
    for magic, name in _OTHER_MAGIC:
        if head.startswith(magic):
            return name
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith(b"<svg") or (text.startswith(b"<?xml") and b"<svg" in text):
        return "SVG"
    return None


def require_image_start(head: bytes) -> str:
    """The extension of the image ``head`` starts; ImageRejected when it starts no stored format."""
    extension = sniff_image_type(head)
    if extension is not None:
        return extension
    other = other_image_format(head)
    if other is not None:
        raise ImageRejected(
            "unsupported_format",
            f"the content is {other}, an image format pfsync does not store (only {_STORED})",
        )
    raise ImageRejected("not_an_image", f"the content is not a {_STORED} image")


_STORED = "JPEG, PNG, WebP or GIF"


def declared_type_problem(content_type: str) -> str | None:
    """Why a declared Content-Type rules out an image, or None when the bytes must decide.

    The declared type is a hint, not a verdict: object stores and CDNs often
    serve images as ``application/octet-stream`` or ``binary/octet-stream``, or
    with no type at all, and the bytes then decide.
    """
    declared = content_type.split(";", 1)[0].strip().lower()
    if not declared or declared.startswith("image/") or declared in BINARY_TYPES:
        return None
    return f"Content-Type {declared!r} is not an image"


def decode_image(file: IO[bytes], *, max_pixels: int) -> DecodedImage:
    """Decode all of ``file`` (read from its start); raise ImageRejected unless it is whole.

    The width and height are the stored pixels' (not turned by EXIF orientation).
    """
    file.seek(0)
    head = file.read(HEAD_BYTES)
    extension = require_image_start(head)
    with _DECODE_SLOTS:
        try:
            width, height = _decode(file, extension, max_pixels)
        except ImageRejected:
            raise
        except Image.DecompressionBombError as exc:
            raise ImageRejected("too_many_pixels", _bomb_text(exc, max_pixels)) from exc
        except Exception as exc:  # Pillow raises many kinds of errors on bad data
            raise _why_not(file, extension, head, exc) from exc
    return DecodedImage(extension, width, height)


def _decode(file: IO[bytes], extension: str, max_pixels: int) -> tuple[int, int]:
    """Check the header's pixel count, verify the structure, load every frame's pixels."""
    pillow_format = FORMATS[extension][0]
    file.seek(0)
    with Image.open(file, formats=[pillow_format]) as image:
        width, height = image.size
        if width * height > max_pixels:
            raise ImageRejected("too_many_pixels", _pixels_text(width, height, max_pixels))
        # verify() reads the whole structure (PNG: every chunk's checksum) but can
        # only be the image's last use; the pixels are loaded from a fresh open.
        image.verify()
    file.seek(0)
    with Image.open(file, formats=[pillow_format]) as image:
        if pillow_format == "JPEG":
            # Scaled decoding still reads and decodes every bit of the entropy-coded
            # data, so a cut or damaged body fails as it would at full size, at a
            # fraction of the time and memory.
            image.draft(image.mode, (math.ceil(width / 8), math.ceil(height / 8)))
        for frame in range(getattr(image, "n_frames", 1)):
            image.seek(frame)
            image.load()
    return width, height


def _pixels_text(width: int, height: int, max_pixels: int) -> str:
    return f"{width} x {height} pixels is more than the {max_pixels} allowed (PF_IMAGE_MAX_PIXELS)"


def _bomb_text(exc: Image.DecompressionBombError, max_pixels: int) -> str:
    """Pillow refused the declared size before pfsync saw it (it is beyond Pillow's own limit)."""
    declared = re.search(r"\((\d+) pixels\)", str(exc))
    what = f"{declared[1]} pixels" if declared else "a size beyond Pillow's own limit"
    return f"it declares {what}, more than the {max_pixels} allowed (PF_IMAGE_MAX_PIXELS)"


def _why_not(file: IO[bytes], extension: str, head: bytes, exc: Exception) -> ImageRejected:
    """Why bytes that start like an image did not decode: text, cut short, or damaged."""
    name = FORMATS[extension][1]
    if _text_after_magic(head, extension):
        return ImageRejected(
            "not_an_image",
            f"the content starts like a {name} image but goes on as text (an HTML page?)",
        )
    if _ends_early(file, extension, head):
        return ImageRejected("truncated", f"the {name} data ends before the image does")
    if isinstance(exc, UnidentifiedImageError):
        # Its text names a Python object, not the problem.
        return ImageRejected("not_an_image", f"its {name} header is damaged")
    return ImageRejected("not_an_image", f"it does not decode as a {name} image: {first_line(exc)}")


def _text_after_magic(head: bytes, extension: str) -> bool:
    """Whether what follows the magic bytes is markup (an HTML or XML page), as no image is."""
    magic = {"jpg": 3, "png": 8, "gif": 6, "webp": 12}[extension]
    rest = head[magic : magic + 256]
    if len(rest) < 16 or _MARKUP.search(rest) is None:
        return False
    text = sum(1 for byte in rest if byte in b"\t\n\r" or 0x20 <= byte < 0x7F)
    return text >= 0.9 * len(rest)


_MARKUP = re.compile(rb"<[!?/]?[A-Za-z]{2,}")


def _ends_early(file: IO[bytes], extension: str, head: bytes) -> bool:
    """Whether the bytes stop before their format's end (so the image was cut short)."""
    size = file.seek(0, os.SEEK_END)
    if extension == "webp":
        # RIFF declares the size of everything after its first 8 bytes.
        return int.from_bytes(head[4:8], "little") + 8 > size
    file.seek(max(0, size - TAIL_BYTES))
    tail = file.read(TAIL_BYTES)
    if extension == "jpg":
        return b"\xff\xd9" not in tail
    if extension == "png":
        return b"IEND" not in tail
    return not tail.rstrip(b"\x00").endswith(b";")  # gif: the trailer byte
