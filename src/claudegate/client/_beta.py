"""``client.beta``: the official SDK's beta namespace for messages (``create``, ``stream``, ``count_tokens``,
``tool_runner``), run through the same pipeline as ``client.messages``; replies are ``BetaMessage``; and
``files`` (``_files``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, overload

from anthropic.types import MessageTokensCount
from anthropic.types.beta import BetaMessage, BetaMessageParam

from claudegate.client._files import AsyncFiles
from claudegate.client._messages import AsyncMessages, OnQueued, _Options
from claudegate.client._streams import AsyncEventStream, AsyncMessageStreamManager
from claudegate.client._tools import AsyncStreamingToolRunner, AsyncToolRunner, RunnableTool

if TYPE_CHECKING:
    from claudegate.client._client import AsyncClient

__all__ = ["AsyncBeta", "AsyncBetaMessages"]


class AsyncBetaMessages:
    def __init__(self, client: AsyncClient, messages: AsyncMessages) -> None:
        self._client = client
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
    ) -> BetaMessage:
        """As ``client.messages.create`` (without ``stream``), the reply read as a ``BetaMessage``."""
        if params.get("stream") is True:
            raise TypeError("client.beta.messages.create streams through client.beta.messages.stream")
        options = _Options(
            deadline_s,
            priority,
            on_queued,
            betas,
            extra_headers,
            extra_query,
            extra_body,
            timeout,
            reply_type=BetaMessage,
        )
        reply: Any = await self._messages._create(params, options)
        assert isinstance(reply, BetaMessage)
        return reply

    def stream(self, **params: Any) -> AsyncMessageStreamManager:
        """As ``client.messages.stream``."""
        return self._messages.stream(**params)

    async def count_tokens(self, **params: Any) -> MessageTokensCount:
        """As ``client.messages.count_tokens``."""
        return await self._messages.count_tokens(**params)

    @overload
    def tool_runner(
        self,
        *,
        tools: Sequence[RunnableTool | dict[str, Any]],
        messages: Iterable[BetaMessageParam],
        stream: Literal[False] = False,
        **params: Any,
    ) -> AsyncToolRunner: ...

    @overload
    def tool_runner(
        self,
        *,
        tools: Sequence[RunnableTool | dict[str, Any]],
        messages: Iterable[BetaMessageParam],
        stream: Literal[True],
        **params: Any,
    ) -> AsyncStreamingToolRunner: ...

    def tool_runner(
        self,
        *,
        tools: Sequence[RunnableTool | dict[str, Any]],
        messages: Iterable[BetaMessageParam],
        stream: bool = False,
        max_iterations: int | None = None,
        deadline_s: float | None = None,
        priority: int | None = None,
        betas: Iterable[str] | None = None,
        extra_headers: Mapping[str, object] | None = None,
        extra_body: Mapping[str, object] | None = None,
        timeout: float | None = None,
        **params: Any,
    ) -> AsyncToolRunner | AsyncStreamingToolRunner:
        """A tool loop (see :class:`~claudegate.client.AsyncToolRunner`) over ``tools``: functions made with
        ``anthropic.beta_tool``/``beta_async_tool``, or plain tool definitions the loop does not run.
        ``max_iterations``: model calls at most (default: the ``tool_loop_max_iterations`` setting).
        ``stream=True``: the loop yields each turn's message stream
        (:class:`~claudegate.client.AsyncStreamingToolRunner`)."""
        declared = [tool.to_dict() if isinstance(tool, RunnableTool) else tool for tool in tools]
        client = self._client

        def options(loop_id: str) -> _Options:
            return _Options(
                deadline_s,
                priority,
                None,
                betas,
                extra_headers,
                None,
                extra_body,
                timeout,
                loop_id=loop_id,
                reply_type=BetaMessage,
            )

        def body(conversation: list[Any]) -> dict[str, Any]:
            return {**params, "messages": conversation, "tools": declared}

        async def send(conversation: list[Any], loop_id: str) -> BetaMessage:
            reply: Any = await self._messages._create(body(conversation), options(loop_id))
            assert isinstance(reply, BetaMessage)
            return reply

        def open_stream(conversation: list[Any], loop_id: str) -> AsyncMessageStreamManager:
            async def opened() -> AsyncEventStream:
                streamed = {**body(conversation), "stream": True}
                events = await self._messages._create(streamed, options(loop_id))
                assert isinstance(events, AsyncEventStream)
                return events

            return AsyncMessageStreamManager(opened)

        def on_end(depth: int, outcome: str) -> None:
            services = client._services
            if services is not None:
                services.metrics.tool_loop_depth.labels(outcome=outcome).observe(depth)

        loop: dict[str, Any] = {
            "messages": messages,
            "tools": tools,
            "max_iterations": max_iterations or client.settings.tool_loop_max_iterations,
            "on_end": on_end,
        }
        if stream:
            return AsyncStreamingToolRunner(open_stream, **loop)
        return AsyncToolRunner(send, **loop)


class AsyncBeta:
    def __init__(self, client: AsyncClient, messages: AsyncMessages) -> None:
        self.messages = AsyncBetaMessages(client, messages)
        self.files = AsyncFiles(client)
