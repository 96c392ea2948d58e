"""Images for Claude: a path, bytes or URL turned into an ``image`` content block the API accepts.

- The media type is read from the bytes (JPEG, PNG, GIF or WebP), never from a name or a header; anything else
  raises :class:`ImageError` saying what was found.
- An image larger than ``max_long_side`` pixels (default 1,568: larger ones are downscaled by the API anyway,
  at the caller's cost in latency) is resized to fit, keeping its aspect ratio.
- The result is re-encoded until its base64 form is under the API's 5 MB limit (lower JPEG quality, then
  smaller sizes).
- The estimated input cost is ``width * height / 750`` tokens, Anthropic's published rule.

Resizing needs Pillow (``pip install 'claudegate[images]'``), imported on first use only: an image already
small enough is checked and sent without it.
"""

from __future__ import annotations

import asyncio
import base64
import io
import math
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import imagesize

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = [
    "DEFAULT_MAX_LONG_SIDE",
    "MAX_BASE64_BYTES",
    "ImageError",
    "PreparedImage",
    "aload_image",
    "estimate_tokens",
    "load_image",
    "prepare_blocks",
    "prepare_image",
    "sniff_media_type",
]

DEFAULT_MAX_LONG_SIDE = 1568
MAX_BASE64_BYTES = 5 * 1024 * 1024  # the API's limit on one image, as base64
_MAX_DOWNLOAD_BYTES = 50 * 1024 * 1024
_JPEG_QUALITIES = (90, 80, 70, 60, 50)
_PIL_FORMATS = {"image/jpeg": "JPEG", "image/png": "PNG", "image/gif": "GIF", "image/webp": "WEBP"}


class ImageError(ValueError):
    """The input is not an image Claude accepts, or cannot be made into one; the message says why."""


@dataclass(frozen=True, slots=True)
class PreparedImage:
    data: bytes  # the encoded image as sent
    media_type: str
    width: int
    height: int
    resized: bool  # resized or re-encoded from the input

    @property
    def tokens(self) -> int:
        """The estimated input tokens of the image."""
        return estimate_tokens(self.width, self.height)

    @property
    def block(self) -> dict[str, Any]:
        """The ``image`` content block (base64 source)."""
        return {
            "type": "image",
            "source": {
                "type": "base64",
                "media_type": self.media_type,
                "data": base64.b64encode(self.data).decode("ascii"),
            },
        }


def estimate_tokens(width: int, height: int) -> int:
    return math.ceil(width * height / 750)


def sniff_media_type(data: bytes) -> str:
    """The media type the bytes themselves show; ImageError for anything but JPEG, PNG, GIF and WebP."""
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if not data:
        raise ImageError("the image is empty")
    raise ImageError(
        f"not a JPEG, PNG, GIF or WebP image (it starts with {data[:8]!r}); convert it to one of those"
    )


def prepare_image(data: bytes, *, max_long_side: int = DEFAULT_MAX_LONG_SIDE) -> PreparedImage:
    """Check, resize and re-encode image bytes (see the module's docstring)."""
    if max_long_side < 1:
        raise ValueError(f"max_long_side must be at least 1 pixel, got {max_long_side}")
    media_type = sniff_media_type(data)
    width, height = _size(data)
    if max(width, height) <= max_long_side and _b64_len(data) <= MAX_BASE64_BYTES:
        return PreparedImage(data, media_type, width, height, resized=False)
    image = _open(data)
    if max(width, height) > max_long_side:
        scale = max_long_side / max(width, height)
        image = image.resize((max(1, round(width * scale)), max(1, round(height * scale))), _lanczos())
    encoded, media_type, (width, height) = _encode_under_limit(image, media_type)
    return PreparedImage(encoded, media_type, width, height, resized=True)


