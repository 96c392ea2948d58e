"""Forwarding one call upstream and relaying the reply byte for byte while metering it.

The client's key is swapped for the upstream's; every other end-to-end header (``anthropic-version``,
``anthropic-beta``, the SDK's ``x-stainless-*``) and the query string travel unchanged. Replies come back
with the upstream's status, headers (``request-id``, ``anthropic-ratelimit-*``) and bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
from multidict import CIMultiDict

from claudegate.errors import ApiError, GatewayTimeoutError
from claudegate.server.asgi import RawHeaders
from claudegate.server.call import GatewayCall
from claudegate.upstream.target import Upstream
from claudegate.wire.usage_tap import Usage, UsageTap, usage_from_message

__all__ = ["ClientGone", "ForwardResult", "UpstreamDropped", "forward", "forwarded_headers"]

# Request headers that are the gateway's own business or describe only this hop.
_DROP_REQUEST = frozenset(
    {
        b"host",
        b"content-length",
        b"connection",
        b"keep-alive",
        b"transfer-encoding",
        b"te",
        b"trailer",
        b"upgrade",
        b"proxy-authorization",
        b"proxy-connection",
        b"x-api-key",
        b"authorization",
        b"accept-encoding",
        b"expect",
    }
)
# Response headers that describe only the upstream hop.
_DROP_RESPONSE = frozenset(
    {b"connection", b"keep-alive", b"transfer-encoding", b"content-length", b"server", b"date", b"trailer"}
)


class UpstreamDropped(Exception):  # noqa: N818 - names an event
    """The upstream cut a reply after bytes of it reached the client: the client's connection is cut too."""


class ClientGone(Exception):  # noqa: N818 - names an event
    """The client disconnected before its reply was complete."""


def forwarded_headers(raw: RawHeaders, upstream: Upstream) -> CIMultiDict[str]:
    headers: CIMultiDict[str] = CIMultiDict()
    for name, value in raw:
        if name not in _DROP_REQUEST and not name.startswith(b"x-claudegate-"):
            headers.add(name.decode("latin-1"), value.decode("latin-1"))
    headers["x-api-key"] = upstream.api_key
    headers["accept-encoding"] = "identity"  # the gateway reads usage from replies; keep them plain
    return headers


@dataclass(slots=True)
class ForwardResult:
    status: int = 0
    streamed: bool = False
    usage: Usage = field(default_factory=Usage)
    model: str | None = None
    error_type: str | None = None
    upstream_request_id: str | None = None
    first_byte_at: float | None = None
    first_token_at: float | None = None
    client_gone: bool = False


async def forward(
    call: GatewayCall,
    session: aiohttp.ClientSession,
    upstream: Upstream,
    *,
    rewrite: Callable[[int, bytes], Awaitable[bytes]] | None = None,
    result: ForwardResult | None = None,
) -> ForwardResult:
    """Send the call upstream and relay the reply to the client; return what the reply said about usage.

    Raises ClaudegateError (nothing sent yet) when the upstream cannot be reached, UpstreamDropped when it
    fails after the reply began, and ClientGone when the client disconnects (the upstream call is closed at
    once, so generation stops). Pass ``result`` to keep what was learnt before such an exception: the
    upstream's request id and the usage of the part of a stream that was relayed, which must be accounted.
    """
    body = call.body
    receive = call.receive
    if result is None:
        result = ForwardResult()
    gone = asyncio.Event()
    response: aiohttp.ClientResponse | None = None
    pending: asyncio.Task[aiohttp.ClientResponse] | None = None

    async def watch_client() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        gone.set()
        if response is not None:
            response.close()
        elif pending is not None:
            # The reply has not begun (a non-streamed reply begins only once it is complete): abandon it.
            pending.cancel()

    async def request() -> aiohttp.ClientResponse:
        return await session.request(
            call.scope["method"],
            upstream.base_url + call.path_and_query,
            headers=forwarded_headers(call.scope["headers"], upstream),
            data=body,
            allow_redirects=False,
        )

    loop = asyncio.get_running_loop()
    watcher = loop.create_task(watch_client()) if body is not None else None
    try:
        pending = loop.create_task(request())
        try:
            response = await pending
        except asyncio.CancelledError:
            if gone.is_set() and pending.cancelled() and not _cancelling():
                result.client_gone = True
                raise ClientGone from None
            raise
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as error:
            raise ApiError(
                f"The upstream {upstream.name} could not be reached: {type(error).__name__}"
            ) from None
        except TimeoutError:
            raise GatewayTimeoutError(f"The upstream {upstream.name} did not answer in time") from None
        if gone.is_set():  # the client left just as the reply began
            response.close()
            result.client_gone = True
            raise ClientGone
        await _relay(response, call, result, rewrite=rewrite, gone=gone)
    finally:
        if watcher is not None:
            watcher.cancel()
        if response is not None:
            response.release()
    return result


async def _relay(
    response: aiohttp.ClientResponse,
    call: GatewayCall,
    result: ForwardResult,
    *,
    rewrite: Callable[[int, bytes], Awaitable[bytes]] | None,
    gone: asyncio.Event,
) -> None:
    send = call.send
    result.status = response.status
    raw_headers: RawHeaders = [(k, v) for k, v in response.raw_headers if k.lower() not in _DROP_RESPONSE]
    raw_headers.append(call.id_header)
    request_id = response.headers.get("request-id")
    result.upstream_request_id = request_id
    content_type = response.headers.get("content-type", "")
    result.streamed = content_type.startswith("text/event-stream")

    if not result.streamed:
        try:
            body = await response.read()
        except (aiohttp.ClientError, asyncio.IncompleteReadError, ConnectionError):
            if gone.is_set():
                result.client_gone = True
                raise ClientGone from None
            raise ApiError("The upstream closed the connection before its reply was complete") from None
        result.first_byte_at = time.perf_counter()
        usage, model, error_type = usage_from_message(body)
        result.usage, result.model, result.error_type = usage, model, error_type
        if rewrite is not None:
            body = await rewrite(response.status, body)
        raw_headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": response.status, "headers": raw_headers})
        await send({"type": "http.response.body", "body": body})
        return

    tap = UsageTap()
    await send({"type": "http.response.start", "status": response.status, "headers": raw_headers})
    result.first_byte_at = time.perf_counter()
    try:
        async for chunk in response.content.iter_any():
            tap.feed(chunk)
            if result.first_token_at is None and tap.first_content:
                result.first_token_at = time.perf_counter()
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    except (aiohttp.ClientError, asyncio.IncompleteReadError, ConnectionError) as error:
        _settle(result, tap)
        if gone.is_set():
            _client_left(result, tap)
            return
        result.error_type = result.error_type or "api_error"
        raise UpstreamDropped(str(error)) from None
    _settle(result, tap)
    if gone.is_set():
        _client_left(result, tap)
        return
    with contextlib.suppress(OSError):
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def _cancelling() -> bool:
    """Whether the running task itself is being cancelled (as opposed to a task it waits on)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _client_left(result: ForwardResult, tap: UsageTap) -> None:
    """The client hung up during a stream. If the upstream's reply had already ended (``message_stop``, or an
    ``error`` event, after which clients such as the SDK close at once), the call is what the upstream made
    it; otherwise the client cut it short (ClientGone)."""
    result.client_gone = True
    if not tap.completed and tap.error_type is None:
        raise ClientGone


def _settle(result: ForwardResult, tap: UsageTap) -> None:
    result.usage = tap.finish()
    result.model = tap.model
    result.error_type = tap.error_type
    if not tap.completed and result.error_type is None:
        result.error_type = "incomplete_stream"
