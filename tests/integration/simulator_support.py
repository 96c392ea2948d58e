"""Helpers shared by the simulator's integration tests: clients, private simulators, prompts and images."""

from __future__ import annotations

import base64
import itertools
import struct
import time
import uuid
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anthropic
import httpx2

from claudegate.simulator.server import SimulatorServer
from claudegate.simulator.settings import SimulatorSettings
from tests.servers import running_in_thread

MODEL = "claude-sonnet-4-6"
# Sonnet 5 caches prefixes from 1024 tokens (Sonnet 4.6 needs 2048), which keeps cache prompts small.
CACHE_MODEL = "claude-sonnet-5"
HELLO = [{"role": "user", "content": "Hello"}]


_KEYS_MADE = itertools.count()


def unique_key() -> str:
    """An API key of its own: the simulator keeps caches, buckets and batches per key. Its last four
    characters, which are all the ledger shows of a key, are a counter: random ones would now and then be
    shared by two tests' keys, and one test would read the other's ledger entries."""
    return f"sk-test-{uuid.uuid4().hex}{next(_KEYS_MADE) % 0x10000:04x}"


def sync_client(url: str, *, api_key: str = "test-key", max_retries: int = 0) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=url, api_key=api_key, max_retries=max_retries)


def async_client(url: str, *, api_key: str = "test-key", max_retries: int = 0) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=url, api_key=api_key, max_retries=max_retries)


@contextmanager
def simulator(**settings: Any) -> Iterator[str]:
    """A private simulator (its own limits, keys, faults, latency) on a loopback port; yields its URL."""
    with running_in_thread(lambda: SimulatorServer(SimulatorSettings(**settings))) as server:
        yield server.url


def ledger(url: str, api_key: str | None = None) -> list[dict[str, Any]]:
    """What the simulator charged, oldest first; only the calls made with ``api_key`` when given."""
    entries: list[dict[str, Any]] = httpx2.get(f"{url}/_simulator/ledger").json()
    if api_key is None:
        return entries
    return [e for e in entries if e["api_key_hint"] == api_key[-4:]]


def prose(tokens: int) -> str:
    """Text of exactly ``tokens`` tokens for the simulator's tokenizer (each word is one token)."""
    words = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta")
    return " ".join(words[i % len(words)] for i in range(tokens))


def png(width: int, height: int) -> bytes:
    """A real, valid grey PNG of the given size (no imaging library needed)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    rows = b"".join(b"\x00" + bytes([128]) * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def jpeg_header(width: int, height: int) -> bytes:
    """The start of a baseline JPEG (SOI, JFIF APP0, SOF0) and EOI: enough to carry the image's size,
    which is all the API reads to cost an image; it is not a decodable picture."""
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sof0 = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    return b"\xff\xd8" + app0 + sof0 + b"\xff\xd9"


def image_block(data: bytes, media_type: str) -> dict[str, Any]:
    return {
        "type": "image",
        "source": {"type": "base64", "media_type": media_type, "data": base64.b64encode(data).decode()},
    }


def wait_until_ended(client: anthropic.Anthropic, batch_id: str) -> anthropic.types.messages.MessageBatch:
    deadline = time.monotonic() + 10
    while True:
        batch = client.messages.batches.retrieve(batch_id)
        if batch.processing_status == "ended":
            return batch
        assert time.monotonic() < deadline, "the batch did not end"
        time.sleep(0.02)
