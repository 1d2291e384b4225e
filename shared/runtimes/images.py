"""Image inputs: a data URL (or bare base64) read to bytes, and those bytes opened with Pillow within limits.

Every limit is checked before a pixel is decoded: the bytes from the base64 text's length, the format, width and
height from the header (`Image.open` reads only that). Pillow's own decompression-bomb check is set to the same
pixel limit, its warning made an error. Formats: PNG, JPEG, WebP, and a GIF's first frame.

`check` (the HTTP edge) then proves the image decodes without holding its pixels: a PNG's chunks and their CRCs
read to the end (no inflating), a JPEG decoded at 1/8 scale (every byte of its scan is still read), a WebP or GIF
frame decoded. `load` (the worker) decodes it whole, as RGB over white where it was transparent (what
transformers' `convert_to_rgb` does).
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import re
import threading
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

from shared.domain.errors import InputTooLarge, InvalidInput

if TYPE_CHECKING:
    from PIL.Image import Image

FORMATS = ("PNG", "JPEG", "WEBP", "GIF")
_DATA_URL = re.compile(r"data:(?P<type>[^;,]*)((?:;[^;,]*)*?);base64,", re.IGNORECASE)
_BASE64_CHARS = re.compile(rb"[A-Za-z0-9+/]*={0,2}")


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int
    max_side: int
    max_pixels: int


Loc = tuple[str | int, ...]

# At most this many images decode at the edge at once: a WebP or GIF frame within the pixel limit holds up to
# 64 MB while it decodes, and more decodes at a time than cores would only add memory, not speed.
_EDGE_DECODES = threading.BoundedSemaphore(os.cpu_count() or 1)


def image_bytes(value: str, limits: ImageLimits, loc: Loc) -> bytes:
    """The bytes of a data URL (`data:image/png;base64,...`) or of bare base64; their size is checked from the
    text's length before decoding."""
    text = value.strip()
    if text[:5].lower() == "data:":
        match = _DATA_URL.match(text)
        if match is None:
            raise InvalidInput("The image is not a base64 data URL (data:image/<format>;base64,<data>).", loc=loc)
        if not match["type"].lower().startswith("image/"):
            raise InvalidInput(f"The data URL's media type {match['type']!r} is not an image type.", loc=loc)
        text = text[match.end() :]
    if text.startswith(("http://", "https://")):
        raise InvalidInput("Image URLs are not fetched: send the image as a base64 data URL.", loc=loc)
    if len(text) * 3 // 4 > limits.max_bytes + 2:
        raise InputTooLarge(f"The image has about {len(text) * 3 // 4:,} bytes; at most {limits.max_bytes:,}.", loc=loc)
    raw = text.encode("ascii", "replace")
    if not raw or _BASE64_CHARS.fullmatch(raw) is None:
        raise InvalidInput("The image is not valid base64.", loc=loc)
    try:
        data = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput(f"The image is not valid base64 ({exc}).", loc=loc) from exc
    if len(data) > limits.max_bytes:
        raise InputTooLarge(f"The image has {len(data):,} bytes; at most {limits.max_bytes:,}.", loc=loc)
    return data


def check(data: bytes, limits: ImageLimits, loc: Loc) -> tuple[str, int, int]:
    """The image's format, width and height, once its header is within limits and its data decodes."""
    image = _open(data, limits, loc)
    try:
        if image.format == "PNG":
            image.verify()  # every chunk read and its CRC checked, nothing inflated
        else:
            image.draft("RGB", (1, 1))  # a JPEG decodes at 1/8 scale; other formats ignore it
            with _EDGE_DECODES:
                image.load()
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InvalidInput(f"The {image.format} image can't be decoded: {exc}.", loc=loc) from exc
    return str(image.format), image.width, image.height


def load(data: bytes, limits: ImageLimits, loc: Loc) -> Image:
    """The image decoded, as RGB (transparency composited over white)."""
    from PIL import Image as PILImage

    image = _open(data, limits, loc)
    try:
        image.load()
        has_alpha = "A" in image.getbands() or image.info.get("transparency") is not None
        if not has_alpha:
            return image.convert("RGB")
        rgba = image.convert("RGBA")
        white = PILImage.new("RGBA", rgba.size, (255, 255, 255, 255))
        return PILImage.alpha_composite(white, rgba).convert("RGB")
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InvalidInput(f"The {image.format} image can't be decoded: {exc}.", loc=loc) from exc


def _open(data: bytes, limits: ImageLimits, loc: Loc) -> Image:
    """The image opened lazily (its header read), refused past a limit before any pixel is decoded."""
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    # Pillow refuses more than twice this many pixels itself, and warns past it: that warning is an error here
    # (a filter for that one category, added once: `catch_warnings` per call would race between threads).
    PILImage.MAX_IMAGE_PIXELS = limits.max_pixels
    if not any(f[2] is PILImage.DecompressionBombWarning and f[0] == "error" for f in warnings.filters):
        warnings.filterwarnings("error", category=PILImage.DecompressionBombWarning)
    try:
        image = PILImage.open(io.BytesIO(data), formats=FORMATS)
    except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning) as exc:
        raise InputTooLarge(
            f"The image has more pixels than allowed (at most {limits.max_pixels:,}): {exc}", loc=loc
        ) from exc
    except UnidentifiedImageError as exc:
        raise InvalidInput("The image is not a PNG, JPEG, WebP or GIF (or its header is damaged).", loc=loc) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InvalidInput(f"The image's header can't be read: {exc}.", loc=loc) from exc
    width, height = image.size
    if width < 1 or height < 1:
        raise InvalidInput(f"The image is {width}×{height} pixels.", loc=loc)
    if max(width, height) > limits.max_side or width * height > limits.max_pixels:
        raise InputTooLarge(
            f"The image is {width:,}×{height:,} pixels ({width * height:,}); at most {limits.max_side:,} a side "
            f"and {limits.max_pixels:,} in all.",
            loc=loc,
        )
    return image
