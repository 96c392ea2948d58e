"""Small raw-ASGI helpers for the gateway's hot path.

The gateway's ``/v1`` routes are plain ASGI rather than framework endpoints: at a budget of half a
millisecond of CPU per call, a framework's request and response objects are a noticeable share
(design.md measures the difference); admin and chat routes, which are not hot, use Starlette.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import Receive, Scope, Send

from claudegate.errors import ClaudegateError, RateLimitError, retry_after_headers

__all__ = [
    "GATEWAY_ORIGIN",
    "RawHeaders",
    "header",
    "read_body",
    "send_error",
    "send_json",
]

RawHeaders = list[tuple[bytes, bytes]]

# Marks errors the gateway made itself, so they can be told apart from errors the upstream returned.
GATEWAY_ORIGIN = (b"x-claudegate-origin", b"gateway")


def header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return value  # type: ignore[no-any-return]
    return None


async def read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole request body, or None once it exceeds ``limit`` bytes (the rest is left unread)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionResetError("client disconnected while sending its request")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def send_json(
    send: Send,
    status: int,
    body: bytes,
    headers: Iterable[tuple[bytes, bytes]] = (),
    content_type: bytes = b"application/json",
) -> None:
    raw: RawHeaders = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    raw.extend(headers)
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def send_error(
    send: Send, error: ClaudegateError, request_id: str, extra: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    """Anthropic's error envelope for an error the gateway made, marked as the gateway's.

    The gateway's request id goes in ``request-id`` too, where SDKs look for it (``error.request_id``).
    """
    rid = request_id.encode()
    headers: RawHeaders = [GATEWAY_ORIGIN, (b"request-id", rid), (b"x-claudegate-request-id", rid), *extra]
    if isinstance(error, RateLimitError):
        headers.extend((k.encode(), v.encode()) for k, v in retry_after_headers(error.retry_after))
        headers.extend((k.encode(), v.encode()) for k, v in error.headers)
    await send_json(send, error.status, error.body(request_id), headers)
