"""HTTP compression at the gateway's front door: gzip replies for clients that ask, gzip request bodies.

Replies (JSON and server-sent events) are compressed only when the client's ``accept-encoding`` names gzip;
otherwise every byte passes as the upstream sent it. A stream is flushed (``Z_SYNC_FLUSH``) after every chunk
the gateway relays, so each event reaches the client as soon as it would uncompressed: compression never holds
back a token. Small one-piece replies (errors, tiny JSON) go out plain: gzip would make them bigger.

A request body sent with ``content-encoding: gzip`` (or ``deflate``) is inflated before the gateway reads it,
with the gateway's body limit applied to the inflated size, so a small compressed bomb is refused (413)
after inflating at most one byte more than the limit.

Hand-written over Starlette's GZipMiddleware: that one buffers nothing per event but compresses only replies,
inflates no request bodies, and does not know the gateway's error envelope.
"""

from __future__ import annotations

import zlib
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.types import Message, Receive, Scope, Send

from claudegate.errors import ClaudegateError, InvalidRequestError, RequestTooLargeError
from claudegate.server.asgi import send_error
from claudegate.server.call import new_request_id

__all__ = ["MIN_COMPRESSED_BYTES", "compressing", "wants_gzip"]

Handler = Callable[[Scope, Receive, Send], Awaitable[None]]

MIN_COMPRESSED_BYTES = 512  # a one-piece reply smaller than this goes out plain
_COMPRESSIBLE = (b"application/json", b"text/event-stream")
_GZIP_WBITS = 31  # zlib's window bits for a gzip wrapper
_INFLATE_WBITS = 47
_STREAM_LEVEL = 1
_SPLIT_FIRST_BYTES = 2048
_JSON_LEVEL = 6  # inflate a gzip or zlib wrapper, whichever the body has


def wants_gzip(accept_encoding: bytes | None) -> bool:
    """Whether an ``accept-encoding`` value accepts gzip (``gzip;q=0`` refuses it)."""
    if not accept_encoding:
        return False
    for part in accept_encoding.lower().split(b","):
        coding, _, params = part.partition(b";")
        if coding.strip() not in (b"gzip", b"*"):
            continue
        quality = params.strip()
        if quality.startswith(b"q="):
            try:
                return float(quality[2:]) > 0
            except ValueError:
                return False
        return True
    return False


def compressing(handler: Handler, body_limit: int) -> Handler:
    """``handler`` with gzip for replies that may be compressed and inflation of compressed request bodies."""

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
        if wants_gzip(accept):
            send = _GzipSend(send).send
        await handler(scope, receive, send)

    return app


async def _inflating(scope: Scope, receive: Receive, encoding: bytes, limit: int) -> tuple[Scope, Receive]:
    if encoding not in (b"gzip", b"x-gzip", b"deflate"):
        raise InvalidRequestError(
            f"content-encoding: {encoding.decode('latin-1')} is not accepted; send gzip, deflate or identity"
        )
    inflater = zlib.decompressobj(_INFLATE_WBITS)
    body = bytearray()
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionResetError("client disconnected while sending its request")
        more = bool(message.get("more_body", False))
        try:
            body += inflater.decompress(message.get("body", b""), limit + 1 - len(body))
        except zlib.error as error:
            reason = f"content-encoding: the body is not valid {encoding.decode()}: {error}"
            raise InvalidRequestError(reason) from None
        if len(body) > limit:
            raise RequestTooLargeError("Request exceeds the maximum allowed number of bytes (once inflated).")
    if not inflater.eof:
        raise InvalidRequestError(f"content-encoding: the {encoding.decode()} body is cut short")
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


class _GzipSend:
    """Wraps ``send``: decides at the first body chunk whether the reply is compressed, then deflates each
    chunk and flushes it at once."""

    __slots__ = ("_compressor", "_send", "_start")

    def __init__(self, send: Send) -> None:
        self._send = send
        self._start: dict[str, Any] | None = None
        self._compressor: Any = None

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
                level = _STREAM_LEVEL if kind_of == b"text/event-stream" else _JSON_LEVEL
                self._compressor = zlib.compressobj(level, zlib.DEFLATED, _GZIP_WBITS)
                start["headers"] = [
                    *((name, value) for name, value in start["headers"] if name != b"content-length"),
                    (b"content-encoding", b"gzip"),
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
                first = compressor.compress(chunk[:end]) + compressor.flush(zlib.Z_SYNC_FLUSH)
                await self._send({"type": "http.response.body", "body": first, "more_body": True})
                chunk = chunk[end:]
        data = compressor.compress(chunk) + compressor.flush(zlib.Z_SYNC_FLUSH if more else zlib.Z_FINISH)
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
