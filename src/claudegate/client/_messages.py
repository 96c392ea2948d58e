"""``client.messages``: ``create``, ``stream`` and ``count_tokens`` with the official SDK's parameters and
return types, plus claudegate's own keyword-only ``deadline_s``, ``priority`` and ``on_queued``.

``create`` and ``stream`` run the call through the pipeline (flow control, retries, failover, usage
record); ``count_tokens``, like the gateway's route, goes to the preferred upstream directly, outside flow
control and unmetered.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from functools import partial
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast, overload

import anthropic
import orjson
import pydantic
from anthropic.lib._parse._response import parse_response
from anthropic.lib._parse._transform import transformed_json_schema
from anthropic.types import Message, MessageCountTokensParams, MessageTokensCount, ParsedMessage
from anthropic.types.message_create_params import (
    MessageCreateParamsBase,
    MessageCreateParamsNonStreaming,
    MessageCreateParamsStreaming,
)

from claudegate.client._batches import AsyncBatches
from claudegate.client._conversation import create_continued
from claudegate.client._errors import error_from_reply, translate
from claudegate.client._exchange import Exchange, ReplyLost
from claudegate.client._params import Prepared, prepare
from claudegate.client._streams import AsyncEventStream, AsyncMessageStreamManager
from claudegate.errors import ClaudegateError
from claudegate.pipeline.describe import bare_call, describe_call
from claudegate.pipeline.policies import PolicyBook
from claudegate.pipeline.relay import ReplyResult, UpstreamDropped, forwarded_headers, open_reply, relay
from claudegate.pipeline.request import CallRequest, new_request_id
from claudegate.pipeline.sink import RawHeaders, ResponseSink
from claudegate.runtime import files as file_routes
from claudegate.runtime.services import Services

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from claudegate.client._client import AsyncClient

__all__ = ["AsyncMessages", "AsyncRawMessages", "OnQueued", "RawResponse"]

OnQueued = Callable[[int, float], None]
"""Hears ``(position, predicted wait in seconds)`` when a call has to wait for its turn."""

_TRANSLATED = (ClaudegateError, UpstreamDropped, ReplyLost, TimeoutError)
_MESSAGES_PATH = "/v1/messages"
_COUNT_TOKENS_PATH = "/v1/messages/count_tokens"


_Reply = TypeVar("_Reply", bound=anthropic.BaseModel)
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class _Options:
    """What a call says about itself besides its body."""

    deadline_s: float | None
    priority: int | None
    on_queued: OnQueued | None
    betas: Iterable[str] | None
    extra_headers: Mapping[str, object] | None
    extra_query: Mapping[str, object] | None
    extra_body: Mapping[str, object] | None
    timeout: float | None
    loop_id: str | None = None  # set by a tool runner on each of its calls
    # The model a reply is read as: the beta namespace reads BetaMessage (its create is typed for it).
    reply_type: type[anthropic.BaseModel] = Message
    on_head: Callable[[int, RawHeaders], None] | None = None  # hears the reply's status and headers


class RawResponse(Generic[_T]):
    """A reply with its HTTP status and headers, as the SDK's ``with_raw_response`` gives: ``parse()`` is
    the reply itself."""

    def __init__(self, status: int, headers: RawHeaders, parsed: _T) -> None:
        self.status_code = status
        self.headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in headers}
        self._parsed = parsed

    @property
    def request_id(self) -> str | None:
        return self.headers.get("request-id")

    def parse(self) -> _T:
        return self._parsed


class AsyncRawMessages:
    """``client.messages.with_raw_response``: ``create`` with the reply's status and headers."""

    def __init__(self, messages: AsyncMessages) -> None:
        self._messages = messages

    async def create(
        self,
        *,
        deadline_s: float | None = None,
        priority: int | None = None,
        on_queued: OnQueued | None = None,
        betas: Iterable[str] | None = None,
        extra_headers: Mapping[str, object] | None = None,
        extra_query: Mapping[str, object] | None = None,
        extra_body: Mapping[str, object] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - the SDK's parameter
        **params: Any,
    ) -> RawResponse[Message | AsyncEventStream]:
        head: list[tuple[int, RawHeaders]] = []
        options = _Options(
            deadline_s,
            priority,
            on_queued,
            betas,
            extra_headers,
            extra_query,
            extra_body,
            timeout,
            on_head=lambda status, headers: head.append((status, headers)),
        )
        result = await self._messages._create(params, options)
        status, headers = head[0]
        return RawResponse(status, headers, result)


