"""Where the pipeline writes a translated call's reply: Claude's reply, turned into OpenAI's as it passes.

A 200 stream is translated event by event (``ChunkTranslator``) and written at once; any other reply (a
message, or an error) is kept whole, then translated (``completion_from_message``, ``translate_error_body``)
and written with its own length. The upstream's ``request-id``, rate-limit headers and ``retry-after`` travel
with it.
"""

from __future__ import annotations

import time
from typing import Any, Final

import orjson
from starlette.types import Receive, Send

from claudegate.errors import error_body
from claudegate.openai import ChunkTranslator, completion_from_message, translate_error_body
from claudegate.pipeline.sink import DisconnectWatch, RawHeaders

__all__ = ["OpenAISink"]

# Replaced by the translation's own.
_DROP: Final = frozenset({b"content-type", b"content-length"})
_STREAM_HEADERS: Final = (
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
)


class OpenAISink(DisconnectWatch):
    __slots__ = ("_chunks", "_extra", "_headers", "_include_usage", "_send", "_status", "_stream")

    def __init__(
        self, receive: Receive, send: Send, extra_headers: RawHeaders, *, include_usage: bool
    ) -> None:
        super().__init__(receive)
        self._send = send
        self._extra = extra_headers
        self._include_usage = include_usage
        self._status = 0
        self._headers: RawHeaders = []
        self._chunks: list[bytes] = []
        self._stream: ChunkTranslator | None = None

    async def start(self, status: int, headers: RawHeaders) -> None:
        content_type = b""
        kept: RawHeaders = []
        for name, value in headers:
            lowered = name.lower()
            if lowered == b"content-type":
                content_type = value
            elif lowered not in _DROP:
                kept.append((name, value))
        kept.extend(self._extra)
        self._status, self._headers = status, kept
        if status == 200 and content_type.startswith(b"text/event-stream"):
            self._stream = ChunkTranslator(include_usage=self._include_usage)
            await self._send(
                {"type": "http.response.start", "status": 200, "headers": [*_STREAM_HEADERS, *kept]}
            )

    async def send(self, chunk: bytes, *, more: bool) -> None:
        if self._stream is None:
            if chunk:
                self._chunks.append(chunk)
            if not more:
                await self._send_whole()
            return
        body = self._stream.feed_bytes(chunk) if chunk else b""
        if body or not more:
            await self._send({"type": "http.response.body", "body": body, "more_body": more})

    async def _send_whole(self) -> None:
        body = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
        status = self._status
        headers = self._headers
        message = _message(body) if status == 200 else None
        if message is not None:
            body = orjson.dumps(completion_from_message(message, int(time.time())))
        else:
            if status == 200:  # not a message: the upstream is not speaking Anthropic's API
                status, body = 502, error_body("api_error", "The upstream's reply is not a message")
            error = translate_error_body(status, body)
            status, body = error.status, error.body
            if error.no_retry:
                headers.append((b"x-should-retry", b"false"))
        headers.append((b"content-type", b"application/json"))
        headers.append((b"content-length", str(len(body)).encode()))
        await self._send({"type": "http.response.start", "status": status, "headers": headers})
        await self._send({"type": "http.response.body", "body": body})


def _message(body: bytes) -> dict[str, Any] | None:
    try:
        message = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return message if isinstance(message, dict) and message.get("type") == "message" else None
