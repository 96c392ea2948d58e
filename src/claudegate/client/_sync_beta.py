"""``claudegate.Client().beta``: the beta namespace and tool runner for synchronous code, on the client's
event loop (see ``_portal``). Sync tools (``anthropic.beta_tool``) run in worker threads, concurrently."""

from __future__ import annotations

import builtins
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Literal, overload

from anthropic.types import MessageTokensCount, ModelInfo
from anthropic.types.beta import BetaDeletedFile, BetaFileMetadata, BetaMessage, BetaMessageParam
from anthropic.types.messages import DeletedMessageBatch, MessageBatch, MessageBatchIndividualResponse

from claudegate.client._batches import AsyncBatches, BatchPage
from claudegate.client._beta import AsyncBeta, AsyncBetaMessages
from claudegate.client._files import AsyncFiles, FileContent, FilePage
from claudegate.client._models import AsyncModels, ModelPage
from claudegate.client._portal import Portal
from claudegate.client._tools import AsyncStreamingToolRunner, AsyncToolRunner

if TYPE_CHECKING:
    from claudegate.client._sync import MessageStream, MessageStreamManager

__all__ = [
    "Batches",
    "Beta",
    "BetaMessages",
    "Files",
    "Models",
    "StreamingToolRunner",
    "SyncFilePage",
    "ToolRunner",
]


class ToolRunner:
    """A tool loop for synchronous code: ``for message in runner`` or ``runner.until_done()``; see
    :class:`~claudegate.client.AsyncToolRunner`."""

    def __init__(self, runner: AsyncToolRunner, portal: Portal) -> None:
        self._runner = runner
        self._portal = portal
        self._iterator: Iterator[BetaMessage] | None = None

    @property
    def loop_id(self) -> str:
        return self._runner.loop_id

    @property
    def iteration_count(self) -> int:
        return self._runner.iteration_count

    @property
    def messages(self) -> list[Any]:
        return self._runner.messages

    def append_messages(self, *messages: BetaMessageParam | BetaMessage) -> None:
        self._runner.append_messages(*messages)

    def __iter__(self) -> Iterator[BetaMessage]:
        if self._iterator is None:
            self._iterator = self._portal.iterate(self._runner.__aiter__())
        return self._iterator

    def __next__(self) -> BetaMessage:
        return next(iter(self))

    def until_done(self) -> BetaMessage:
        return self._portal.run(self._runner.until_done())

    def generate_tool_call_response(self) -> BetaMessageParam | None:
        return self._portal.run(self._runner.generate_tool_call_response())


class StreamingToolRunner:
    """A streamed tool loop for synchronous code: ``for stream in runner``, then ``for event in stream`` (or
    ``stream.text_stream``); see :class:`~claudegate.client.AsyncStreamingToolRunner`."""

    def __init__(self, runner: AsyncStreamingToolRunner, portal: Portal) -> None:
        self._runner = runner
        self._portal = portal
        self._iterator: Iterator[MessageStream] | None = None

    @property
    def loop_id(self) -> str:
        return self._runner.loop_id

    @property
    def iteration_count(self) -> int:
        return self._runner.iteration_count

    @property
    def messages(self) -> list[Any]:
        return self._runner.messages

    def append_messages(self, *messages: BetaMessageParam | BetaMessage) -> None:
        self._runner.append_messages(*messages)

    def __iter__(self) -> Iterator[MessageStream]:
        from claudegate.client._sync import MessageStream as SyncStream

        if self._iterator is None:
            streams = self._portal.iterate(self._runner.__aiter__())
            self._iterator = (SyncStream(stream, self._portal) for stream in streams)
        return self._iterator

    def __next__(self) -> MessageStream:
        return next(iter(self))

    def until_done(self) -> BetaMessage:
        return self._portal.run(self._runner.until_done())

    def generate_tool_call_response(self) -> BetaMessageParam | None:
        return self._portal.run(self._runner.generate_tool_call_response())