class AsyncMessages:
    def __init__(self, client: AsyncClient) -> None:
        self._client = client
        self.with_raw_response = AsyncRawMessages(self)
        self.batches = AsyncBatches(client)

    @overload
    async def create(
        self,
        *,
        deadline_s: float | None = None,
        priority: int | None = None,
        on_queued: OnQueued | None = None,
        betas: Iterable[str] | None = None,
        extra_headers: Mapping[str, object] | None = None,
        extra_query: Mapping[str, object] | None = None,
        extra_body: Mapping[str, object] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - the SDK's parameter
        **params: Unpack[MessageCreateParamsNonStreaming],
    ) -> Message: ...

    @overload
    async def create(
        self,
        *,
        deadline_s: float | None = None,
        priority: int | None = None,
        on_queued: OnQueued | None = None,
        betas: Iterable[str] | None = None,
        extra_headers: Mapping[str, object] | None = None,
        extra_query: Mapping[str, object] | None = None,
        extra_body: Mapping[str, object] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - the SDK's parameter
        **params: Unpack[MessageCreateParamsStreaming],
    ) -> AsyncEventStream: ...

    async def create(
        self,
        *,
        deadline_s: float | None = None,
        priority: int | None = None,
        on_queued: OnQueued | None = None,
        betas: Iterable[str] | None = None,
        extra_headers: Mapping[str, object] | None = None,
        extra_query: Mapping[str, object] | None = None,
        extra_body: Mapping[str, object] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - the SDK's parameter
        **params: Any,
    ) -> Message | AsyncEventStream:
        """Send a message, as ``anthropic.AsyncAnthropic().messages.create``: a Message, or with
        ``stream=True`` a stream of raw events (errors before the reply starts are raised here).

        ``deadline_s``: how long the call may wait for its turn before it starts (default: the key's
        default deadline, else ``default_deadline_s``); a call that cannot start in time raises
        ``anthropic.RateLimitError`` at once, its ``retry-after`` header saying when it could.
        ``priority``: higher goes first (default: the key's). ``on_queued(position, wait)`` is called when
        the call has to wait (from the event loop running the client). ``timeout``: seconds for the whole
        reply, or between two chunks of a stream (``anthropic.APITimeoutError``; default none). Other
        keyword arguments go into the request body, as ``extra_body`` does.
        """
        options = _Options(
            deadline_s, priority, on_queued, betas, extra_headers, extra_query, extra_body, timeout
        )
        return await self._create(params, options)

    def stream(
        self,
        *,
        deadline_s: float | None = None,
        priority: int | None = None,
        on_queued: OnQueued | None = None,
        betas: Iterable[str] | None = None,
        extra_headers: Mapping[str, object] | None = None,
        extra_query: Mapping[str, object] | None = None,
        extra_body: Mapping[str, object] | None = None,
        timeout: float | None = None,
        **params: Unpack[MessageCreateParamsBase],
    ) -> AsyncMessageStreamManager:
        """``async with client.messages.stream(...) as stream``, as the SDK's: ``stream.text_stream``,
        ``async for event in stream``, ``await stream.get_final_message()``. Same parameters as
        :meth:`create`."""
        options = _Options(
            deadline_s, priority, on_queued, betas, extra_headers, extra_query, extra_body, timeout
        )
        body_params: dict[str, Any] = {**params, "stream": True}

        async def open_stream() -> AsyncEventStream:
            opened = await self._create(body_params, options)
            assert isinstance(opened, AsyncEventStream)
            return opened

        return AsyncMessageStreamManager(open_stream)

    async def parse(self, *, output_format: type[_T] | None = None, **params: Any) -> ParsedMessage[_T]:
        """As the SDK's ``messages.parse``: ``output_format`` (a Pydantic model, or any type a
        ``pydantic.TypeAdapter`` takes) becomes the request's JSON-schema output format, and the reply's text
        blocks carry ``parsed_output`` (``message.parsed_output``: the first). Takes :meth:`create`'s other
        parameters (not ``stream``)."""
        if params.get("stream") is True:
            raise TypeError("parse does not stream; use stream() and parse the final text")
        if output_format is not None:
            if isinstance(output_format, str | Mapping):
                raise TypeError("output_format must be a type; pass a schema as output_config={'format': …}")
            schema = transformed_json_schema(pydantic.TypeAdapter(output_format))
            given = params.get("output_config") or {}
            params = {
                **params,
                "output_config": {**given, "format": {"type": "json_schema", "schema": schema}},
            }
        message = await self.create(**params)
        assert isinstance(message, Message)
        return parse_response(
            response=message,
            output_format=cast(_T, output_format if output_format is not None else anthropic.NOT_GIVEN),
        )

    async def create_continued(self, *, max_continuations: int | None = None, **params: Any) -> Message:
        """:meth:`create`, continued while the reply stops at ``max_tokens`` (up to ``max_continuations``
        times, default: the ``continuation_max`` setting): one Message holding the whole answer, with the
        usage of every call summed. Takes :meth:`create`'s parameters (not ``stream``)."""
        if params.get("stream") is True:
            raise TypeError("create_continued does not stream; use create(stream=True)")
        limit = self._client.settings.continuation_max if max_continuations is None else max_continuations
        return await create_continued(self.create, params, max_continuations=limit)

    async def count_tokens(
        self,
        *,
        betas: Iterable[str] | None = None,
        extra_headers: Mapping[str, object] | None = None,
        extra_query: Mapping[str, object] | None = None,
        extra_body: Mapping[str, object] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - the SDK's parameter
        **params: Unpack[MessageCountTokensParams],
    ) -> MessageTokensCount:
        """Count a request's input tokens, as the SDK's ``messages.count_tokens`` (outside flow control)."""
        _require(params, ("messages", "model"))
        # A model policy counts as its first model (count_tokens has no fallback: it is not a generation).
        chain = PolicyBook.from_settings(self._client.settings.model_policies).chain(str(params["model"]))
        sent: Mapping[str, object] = params if chain is None else {**params, "model": chain[0]}
        defaults = self._client.defaults
        timeout = timeout if timeout is not None else defaults.timeout
        prepared = prepare(
            _COUNT_TOKENS_PATH,
            sent,
            betas=betas,
            extra_headers={**(defaults.headers or {}), **(extra_headers or {})},
            extra_query=extra_query,
            extra_body=extra_body,
        )
        request_id = new_request_id()
        try:
            services = await self._client.open()
            await self._client.identity()  # a bad key is refused here too, as by the gateway
            exchange = self._client.start(partial(_pass_through, services, prepared))
            status, headers, body = await _head(exchange, timeout, read_body=True)
        except _TRANSLATED as error:
            raise translate(error, request_id=request_id, path=prepared.path_and_query) from None
        if status >= 400:
            raise error_from_reply(status, headers, body, path=prepared.path_and_query)
        return _parse(MessageTokensCount, body, headers)

    def _defaulted(self, options: _Options) -> _Options:
        """``options`` with the client's defaults (``with_options``) where the call set none."""
        defaults = self._client.defaults
        return replace(
            options,
            deadline_s=options.deadline_s if options.deadline_s is not None else defaults.deadline_s,
            priority=options.priority if options.priority is not None else defaults.priority,
            timeout=options.timeout if options.timeout is not None else defaults.timeout,
            extra_headers={**(defaults.headers or {}), **(options.extra_headers or {})} or None,
        )

    async def _create(self, params: dict[str, Any], options: _Options) -> Message | AsyncEventStream:
        _require(params, ("max_tokens", "messages", "model"))
        options = self._defaulted(options)
        prepared = prepare(
            _MESSAGES_PATH,
            params,
            betas=options.betas,
            extra_headers=options.extra_headers,
            extra_query=options.extra_query,
            extra_body=options.extra_body,
        )
        request_id = new_request_id()
        translating = partial(translate, request_id=request_id, path=prepared.path_and_query)
        stream = params.get("stream") is True
        try:
            exchange = await self._run(prepared, request_id, options)
            status, headers, body = await _head(exchange, options.timeout, read_body=not stream)
        except _TRANSLATED as error:
            raise translating(error) from None
        if status >= 400:
            raise error_from_reply(status, headers, body, path=prepared.path_and_query)
        if options.on_head is not None:
            options.on_head(status, headers)
        if stream:
            return AsyncEventStream(
                exchange, path=prepared.path_and_query, translate=translating, timeout=options.timeout
            )
        return cast(Message, _parse(options.reply_type, body, headers))

    async def _run(self, prepared: Prepared, request_id: str, options: _Options) -> Exchange:
        """Start the call in the pipeline, described as every front door describes its calls."""
        services = await self._client.open()
        identity = await self._client.identity()
        pipeline = services.pipeline
        call: CallRequest | None = None  # the usage record of a refusal says what is known of the call
        try:
            call = describe_call(
                prepared.fields,
                prepared.body,
                identity=identity,
                settings=services.settings,
                policies=services.policies,
                upstreams=len(services.pool.members),
                headers=prepared.headers,
                request_id=request_id,
                deadline_s=options.deadline_s,
                priority=options.priority,
                path_and_query=prepared.path_and_query,
                on_queued=options.on_queued,
                loop_id=options.loop_id,
            )
            # As the gateway does: a message may cite only files its own organisation uploaded.
            await file_routes.check_cited_files(services, identity.org_id, prepared.fields)
        except ClaudegateError as error:
            refused = call or bare_call(
                identity,
                request_id,
                fields=prepared.fields,
                policies=services.policies,
                headers=prepared.headers,
            )
            pipeline.record_refusal(refused, error)  # one usage record for every call, as the gateway
            raise
        return self._client.start(partial(pipeline.run, call))


