"""Where the pipeline writes a chat call's reply.

``ReplyBuffer`` keeps the whole reply (``POST /chat``). ``ChatStreamSink`` (``POST /chat/stream``) reads
Anthropic's stream as it arrives and writes the chat API's own events to the HTTP client at once; an error
reply (anything but a 200 stream) is kept instead, so the route can answer it with its status. Both watch the
HTTP client: when it hangs up, the pipeline hears it through ``gone`` and abandons the upstream call.
"""

from __future__ import annotations

import orjson
from starlette.types import Receive, Send

from claudegate.chat.sse import PING, token_event
from claudegate.pipeline.sink import DisconnectWatch, RawHeaders
from claudegate.wire.message_fold import MessageFold
from claudegate.wire.sse import SSEParser

__all__ = ["ChatStreamSink", "ReplyBuffer"]


class ReplyBuffer(DisconnectWatch):
    """Keeps a reply whole: its status, headers and body."""

    def __init__(self, receive: Receive) -> None:
        super().__init__(receive)
        self.status = 0
        self.headers: RawHeaders = []
        self._chunks: list[bytes] = []

    @property
    def body(self) -> bytes:
        return b"".join(self._chunks)

    async def start(self, status: int, headers: RawHeaders) -> None:
        self.status = status
        self.headers = headers

    async def send(self, chunk: bytes, *, more: bool) -> None:
        if chunk:
            self._chunks.append(chunk)


class ChatStreamSink(ReplyBuffer):
    """Turns a 200 Anthropic stream into chat events as it arrives (``streaming`` once started); keeps any
    other reply whole, like ReplyBuffer. The route writes the last event and ends the response.

    ``opened``: the response is already an event stream (a continuation of a reply streamed before): tokens
    go on in it, and a reply that is not a stream is kept, never answered."""

    def __init__(self, receive: Receive, send: Send, headers: RawHeaders, *, opened: bool = False) -> None:
        super().__init__(receive)
        self._send = send
        self._extra = headers
        self._parser = SSEParser()
        self.builder = MessageFold()
        self.streaming = opened

    async def start(self, status: int, headers: RawHeaders) -> None:
        await super().start(status, headers)
        content_type = next((value for name, value in headers if name.lower() == b"content-type"), b"")
        if status == 200 and content_type.startswith(b"text/event-stream"):
            await self.open()
        else:
            self.streaming = False  # kept whole (for an opened sink: a continuation that failed)

    async def open(self) -> None:
        """Start the HTTP response as an event stream (once)."""
        if self.streaming:
            return
        self.streaming = True
        await self._send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream; charset=utf-8"),
                    (b"cache-control", b"no-cache"),
                    (b"x-accel-buffering", b"no"),
                    *self._extra,
                ],
            }
        )

    async def send(self, chunk: bytes, *, more: bool) -> None:
        if not self.streaming:
            await super().send(chunk, more=more)
            return
        out: list[bytes] = []
        for name, data in self._parser.feed_fields(chunk):
            if name == "ping":
                out.append(PING)
                continue
            if name is None or not data:
                continue
            text = self.builder.feed(orjson.loads(data))
            if text:
                out.append(token_event(text))
        if out and not self.gone.is_set():
            await self._send({"type": "http.response.body", "body": b"".join(out), "more_body": True})

    async def finish(self, last_event: bytes) -> None:
        """Write the stream's last event and end the response."""
        if not self.gone.is_set() or self.shut_down:  # a call stopped at shutdown still has its client
            await self._send({"type": "http.response.body", "body": last_event, "more_body": False})
