"""The simulator's HTTP surface: Anthropic's routes, headers and error envelopes."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import re
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from claudegate.errors import (
    AuthenticationError,
    ClaudegateError,
    InvalidRequestError,
    MethodNotAllowedError,
    NotFoundError,
    RateLimitError,
    RequestTooLargeError,
)
from claudegate.simulator.engine import LedgerEntry, Prepared, SimulatorEngine
from claudegate.simulator.faults import FAULT_HEADER, error_of_type
from claudegate.simulator.files_api import file_handlers
from claudegate.simulator.generation import with_tool_input
from claudegate.simulator.plan import ReplyPlan
from claudegate.simulator.reply import (
    DroppedConnection,
    ReplyContext,
    encode_message,
    message_id,
    stream_message,
)
from claudegate.simulator.settings import SimulatorSettings
from claudegate.simulator.stops import STOP_FAULTS, stopped
from claudegate.wire.models import ModelCatalog
from claudegate.wire.models_api import lifecycle_filter
from claudegate.wire.pagination import page_params, paginate

__all__ = ["SimulatorApp", "create_app"]

REPLY_TOKENS_HEADER = "x-simulator-reply-tokens"
# No model writes more than this in one reply; max_tokens cuts a reply shorter still.
MAX_REPLY_TOKENS = 1_000_000
_WHOLE_NUMBER = re.compile(r"[0-9]+")  # ASCII digits only: str.isdigit() also takes "²"
TOOL_INPUT_HEADER = "x-simulator-tool-input"
# Anthropic documents 2023-06-01 and 2023-01-01; SDKs since 2026 send newer dated versions (2.12 sends
# 2026-10-21), so any well-formed date from 2023 on is accepted.
_VERSION = re.compile(r"^20(2[3-9]|[3-9]\d)-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$")
_JSON = "application/json"
_SSE = "text/event-stream; charset=utf-8"

Handler = Callable[[Request, str, str], Awaitable[Response]]


def _request_id() -> str:
    return "req_011C" + secrets.token_hex(10)


class _Headers:
    """Per-key constant headers (the organisation id is a stable UUID derived from the key)."""

    def __init__(self) -> None:
        self._org: dict[str, str] = {}

    def org_id(self, api_key: str) -> str:
        found = self._org.get(api_key)
        if found is None:
            digest = hashlib.blake2b(api_key.encode(), digest_size=16).digest()
            found = self._org[api_key] = str(uuid.UUID(bytes=digest))
        return found


def _error_response(
    error: ClaudegateError, request_id: str, headers: dict[str, str] | None = None
) -> Response:
    extra = list(headers.items()) if headers else []
    if isinstance(error, RateLimitError):
        extra = list(error.headers) or extra
        extra.append(("retry-after", str(max(1, round(error.retry_after)))))
    response = Response(error.body(request_id), status_code=error.status, media_type=_JSON)
    response.headers["request-id"] = request_id
    for name, value in extra:
        response.headers[name] = value
    return response


class _UnpausedStreamingResponse(Response):
    """A stream with no pauses in it, written as it is produced.

    Starlette's StreamingResponse runs a task group per response to notice a client that leaves while the
    stream waits; that costs more than producing the reply. A stream that never waits has nothing to notice:
    a client that left just makes the writes go nowhere. Paused streams keep the StreamingResponse.
    """

    def __init__(self, chunks: AsyncIterator[bytes], *, media_type: str, headers: dict[str, str]) -> None:
        self.chunks = chunks
        self.status_code = 200
        self.media_type = media_type
        self.background = None
        self.init_headers(headers)  # no body: no content-length, so the reply is sent chunked

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        async for chunk in self.chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


class SimulatorApp:
    """The ASGI app. ``POST /v1/messages``, the call load tests repeat, goes straight to its handler; every
    other route goes through Starlette's router and middleware (which cost about as much as the reply)."""

    __slots__ = ("_messages", "_router", "engine")

    def __init__(
        self, engine: SimulatorEngine, messages: Callable[[Request], Awaitable[Response]], router: Starlette
    ) -> None:
        self.engine = engine
        self._messages = messages
        self._router = router

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == "/v1/messages":
            response = await self._messages(Request(scope, receive))
            await response(scope, receive, send)
        else:
            await self._router(scope, receive, send)


