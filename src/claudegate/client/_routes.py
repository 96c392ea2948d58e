"""The gateway's own routes driven in process, as one ASGI exchange each (no socket): the request is handed
to them as an HTTP request would be, and their answer is read back. The in-process client's batches and files
use it, so ownership checks, upstream choice and accounting are the gateway's, not a second path to the data.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.types import Message as AsgiMessage

from claudegate.client._errors import error_from_claudegate, error_from_reply
from claudegate.client._params import API_VERSION
from claudegate.errors import ClaudegateError
from claudegate.pipeline.sink import RawHeaders
from claudegate.runtime.call import GatewayCall

if TYPE_CHECKING:
    from claudegate.client._client import AsyncClient
    from claudegate.runtime.services import Services

__all__ = ["Dispatch", "call_route"]

Dispatch = Callable[["Services", GatewayCall], Awaitable[None]]

_HOST = b"claudegate.local"


async def call_route(
    client: AsyncClient,
    dispatch: Dispatch,
    method: str,
    path: str,
    *,
    body: bytes | None = None,
    query: str = "",
    headers: RawHeaders | None = None,
) -> tuple[RawHeaders, bytes]:
    """The answer's headers and body; an error answer is raised as the SDK's exception for it.
    ``headers``: the request's own (a JSON content type unless given)."""
    services = await client.open()
    identity = await client.identity()
    given = headers if headers is not None else [(b"content-type", b"application/json")]
    request_headers: list[tuple[bytes, bytes]] = [
        (b"host", _HOST),
        (b"anthropic-version", API_VERSION.encode()),
        *given,
        *(
            (name.lower().encode("latin-1"), str(value).encode("latin-1"))
            for name, value in (client.defaults.headers or {}).items()
        ),
    ]
    scope: dict[str, Any] = {
        "type": "http",
        "method": method,
        "path": path,
        "query_string": query.encode(),
        "headers": request_headers,
        "scheme": "http",
    }
    replies: list[AsgiMessage] = []
    sent = False

    async def receive() -> AsgiMessage:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body or b"", "more_body": False}
        return {"type": "http.disconnect"}  # asked again only once the answer is complete

    async def send(message: AsgiMessage) -> None:
        replies.append(message)

    call = GatewayCall(scope, receive, send)
    call.identity = identity
    try:
        await dispatch(services, call)
    except ClaudegateError as error:
        raise error_from_claudegate(error, call.request_id, path=path) from None
    start = next(m for m in replies if m["type"] == "http.response.start")
    status = int(start["status"])
    reply_headers: RawHeaders = list(start.get("headers", []))
    data = b"".join(m.get("body", b"") for m in replies if m["type"] == "http.response.body")
    if status >= 400:
        raise error_from_reply(status, reply_headers, data, path=path)
    return reply_headers, data
