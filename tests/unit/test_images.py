"""The image helpers: media type from the bytes, resizing within the long side, re-encoding under the API's
5 MB base64 limit, token estimates, and clear errors for what is not an image Claude takes."""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path

import pytest
from PIL import Image

from claudegate.images import (
    MAX_BASE64_BYTES,
    ImageError,
    load_image,
    prepare_blocks,
    prepare_image,
    sniff_media_type,
)


def encoded(width: int, height: int, fmt: str, *, noise: bool = False) -> bytes:
    if noise:  # incompressible: a big file for its size in pixels
        image = Image.frombytes("RGB", (width, height), os.urandom(width * height * 3))
    else:
        image = Image.new("RGB", (width, height), (200, 80, 40))
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("fmt", "media_type"),
    [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("GIF", "image/gif"), ("WEBP", "image/webp")],
)
def test_the_media_type_comes_from_the_bytes(fmt: str, media_type: str) -> None:
    data = encoded(40, 30, fmt)
    assert sniff_media_type(data) == media_type
    image = prepare_image(data)
    assert (image.media_type, image.width, image.height, image.resized) == (media_type, 40, 30, False)
    assert image.data == data  # small enough: sent as given


def test_a_large_png_is_resized_to_the_long_side_keeping_its_aspect_ratio() -> None:
    image = prepare_image(encoded(4000, 1000, "PNG"))
    assert (image.width, image.height) == (1568, 392)
    assert image.resized
    assert image.media_type == "image/png"
    assert Image.open(io.BytesIO(image.data)).size == (1568, 392)
    assert image.tokens == -(-1568 * 392 // 750)


def test_the_long_side_is_configurable() -> None:
    image = prepare_image(encoded(300, 600, "JPEG"), max_long_side=200)
    assert (image.width, image.height) == (100, 200)


def test_an_image_over_the_size_limit_is_re_encoded_under_it() -> None:
    data = encoded(1500, 1500, "PNG", noise=True)  # about 6.7 MB of noise
    assert len(base64.b64encode(data)) > MAX_BASE64_BYTES
    image = prepare_image(data)
    assert len(image.block["source"]["data"]) <= MAX_BASE64_BYTES
    assert image.media_type == "image/jpeg"
    assert (image.width, image.height) == (1500, 1500)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"%PDF-1.7 not an image", "not a JPEG, PNG, GIF or WebP image"),
        (b"", "the image is empty"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "cannot be"),
    ],
)
def test_what_is_not_an_image_claude_takes_is_refused_clearly(data: bytes, message: str) -> None:
    with pytest.raises(ImageError, match=message):
        prepare_image(data)


def test_a_path_gives_an_image_block(tmp_path: Path) -> None:
    path = tmp_path / "photo.bin"  # the name says nothing: the bytes do
    path.write_bytes(encoded(10, 20, "GIF"))
    block = load_image(path).block
    assert block["source"]["media_type"] == "image/gif"
    with pytest.raises(ImageError, match="no image file"):
        load_image(tmp_path / "missing.png")


def test_content_blocks_have_their_images_prepared_and_the_rest_kept() -> None:
    big = base64.b64encode(encoded(3136, 100, "PNG")).decode()
    blocks = [
        {"type": "text", "text": "What is this?"},
        {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/jpeg", "data": big},  # the type is wrong
            "cache_control": {"type": "ephemeral"},
        },
    ]
    text, image = prepare_blocks(blocks)
    assert text == blocks[0]
    assert image["source"]["media_type"] == "image/png"
    assert image["cache_control"] == {"type": "ephemeral"}
    assert Image.open(io.BytesIO(base64.b64decode(image["source"]["data"]))).size == (1568, 50)
    with pytest.raises(ImageError, match="content block 0: "):
        prepare_blocks([{"type": "image", "source": {"type": "base64", "data": "aGVsbG8="}}])