class _DroppingResponse(Response):
    """Sends the headers and half the body, then cuts the connection (the ``drop_connection`` fault)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        await send(
            {"type": "http.response.body", "body": self.body[: len(self.body) // 2], "more_body": True}
        )
        raise DroppedConnection


def create_app(
    settings: SimulatorSettings | None = None, catalog: ModelCatalog | None = None
) -> SimulatorApp:
    """The simulator; ``catalog`` replaces the built-in model catalogue (to simulate an API that serves
    models this release does not know)."""
    engine = SimulatorEngine(settings or SimulatorSettings(), catalog)
    org_headers = _Headers()

    async def read_body(request: Request) -> bytes:
        limit = engine.settings.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise RequestTooLargeError("Request exceeds the maximum allowed number of bytes.")
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise RequestTooLargeError("Request exceeds the maximum allowed number of bytes.")
            chunks.append(chunk)
        return b"".join(chunks)

    def authenticate(request: Request) -> str:
        api_key = request.headers.get("x-api-key")
        if api_key is None:
            authorization = request.headers.get("authorization", "")
            if authorization.lower().startswith("bearer "):
                api_key = authorization[7:].strip()
        if not api_key:
            raise AuthenticationError("x-api-key header is required")
        if engine.settings.api_keys and api_key not in engine.settings.api_keys:
            raise AuthenticationError("invalid x-api-key")
        return api_key

    def api_route(
        handler: Handler, *, check_version: bool = True
    ) -> Callable[[Request], Awaitable[Response]]:
        """Wrap a handler with what every API call shares: request id, auth, version, betas, errors."""

        async def endpoint(request: Request) -> Response:
            request_id = _request_id()
            try:
                api_key = authenticate(request)
                if check_version:
                    version = request.headers.get("anthropic-version")
                    if version is None:
                        raise InvalidRequestError("anthropic-version: header is required")
                    if not _VERSION.match(version):
                        raise InvalidRequestError(f"anthropic-version: invalid version {version!r}")
                    engine.check_betas(request.headers.getlist("anthropic-beta"))
                response = await handler(request, api_key, request_id)
            except ClaudegateError as error:
                return _error_response(error, request_id)
            response.headers["request-id"] = request_id
            response.headers["anthropic-organization-id"] = org_headers.org_id(api_key)
            return response

        return endpoint

    def reply_tokens(request: Request) -> int | None:
        value = request.headers.get(REPLY_TOKENS_HEADER)
        if value is None:
            return None
        if _WHOLE_NUMBER.fullmatch(value) is None:
            raise InvalidRequestError(f"{REPLY_TOKENS_HEADER}: expected a whole number of tokens")
        if len(value.lstrip("0")) > len(str(MAX_REPLY_TOKENS)) or int(value) > MAX_REPLY_TOKENS:
            raise InvalidRequestError(
                f"{REPLY_TOKENS_HEADER}: {value} is more than a reply can hold; "
                f"use at most {MAX_REPLY_TOKENS}"
            )
        return int(value)

    def scripted_tool_input(request: Request, prepared: Prepared) -> Prepared:
        """A reply that calls a tool calls it with the input ``x-simulator-tool-input`` gives, if any."""
        value = request.headers.get(TOOL_INPUT_HEADER)
        if value is None or prepared.plan is None:
            return prepared
        try:
            tool_input = orjson.loads(value)
        except orjson.JSONDecodeError:
            tool_input = None
        if not isinstance(tool_input, dict):
            raise InvalidRequestError(f"{TOOL_INPUT_HEADER}: expected a JSON object (the tool's input)")
        return dataclasses.replace(prepared, plan=with_tool_input(prepared.plan, prepared.body, tool_input))

    async def messages(request: Request, api_key: str, request_id: str) -> Response:
        raw = await read_body(request)
        try:
            prepared = engine.prepare(raw, count_only=False, reply_tokens=reply_tokens(request))
            engine.check_files(api_key, prepared)
            engine.check_system_turns(prepared, request.headers.getlist("anthropic-beta"))
            prepared = scripted_tool_input(request, prepared)
            fault = engine.faults.choose(request.headers.get(FAULT_HEADER), raw)
        except ClaudegateError as refusal:  # refused as it stands: the ledger still shows the attempt
            status, error_type = refusal.status, refusal.error_type
            engine.record(LedgerEntry(request_id, api_key[-4:], "", status, False, error_type=error_type))
            raise
        stream = bool(prepared.body.get("stream"))
        entry = engine.record(
            LedgerEntry(request_id, api_key[-4:], prepared.model.id, 200, stream, completed=False)
        )
        try:
            if fault is not None and (error := fault.as_error()) is not None:
                if isinstance(error, RateLimitError):  # a scripted 429 still reports the buckets' state
                    error.headers = tuple(engine.limiter.headers(api_key, prepared.model.rate_class))
                raise error
            usage, headers = engine.admit(api_key, prepared)
        except ClaudegateError as error:
            entry.status, entry.error_type, entry.completed = error.status, error.error_type, True
            raise
        entry.input_tokens = usage.input_tokens
        entry.cache_creation_input_tokens = usage.cache_creation_input_tokens
        entry.cache_read_input_tokens = usage.cache_read_input_tokens
        ctx = engine.reply_context(prepared, usage)
        plan = prepared.plan
        assert plan is not None
        if fault is not None and fault.kind in STOP_FAULTS:
            plan = stopped(plan, fault.kind, fault.argument)
        slow = fault.slow_seconds if fault else 0.0
        if fault is not None and fault.kind == "midstream_error":
            ctx.midstream_error = fault.argument or "overloaded_error"
        ctx.drop_connection = fault is not None and fault.kind == "drop_connection"
        if stream:
            return _stream(prepared, plan, ctx, entry, dict(headers), slow=slow, api_key=api_key)
        return await _message(
            prepared, plan, ctx, entry, dict(headers), slow=slow, api_key=api_key, request_id=request_id
        )

    async def _message(
        prepared: Prepared,
        plan: ReplyPlan,
        ctx: ReplyContext,
        entry: LedgerEntry,
        headers: dict[str, str],
        *,
        slow: float,
        api_key: str,
        request_id: str,
    ) -> Response:
        delay = slow + ctx.jittered(ctx.latency.ttft_s) + ctx.generation_seconds(plan.output_tokens)
        if delay > 0:
            await asyncio.sleep(delay)
        if ctx.midstream_error:
            # Without a stream to break, an error during generation is an ordinary error response.
            error = error_of_type(ctx.midstream_error)
            entry.status, entry.error_type, entry.completed = error.status, error.error_type, True
            return _error_response(error, request_id, headers)
        engine.limiter.charge_output(api_key, prepared.model.rate_class, plan.output_tokens)
        entry.output_tokens = plan.output_tokens
        body = encode_message(plan, ctx, message_id())
        response_class = _DroppingResponse if ctx.drop_connection else Response
        entry.completed = not ctx.drop_connection
        return response_class(body, media_type=_JSON, headers=headers)

    def _stream(
        prepared: Prepared,
        plan: ReplyPlan,
        ctx: ReplyContext,
        entry: LedgerEntry,
        headers: dict[str, str],
        *,
        slow: float,
        api_key: str,
    ) -> Response:
        def produced(tokens: int) -> None:
            entry.output_tokens = tokens

        async def events() -> AsyncIterator[bytes]:
            try:
                delay = slow + ctx.jittered(ctx.latency.ttft_s)
                if delay > 0:
                    await asyncio.sleep(delay)
                async for chunk in stream_message(plan, ctx, message_id(), produced):
                    yield chunk
                entry.completed = ctx.midstream_error is None
                if ctx.midstream_error:
                    entry.error_type = ctx.midstream_error
            finally:
                engine.limiter.charge_output(api_key, prepared.model.rate_class, entry.output_tokens)

        headers["cache-control"] = "no-cache"
        if slow > 0 or not ctx.latency.is_instant:
            return StreamingResponse(events(), media_type=_SSE, headers=headers)
        return _UnpausedStreamingResponse(events(), media_type=_SSE, headers=headers)

    async def count_tokens(request: Request, api_key: str, request_id: str) -> Response:
        prepared = engine.prepare(await read_body(request), count_only=True)
        engine.check_files(api_key, prepared)
        engine.check_system_turns(prepared, request.headers.getlist("anthropic-beta"))
        engine.limiter.admit_count_tokens(api_key)
        return Response(orjson.dumps({"input_tokens": prepared.prompt.total_tokens}), media_type=_JSON)

    async def list_models(request: Request, api_key: str, request_id: str) -> Response:
        before_id, after_id, limit = page_params(request.query_params)
        page = paginate(
            engine.catalog.listed(lifecycle_filter(request.query_params.multi_items())),
            lambda m: m.id,
            lambda m: m.to_api(),
            before_id=before_id,
            after_id=after_id,
            limit=limit,
        )
        return Response(orjson.dumps(page), media_type=_JSON)

    async def get_model(request: Request, api_key: str, request_id: str) -> Response:
        model = engine.catalog.resolve(request.path_params["model_id"])
        if model is None:
            raise NotFoundError(f"model: {request.path_params['model_id']}")
        return Response(orjson.dumps(model.to_api()), media_type=_JSON)

    def base_url(request: Request) -> str:
        return f"{request.url.scheme}://{request.headers.get('host', request.url.netloc)}"

    async def create_batch(request: Request, api_key: str, request_id: str) -> Response:
        raw = await read_body(request)
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as error:
            raise InvalidRequestError(
                f"There was an error parsing the body of your request: {error}"
            ) from None
        batch = engine.batches.create(api_key, body)
        return Response(orjson.dumps(batch.to_api(base_url(request))), media_type=_JSON)

    async def list_batches(request: Request, api_key: str, request_id: str) -> Response:
        before_id, after_id, limit = page_params(request.query_params)
        url = base_url(request)
        page = paginate(
            engine.batches.list(api_key),
            lambda b: b.id,
            lambda b: b.to_api(url),
            before_id=before_id,
            after_id=after_id,
            limit=limit,
        )
        return Response(orjson.dumps(page), media_type=_JSON)

    async def get_batch(request: Request, api_key: str, request_id: str) -> Response:
        batch = engine.batches.get(api_key, request.path_params["batch_id"])
        return Response(orjson.dumps(batch.to_api(base_url(request))), media_type=_JSON)

    async def cancel_batch(request: Request, api_key: str, request_id: str) -> Response:
        batch = engine.batches.cancel(api_key, request.path_params["batch_id"])
        return Response(orjson.dumps(batch.to_api(base_url(request))), media_type=_JSON)

    async def delete_batch(request: Request, api_key: str, request_id: str) -> Response:
        batch_id = request.path_params["batch_id"]
        engine.batches.delete(api_key, batch_id)
        return Response(orjson.dumps({"id": batch_id, "type": "message_batch_deleted"}), media_type=_JSON)

    async def batch_results(request: Request, api_key: str, request_id: str) -> Response:
        batch = engine.batches.get(api_key, request.path_params["batch_id"])
        if batch.ended_at is None:
            raise InvalidRequestError(f"Message batch {batch.id} is still processing; results are not ready.")
        return Response(batch.results_jsonl(), media_type="application/x-jsonl")

    async def hello(request: Request) -> Response:
        return (
            Response(b"", status_code=200)
            if request.method == "HEAD"
            else Response(orjson.dumps({"message": "hello"}), media_type=_JSON)
        )

    async def ledger(request: Request) -> Response:
        if request.method == "DELETE":
            engine.ledger.clear()
            return Response(status_code=204)
        return Response(engine.ledger_json(), media_type=_JSON)

    async def not_found(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 404
        if status == 405:
            error: ClaudegateError = MethodNotAllowedError(request.method, request.url.path)
            return Response(error.body(_request_id()), status_code=405, media_type=_JSON)
        return _error_response(NotFoundError("Not Found"), _request_id())

    messages_endpoint = api_route(messages)
    files = file_handlers(engine.files)
    routes = [
        Route("/v1/messages", messages_endpoint, methods=["POST"]),  # reached directly: see SimulatorApp
        Route("/v1/messages/count_tokens", api_route(count_tokens), methods=["POST"]),
        Route("/v1/models", api_route(list_models, check_version=False), methods=["GET"]),
        Route("/v1/models/{model_id:path}", api_route(get_model, check_version=False), methods=["GET"]),
        Route("/v1/messages/batches", api_route(create_batch), methods=["POST"]),
        Route("/v1/messages/batches", api_route(list_batches), methods=["GET"]),
        Route("/v1/messages/batches/{batch_id}", api_route(get_batch), methods=["GET"]),
        Route("/v1/messages/batches/{batch_id}", api_route(delete_batch), methods=["DELETE"]),
        Route("/v1/messages/batches/{batch_id}/cancel", api_route(cancel_batch), methods=["POST"]),
        Route("/v1/messages/batches/{batch_id}/results", api_route(batch_results), methods=["GET"]),
        Route("/v1/files", api_route(files["upload"]), methods=["POST"]),
        Route("/v1/files", api_route(files["list"]), methods=["GET"]),
        Route("/v1/files/{file_id}", api_route(files["get"]), methods=["GET"]),
        Route("/v1/files/{file_id}", api_route(files["delete"]), methods=["DELETE"]),
        Route("/v1/files/{file_id}/content", api_route(files["download"]), methods=["GET"]),
        Route("/api/hello", hello, methods=["GET", "HEAD"]),
        Route("/_simulator/ledger", ledger, methods=["GET", "DELETE"]),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await engine.batches.close()

    router = Starlette(
        routes=routes,
        exception_handlers={HTTPException: not_found, 404: not_found, 405: not_found},
        lifespan=lifespan,
    )
    router.state.engine = engine
    return SimulatorApp(engine, messages_endpoint, router)
