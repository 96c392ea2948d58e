"""Sending a call upstream and relaying the reply byte for byte to a sink while metering it.

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
from typing import Any

from claudegate.errors import ApiError, ClaudegateError, GatewayTimeoutError
from claudegate.pipeline.sink import RawHeaders, ResponseSink
from claudegate.upstream.http import HttpClient, HttpResponse
from claudegate.upstream.target import Upstream
from claudegate.wire.usage_tap import Usage, UsageTap, usage_from_message

__all__ = [
    "ClientGone",
    "ReplyResult",
    "UpstreamDropped",
    "cancelling",
    "forwarded_headers",
    "open_reply",
    "relay",
    "reply_headers",
    "unreachable",
]

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
    """The upstream cut a reply after bytes of it reached the client: the front door ends the client's reply
    with an error (an SSE ``error`` event for the gateway's streams), or cuts its connection too."""


class ClientGone(Exception):  # noqa: N818 - names an event
    """The client disconnected before its reply was complete."""


def forwarded_headers(raw: RawHeaders, upstream: Upstream) -> RawHeaders:
    """The client's headers as the upstream receives them. ``raw`` has lower-case names (as ASGI servers
    and the in-process client give them)."""
    headers = [
        (name, value)
        for name, value in raw
        if name not in _DROP_REQUEST and not name.startswith(b"x-claudegate-")
    ]
    headers.append((b"x-api-key", upstream.api_key_bytes))
    headers.append((b"accept-encoding", b"identity"))  # the gateway reads usage from replies; keep them plain
    return headers


@dataclass(slots=True)
class ReplyResult:
    """What a reply said about itself, filled in as it passes (so a reply cut short is still accounted)."""

    status: int = 0
    streamed: bool = False
    usage: Usage = field(default_factory=Usage)
    model: str | None = None
    error_type: str | None = None
    upstream_request_id: str | None = None
    first_byte_at: float | None = None
    first_token_at: float | None = None
    client_gone: bool = False
    upstream: str | None = None  # the upstream of the latest attempt
    attempts: int = 0
    message_id: str | None = None
    admission_wait_s: float = 0.0  # time spent waiting for admission, every attempt's together
    attempt_log: list[dict[str, Any]] = field(default_factory=list)  # one entry per attempt (diagnostics)


async def open_reply(
    client: HttpClient,
    upstream: Upstream,
    *,
    method: str = "POST",
    path_and_query: str,
    headers: RawHeaders,
    body: bytes | None,
    sink: ResponseSink,
) -> HttpResponse:
    """Send the call and wait for the reply's status and headers.

    Raises ApiError/GatewayTimeoutError when the upstream cannot be reached (nothing has reached the
    client, so the caller may retry), and ClientGone when the client leaves first: the pending upstream
    call is then abandoned at once, so a non-streamed reply stops being generated for nobody.
    """
    if sink.gone.is_set():
        raise ClientGone
    # The request runs in the caller's own task, which a client leaving cancels (as asyncio.timeout does
    # on expiry): a task of its own per call cost a task and a turn of the event loop before the upstream
    # write, on every call, for the rare client that leaves.
    task = asyncio.current_task()
    assert task is not None
    abandoned = False
    waiting = True

    def abandon() -> None:
        nonlocal abandoned
        if waiting and not abandoned:
            abandoned = True
            task.cancel()

    sink.on_gone(abandon)
    try:
        try:
            response = await client.request(method, upstream.base_url + path_and_query, headers, body)
        finally:
            waiting = False
    except asyncio.CancelledError:
        # Only the client's leaving, taken back, makes this ClientGone: a cancellation of the task from
        # elsewhere (shutdown, an in-process caller's timeout) still propagates.
        if abandoned and task.uncancel() == 0:
            raise ClientGone from None
        raise
    except (ConnectionError, TimeoutError) as error:
        _gone_first(task, abandoned)
        raise unreachable(upstream, error) from None
    if abandoned or sink.gone.is_set():  # the client left just as the reply began
        response.close()
        _gone_first(task, abandoned)
        raise ClientGone
    sink.on_gone(response.close)
    return response


def unreachable(upstream: Upstream, error: ConnectionError | TimeoutError) -> ClaudegateError:
    """The gateway's error for an upstream that could not be reached, or did not answer in time."""
    if isinstance(error, TimeoutError):
        return GatewayTimeoutError(f"The upstream {upstream.name} did not answer in time")
    return ApiError(f"The upstream {upstream.name} could not be reached: {error}")


def _gone_first(task: asyncio.Task[Any], abandoned: bool) -> None:
    """If the client's leaving cancelled the task but the request ended otherwise, take the cancellation
    back (it must not hit a later await) and report the client gone instead."""
    if abandoned:
        task.uncancel()
        raise ClientGone


def reply_headers(response: HttpResponse) -> RawHeaders:
    return [(k, v) for k, v in response.raw_headers if k.lower() not in _DROP_RESPONSE]


async def relay(
    response: HttpResponse,
    sink: ResponseSink,
    result: ReplyResult,
    *,
    rewrite: Callable[[int, bytes], Awaitable[bytes]] | None = None,
    body: bytes | None = None,
) -> None:
    """Pass the reply to the sink unchanged (``rewrite`` may edit a JSON body; ``body`` is a JSON body
    already read, e.g. an error that was considered for a retry)."""
    result.status = response.status
    headers = reply_headers(response)
    result.upstream_request_id = response.headers.get("request-id")
    result.streamed = response.headers.get("content-type", "").startswith("text/event-stream")

    if not result.streamed:
        if body is None:
            try:
                body = await response.read()
            except (ConnectionError, TimeoutError):
                if sink.gone.is_set():
                    result.client_gone = True
                    raise ClientGone from None
                raise ApiError("The upstream closed the connection before its reply was complete") from None
        result.first_byte_at = time.perf_counter()
        result.usage, result.model, result.error_type, result.message_id = usage_from_message(body)
        if rewrite is not None:
            body = await rewrite(response.status, body)
        headers.append((b"content-length", str(len(body)).encode()))
        await sink.start(response.status, headers)
        await sink.send(body, more=False)
        return

    tap = UsageTap()
    await sink.start(response.status, headers)
    result.first_byte_at = time.perf_counter()
    try:
        async for chunk in response.iter_chunks():
            tap.feed(chunk)
            if result.first_token_at is None and tap.first_content:
                result.first_token_at = time.perf_counter()
            await sink.send(chunk, more=True)
    except asyncio.CancelledError:
        _settle(result, tap)  # the record keeps the tokens produced so far
        raise
    except (ConnectionError, TimeoutError) as error:
        _settle(result, tap)
        if sink.gone.is_set():
            _client_left(result, tap)
            return
        result.error_type = result.error_type or "api_error"
        raise UpstreamDropped(str(error)) from None
    _settle(result, tap)
    if sink.gone.is_set():
        _client_left(result, tap)
        return
    with contextlib.suppress(OSError):
        await sink.send(b"", more=False)


def cancelling() -> bool:
    """Whether the running task itself is being cancelled (as opposed to a task it waits on)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _client_left(result: ReplyResult, tap: UsageTap) -> None:
    """The client hung up during a stream. If the upstream's reply had already ended (``message_stop``, or an
    ``error`` event, after which clients such as the SDK close at once), the call is what the upstream made
    it; otherwise the client cut it short (ClientGone)."""
    result.client_gone = True
    if not tap.completed and tap.error_type is None:
        raise ClientGone


def _settle(result: ReplyResult, tap: UsageTap) -> None:
    result.usage = tap.finish()
    result.model = tap.model
    result.message_id = tap.message_id
    result.error_type = tap.error_type
    if not tap.completed and result.error_type is None:
        result.error_type = "incomplete_stream"
