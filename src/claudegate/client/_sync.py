"""``claudegate.Client``: :class:`~claudegate.client.AsyncClient` for synchronous code, with the same
surface as ``anthropic.Anthropic``'s ``messages``.

Every call runs on one event loop owned by the client, in a background thread (see ``_portal``); the
calling thread blocks until its answer (or its next stream event) is there. ``on_queued`` callbacks run in
that background thread.
"""

from __future__ import annotations

import copy
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, overload

from anthropic.types import Message, MessageCountTokensParams, MessageTokensCount, RawMessageStreamEvent
from anthropic.types.message_create_params import (
    MessageCreateParamsBase,
    MessageCreateParamsNonStreaming,
    MessageCreateParamsStreaming,
)

from claudegate.client._client import AsyncClient
from claudegate.client._events import MessageStreamEvent
from claudegate.client._messages import AsyncMessages, OnQueued, RawResponse
from claudegate.client._portal import Portal
from claudegate.client._streams import AsyncEventStream, AsyncMessageStream, AsyncMessageStreamManager
from claudegate.client._sync_beta import Batches, Beta, Models
from claudegate.config import Settings

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["Client", "EventStream", "MessageStream", "MessageStreamManager", "Messages"]


class Client:
    """The synchronous in-process client; see :class:`~claudegate.client.AsyncClient` for the arguments.
    Use it as a context manager, or call :meth:`close` at the end (usage records are flushed then)."""

    def __init__(
        self,
        *,
        settings: Settings | None = None,
        org: str = "default",
        user: str | None = None,
        key: str | None = None,
    ) -> None:
        self._portal = Portal()
        self._async = AsyncClient(settings=settings, org=org, user=user, key=key)
        self.messages = Messages(self._async.messages, self._portal)
        self.beta = Beta(self._async.beta, self._portal)
        self.models = Models(self._async.models, self._portal)
        # A client dropped, or left open at exit, still closes: its usage records are written, not lost.
        self._finalizer: Callable[[], object] = weakref.finalize(self, _close, self._portal, self._async)

    def with_options(self, **options: Any) -> Client:
        """This client with defaults for every call, as :meth:`AsyncClient.with_options
        <claudegate.client.AsyncClient.with_options>`; it shares this client's services and thread, and
        closing it closes nothing."""
        view = copy.copy(self)
        view._async = self._async.with_options(**options)
        view.messages = Messages(view._async.messages, self._portal)
        view.beta = Beta(view._async.beta, self._portal)
        view.models = Models(view._async.models, self._portal)
        view._finalizer = _nothing
        return view

    def __enter__(self) -> Client:
        self._portal.run(self._async.open())
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._finalizer()


def _nothing() -> None:
    pass


def _close(portal: Portal, client: AsyncClient) -> None:
    if not portal.started:  # never used: nothing was opened (and no thread should start at exit)
        return
    try:
        portal.run(client.close())
    finally:
        portal.close()


class RawMessages:
    """``client.messages.with_raw_response``: ``create`` (not streamed) with the reply's status and
    headers."""

    def __init__(self, messages: AsyncMessages, portal: Portal) -> None:
        self._messages = messages
        self._portal = portal

    def create(self, **params: Any) -> RawResponse[Message | AsyncEventStream]:
        if params.get("stream") is True:
            raise TypeError("with_raw_response.create does not stream in the synchronous client")
        return self._portal.run(self._messages.with_raw_response.create(**params))


class Messages:
    def __init__(self, messages: AsyncMessages, portal: Portal) -> None:
        self._messages = messages
        self._portal = portal
        self.with_raw_response = RawMessages(messages, portal)
        self.batches = Batches(messages.batches, portal)

    @overload
    def create(
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
        **params: Unpack[MessageCreateParamsNonStreaming],
    ) -> Message: ...

    @overload
    def create(
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
        **params: Unpack[MessageCreateParamsStreaming],
    ) -> EventStream: ...

    def create(self, **params: Any) -> Message | EventStream:
        """As :meth:`AsyncMessages.create <claudegate.client.AsyncClient>`; a stream is an iterator of raw
        events."""
        result: Message | AsyncEventStream = self._portal.run(self._messages.create(**params))
        if isinstance(result, AsyncEventStream):
            return EventStream(result, self._portal)
        return result

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
    ) -> MessageStreamManager:
        """``with client.messages.stream(...) as stream: for text in stream.text_stream: ...``"""
        manager = self._messages.stream(
            deadline_s=deadline_s,
            priority=priority,
            on_queued=on_queued,
            betas=betas,
            extra_headers=extra_headers,
            extra_query=extra_query,
            extra_body=extra_body,
            timeout=timeout,
            **params,
        )
        return MessageStreamManager(manager, self._portal)

    def count_tokens(
        self,
        *,
        betas: Iterable[str] | None = None,
        extra_headers: Mapping[str, object] | None = None,
        extra_query: Mapping[str, object] | None = None,
        extra_body: Mapping[str, object] | None = None,
        timeout: float | None = None,
        **params: Unpack[MessageCountTokensParams],
    ) -> MessageTokensCount:
        return self._portal.run(
            self._messages.count_tokens(
                betas=betas,
                extra_headers=extra_headers,
                extra_query=extra_query,
                extra_body=extra_body,
                timeout=timeout,
                **params,
            )
        )


class EventStream:
    """The raw events of a streamed reply, like the SDK's ``Stream``; close it (or use ``with``) if you
    stop before the end."""

    def __init__(self, stream: AsyncEventStream, portal: Portal) -> None:
        self._stream = stream
        self._portal = portal
        self._iterator = portal.iterate(stream)

    @property
    def response(self) -> Any:
        return self._stream.response

    @property
    def request_id(self) -> str | None:
        return self._stream.request_id

    def __iter__(self) -> Iterator[RawMessageStreamEvent]:
        return self._iterator

    def __next__(self) -> RawMessageStreamEvent:
        return next(self._iterator)

    def close(self) -> None:
        self._portal.run(self._stream.close())

    def __enter__(self) -> EventStream:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class MessageStream:
    """A streamed reply with the SDK's helpers, like its ``MessageStream``."""

    def __init__(self, stream: AsyncMessageStream, portal: Portal) -> None:
        self._stream = stream
        self._portal = portal
        self._iterator = portal.iterate(stream.__aiter__())
        self.text_stream: Iterator[str] = portal.iterate(stream.text_stream)

    @property
    def response(self) -> Any:
        return self._stream.response

    @property
    def request_id(self) -> str | None:
        return self._stream.request_id

    @property
    def current_message_snapshot(self) -> Message:
        return self._stream.current_message_snapshot

    def __iter__(self) -> Iterator[MessageStreamEvent]:
        return self._iterator

    def __next__(self) -> MessageStreamEvent:
        return next(self._iterator)

    def until_done(self) -> None:
        self._portal.run(self._stream.until_done())

    def get_final_message(self) -> Message:
        return self._portal.run(self._stream.get_final_message())

    def get_final_text(self) -> str:
        return self._portal.run(self._stream.get_final_text())

    def close(self) -> None:
        self._portal.run(self._stream.close())


class MessageStreamManager:
    """``with client.messages.stream(...) as stream``: the call starts on entering, the stream is closed on
    leaving."""

    def __init__(self, manager: AsyncMessageStreamManager, portal: Portal) -> None:
        self._manager = manager
        self._portal = portal

    def __enter__(self) -> MessageStream:
        return MessageStream(self._portal.run(self._manager.__aenter__()), self._portal)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._portal.run(self._manager.__aexit__(exc_type, exc, tb))
