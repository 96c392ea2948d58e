"""One HTTP call to the gateway: who made it, what it sent, when it started."""

from __future__ import annotations

import time
from typing import Any

import orjson
from starlette.types import Receive, Scope, Send

from claudegate.errors import InvalidRequestError, RequestTooLargeError
from claudegate.keys import Identity
from claudegate.pipeline.describe import MAX_BODY_BYTES, refuse_nul
from claudegate.pipeline.request import new_request_id
from claudegate.runtime.asgi import header, read_body
from claudegate.wire.paths import safe_query

__all__ = [
    "MAX_BATCH_BODY_BYTES",
    "MAX_BODY_BYTES",
    "MAX_FILE_BODY_BYTES",
    "GatewayCall",
    "new_request_id",
    "read_json_body",
    "read_raw_body",
    "refuse_nul",
]

MAX_BATCH_BODY_BYTES = 256 * 1024 * 1024  # and for a Message Batch
MAX_FILE_BODY_BYTES = 500 * 1024 * 1024 + 64 * 1024  # a 500 MB file (the Files API's limit) and its form


class GatewayCall:
    """One HTTP call: its identity, body and timings, shared by the routes that serve it."""

    __slots__ = ("body", "identity", "path_and_query", "receive", "request_id", "scope", "send", "started")

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scope = scope
        self.receive = receive
        self.send = send
        self.request_id = new_request_id()
        self.started = time.perf_counter()
        self.identity: Identity | None = None
        self.body: bytes | None = None
        query = scope.get("query_string", b"")
        # The path is the decoded one: routes that forward it check it first (wire.paths.canonical_path).
        self.path_and_query = scope["path"] + ("?" + safe_query(query) if query else "")

    @property
    def id_header(self) -> tuple[bytes, bytes]:
        return (b"x-claudegate-request-id", self.request_id.encode())

    def base_url(self) -> str:
        host = header(self.scope, b"host")
        return f"{self.scope.get('scheme', 'http')}://{host.decode('latin-1') if host else 'localhost'}"


async def read_json_body(call: GatewayCall, limit: int, *, stored: bool = False) -> dict[str, Any]:
    """Read the call's body, which must be a JSON object of at most ``limit`` bytes. A body whose text is
    ``stored`` must hold no NUL character (PostgreSQL cannot store one)."""
    content_type = header(call.scope, b"content-type") or b""
    body = await read_body(call.receive, limit)
    if body is None:
        raise RequestTooLargeError("Request exceeds the maximum allowed number of bytes.")
    # Media types are case-insensitive, and parameters (charset) may follow: compare the type alone.
    if content_type.split(b";", 1)[0].strip().lower() != b"application/json":
        raise InvalidRequestError(
            "content-type: the request body must be JSON (content-type: application/json)"
        )
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise InvalidRequestError(f"There was an error parsing the body of your request: {error}") from None
    if not isinstance(parsed, dict):
        raise InvalidRequestError("The request body must be a JSON object")
    if stored:
        refuse_nul(parsed)
    call.body = body
    return parsed


async def read_raw_body(call: GatewayCall, limit: int) -> bytes | None:
    """Read the call's body as it is, whatever its type, of at most ``limit`` bytes; None when empty."""
    body = await read_body(call.receive, limit)
    if body is None:
        raise RequestTooLargeError("Request exceeds the maximum allowed number of bytes.")
    call.body = body or None
    return call.body