async def _head(
    exchange: Exchange, seconds: float | None, *, read_body: bool
) -> tuple[int, RawHeaders, bytes]:
    """The reply's status and headers, and its body if asked or if it is an error, within ``seconds``. A
    caller that gives up (cancelled, or out of time) leaves the exchange."""
    try:
        async with asyncio.timeout(seconds):
            status, headers = await exchange.head()
            body = await exchange.read() if read_body or status >= 400 else b""
    except BaseException:
        exchange.leave()
        raise
    return status, headers, body


async def _pass_through(services: Services, prepared: Prepared, sink: ResponseSink) -> None:
    upstream = services.upstream
    response = await open_reply(
        services.http,
        upstream,
        path_and_query=prepared.path_and_query,
        headers=forwarded_headers(prepared.headers, upstream),
        body=prepared.body,
        sink=sink,
    )
    try:
        await relay(response, sink, ReplyResult())
    finally:
        response.release()


def _parse(cls: type[_Reply], body: bytes, headers: RawHeaders) -> _Reply:
    """The SDK's model for a reply, built as the SDK builds it (without validation, so that fields and
    values newer than the installed SDK pass through), with the reply's ``_request_id``."""
    result = cls.construct(**orjson.loads(body))
    result._request_id = next((v.decode() for k, v in headers if k.lower() == b"request-id"), None)
    return result


def _require(params: Mapping[str, object], names: tuple[str, ...]) -> None:
    missing = [name for name in names if name not in params]
    if missing:
        raise TypeError(f"Missing required arguments: {', '.join(repr(name) for name in missing)}")
