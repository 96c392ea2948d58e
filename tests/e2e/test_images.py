"""Images through the front doors: an oversized PNG that the API refuses as it is goes through once the image
helpers have resized it, from the in-process client and from the chat API."""

from __future__ import annotations

import base64
import io
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import anthropic
import pytest
from PIL import Image

from claudegate import AsyncClient
from claudegate.images import aload_image
from tests.e2e.chat_support import ChatClient, make_chat_tenant
from tests.e2e.conftest import Stack
from tests.e2e.test_inprocess_client import client_settings

MODEL = "claude-sonnet-4-6"


@pytest.fixture(scope="module")
def oversized_png() -> bytes:
    """9,000 by 600 pixels of noise: past the API's 8,000-pixel side and its 5 MB limit."""
    image = Image.frombytes("RGB", (9000, 600), os.urandom(9000 * 600 * 3))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
async def client(simulator_url: str, tmp_path: Path) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(settings=client_settings(simulator_url, tmp_path), org="images") as client:
        yield client


def raw_block(data: bytes) -> dict[str, object]:
    return {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": base64.b64encode(data).decode()},
    }


async def test_an_oversized_png_is_refused_as_it_is_and_accepted_resized(
    client: AsyncClient, oversized_png: bytes, tmp_path: Path
) -> None:
    with pytest.raises(anthropic.BadRequestError, match="image exceeds 5 MB maximum"):
        await client.messages.create(
            model=MODEL,
            max_tokens=50,
            messages=[{"role": "user", "content": [raw_block(oversized_png)]}],  # type: ignore[list-item]
        )
    path = tmp_path / "scan.png"
    path.write_bytes(oversized_png)
    image = await aload_image(path)
    assert (image.width, image.height) == (1568, 105)
    message = await client.messages.create(
        model=MODEL,
        max_tokens=2000,
        messages=[
            {"role": "user", "content": [image.block, {"type": "text", "text": "What is this?"}]}  # type: ignore[list-item]
        ],
    )
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens >= image.tokens


async def test_the_chat_api_resizes_an_oversized_png(stack: Stack, oversized_png: bytes) -> None:
    tenant = await make_chat_tenant(stack.database_url, f"img-{uuid.uuid4().hex[:8]}")
    async with ChatClient(stack.url, tenant.tenant.key) as chat:
        reply = await chat.ok([raw_block(oversized_png), {"type": "text", "text": "Describe it."}])
        assert reply["reply"]
        stored = (await chat.get(reply["chat_id"])).json()
        bad = await chat.chat([{"type": "image", "source": {"type": "base64", "data": "aGVsbG8="}}])
    sent = stored["messages"][0]["content"][0]
    assert sent["source"]["media_type"] == "image/png"
    assert Image.open(io.BytesIO(base64.b64decode(sent["source"]["data"]))).size == (1568, 105)
    assert bad.status_code == 400
    assert "message: content block 0: not a JPEG, PNG, GIF or WebP image" in bad.text
