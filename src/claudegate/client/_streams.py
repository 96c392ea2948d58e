"""Streamed replies, read event by event as the pipeline relays them.

:class:`AsyncEventStream` is what ``messages.create(stream=True)`` returns, like the SDK's ``AsyncStream``:
the raw events, parsed from the relayed SSE bytes (``ping`` and unknown events skipped, an ``error`` event
raised as the SDK raises it). :class:`AsyncMessageStream` is what ``messages.stream()`` opens, like the SDK's
helper of the same name: the raw events and the convenience events, ``text_stream``, and the message
accumulated so far (folded by :class:`claudegate.wire.message_fold.MessageFold`, the chat API's fold too,
and typed as the SDK's ``Message`` when asked for).

Closing a stream before its end (``close()``, leaving its ``async with`` block, or dropping it) tells the
pipeline that the caller left: the upstream call is cancelled and the usage record says so.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from types import TracebackType
from typing import Any

import anthropic
from anthropic.types import (
    Message,
    RawContentBlockDeltaEvent,
    RawContentBlockStartEvent,
    RawContentBlockStopEvent,
    RawMessageDeltaEvent,
    RawMessageStartEvent,
    RawMessageStopEvent,
    RawMessageStreamEvent,
    TextDelta,
)

from claudegate.client._errors import error_from_event, http_response, text_headers
from claudegate.client._events import MessageStreamEvent, build_events
from claudegate.client._exchange import Exchange
from claudegate.wire.message_fold import MessageFold
from claudegate.wire.sse import ServerSentEvent, SSEParser

__all__ = ["AsyncEventStream", "AsyncMessageStream", "AsyncMessageStreamManager"]

_EVENT_TYPES: dict[str, type[anthropic.BaseModel]] = {
    "message_start": RawMessageStartEvent,
    "message_delta": RawMessageDeltaEvent,
    "message_stop": RawMessageStopEvent,
    "content_block_start": RawContentBlockStartEvent,
    "content_block_delta": RawContentBlockDeltaEvent,
    "content_block_stop": RawContentBlockStopEvent,
}


class AsyncEventStream:
    """The raw events of a streamed reply (``async for event in stream``); close it, or use ``async with``,
    if you stop before the end."""

    def __init__(
        self,
        exchange: Exchange,
        *,
        path: str,
        translate: Callable[[BaseException], BaseException],
        timeout: float | None = None,
    ) -> None:
        self._exchange = exchange
        self._path = path
        self._translate = translate
        self._timeout = timeout
        self._parser = SSEParser()
        self._pending: deque[ServerSentEvent] = deque()
        self._done = False
        self._loop = asyncio.get_running_loop()
        self.response: Any = http_response(
            exchange.sink.status, text_headers(exchange.sink.headers), path=path
        )  # the SDK's response type (httpx2.Response), without its body

    @property
    def request_id(self) -> str | None:
        value = self.response.headers.get("request-id")
        return value if isinstance(value, str) else None

    def __aiter__(self) -> AsyncEventStream:
        return self

    async def __anext__(self) -> RawMessageStreamEvent:
        return (await self.next_event())[1]

    async def next_event(self) -> tuple[dict[str, Any], RawMessageStreamEvent]:
        """The next event as its JSON data and as the SDK's type; StopAsyncIteration at the end."""
        while not self._done:
            while self._pending:
                event = self._event(self._pending.popleft())
                if event is not None:
                    return event
            chunk = await self._next_chunk()
            if chunk is None:
                self._done = True
                break
            self._pending.extend(self._parser.feed(chunk))
        raise StopAsyncIteration

    async def _next_chunk(self) -> bytes | None:
        try:
            async with asyncio.timeout(self._timeout):
                return await self._exchange.next_chunk()
        except BaseException as error:
            self._done = True
            self._exchange.leave()
            translated = self._translate(error)
            if translated is error:
                raise
            raise translated from None

    def _event(self, sse: ServerSentEvent) -> tuple[dict[str, Any], RawMessageStreamEvent] | None:
        if sse.event == "error":
            self._done = True
            raise error_from_event(sse.data, self._exchange.sink.headers, path=self._path)
        cls = _EVENT_TYPES.get(sse.event or "")
        if cls is None or not sse.data:
            return None  # ping, or an event type newer than this client: ignored, as the API asks
        data: dict[str, Any] = sse.json()
        event: RawMessageStreamEvent = cls.construct(**data)  # type: ignore[assignment]
        return data, event

    async def close(self) -> None:
        """Stop reading. If the reply was not over, the pipeline hears that the caller left, and this
        returns once it has cancelled the upstream call and recorded it."""
        self._done = True
        if not self._exchange.ended:
            self._exchange.leave()
            await self._exchange.wait()

    async def __aenter__(self) -> AsyncEventStream:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def __del__(self) -> None:
        # Dropped before its end without close(): the caller has left all the same. This may run in any
        # thread (the sync client's callers), so the loop is asked to do it.
        exchange, loop = getattr(self, "_exchange", None), getattr(self, "_loop", None)
        if exchange is not None and loop is not None and not exchange.ended and not loop.is_closed():
            loop.call_soon_threadsafe(exchange.leave)