def load_image(source: str | Path | bytes, *, max_long_side: int = DEFAULT_MAX_LONG_SIDE) -> PreparedImage:
    """An image from bytes, a file path, or an http(s) URL (fetched here), prepared for the API."""
    if isinstance(source, bytes):
        return prepare_image(source, max_long_side=max_long_side)
    if isinstance(source, str) and source.startswith(("http://", "https://")):
        with urllib.request.urlopen(source, timeout=30) as response:
            data = response.read(_MAX_DOWNLOAD_BYTES + 1)
        if len(data) > _MAX_DOWNLOAD_BYTES:
            raise ImageError(f"the image at {source} is over {_MAX_DOWNLOAD_BYTES} bytes")
        return prepare_image(data, max_long_side=max_long_side)
    path = Path(source)
    if not path.is_file():
        raise ImageError(f"no image file at {path}")
    return prepare_image(path.read_bytes(), max_long_side=max_long_side)


async def aload_image(
    source: str | Path | bytes, *, max_long_side: int = DEFAULT_MAX_LONG_SIDE
) -> PreparedImage:
    """:func:`load_image` for async code: the reading, fetching and resizing run in a worker thread."""
    return await asyncio.to_thread(load_image, source, max_long_side=max_long_side)


def prepare_blocks(
    blocks: list[dict[str, Any]], *, max_long_side: int = DEFAULT_MAX_LONG_SIDE
) -> list[dict[str, Any]]:
    """Content blocks with each base64 ``image`` block checked and prepared by :func:`prepare_image` (other
    blocks, and images given by URL or file id, unchanged). ImageError names the block at fault."""
    prepared = []
    for index, given in enumerate(blocks):
        block = given
        source = block.get("source")
        if block.get("type") == "image" and isinstance(source, dict) and source.get("type") == "base64":
            try:
                data = base64.b64decode(str(source.get("data", "")), validate=True)
                image = prepare_image(data, max_long_side=max_long_side)
            except (ImageError, ValueError) as error:
                raise ImageError(f"content block {index}: {error}") from None
            block = {**block, **image.block}
        prepared.append(block)
    return prepared


def _size(data: bytes) -> tuple[int, int]:
    try:
        width, height = imagesize.get(io.BytesIO(data))
    except (ValueError, OSError) as error:
        raise ImageError(f"the image cannot be read: {error}") from None
    if width <= 0 or height <= 0:
        width, height = _open(data).size  # a header imagesize does not know (some WebP): Pillow reads it
    return width, height


def _b64_len(data: bytes) -> int:
    return 4 * math.ceil(len(data) / 3)


def _open(data: bytes) -> Image:
    try:
        from PIL import Image as PILImage
    except ImportError:
        raise ImageError("resizing an image needs Pillow: pip install 'claudegate[images]'") from None
    try:
        image = PILImage.open(io.BytesIO(data))
        image.load()
    except (OSError, PILImage.DecompressionBombError) as error:
        raise ImageError(f"the image cannot be decoded: {error}") from None
    return image


def _lanczos() -> Any:
    from PIL import Image as PILImage

    return PILImage.Resampling.LANCZOS


def _encode_under_limit(image: Image, media_type: str) -> tuple[bytes, str, tuple[int, int]]:
    """The image encoded as ``media_type``; if that is over the limit, as JPEG at falling qualities, then
    at smaller sizes."""
    encoded = _encode(image, _PIL_FORMATS[media_type])
    if _b64_len(encoded) <= MAX_BASE64_BYTES:
        return encoded, media_type, image.size
    flat = image.convert("RGB")
    while True:
        for quality in _JPEG_QUALITIES:
            encoded = _encode(flat, "JPEG", quality=quality)
            if _b64_len(encoded) <= MAX_BASE64_BYTES:
                return encoded, "image/jpeg", flat.size
        if min(flat.size) <= 16:
            raise ImageError("the image cannot be made small enough for the API's 5 MB limit")
        flat = flat.resize((max(1, flat.width * 3 // 4), max(1, flat.height * 3 // 4)), _lanczos())


def _encode(image: Image, pil_format: str, *, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    if pil_format == "JPEG":
        image.convert("RGB").save(buffer, format="JPEG", quality=quality, optimize=True)
    else:
        image.save(buffer, format=pil_format, optimize=True)
    return buffer.getvalue()
