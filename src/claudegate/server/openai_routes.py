"""OpenAI's Chat Completions API in front of the pipeline: ``POST /v1/chat/completions``, and
``GET /v1/models`` in OpenAI's shape.

A call is authenticated (``Authorization: Bearer cg-…``, as OpenAI's SDKs send it), translated to a Messages
request (``claudegate.openai``), and run by the same pipeline as ``/v1/messages``: budgets, tenant limits,
admission, retries, failover and one usage record (``api`` = ``openai``). The reply is translated back as it
passes (``OpenAISink``); every error, the gateway's own included, is answered in OpenAI's envelope.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from claudegate.errors import (
    ClaudegateError,
    MethodNotAllowedError,
    NotFoundError,
    RateLimitError,
    retry_after_headers,
)
from claudegate.keys import Identity
from claudegate.openai import (
    UnsupportedParameterError,
    model_list,
    model_object,
    translate_error,
    translate_request,
)
from claudegate.pipeline.budgets import BudgetExceededError
from claudegate.pipeline.describe import MAX_BODY_BYTES, bare_call, describe_call
from claudegate.pipeline.request import CallRequest
from claudegate.runtime.asgi import GATEWAY_ORIGIN, RawHeaders, header, send_json
from claudegate.runtime.call import GatewayCall, read_json_body
from claudegate.runtime.services import Services
from claudegate.server.openai_sink import OpenAISink
from claudegate.wire.models import default_catalog

__all__ = ["ANTHROPIC_VERSION", "chat_completions", "models", "send_openai_error", "wants_openai_models"]

ANTHROPIC_VERSION: Final = b"2023-06-01"
# Headers of OpenAI's SDKs that mean nothing to an Anthropic upstream.
_CLIENT_ONLY: Final = (b"openai-", b"x-stainless-", b"anthropic-version")

Authenticate = Callable[[GatewayCall], Awaitable[Identity]]


def wants_openai_models(call: GatewayCall) -> bool:
    """``GET /v1/models`` answers in OpenAI's shape to a client that sends neither ``anthropic-version`` nor
    ``x-api-key`` (the OpenAI SDKs send a bearer token and no version); Anthropic's SDKs and Claude Code send
    a version, and a bare ``x-api-key`` is Anthropic's way of authenticating."""
    return header(call.scope, b"anthropic-version") is None and header(call.scope, b"x-api-key") is None


async def send_openai_error(call: GatewayCall, error: ClaudegateError) -> None:
    """An error the gateway made, in OpenAI's envelope, marked as the gateway's."""
    param = error.param if isinstance(error, UnsupportedParameterError) else None
    translated = translate_error(error.status, error.error_type, error.message, param=param)
    rid = call.request_id.encode()
    headers: RawHeaders = [GATEWAY_ORIGIN, (b"x-request-id", rid), call.id_header]
    if isinstance(error, RateLimitError):
        headers.extend((k.encode(), v.encode()) for k, v in retry_after_headers(error.retry_after))
        headers.extend((k.encode(), v.encode()) for k, v in error.headers)
    if translated.no_retry:
        headers.append((b"x-should-retry", b"false"))
    if isinstance(error, BudgetExceededError):
        until = (error.resets_at - datetime.now(UTC)).total_seconds()
        headers.append((b"retry-after", str(max(1, math.ceil(until))).encode()))
    await send_json(call.send, translated.status, translated.body, headers)


async def models(call: GatewayCall, authenticate: Authenticate) -> None:
    """``GET /v1/models`` and ``GET /v1/models/{id}`` in OpenAI's shape, from the gateway's catalogue."""
    try:
        if call.scope["method"] != "GET":
            raise MethodNotAllowedError(call.scope["method"], call.scope["path"], ("GET",))
        await authenticate(call)
        catalog = default_catalog()
        name = call.scope["path"].removeprefix("/v1/models").removeprefix("/")
        if not name:
            body = model_list(catalog)
        else:
            info = catalog.resolve(name)
            if info is None:
                raise NotFoundError(f"The model '{name}' does not exist")
            body = orjson.dumps(model_object(info))
    except ClaudegateError as error:
        await send_openai_error(call, error)
        return
    await send_json(call.send, 200, body, [(b"x-request-id", call.request_id.encode()), call.id_header])


async def chat_completions(call: GatewayCall, services: Services, authenticate: Authenticate) -> None:
    """``POST /v1/chat/completions``: one call through the pipeline, in OpenAI's terms."""
    try:
        if call.scope["method"] != "POST":
            raise MethodNotAllowedError(call.scope["method"], call.scope["path"], ("POST",))
        identity = await authenticate(call)
    except ClaudegateError as error:
        await send_openai_error(call, error)
        return
    pipeline = services.pipeline
    headers = _upstream_headers(call.scope["headers"])
    fields: dict[str, Any] | None = None  # the body as parsed, for the record of a refusal
    try:
        fields = await read_json_body(call, MAX_BODY_BYTES)
        translated = translate_request(fields, default_catalog())
        body = orjson.dumps(translated.body)
        request = describe_call(
            translated.body,
            body,
            identity=identity,
            settings=services.settings,
            policies=services.policies,
            upstreams=len(services.pool.members),
            headers=headers,
            asked=call.scope["headers"],
            request_id=call.request_id,
            started=call.started,
            api="openai",
        )
    except ClaudegateError as error:
        # One usage record for every authenticated call.
        pipeline.record_refusal(_bare(call, identity, headers, fields, services), error)
        await send_openai_error(call, error)
        return
    except ConnectionResetError:
        pipeline.record_refusal(_bare(call, identity, headers, fields, services), None)
        return
    rid = call.request_id.encode()
    sink = OpenAISink(
        call.receive,
        call.send,
        [(b"x-request-id", rid), call.id_header],
        include_usage=translated.include_usage,
    )
    sink.watch()
    try:
        await pipeline.run(request, sink)
    except ClaudegateError as error:
        await send_openai_error(call, error)
    finally:
        sink.close()


def _bare(
    call: GatewayCall,
    identity: Identity,
    headers: RawHeaders,
    fields: Mapping[str, Any] | None,
    services: Services,
) -> CallRequest:
    return bare_call(
        identity,
        call.request_id,
        fields=fields,
        policies=services.policies,
        headers=headers,
        started=call.started,
        api="openai",
    )


def _upstream_headers(raw: RawHeaders) -> RawHeaders:
    """The client's headers as the Messages call carries them: OpenAI's own left out, Anthropic's version
    added (the translation speaks the stable Messages API)."""
    headers = [(name, value) for name, value in raw if not name.startswith(_CLIENT_ONLY)]
    headers.append((b"anthropic-version", ANTHROPIC_VERSION))
    return headers