class AsyncMessageStream:
    """A streamed reply with the SDK's helpers: ``text_stream``, events (raw and convenience ones),
    ``current_message_snapshot``, ``get_final_message()`` and ``get_final_text()``."""

    def __init__(self, raw: AsyncEventStream) -> None:
        self._raw = raw
        self._fold = MessageFold()
        self._snapshot: Message | None = None  # the fold's message typed, made when asked for
        self._iterator = self._events()
        self.text_stream: AsyncIterator[str] = self._text()

    @property
    def response(self) -> Any:
        return self._raw.response

    @property
    def request_id(self) -> str | None:
        return self._raw.request_id

    @property
    def current_message_snapshot(self) -> Message:
        if self._snapshot is None:
            if self._fold.message is None:
                raise RuntimeError("no message_start event has been received yet")
            self._snapshot = Message.construct(**self._fold.message)
        return self._snapshot

    def __aiter__(self) -> AsyncIterator[MessageStreamEvent]:
        return self._iterator

    async def __anext__(self) -> MessageStreamEvent:
        return await self._iterator.__anext__()

    async def until_done(self) -> None:
        """Read the stream to its end."""
        async for _event in self._iterator:
            pass

    async def get_final_message(self) -> Message:
        """The whole message, once the stream has ended (read to its end if need be)."""
        await self.until_done()
        return self.current_message_snapshot

    async def get_final_text(self) -> str:
        """The text of the whole message's text blocks, joined."""
        message = await self.get_final_message()
        texts = [block.text for block in message.content if block.type == "text"]
        if not texts:
            raise RuntimeError(".get_final_text() was called but the message has no text content blocks")
        return "".join(texts)

    async def close(self) -> None:
        await self._raw.close()

    async def _events(self) -> AsyncIterator[MessageStreamEvent]:
        while True:
            try:
                data, event = await self._raw.next_event()
            except StopAsyncIteration:
                return
            self._fold.feed(data)
            self._snapshot = None  # typed again when next asked for
            for derived in build_events(event, self._fold, lambda: self.current_message_snapshot):
                yield derived

    async def _text(self) -> AsyncIterator[str]:
        async for event in self._iterator:
            if isinstance(event, RawContentBlockDeltaEvent) and isinstance(event.delta, TextDelta):
                yield event.delta.text


class AsyncMessageStreamManager:
    """``async with client.messages.stream(...) as stream``: the call starts on entering (its errors are
    raised there) and the stream is closed on leaving."""

    def __init__(self, open_stream: Callable[[], Awaitable[AsyncEventStream]]) -> None:
        self._open = open_stream
        self._stream: AsyncMessageStream | None = None

    async def __aenter__(self) -> AsyncMessageStream:
        self._stream = AsyncMessageStream(await self._open())
        return self._stream

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._stream is not None:
            await self._stream.close()
