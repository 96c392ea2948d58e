"""Compression at the front door, through the official SDK (which asks for gzip), httpx and aiohttp: replies
are compressed (zstd, br or gzip, as the client's accept-encoding prefers) for clients that accept it and
untouched for those that do not, a stream is flushed event by event, and compressed request bodies are
accepted up to the body limit once inflated."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable, Iterator

import aiohttp
import anthropic
import brotli
import httpx2
import orjson
import pytest
import zstandard

from claudegate.simulator.settings import SimulatorSettings
from tests.e2e.conftest import SLOW_LATENCY, Tenant, make_tenant
from tests.e2e.flow_support import MODEL, REPLY_TOKENS_HEADER, gateway, gateway_settings, simulator

VERSION = "2023-06-01"
LONG = {REPLY_TOKENS_HEADER: "120"}  # a reply long enough to be worth compressing


@pytest.fixture(scope="module")
def gateway_url(flow_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with simulator(SimulatorSettings(latency=SLOW_LATENCY)) as upstream:
        settings = gateway_settings(
            upstream.url, flow_database_url, tmp_path_factory.mktemp("gzip"), upstream_tier="unlimited"
        )
        with gateway(settings) as server:
            yield server.url


@pytest.fixture(scope="module")
async def tenant(flow_database_url: str) -> Tenant:
    return await make_tenant(flow_database_url, "compressed")


def _body(stream: bool) -> dict[str, object]:
    return {
        "model": MODEL,
        "max_tokens": 200,
        "stream": stream,
        "messages": [{"role": "user", "content": "Tell me a long story"}],
    }


async def test_the_sdk_gets_compressed_replies_and_reads_them(gateway_url: str, tenant: Tenant) -> None:
    sdk = anthropic.AsyncAnthropic(base_url=gateway_url, api_key=tenant.key, max_retries=0)
    raw = await sdk.messages.with_raw_response.create(
        model=MODEL, max_tokens=200, messages=[{"role": "user", "content": "Hi"}], extra_headers=LONG
    )
    # The SDK's HTTP client asks for "gzip, deflate", and adds br when brotli is installed (as it is here).
    asked = raw.http_request.headers["accept-encoding"]
    expected = "br" if "br" in asked else "gzip"
    assert raw.headers["content-encoding"] == expected
    message = await raw.parse()
    assert message.usage.output_tokens == 120
    assert message.content[0].type == "text"

    async with sdk.messages.stream(
        model=MODEL, max_tokens=200, messages=[{"role": "user", "content": "Hi"}], extra_headers=LONG
    ) as stream:
        assert stream.response.headers["content-encoding"] == expected
        texts = [text async for text in stream.text_stream]
        final = await stream.get_final_message()
    assert final.usage.output_tokens == 120
    assert "".join(texts) == final.content[0].text  # type: ignore[union-attr]


async def test_a_client_that_does_not_ask_gets_the_bytes_unchanged(gateway_url: str, tenant: Tenant) -> None:
    headers = {"x-api-key": tenant.key, "anthropic-version": VERSION, "accept-encoding": "identity", **LONG}
    async with httpx2.AsyncClient(base_url=gateway_url) as http:
        plain = await http.post("/v1/messages", json=_body(False), headers=headers)
        refuses_all = "gzip;q=0, zstd;q=0, br;q=0, compress"
        refused = await http.post(
            "/v1/messages", json=_body(False), headers={**headers, "accept-encoding": refuses_all}
        )
    for reply in (plain, refused):
        assert reply.status_code == 200
        assert "content-encoding" not in reply.headers
        assert int(reply.headers["content-length"]) == len(reply.content)
        assert orjson.loads(reply.content)["usage"]["output_tokens"] == 120


async def test_a_gzipped_stream_is_flushed_event_by_event(gateway_url: str, tenant: Tenant) -> None:
    headers = {"x-api-key": tenant.key, "anthropic-version": VERSION, "accept-encoding": "gzip", **LONG}
    inflater = zlib.decompressobj(31)
    pieces: list[bytes] = []
    async with (
        httpx2.AsyncClient(base_url=gateway_url) as http,
        http.stream("POST", "/v1/messages", json=_body(True), headers=headers) as reply,
    ):
        assert reply.headers["content-encoding"] == "gzip"
        async for raw in reply.aiter_raw():
            pieces.append(inflater.decompress(raw))
    # Every piece that arrived inflates to whole events on its own: nothing waited in the compressor.
    assert len(pieces) > 10
    # (the last may be the gzip trailer alone, which inflates to nothing).
    assert [piece for piece in pieces if piece and not piece.endswith(b"\n\n")] == []
    text = b"".join(pieces)
    assert text.startswith(b"event: message_start")
    assert text.rstrip().endswith(b'data: {"type":"message_stop"}')


def _decoder(coding: str) -> Callable[[bytes], bytes]:
    if coding == "br":
        return brotli.Decompressor().process  # type: ignore[no-any-return]
    if coding == "zstd":
        return zstandard.ZstdDecompressor().decompressobj().decompress  # type: ignore[no-any-return]
    return zlib.decompressobj(31).decompress


@pytest.mark.parametrize(
    ("accept", "coding"),
    [
        ("br", "br"),
        ("zstd", "zstd"),
        ("gzip, deflate, br, zstd", "zstd"),
        ("gzip, br;q=0.9, zstd;q=0.5", "gzip"),
    ],
)
async def test_br_and_zstd_streams_are_flushed_event_by_event(
    gateway_url: str, tenant: Tenant, accept: str, coding: str
) -> None:
    headers = {"x-api-key": tenant.key, "anthropic-version": VERSION, "accept-encoding": accept, **LONG}
    decode = _decoder(coding)
    pieces: list[bytes] = []
    async with (
        httpx2.AsyncClient(base_url=gateway_url) as http,
        http.stream("POST", "/v1/messages", json=_body(True), headers=headers) as reply,
    ):
        assert reply.headers["content-encoding"] == coding
        async for raw in reply.aiter_raw():
            pieces.append(decode(raw))
    assert len(pieces) > 10
    assert [piece for piece in pieces if piece and not piece.endswith(b"\n\n")] == []
    text = b"".join(pieces)
    assert text.startswith(b"event: message_start")
    assert text.rstrip().endswith(b'data: {"type":"message_stop"}')


@pytest.mark.parametrize("coding", ["br", "zstd"])
async def test_br_and_zstd_json_replies_read_through_httpx_and_aiohttp(
    gateway_url: str, tenant: Tenant, coding: str
) -> None:
    headers = {"x-api-key": tenant.key, "anthropic-version": VERSION, "accept-encoding": coding, **LONG}
    async with (
        httpx2.AsyncClient(base_url=gateway_url) as http,
        http.stream("POST", "/v1/messages", json=_body(False), headers=headers) as reply,
    ):
        assert reply.headers["content-encoding"] == coding
        raw = b"".join([chunk async for chunk in reply.aiter_raw()])
    decoded = _decoder(coding)(raw)
    assert len(raw) < len(decoded)
    assert orjson.loads(decoded)["usage"]["output_tokens"] == 120
    # aiohttp decodes br itself; zstd it reads raw here (its zstd support needs another package on 3.11).
    async with (
        aiohttp.ClientSession(auto_decompress=coding == "br") as session,
        session.post(f"{gateway_url}/v1/messages", json=_body(False), headers=headers) as answer,
    ):
        assert answer.headers["content-encoding"] == coding
        body = await answer.read()
    message = orjson.loads(body if coding == "br" else _decoder(coding)(body))
    assert message["type"] == "message"
    assert message["usage"]["output_tokens"] == 120


async def test_small_replies_and_errors_go_out_plain(gateway_url: str) -> None:
    async with httpx2.AsyncClient(base_url=gateway_url) as http:
        refused = await http.post(
            "/v1/messages", json=_body(False), headers={"x-api-key": "sk-wrong", "accept-encoding": "gzip"}
        )
    assert refused.status_code == 401
    assert "content-encoding" not in refused.headers
    assert refused.json()["error"]["type"] == "authentication_error"


async def test_a_gzipped_request_body_is_accepted(gateway_url: str, tenant: Tenant) -> None:
    headers = {
        "x-api-key": tenant.key,
        "anthropic-version": VERSION,
        "content-type": "application/json",
        "content-encoding": "gzip",
    }
    async with httpx2.AsyncClient(base_url=gateway_url) as http:
        reply = await http.post(
            "/v1/messages", content=gzip.compress(orjson.dumps(_body(False))), headers=headers
        )
    assert reply.status_code == 200
    assert reply.json()["type"] == "message"


async def test_a_body_too_big_once_inflated_is_refused(gateway_url: str, tenant: Tenant) -> None:
    # 40 MB of JSON that gzips to about 40 kB: over the 32 MB limit once inflated.
    padding = b" " * (40 * 1024 * 1024)
    bomb = gzip.compress(orjson.dumps(_body(False))[:-1] + padding + b"}", compresslevel=9)
    assert len(bomb) < 100_000
    headers = {
        "x-api-key": tenant.key,
        "anthropic-version": VERSION,
        "content-type": "application/json",
        "content-encoding": "gzip",
    }
    async with httpx2.AsyncClient(base_url=gateway_url) as http:
        too_big = await http.post("/v1/messages", content=bomb, headers=headers)
        broken = await http.post("/v1/messages", content=b"not gzip at all", headers=headers)
        unknown = await http.post(
            "/v1/messages", content=b"{}", headers={**headers, "content-encoding": "compress"}
        )
    assert too_big.status_code == 413
    assert too_big.json()["error"]["type"] == "request_too_large"
    assert broken.status_code == 400
    assert "not valid gzip" in broken.json()["error"]["message"]
    assert unknown.status_code == 400
    assert "content-encoding: compress" in unknown.json()["error"]["message"]


@pytest.mark.parametrize("coding", ["br", "zstd"])
async def test_br_and_zstd_request_bodies_are_read_and_bounded(
    gateway_url: str, tenant: Tenant, coding: str
) -> None:
    compress: Callable[[bytes], bytes] = (
        brotli.compress if coding == "br" else zstandard.ZstdCompressor(level=3).compress
    )
    json_body = orjson.dumps(_body(False))
    bomb = compress(json_body[:-1] + b" " * (40 * 1024 * 1024) + b"}")
    assert len(bomb) < 100_000
    headers = {
        "x-api-key": tenant.key,
        "anthropic-version": VERSION,
        "content-type": "application/json",
        "content-encoding": coding,
    }
    async with httpx2.AsyncClient(base_url=gateway_url) as http:
        accepted = await http.post("/v1/messages", content=compress(json_body), headers=headers)
        too_big = await http.post("/v1/messages", content=bomb, headers=headers)
        broken = await http.post("/v1/messages", content=b"not compressed at all", headers=headers)
    assert accepted.status_code == 200
    assert accepted.json()["type"] == "message"
    assert too_big.status_code == 413
    assert too_big.json()["error"]["type"] == "request_too_large"
    assert broken.status_code == 400
    assert f"not valid {coding}" in broken.json()["error"]["message"]
