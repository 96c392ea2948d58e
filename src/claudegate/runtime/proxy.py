"""Pass-through for the routes outside flow control (models, count_tokens, batches, the probe route):
the same relay as the pipeline, to the preferred upstream (a batch: to the one it lives on), without
metering."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from claudegate.pipeline.relay import ClientGone, ReplyResult, forwarded_headers, open_reply, relay
from claudegate.pipeline.sink import AsgiSink
from claudegate.runtime.call import GatewayCall
from claudegate.runtime.services import Services
from claudegate.upstream.target import Upstream

__all__ = ["forward"]


async def forward(
    call: GatewayCall,
    services: Services,
    *,
    rewrite: Callable[[int, bytes], Awaitable[bytes]] | None = None,
    upstream: Upstream | None = None,
) -> ReplyResult:
    """Relay the call to ``upstream`` (by default the preferred one) and its reply back. A client that
    leaves ends it quietly; errors reaching the upstream raise ClaudegateError with nothing sent yet."""
    upstream = upstream or services.upstream
    sink = AsgiSink(call.receive, call.send, [call.id_header])
    if call.body is not None:
        sink.watch()
    result = ReplyResult()
    try:
        response = await open_reply(
            services.http,
            upstream,
            method=call.scope["method"],
            path_and_query=call.path_and_query,
            headers=forwarded_headers(call.scope["headers"], upstream),
            body=call.body,
            sink=sink,
        )
        try:
            await relay(response, sink, result, rewrite=rewrite)
        finally:
            response.release()
    except ClientGone:
        result.client_gone = True
    finally:
        sink.close()
    return result
