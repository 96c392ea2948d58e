"""HTTP compression at the front door: compressed replies for clients that ask, compressed request bodies.

Replies (JSON and server-sent events) are compressed only when the client's ``accept-encoding`` accepts a
coding the gateway offers (zstd, br, gzip; the client's q-values first, then that order); otherwise every
byte passes as the upstream sent it. A stream is flushed after every chunk the gateway relays, so each event
reaches the client as soon as it would uncompressed: compression never holds back a token. Small one-piece
replies (errors, tiny JSON) go out plain: compression would make them bigger.

A request body sent with ``content-encoding`` gzip, deflate, br or zstd is inflated before the gateway reads
it, with the gateway's body limit applied to the inflated size, so a small compressed bomb is refused (413)
after inflating little more than the limit; a corrupt body gets 400.

Hand-written over Starlette's GZipMiddleware: that one buffers nothing per event but compresses only replies,
inflates no request bodies, and does not know the gateway's error envelope. The codings are in ``codecs``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.types import Message, Receive, Scope, Send

from claudegate.errors import ClaudegateError, InvalidRequestError, RequestTooLargeError
from claudegate.runtime.asgi import send_error
from claudegate.runtime.call import new_request_id
from claudegate.server.codecs import (
    Encoder,
    InflateError,
    available_codings,
    choose_coding,
    encoder,
    inflater,
)

__all__ = ["MIN_COMPRESSED_BYTES", "compressing"]

Handler = Callable[[Scope, Receive, Send], Awaitable[None]]

MIN_COMPRESSED_BYTES = 512  # a one-piece reply smaller than this goes out plain
_COMPRESSIBLE = (b"application/json", b"text/event-stream")
_SPLIT_FIRST_BYTES = 2048


def compressing(handler: Handler, body_limit: int) -> Handler:
    """``handler`` with compression of the replies that may be compressed and inflation of compressed request
    bodies."""
    offered = available_codings()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        accept: bytes | None = None
        encoding: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"accept-encoding":
                accept = value
            elif name == b"content-encoding":
                encoding = value
        if encoding is not None and encoding.strip().lower() not in (b"identity", b""):
            try:
                scope, receive = await _inflating(scope, receive, encoding.strip().lower(), body_limit)
            except ClaudegateError as error:
                await send_error(send, error, new_request_id())
                return
            except ConnectionResetError:
                return  # the client left while sending its body: there is no one to answer
        coding = choose_coding(accept, offered)
        if coding is not None:
            send = _CompressingSend(send, coding).send
        await handler(scope, receive, send)

    return app


async def _inflating(scope: Scope, receive: Receive, encoding: bytes, limit: int) -> tuple[Scope, Receive]:
    name = encoding.decode("latin-1")
    decoder = inflater(name)
    if decoder is None:
        codings = ", ".join(("gzip", "deflate", *(c for c in available_codings() if c != "gzip")))
        raise InvalidRequestError(f"content-encoding: {name} is not accepted; send {codings} or identity")
    body = bytearray()
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionResetError("client disconnected while sending its request")
        more = bool(message.get("more_body", False))
        try:
            body += decoder.inflate(message.get("body", b""), limit + 1 - len(body))
        except InflateError as error:
            raise InvalidRequestError(f"content-encoding: the body is not valid {name}: {error}") from None
        if len(body) > limit:
            raise RequestTooLargeError("Request exceeds the maximum allowed number of bytes (once inflated).")
    if not decoder.finished:
        raise InvalidRequestError(f"content-encoding: the {name} body is cut short")
    headers = [
        (name, value)
        for name, value in scope["headers"]
        if name not in (b"content-encoding", b"content-length")
    ]
    headers.append((b"content-length", str(len(body)).encode()))
    inflated = {**scope, "headers": headers}
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}
        return await receive()

    return inflated, replay


class _CompressingSend:
    """Wraps ``send``: decides at the first body chunk whether the reply is compressed, then compresses each
    chunk and flushes it at once."""

    __slots__ = ("_coding", "_compressor", "_send", "_start")

    def __init__(self, send: Send, coding: str) -> None:
        self._send = send
        self._coding = coding
        self._start: dict[str, Any] | None = None
        self._compressor: Encoder | None = None

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self._start = dict(message)
            return
        if kind != "http.response.body":
            await self._send(message)
            return
        chunk: bytes = message.get("body", b"")
        more = bool(message.get("more_body", False))
        start = self._start
        if start is not None:
            self._start = None
            kind_of = _compressible(start["headers"])
            if kind_of is not None and (more or len(chunk) >= MIN_COMPRESSED_BYTES):
                # A stream is compressed at the fastest level: its time to first token must not grow.
                self._compressor = encoder(self._coding, stream=kind_of == b"text/event-stream")
                start["headers"] = [
                    *((name, value) for name, value in start["headers"] if name != b"content-length"),
                    (b"content-encoding", self._coding.encode()),
                    (b"vary", b"accept-encoding"),
                ]
            await self._send(start)
        compressor = self._compressor
        if compressor is None:
            await self._send(message)
            return
        if start is not None and more and len(chunk) > _SPLIT_FIRST_BYTES:
            # Several events came in one piece (a fast upstream): the first goes out before the rest is
            # compressed, so the time to first byte does not grow with the reply.
            end = chunk.find(b"\n\n") + 2
            if 1 < end < len(chunk):
                first = compressor.chunk(chunk[:end], last=False)
                await self._send({"type": "http.response.body", "body": first, "more_body": True})
                chunk = chunk[end:]
        data = compressor.chunk(chunk, last=not more)
        await self._send({"type": "http.response.body", "body": data, "more_body": more})


def _compressible(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    """The reply's media type if it is one to compress (and not encoded already), else None."""
    content_type = b""
    for name, value in headers:
        if name == b"content-encoding":
            return None
        if name == b"content-type":
            content_type = value.split(b";", 1)[0].strip().lower()
    return content_type if content_type in _COMPRESSIBLE else None