class BetaMessages:
    def __init__(self, messages: AsyncBetaMessages, portal: Portal) -> None:
        self._messages = messages
        self._portal = portal

    def create(self, **params: Any) -> BetaMessage:
        return self._portal.run(self._messages.create(**params))

    def count_tokens(self, **params: Any) -> MessageTokensCount:
        return self._portal.run(self._messages.count_tokens(**params))

    def stream(self, **params: Any) -> MessageStreamManager:
        from claudegate.client._sync import MessageStreamManager as SyncManager

        return SyncManager(self._messages.stream(**params), self._portal)

    @overload
    def tool_runner(self, *, stream: Literal[False] = False, **params: Any) -> ToolRunner: ...

    @overload
    def tool_runner(self, *, stream: Literal[True], **params: Any) -> StreamingToolRunner: ...

    def tool_runner(self, *, stream: bool = False, **params: Any) -> ToolRunner | StreamingToolRunner:
        if stream:
            return StreamingToolRunner(self._messages.tool_runner(stream=True, **params), self._portal)
        return ToolRunner(self._messages.tool_runner(**params), self._portal)


class Beta:
    def __init__(self, beta: AsyncBeta, portal: Portal) -> None:
        self.messages = BetaMessages(beta.messages, portal)
        self.files = Files(beta.files, portal)


class SyncFilePage:
    """One page of ``files.list`` for synchronous code (``data``, ``has_more``, ``next_page``,
    ``get_next_page()``); iterating it goes through every file of this page and the pages after it."""

    def __init__(self, page: FilePage, portal: Portal) -> None:
        self._page = page
        self._portal = portal
        self.data = page.data
        self.has_more = page.has_more
        self.first_id = page.first_id
        self.last_id = page.last_id
        self.next_page = page.next_page

    def has_next_page(self) -> bool:
        return self._page.has_next_page()

    def get_next_page(self) -> SyncFilePage:
        return SyncFilePage(self._portal.run(self._page.get_next_page()), self._portal)

    def __iter__(self) -> Iterator[BetaFileMetadata]:
        page: SyncFilePage | None = self
        while page is not None:
            yield from page.data
            page = page.get_next_page() if page.has_next_page() else None


class Files:
    """``client.beta.files`` for synchronous code; see :class:`~claudegate.client._files.AsyncFiles`."""

    def __init__(self, files: AsyncFiles, portal: Portal) -> None:
        self._files = files
        self._portal = portal

    def upload(self, **params: Any) -> BetaFileMetadata:
        return self._portal.run(self._files.upload(**params))

    def list(self, **params: Any) -> SyncFilePage:
        """The first page; iterate it for every file of every page, as the SDK's page."""
        listing = self._files.list(**params)

        async def first() -> FilePage:
            return await listing

        return SyncFilePage(self._portal.run(first()), self._portal)

    def retrieve_metadata(self, file_id: str, **params: Any) -> BetaFileMetadata:
        return self._portal.run(self._files.retrieve_metadata(file_id, **params))

    def download(self, file_id: str, **params: Any) -> FileContent:
        return self._portal.run(self._files.download(file_id, **params))

    def delete(self, file_id: str, **params: Any) -> BetaDeletedFile:
        return self._portal.run(self._files.delete(file_id, **params))


class Models:
    """``client.models`` for synchronous code: ``list`` (one page; see its ``data`` and ``has_more``) and
    ``retrieve``."""

    def __init__(self, models: AsyncModels, portal: Portal) -> None:
        self._models = models
        self._portal = portal

    def list(self, **params: Any) -> ModelPage:
        return self._portal.run(self._models.list(**params))

    def retrieve(self, model_id: str, **params: Any) -> ModelInfo:
        return self._portal.run(self._models.retrieve(model_id, **params))


class Batches:
    """``client.messages.batches`` for synchronous code; ``results`` gives a list."""

    def __init__(self, batches: AsyncBatches, portal: Portal) -> None:
        self._batches = batches
        self._portal = portal

    def create(self, **params: Any) -> MessageBatch:
        return self._portal.run(self._batches.create(**params))

    def retrieve(self, message_batch_id: str) -> MessageBatch:
        return self._portal.run(self._batches.retrieve(message_batch_id))

    def list(self, **params: Any) -> BatchPage:
        return self._portal.run(self._batches.list(**params))

    def cancel(self, message_batch_id: str) -> MessageBatch:
        return self._portal.run(self._batches.cancel(message_batch_id))

    def delete(self, message_batch_id: str) -> DeletedMessageBatch:
        return self._portal.run(self._batches.delete(message_batch_id))

    def results(self, message_batch_id: str) -> builtins.list[MessageBatchIndividualResponse]:
        return builtins.list(self._portal.iterate(self._batches.results(message_batch_id)))
